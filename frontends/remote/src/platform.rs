//! Platforms (`os/arch[/variant]`) and picking one image out of a manifest list or OCI index.

use std::fmt;
use std::str::FromStr;

use oci_client::manifest::ImageIndexEntry;

use crate::error::Error;

/// An OCI platform, as in `linux/amd64` or `linux/arm/v7`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    /// The operating system (`linux`).
    pub os: String,
    /// The CPU architecture, in Go's names (`amd64`, `arm64`, `arm`).
    pub architecture: String,
    /// The architecture's variant (`v7`, `v8`), when the platform names one.
    pub variant: Option<String>,
}

impl Platform {
    /// The platform this program runs on, in OCI's (Go's) names.
    pub fn host() -> Platform {
        let os = match std::env::consts::OS {
            "macos" => "darwin",
            other => other,
        };
        let (architecture, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "x86" => ("386", None),
            "aarch64" => ("arm64", None),
            "arm" => ("arm", Some("v7")),
            "powerpc64" if cfg!(target_endian = "little") => ("ppc64le", None),
            "powerpc64" => ("ppc64", None),
            "loongarch64" => ("loong64", None),
            "s390x" => ("s390x", None),
            "riscv64" => ("riscv64", None),
            other => (other, None),
        };
        Platform { os: os.into(), architecture: architecture.into(), variant: variant.map(Into::into) }
    }

    /// arm64 without a variant means v8, as containerd's matcher treats it.
    fn norm_variant(arch: &str, variant: Option<&str>) -> Option<String> {
        match (arch, variant) {
            ("arm64", None) => Some("v8".into()),
            (_, v) => v.filter(|v| !v.is_empty()).map(Into::into),
        }
    }

    /// Whether an index entry's platform is this one. An unset variant here accepts any.
    pub fn matches(&self, os: &str, arch: &str, variant: Option<&str>) -> bool {
        if os != self.os || arch != self.architecture {
            return false;
        }
        match &self.variant {
            None => true,
            Some(want) => Self::norm_variant(arch, variant) == Self::norm_variant(arch, Some(want)),
        }
    }

    /// The digest of the first entry of an index matching this platform.
    pub fn select(&self, entries: &[ImageIndexEntry]) -> Option<String> {
        entries
            .iter()
            .find(|e| {
                e.platform
                    .as_ref()
                    .is_some_and(|p| self.matches(&p.os.to_string(), &p.architecture.to_string(), p.variant.as_deref()))
            })
            .map(|e| e.digest.clone())
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

impl FromStr for Platform {
    type Err = Error;

    /// Parses `os/arch` or `os/arch/variant`.
    fn from_str(s: &str) -> Result<Self, Error> {
        let parts: Vec<&str> = s.split('/').collect();
        let bad = || Error::invalid(format!("{s}: a platform is OS/ARCH or OS/ARCH/VARIANT, e.g. linux/amd64"));
        if parts.iter().any(|p| p.is_empty()) {
            return Err(bad());
        }
        match parts.as_slice() {
            [os, arch] => Ok(Platform { os: (*os).into(), architecture: (*arch).into(), variant: None }),
            [os, arch, v] => {
                Ok(Platform { os: (*os).into(), architecture: (*arch).into(), variant: Some((*v).into()) })
            }
            _ => Err(bad()),
        }
    }
}

/// How an index entry's platform reads, for error messages.
pub(crate) fn describe(entries: &[ImageIndexEntry]) -> String {
    let names: Vec<String> = entries
        .iter()
        .filter_map(|e| e.platform.as_ref())
        .map(|p| {
            let mut s = format!("{}/{}", p.os, p.architecture);
            if let Some(v) = &p.variant {
                s.push('/');
                s.push_str(v);
            }
            s
        })
        .collect();
    if names.is_empty() { "none".into() } else { names.join(", ") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_match() {
        let p: Platform = "linux/arm64".parse().unwrap();
        assert!(p.matches("linux", "arm64", Some("v8")));
        assert!(p.matches("linux", "arm64", None));
        let v8: Platform = "linux/arm64/v8".parse().unwrap();
        assert!(v8.matches("linux", "arm64", None));
        let v7: Platform = "linux/arm/v7".parse().unwrap();
        assert!(!v7.matches("linux", "arm", Some("v6")));
        assert!(v7.matches("linux", "arm", Some("v7")));
        assert!("linux".parse::<Platform>().is_err());
        assert!("linux//v7".parse::<Platform>().is_err());
        assert_eq!(v7.to_string(), "linux/arm/v7");
        assert!(!Platform::host().os.is_empty());
    }
}
