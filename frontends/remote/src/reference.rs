//! Image references (`[REGISTRY/]REPOSITORY[:TAG][@DIGEST]`), parsed by hand into
//! oci-client's [`Reference`].
//!
//! oci-client parses with one regular expression. Its tag class is Unicode `\w` repeated up to
//! 127 times, and compiling it took about 50 ms of every `crfs mount REF`, before the first
//! request (measured with perf: the largest part of crfs's startup). This parser accepts the
//! grammar that expression encodes (the distribution spec's) and normalises as oci-client
//! does: no registry means `docker.io`, and a one-component repository there gets `library/`.
//!
//! It is stricter in two places, both where the spec and registries are too:
//! - tags are ASCII (`[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`); the expression's `\w` also takes
//!   other scripts' letters;
//! - a first component that is not a registry (no `.`, no `:`, not `localhost`) is part of the
//!   repository, so it must be lowercase like the rest of it; the expression lets it through
//!   with capitals when a second component follows.
//!
//! The tests check it against oci-client's parser, input by input.

use oci_client::{ParseError, Reference};

const DOCKER_HUB: &str = "docker.io";
const DOCKER_HUB_LEGACY: &str = "index.docker.io";
/// The longest repository name (after normalisation).
const NAME_MAX: usize = 255;
/// The longest tag.
const TAG_MAX: usize = 128;

/// Parses `s` as an image reference; the errors are oci-client's.
pub(crate) fn parse(s: &str) -> Result<Reference, ParseError> {
    if s.is_empty() {
        return Err(ParseError::NameEmpty);
    }
    let (rest, digest) = match s.split_once('@') {
        Some((rest, digest)) => (rest, Some(digest)),
        None => (s, None),
    };
    // A ':' after the last '/' starts the tag; one before it is the registry's port.
    let last_component = rest.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match rest.get(last_component..).and_then(|c| c.find(':')) {
        Some(i) => {
            let colon = last_component + i;
            (rest.get(..colon).unwrap_or_default(), Some(rest.get(colon + 1..).unwrap_or_default()))
        }
        None => (rest, None),
    };
    if !is_name(name) || !tag.is_none_or(is_tag) || !digest.is_none_or(is_digest) {
        return Err(ParseError::ReferenceInvalidFormat);
    }
    let (registry, repository) = split_registry(name);
    if repository.len() > NAME_MAX {
        return Err(ParseError::NameTooLong);
    }
    if let Some(digest) = digest {
        let (algorithm, hex) = digest.split_once(':').ok_or(ParseError::DigestInvalidFormat)?;
        let want = match algorithm {
            "sha256" => 64,
            "sha384" => 96,
            "sha512" => 128,
            _ => return Err(ParseError::DigestUnsupported),
        };
        if hex.len() != want {
            return Err(ParseError::DigestInvalidLength);
        }
    }
    let (tag, digest) = (tag.map(str::to_owned), digest.map(str::to_owned));
    Ok(match (tag, digest) {
        (Some(tag), Some(digest)) => Reference::with_tag_and_digest(registry, repository, tag, digest),
        (None, Some(digest)) => Reference::with_digest(registry, repository, digest),
        (tag, None) => Reference::with_tag(registry, repository, tag.unwrap_or_else(|| "latest".to_owned())),
    })
}

/// `[REGISTRY/]COMPONENT(/COMPONENT)*`: every component a repository component, or the first
/// a registry (a host with a `.`, a `:PORT` or `localhost`) and at least one component after
/// it. A first component that is none of those is part of the repository, even when it would
/// pass as a host name (`Foo`).
fn is_name(name: &str) -> bool {
    if name.split('/').all(is_path_component) {
        return true;
    }
    match name.split_once('/') {
        Some((registry, path)) => {
            names_registry(registry) && is_registry(registry) && path.split('/').all(is_path_component)
        }
        None => false,
    }
}

/// Whether a reference's first component is a registry rather than part of the repository.
fn names_registry(first: &str) -> bool {
    first.contains(['.', ':']) || first == "localhost"
}

