//! Registry mirrors from a directory in containerd's `hosts.toml` layout (`--hosts-dir DIR`).
//!
//! `DIR/<registry>/hosts.toml` (`<registry>` as in references: `docker.io`, `ghcr.io`,
//! `127.0.0.1:5000`) configures that registry. What crfs takes from it:
//!
//! | key | mapped to |
//! |---|---|
//! | `[host."SCHEME://HOST[:PORT][/v2]"]` | a mirror, tried in file order before the registry |
//! | `capabilities` | the host is used only if it has both `pull` and `resolve` (the default) |
//! | `ca` (a path or a list, relative to the file's directory) | CA certificates trusted for that host only |
//! | `http://` hosts | plain HTTP to that host |
//! | `server = "SCHEME://HOST[:PORT]"` | tried after the hosts, before the registry itself, when it is another host |
//! | top-level `ca` | CA certificates trusted for `server` (or the registry itself) |
//!
//! `DIR/_default/hosts.toml` applies to every registry that has no directory of its own: its
//! hosts are tried, in order, before such a registry. Its `server` is ignored (with a log line),
//! since sending every registry's requests to one server is not what a default mirror means.
//!
//! Not supported, so such a host is skipped with a warning rather than used differently from
//! what the file says: `skip_verify = true` (crfs never turns TLS checks off), `override_path`
//! and URL paths other than `/v2` (crfs's mirrors serve the standard `/v2/` API). `header`,
//! `client` and `dial_timeout` are ignored (logged).

use std::path::{Path, PathBuf};

use toml::{Table, Value};

use crate::client::Mirror;
use crate::error::{Error, Result};

/// What a hosts directory adds to [`crate::Options`].
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct HostsConfig {
    /// Mirrors, per registry in file order.
    pub mirrors: Vec<Mirror>,
    /// CA certificate files named by `ca`, with the host (`HOST[:PORT]`) they are trusted for.
    pub host_ca_certs: Vec<(String, PathBuf)>,
    /// Hosts given with `http://`.
    pub plain_http_hosts: Vec<String>,
    /// `_default`'s hosts, in file order.
    pub default_mirrors: Vec<String>,
    /// Registries with a hosts.toml of their own.
    pub configured_registries: Vec<String>,
}

/// The directory name of the configuration for registries without their own.
const DEFAULT_DIR: &str = "_default";

impl HostsConfig {
    /// Reads every `DIR/<registry>/hosts.toml`. A missing directory is an error; a registry
    /// directory without a hosts.toml is skipped.
    pub fn load(dir: &Path) -> Result<HostsConfig> {
        let err = |e: std::io::Error| Error::local(format!("hosts directory {}: {e}", dir.display()));
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .map_err(err)?
            .filter_map(|e| e.ok())
            .filter(|e| e.path().join("hosts.toml").is_file())
            .filter_map(|e| e.file_name().to_str().map(str::to_owned))
            .collect();
        names.sort();
        let mut config = HostsConfig::default();
        for registry in names {
            let file = dir.join(&registry).join("hosts.toml");
            let text = std::fs::read_to_string(&file).map_err(|e| Error::local(format!("{}: {e}", file.display())))?;
            config
                .add_file(&registry, &text, &dir.join(&registry))
                .map_err(|e| Error::invalid(format!("{}: {e}", file.display())))?;
        }
        Ok(config)
    }

