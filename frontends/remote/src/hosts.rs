//! Registry mirrors from a directory in containerd's `hosts.toml` layout (`--hosts-dir DIR`).
//!
//! `DIR/<registry>/hosts.toml` (`<registry>` as in references: `docker.io`, `ghcr.io`,
//! `127.0.0.1:5000`) configures that registry. What crfs takes from it:
//!
//! | key | mapped to |
//! |---|---|
//! | `[host."SCHEME://HOST[:PORT][/v2]"]` | a mirror, tried in file order before the registry |
//! | `capabilities` | the host is used only if it has both `pull` and `resolve` (the default) |
//! | `ca` (a path or a list, relative to the file's directory) | extra trusted CA certificates |
//! | `http://` hosts | plain HTTP to that host |
//! | `server = "SCHEME://HOST[:PORT]"` | tried after the hosts, before the registry itself, when it is another host |
//!
//! Not supported, so such a host is skipped with a warning rather than used differently from
//! what the file says: `skip_verify = true` (crfs never turns TLS checks off), `override_path`
//! and URL paths other than `/v2` (crfs's mirrors serve the standard `/v2/` API). `header`,
//! `client` and `dial_timeout` are ignored (logged). `DIR/_default` is not read.

use std::path::{Path, PathBuf};

use toml::{Table, Value};

use crate::error::{Error, Result};
use crate::remote::Mirror;

/// What a hosts directory adds to [`crate::Options`].
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct HostsConfig {
    /// Mirrors, per registry in file order.
    pub mirrors: Vec<Mirror>,
    /// CA certificate files named by `ca`.
    pub ca_certs: Vec<PathBuf>,
    /// Hosts given with `http://`.
    pub plain_http_hosts: Vec<String>,
}

impl HostsConfig {
    /// Reads every `DIR/<registry>/hosts.toml`. A missing directory is an error; a registry
    /// directory without a hosts.toml is skipped.
    pub fn load(dir: &Path) -> Result<HostsConfig> {
        let err = |e: std::io::Error| Error::Local(format!("hosts directory {}: {e}", dir.display()));
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .map_err(err)?
            .filter_map(|e| e.ok())
            .filter(|e| e.path().join("hosts.toml").is_file())
            .filter_map(|e| e.file_name().to_str().map(str::to_owned))
            .filter(|n| n != "_default")
            .collect();
        names.sort();
        let mut config = HostsConfig::default();
        for registry in names {
            let file = dir.join(&registry).join("hosts.toml");
            let text = std::fs::read_to_string(&file).map_err(|e| Error::Local(format!("{}: {e}", file.display())))?;
            config
                .add_file(&registry, &text, &dir.join(&registry))
                .map_err(|e| Error::Invalid(format!("{}: {e}", file.display())))?;
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
        if let Some(server) = table.get("server") {
            let Value::String(url) = server else { return Err("`server` must be a string".into()) };
            let (plain, host) = split_url(url)?;
            if host != registry {
                self.push(registry, host, plain);
            }
        }
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
        let cas: Vec<&str> = match h.get("ca") {
            None => Vec::new(),
            Some(Value::String(s)) => vec![s.as_str()],
            Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
            Some(_) => return Err(format!("host {url:?}: `ca` must be a path or a list of paths")),
        };
        self.ca_certs.extend(cas.iter().map(|p| base.join(p)));
        self.push(registry, host, plain);
        Ok(())
    }

    fn push(&mut self, registry: &str, host: String, plain: bool) {
        if plain && !self.plain_http_hosts.contains(&host) {
            self.plain_http_hosts.push(host.clone());
        }
        self.mirrors.push(Mirror { registry: registry.to_owned(), mirror: host });
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
        assert_eq!(c.ca_certs, [PathBuf::from("/etc/certs.d/docker.io/ca.pem")]);
        assert_eq!(c.plain_http_hosts, ["mirror-a.example"]);

        let mut c = HostsConfig::default();
        c.add_file("127.0.0.1:5000", "server = \"http://127.0.0.1:5000\"\n", Path::new("/")).unwrap();
        assert!(c.mirrors.is_empty(), "the registry itself is not its own mirror");
        assert!(HostsConfig::default().add_file("x", "host = 3", Path::new("/")).is_err());
        assert!(HostsConfig::default().add_file("x", "[host.\"https://a\"]\nca = 5", Path::new("/")).is_err());
        assert!(HostsConfig::default().add_file("x", "not toml [", Path::new("/")).is_err());
    }
}