/// Runs of `[a-z0-9]` joined by `.`, `_`, `__` or any number of `-`.
fn is_path_component(c: &str) -> bool {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = c.as_bytes();
    if !bytes.first().is_some_and(|&b| alnum(b)) || !bytes.last().is_some_and(|&b| alnum(b)) {
        return false;
    }
    // Each separator run between two alphanumeric runs.
    bytes
        .split(|&b| alnum(b))
        .all(|sep| sep.is_empty() || sep == b"." || sep == b"_" || sep == b"__" || sep.iter().all(|&b| b == b'-'))
}

/// A host (labels of `[A-Za-z0-9-]`, not starting or ending with `-`, joined by `.`) with an
/// optional `:PORT`.
fn is_registry(r: &str) -> bool {
    let (host, port) = match r.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (r, None),
    };
    let label = |l: &str| {
        let b = l.as_bytes();
        b.first().is_some_and(u8::is_ascii_alphanumeric)
            && b.last().is_some_and(u8::is_ascii_alphanumeric)
            && b.iter().all(|&c| c.is_ascii_alphanumeric() || c == b'-')
    };
    host.split('.').all(label) && port.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

fn is_tag(t: &str) -> bool {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let b = t.as_bytes();
    b.len() <= TAG_MAX && b.first().is_some_and(|&c| word(c)) && b.iter().all(|&c| word(c) || c == b'.' || c == b'-')
}