    /// Adds what one registry's hosts.toml says; `base` resolves relative `ca` paths.
    fn add_file(&mut self, registry: &str, text: &str, base: &Path) -> std::result::Result<(), String> {
        let table: Table = toml::from_str(text).map_err(|e| e.to_string())?;
        let hosts = match table.get("host") {
            None => Table::new(),
            Some(Value::Table(t)) => t.clone(),
            Some(_) => return Err("`host` must be a table of [host.\"URL\"] sections".into()),
        };
        // Tables keep the file's order (toml's preserve_order): hosts are tried in that order.
        for (url, h) in &hosts {
            let Value::Table(h) = h else { return Err(format!("host {url:?} must be a table")) };
            self.add_host(registry, url, h, base)?;
        }
        let server = match table.get("server") {
            None => None,
            Some(Value::String(url)) => Some(split_url(url)?),
            Some(_) => return Err("`server` must be a string".into()),
        };
        let top_cas = ca_paths(table.get("ca")).map_err(|e| format!("top-level {e}"))?;
        if registry == DEFAULT_DIR {
            if server.is_some() || !top_cas.is_empty() {
                tracing::info!("hosts.toml: `server` and top-level `ca` in _default are ignored");
            }
            return Ok(());
        }
        self.configured_registries.push(registry.to_owned());
        let server_host = match server {
            Some((plain, host)) if host != registry => {
                self.push(registry, host.clone(), plain);
                host
            }
            _ => registry.to_owned(),
        };
        self.host_ca_certs.extend(top_cas.iter().map(|p| (server_host.clone(), base.join(p))));
        Ok(())
    }

    fn add_host(&mut self, registry: &str, url: &str, h: &Table, base: &Path) -> std::result::Result<(), String> {
        let (plain, host) = match split_url(url) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(registry, host = url, "hosts.toml: host skipped: {e}");
                return Ok(());
            }
        };
        let caps: Vec<&str> = match h.get("capabilities") {
            None => vec!["pull", "resolve"],
            Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
            Some(_) => return Err(format!("host {url:?}: `capabilities` must be a list of strings")),
        };
        if !(caps.contains(&"pull") && caps.contains(&"resolve")) {
            tracing::info!(
                registry,
                host = url,
                "hosts.toml: host skipped: crfs needs the pull and resolve capabilities"
            );
            return Ok(());
        }
        if h.get("skip_verify").and_then(Value::as_bool) == Some(true) {
            tracing::warn!(registry, host = url, "hosts.toml: host skipped: skip_verify is not supported");
            return Ok(());
        }
        if h.get("override_path").and_then(Value::as_bool) == Some(true) {
            tracing::warn!(registry, host = url, "hosts.toml: host skipped: override_path is not supported");
            return Ok(());
        }
        for key in ["header", "client", "dial_timeout"] {
            if h.contains_key(key) {
                tracing::info!(registry, host = url, "hosts.toml: `{key}` is ignored");
            }
        }
        let cas = ca_paths(h.get("ca")).map_err(|e| format!("host {url:?}: {e}"))?;
        self.host_ca_certs.extend(cas.iter().map(|p| (host.clone(), base.join(p))));
        self.push(registry, host, plain);
        Ok(())
    }

    fn push(&mut self, registry: &str, host: String, plain: bool) {
        if plain && !self.plain_http_hosts.contains(&host) {
            self.plain_http_hosts.push(host.clone());
        }
        if registry == DEFAULT_DIR {
            self.default_mirrors.push(host);
        } else {
            self.mirrors.push(Mirror { registry: registry.to_owned(), mirror: host });
        }
    }
}

/// A `ca` value: a path or a list of paths.
fn ca_paths(value: Option<&Value>) -> std::result::Result<Vec<&str>, String> {
    match value {
        None => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![s.as_str()]),
        Some(Value::Array(a)) => Ok(a.iter().filter_map(Value::as_str).collect()),
        Some(_) => Err("`ca` must be a path or a list of paths".into()),
    }
}

