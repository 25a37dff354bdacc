//! How crfs's own registry requests (manifests, blob ranges) authenticate: the distribution
//! token protocol, with every answer read under a bound.
//!
//! 1. `GET /v2/` at the registry, body never read. Its `WWW-Authenticate` header decides:
//!    - none, or a challenge that is not `Bearer`: the basic credentials if there are any,
//!      otherwise nothing;
//!    - `Bearer realm="…",service="…"`: step 2.
//! 2. `GET REALM?scope=repository:REPO:pull&service=SERVICE` (`pull,push` to push, and one
//!    more `scope` per repository a blob is mounted from), with the basic credentials if
//!    there are any. A 200 carries JSON with `token` (or `access_token`), used as
//!    `Authorization: Bearer …` from then on.
//!
//! The token answer is refused as it arrives once it passes [`MAX_TOKEN_ANSWER`], and only the
//! first [`MAX_REFUSAL_TEXT`](crate::http::MAX_REFUSAL_TEXT) bytes of a refusal are read (for the message), so a hostile
//! registry or token server cannot make crfs hold more than that. Each request is bounded in
//! time by the request timeout. Errors carry the class the retry policy needs: network trouble,
//! 429 and 5xx are transient; a refusal is `Unauthorized`; an answer that is too large or not
//! understood is permanent.

use oci_client::secrets::RegistryAuth;
use reqwest::header::{CONTENT_LENGTH, WWW_AUTHENTICATE};
use reqwest::{StatusCode, Url};

use crate::client::{Client, Credential, RepoAuth};
use crate::error::{Class, FetchError};
use crate::http::{MAX_REFUSAL_TEXT, classify, header_u64, one_line, read_at_most};

/// The largest token answer taken. Real ones are JSON Web Tokens of a few KiB.
pub(crate) const MAX_TOKEN_ANSWER: u64 = 1 << 20;

/// The `Bearer` challenge of a `WWW-Authenticate` header: where to ask for a token.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct BearerChallenge {
    pub realm: String,
    pub service: Option<String>,
}

impl BearerChallenge {
    /// The first `Bearer` challenge with a realm in a `WWW-Authenticate` value; `None` when
    /// there is none (no header, another scheme, or a value that does not parse).
    pub fn parse(header: &str) -> Option<BearerChallenge> {
        http_auth::parser::ChallengeParser::new(header)
            .filter_map(|c| c.ok())
            .filter(|c| c.scheme.eq_ignore_ascii_case("bearer"))
            .find_map(|c| {
                let param = |name: &str| {
                    c.params.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.to_unescaped())
                };
                Some(BearerChallenge { realm: param("realm")?, service: param("service") })
            })
    }
}

/// Works out the credential for `scopes` (`repository:REPO:pull`, `repository:REPO:pull,push`)
/// at `registry`, given the user's `creds`. `source` names where `creds` came from, for messages.
pub(crate) async fn credential(
    inner: &Client,
    registry: &str,
    scopes: &[String],
    creds: &RegistryAuth,
    source: &str,
) -> Result<Credential, FetchError> {
    // A token given as such is used as it is, without asking the registry.
    let basic = match creds {
        RegistryAuth::Bearer(t) => return Ok(Credential::Bearer(t.clone())),
        RegistryAuth::Basic(u, p) => Some(Credential::Basic(u.clone(), p.clone())),
        RegistryAuth::Anonymous => None,
    };
    let base = format!("{}://{registry}/v2/", inner.scheme_for(registry));
    let base = Url::parse(&base).map_err(|e| FetchError::permanent("bad registry address", format!("{base}: {e}")))?;
    let answer = send(inner, inner.http_for(&base).get(base.clone())).await?;
    let status = answer.status();
    let challenge =
        answer.headers().get(WWW_AUTHENTICATE).and_then(|v| v.to_str().ok()).and_then(BearerChallenge::parse);
    drop(answer);
    let Some(challenge) = challenge else {
        let sending = if basic.is_some() { "the basic credentials" } else { "nothing" };
        tracing::debug!(registry, %status, credentials = source, "no bearer challenge from /v2/: sending {sending}");
        return Ok(basic.unwrap_or(Credential::Nothing));
    };
    tracing::debug!(registry, %status, realm = %challenge.realm, service = ?challenge.service, ?scopes,
        credentials = source, "bearer challenge from /v2/: asking the token server");

    let mut realm = Url::parse(&challenge.realm).map_err(|e| {
        FetchError::permanent("the registry's token realm is not a URL", format!("{}: {e}", challenge.realm))
    })?;
    if !matches!(realm.scheme(), "http" | "https") {
        return Err(FetchError::permanent("the registry's token realm is not HTTP", challenge.realm));
    }
    {
        let mut query = realm.query_pairs_mut();
        for scope in scopes {
            query.append_pair("scope", scope);
        }
        if let Some(service) = &challenge.service {
            query.append_pair("service", service);
        }
    }
    let mut request = inner.http_for(&realm).get(realm.clone());
    if let RegistryAuth::Basic(u, p) = creds {
        request = request.basic_auth(u, Some(p));
    }
    let mut answer = send(inner, request).await?;
    let status = answer.status();
    if status != StatusCode::OK {
        let text = read_at_most(&mut answer, MAX_REFUSAL_TEXT).await.map(|b| b.bytes).unwrap_or_default();
        let detail = format!("{status} from {} for {registry} with {source}: {}", redacted(&realm), one_line(&text));
        return Err(match status.as_u16() {
            429 | 500..=599 if status != StatusCode::NOT_IMPLEMENTED => {
                FetchError::transient("the token server is busy or failing", detail)
            }
            _ => FetchError::new(Class::Unauthorized, "registry refused the credentials", detail),
        });
    }
    let too_large = |what: String| {
        FetchError::permanent(
            "token answer too large",
            format!("{what} from {}, at most {MAX_TOKEN_ANSWER} taken", redacted(&realm)),
        )
    };
    if let Some(n) = header_u64(&answer, CONTENT_LENGTH).filter(|&n| n > MAX_TOKEN_ANSWER) {
        return Err(too_large(format!("{n} bytes")));
    }
    let body = read_at_most(&mut answer, MAX_TOKEN_ANSWER).await?;
    if !body.complete {
        return Err(too_large(format!("more than {MAX_TOKEN_ANSWER} bytes")));
    }
    // `token` in the Docker protocol, `access_token` in the OAuth2 form (some send both, equal).
    let parsed: serde_json::Value = serde_json::from_slice(&body.bytes)
        .map_err(|e| FetchError::permanent("token answer not understood", format!("from {}: {e}", redacted(&realm))))?;
    let field = |name: &str| parsed.get(name).and_then(|v| v.as_str()).filter(|t| !t.is_empty());
    let token = field("token").or_else(|| field("access_token")).map(str::to_owned).ok_or_else(|| {
        FetchError::permanent(
            "token answer not understood",
            format!("no token in the answer from {}", redacted(&realm)),
        )
    })?;
    // The token goes into a header: anything but visible ASCII would make every request fail
    // to build, so it is refused here, once, with a message.
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(FetchError::permanent(
            "token answer not understood",
            format!("the token from {} holds characters a header cannot carry", redacted(&realm)),
        ));
    }
    tracing::debug!(registry, ?scopes, bytes = body.bytes.len(), "token received");
    Ok(Credential::Bearer(token))
}

