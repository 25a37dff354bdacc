//! Credential scoping: credentials given explicitly go to the one registry the image
//! references name, and to no other host (not its mirrors).

use crfs_remote::{CREDS_ENV, Credentials, RegistryCredentials, registry_of, same_registry};

use crate::error::{Error, ErrorKind, Result};

/// Where explicitly given credentials came from, which decides what happens when no single
/// registry is named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialsOrigin {
    /// A command-line flag or a file it names: an error when there is no single registry.
    Flag,
    /// The environment ([`CREDS_ENV`]): left unused when there is no single registry.
    Environment,
}

/// Credentials given explicitly, before they are scoped to a registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GivenCredentials {
    /// The user name and password.
    pub credentials: Credentials,
    /// Where they came from.
    pub origin: CredentialsOrigin,
}

impl GivenCredentials {
    /// `USER:PASSWORD` from [`CREDS_ENV`], if set; a malformed value is logged and ignored.
    pub fn from_env() -> Option<GivenCredentials> {
        let v = std::env::var(CREDS_ENV).ok()?;
        match Credentials::parse(&v) {
            Ok(credentials) => Some(GivenCredentials { credentials, origin: CredentialsOrigin::Environment }),
            Err(e) => {
                tracing::warn!("${CREDS_ENV} ignored: {e}");
                None
            }
        }
    }
}

/// Scopes `given` to the one registry that `references` (image references) name. From a flag
/// they are an error when there is no such single registry (the /crfs namespace, or several
/// registries); from the environment they are then left unused.
pub fn scope_credentials(given: Option<&GivenCredentials>, references: &[&str]) -> Result<Option<RegistryCredentials>> {
    let Some(given) = given else { return Ok(None) };
    let mut registries: Vec<String> = Vec::new();
    for r in references {
        let registry = registry_of(r).map_err(|e| Error::new(ErrorKind::Invalid, e.to_string()).with_source(e))?;
        if !registries.iter().any(|known| same_registry(known, &registry)) {
            registries.push(registry);
        }
    }
    let from_flag = given.origin == CredentialsOrigin::Flag;
    match (registries.as_slice(), from_flag) {
        ([registry], _) => {
            Ok(Some(RegistryCredentials { registry: registry.clone(), credentials: given.credentials.clone() }))
        }
        ([], true) => Err(Error::new(
            ErrorKind::Invalid,
            "--creds and --creds-file are for the registry an image reference names, and none is named here: give \
             per-host credentials with --authfile FILE",
        )),
        (many, true) => Err(Error::new(
            ErrorKind::Invalid,
            format!(
                "--creds and --creds-file are for one registry, and the references name {}: give per-host \
                 credentials with --authfile FILE",
                many.join(", ")
            ),
        )),
        (_, false) => {
            tracing::debug!("${CREDS_ENV} unused: no single registry is named");
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn given(origin: CredentialsOrigin) -> GivenCredentials {
        GivenCredentials { credentials: Credentials { username: "u".into(), password: "p".into() }, origin }
    }

    #[test]
    fn credentials_go_to_the_one_registry_named() {
        let flag = given(CredentialsOrigin::Flag);
        let scoped = scope_credentials(Some(&flag), &["127.0.0.1:5000/a:1", "127.0.0.1:5000/b:2"]).unwrap();
        assert_eq!(scoped.map(|c| c.registry), Some("127.0.0.1:5000".to_owned()));
        assert_eq!(scope_credentials(Some(&flag), &[]).unwrap_err().kind(), ErrorKind::Invalid);
        assert!(scope_credentials(Some(&flag), &["a.example/x:1", "b.example/y:1"]).is_err());
        let env = given(CredentialsOrigin::Environment);
        assert_eq!(scope_credentials(Some(&env), &[]).unwrap(), None);
        assert_eq!(scope_credentials(None, &["a.example/x:1"]).unwrap(), None);
    }
}