/// `ALGORITHM:HEX`: the algorithm letters and digits, starting with a letter, in parts joined
/// by `-`, `_`, `+` or `.`, each starting with a letter; at least 32 hex digits.
fn is_digest(d: &str) -> bool {
    let Some((algorithm, hex)) = d.split_once(':') else { return false };
    let part = |p: &str| {
        let b = p.as_bytes();
        b.first().is_some_and(u8::is_ascii_alphabetic) && b.iter().all(u8::is_ascii_alphanumeric)
    };
    algorithm.split(['-', '_', '+', '.']).all(part) && hex.len() >= 32 && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

/// (registry, repository) of a valid name, normalised as oci-client does.
fn split_registry(name: &str) -> (String, String) {
    let (mut registry, mut repository) = match name.split_once('/') {
        Some((first, rest)) if names_registry(first) => (first.to_owned(), rest.to_owned()),
        _ => (DOCKER_HUB.to_owned(), name.to_owned()),
    };
    if registry == DOCKER_HUB_LEGACY {
        registry = DOCKER_HUB.to_owned();
    }
    if registry == DOCKER_HUB && !repository.contains('/') {
        repository = format!("library/{repository}");
    }
    (registry, repository)
}

/// (registry, repository, tag, digest) of a reference, for comparisons.
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn fields(r: &Reference) -> (String, String, Option<String>, Option<String>) {
    (r.registry().to_owned(), r.repository().to_owned(), r.tag().map(str::to_owned), r.digest().map(str::to_owned))
}

/// Whether [`parse`] and oci-client's parser agree on `s`: the same fields or the same error.
/// Where this parser is stricter on purpose (see the module doc), which the input must then
/// show, it may refuse what oci-client takes, or refuse with another error. Used by the tests
/// and the `reference` fuzz target.
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn check_against_oci_client(s: &str) -> Result<(), String> {
    // The two stricter rules, read off the input: a first component that names no registry
    // but has capitals, followed by more; a tag that is not ASCII.
    let (name_and_tag, _) = s.split_once('@').unwrap_or((s, ""));
    let first_capitalised = name_and_tag
        .split_once('/')
        .is_some_and(|(first, _)| !names_registry(first) && first.bytes().any(|b| b.is_ascii_uppercase()));
    let last_component = name_and_tag.rsplit('/').next().unwrap_or_default();
    let tag_not_ascii = last_component.split_once(':').is_some_and(|(_, tag)| !tag.is_ascii());
    let stricter = first_capitalised || tag_not_ascii;
    match (parse(s), s.parse::<Reference>()) {
        (Ok(o), Ok(t)) if fields(&o) == fields(&t) => Ok(()),
        (Ok(o), Ok(t)) => Err(format!("{s:?}: read here as {:?}, by oci-client as {:?}", fields(&o), fields(&t))),
        (Err(o), Err(t)) if o == t || stricter => Ok(()),
        (Err(o), Err(t)) => Err(format!("{s:?}: refused here with \"{o}\", by oci-client with \"{t}\"")),
        (Err(_), Ok(_)) if stricter => Ok(()),
        (Err(o), Ok(t)) => Err(format!("{s:?}: refused here ({o}), accepted by oci-client as {:?}", fields(&t))),
        (Ok(o), Err(t)) => Err(format!("{s:?}: accepted here as {:?}, refused by oci-client: {t}", fields(&o))),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::*;

    fn agree(s: &str) {
        if let Err(e) = check_against_oci_client(s) {
            panic!("{e}");
        }
    }

    #[test]
    fn agrees_with_oci_client_on_known_forms() {
        let hex = "0123456789abcdef".repeat(4);
        let long = "a".repeat(250);
        for s in [
            "busybox",
            "busybox:1.36",
            "library/busybox",
            "docker.io/busybox",
            "index.docker.io/busybox:latest",
            "docker.io/library/busybox",
            "quay.io/podman/stable:v5",
            "localhost/foo",
            "localhost:5000/foo/bar:tag",
            "127.0.0.1:5000/bench/python-3.11.7:lazy",
            "registry.example.com:443/a/b/c/d:1.0-rc_1",
            &format!("busybox@sha256:{hex}"),
            &format!("quay.io/a/b:v1@sha256:{hex}"),
            &format!("a@sha512:{hex}{hex}"),
            &format!("a@sha384:{}", &format!("{hex}{hex}")[..96]),
            &format!("a@md5:{hex}"),
            &format!("a@sha256:{}", &hex[..40]),
            "a@sha256",
            "a@sha256:xyz",
            "a__b",
            "a___b",
            "a._b",
            "a--------b",
            "a.b.c/d",
            "-a",
            "a-",
            "A",
            "Foo/bar",
            "Foo.io/bar",
            "foo/Bar",
            "a:",
            ":a",
            "a:b:c",
            "a/",
            "/a",
            "a//b",
            "a:tag/b",
            "a:-tag",
            "a:_tag",
            "a:.tag",
            &format!("a:{}", "t".repeat(128)),
            &format!("a:{}", "t".repeat(129)),
            "host:port/a",
            "host:/a",
            "-host.io/a",
            "host-.io/a",
            "ho-st.io/a",
            "a@b@sha256:x",
            &long,
            &format!("docker.io/{long}"),
            &format!("quay.io/{long}"),
            "",
            "a b",
            "a:tagé",
        ] {
            agree(s);
        }
    }

    /// Every string of up to 4 characters over an alphabet that exercises each rule, plus
    /// longer ones from a fixed pseudo-random walk.
    #[test]
    fn agrees_with_oci_client_on_generated_inputs() {
        let alphabet: Vec<char> = "aZ0.-_:/@".chars().collect();
        let mut inputs = vec![String::new()];
        for _ in 0..4 {
            let last: Vec<String> =
                inputs.iter().filter(|s| s.len() == inputs.last().map_or(0, String::len)).cloned().collect();
            for s in last {
                for &c in &alphabet {
                    inputs.push(format!("{s}{c}"));
                }
            }
        }
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        let pieces = ["a", "b9", "Q", ".", "-", "_", "__", ":", "/", "@", "sha256:", "localhost", "x.io", "5000"];
        for _ in 0..20_000 {
            let mut s = String::new();
            for _ in 0..(seed % 9) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                s.push_str(pieces[(seed % pieces.len() as u64) as usize]);
            }
            inputs.push(s);
        }
        for s in &inputs {
            agree(s);
        }
    }
}