/// The credential `auth` sends now, asking the registry the first time (see [`credential`]).
pub(crate) async fn current(client: &Client, auth: &RepoAuth) -> Result<(Credential, u64), FetchError> {
    auth.current(|| credential(client, auth.reference.resolve_registry(), &auth.scopes, &auth.creds, auth.source)).await
}

/// Asks the registry again for `auth`'s credential after a 401, unless another request already
/// did since generation `seen`.
pub(crate) async fn refresh(client: &Client, auth: &RepoAuth, seen: u64) -> Result<(), FetchError> {
    auth.refresh(seen, || credential(client, auth.reference.resolve_registry(), &auth.scopes, &auth.creds, auth.source))
        .await
}

/// Sends a request within the request timeout; network failures are classed for the retry policy.
async fn send(inner: &Client, request: reqwest::RequestBuilder) -> Result<reqwest::Response, FetchError> {
    let timeout = inner.options.request_timeout;
    match tokio::time::timeout(timeout, request.send()).await {
        Err(_) => Err(FetchError::transient("token request timed out", format!("no answer in {timeout:?}"))),
        Ok(Err(e)) => Err(classify(&e, "registry token request failed")),
        Ok(Ok(r)) => Ok(r),
    }
}

/// A URL without its query (which can carry account names) for messages.
fn redacted(url: &Url) -> String {
    let mut url = url.clone();
    url.set_query(None);
    url.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_challenges_are_found_among_others() {
        let docker_hub = r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io""#;
        assert_eq!(
            BearerChallenge::parse(docker_hub),
            Some(BearerChallenge {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into())
            })
        );
        let two = r#"Basic realm="x", bearer REALM="https://t.example/tok""#;
        assert_eq!(
            BearerChallenge::parse(two),
            Some(BearerChallenge { realm: "https://t.example/tok".into(), service: None })
        );
        let escaped = r#"Bearer realm="https://t.example/a\"b",service="s""#;
        assert_eq!(BearerChallenge::parse(escaped).map(|c| c.realm), Some("https://t.example/a\"b".into()));
    }

    #[test]
    fn challenges_without_a_bearer_realm_are_none() {
        for header in
            ["", "Basic realm=\"registry\"", "Bearer service=\"s\"", "Bearer", "\"unterminated", "Bearer realm="]
        {
            assert_eq!(BearerChallenge::parse(header), None, "{header:?}");
        }
    }

    #[test]
    fn refusal_text_is_one_short_line() {
        assert_eq!(
            one_line(b"{\"details\":\"incorrect username or password\"}\n"),
            "{\"details\":\"incorrect username or password\"}"
        );
        assert_eq!(one_line(&[b'x'; 5000]).len(), 200);
        assert_eq!(one_line(b"a\r\nb\x00c"), "a  b c");
    }
}