/// `SCHEME://HOST[:PORT][/v2[/]]` → (plain HTTP, `HOST[:PORT]`).
fn split_url(url: &str) -> std::result::Result<(bool, String), String> {
    let (plain, rest) = if let Some(r) = url.strip_prefix("https://") {
        (false, r)
    } else if let Some(r) = url.strip_prefix("http://") {
        (true, r)
    } else {
        return Err(format!("{url:?}: only http:// and https:// hosts"));
    };
    let (host, path) = rest.split_once('/').map_or((rest, ""), |(h, p)| (h, p));
    if host.is_empty() || host.contains(['@', '?', '#']) {
        return Err(format!("{url:?}: not a host"));
    }
    if !matches!(path.trim_end_matches('/'), "" | "v2") {
        return Err(format!("{url:?}: paths other than /v2 are not supported"));
    }
    Ok((plain, host.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_toml_maps_onto_mirrors() {
        let text = r#"
server = "https://registry-1.docker.io"

[host."https://mirror-b.example:5000"]
  capabilities = ["pull", "resolve"]
  ca = "ca.pem"

[host."http://mirror-a.example/v2"]
  capabilities = ["pull", "resolve"]

[host."https://pull-only.example"]
  capabilities = ["pull"]

[host."https://insecure.example"]
  skip_verify = true

[host."https://custom.example/some/path"]
"#;
        let mut c = HostsConfig::default();
        c.add_file("docker.io", text, Path::new("/etc/certs.d/docker.io")).unwrap();
        let hosts: Vec<&str> = c.mirrors.iter().map(|m| m.mirror.as_str()).collect();
        assert_eq!(hosts, ["mirror-b.example:5000", "mirror-a.example", "registry-1.docker.io"]);
        assert!(c.mirrors.iter().all(|m| m.registry == "docker.io"));
        assert_eq!(
            c.host_ca_certs,
            [("mirror-b.example:5000".to_owned(), PathBuf::from("/etc/certs.d/docker.io/ca.pem"))],
            "a host's ca is trusted for that host only"
        );
        assert_eq!(c.configured_registries, ["docker.io"]);
        assert_eq!(c.plain_http_hosts, ["mirror-a.example"]);

        let mut c = HostsConfig::default();
        c.add_file("127.0.0.1:5000", "server = \"http://127.0.0.1:5000\"\n", Path::new("/")).unwrap();
        assert!(c.mirrors.is_empty(), "the registry itself is not its own mirror");
        assert!(HostsConfig::default().add_file("x", "host = 3", Path::new("/")).is_err());
        assert!(HostsConfig::default().add_file("x", "[host.\"https://a\"]\nca = 5", Path::new("/")).is_err());
        assert!(HostsConfig::default().add_file("x", "not toml [", Path::new("/")).is_err());

        let mut c = HostsConfig::default();
        c.add_file("r.example", "server = \"https://s.example\"\nca = [\"a.pem\", \"b.pem\"]\n", Path::new("/d"))
            .unwrap();
        assert_eq!(
            c.host_ca_certs,
            [("s.example".to_owned(), PathBuf::from("/d/a.pem")), ("s.example".to_owned(), PathBuf::from("/d/b.pem"))],
            "a top-level ca is for the server"
        );
    }

    #[test]
    fn the_default_directory_mirrors_registries_without_their_own() {
        let dir = std::env::temp_dir().join(format!("crfs-hosts-unit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for (name, text) in [
            (
                "_default",
                "server = \"https://ignored.example\"\n[host.\"http://any-mirror.example:5000\"]\nca = \"m.pem\"\n",
            ),
            ("ghcr.io", "[host.\"https://ghcr-mirror.example\"]\n"),
            ("quay.io", "server = \"https://quay.io\"\n"),
        ] {
            std::fs::create_dir_all(dir.join(name)).unwrap();
            std::fs::write(dir.join(name).join("hosts.toml"), text).unwrap();
        }
        let c = HostsConfig::load(&dir).unwrap();
        assert_eq!(c.default_mirrors, ["any-mirror.example:5000"]);
        assert_eq!(c.plain_http_hosts, ["any-mirror.example:5000"]);
        assert_eq!(c.host_ca_certs, [("any-mirror.example:5000".to_owned(), dir.join("_default/m.pem"))]);
        let mut options = crate::Options::default();
        options.add_hosts(c);
        assert_eq!(options.mirrors_of("ghcr.io"), ["ghcr-mirror.example"]);
        assert!(options.mirrors_of("quay.io").is_empty(), "a registry with its own file ignores _default");
        assert_eq!(options.mirrors_of("docker.io"), ["any-mirror.example:5000"]);
        assert_eq!(options.mirrors_of("127.0.0.1:5000"), ["any-mirror.example:5000"]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
