//! Names in a layer, cleaned as the reference cleans them: Go's `path.Clean("/" + name)`
//! without the leading slash. `./`, `/`, `//` and `.` components go, `..` removes the component
//! before it and stops at the root, so every name lands inside the layer; the root is the empty
//! name. The reader builds its tree by these names, and the writer de-duplicates entries and
//! finds hardlink targets and prioritized files by them, so both see the same tree.
//!
//! A NUL byte cannot be part of a name: the reader refuses a TOC name holding one
//! ([`clean_into`] says so), and the writer's tar scanner refuses such tar entries before names
//! are cleaned.

use alloc::vec::Vec;

/// Appends the clean form of `raw` to `out`. Returns false if a component holds a NUL byte
/// (`out` then holds part of the name).
#[inline]
pub(crate) fn clean_into(raw: &[u8], out: &mut Vec<u8>) -> bool {
    let trimmed = raw.strip_suffix(b"/").unwrap_or(raw);
    if is_clean(trimmed) {
        out.extend_from_slice(trimmed);
        return true;
    }
    clean_by_components(raw, out)
}

#[cfg(feature = "write")]
/// The clean form of `raw`, for names known to hold no NUL byte (one that does is cleaned up to
/// the component that holds it).
pub(crate) fn clean(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    clean_into(raw, &mut out);
    out
}

/// The general case of [`clean_into`]: component by component.
fn clean_by_components(raw: &[u8], out: &mut Vec<u8>) -> bool {
    let start = out.len();
    for comp in raw.split(|&b| b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => {
                let kept = out.get(start..).unwrap_or_default();
                let cut = kept.iter().rposition(|&b| b == b'/').map_or(start, |p| start + p);
                out.truncate(cut);
            }
            name => {
                if name.contains(&0) {
                    return false;
                }
                if out.len() > start {
                    out.push(b'/');
                }
                out.extend_from_slice(name);
            }
        }
    }
    true
}

/// Whether `raw` is already in clean form: no NUL, no empty, "." or ".." component, no leading or
/// trailing slash. Most names are, once a directory's trailing slash is cut, and one pass over
/// the bytes is cheaper than splitting them.
#[inline]
fn is_clean(raw: &[u8]) -> bool {
    let mut component_start = 0;
    for (i, &b) in raw.iter().enumerate() {
        match b {
            0 => return false,
            b'/' => {
                match raw.get(component_start..i) {
                    Some(component) if is_plain_component(component) => {}
                    _ => return false,
                }
                component_start = i + 1;
            }
            _ => {}
        }
    }
    raw.is_empty() || raw.get(component_start..).is_some_and(is_plain_component)
}

fn is_plain_component(c: &[u8]) -> bool {
    !matches!(c, b"" | b"." | b"..")
}

/// What precedes the last slash of a clean name ("" without one: the root).
pub(crate) fn parent_of(path: &[u8]) -> &[u8] {
    path.rsplitn(2, |&b| b == b'/').nth(1).unwrap_or_default()
}

/// What follows the last slash of a clean name (all of it without one).
pub(crate) fn base_of(path: &[u8]) -> &[u8] {
    path.rsplitn(2, |&b| b == b'/').next().unwrap_or(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What Go's `strings.TrimPrefix(path.Clean("/"+name), "/")` gives.
    #[test]
    fn cleans_as_go_does() {
        let cases: [(&[u8], &[u8]); 14] = [
            (b"", b""),
            (b"/", b""),
            (b".", b""),
            (b"./", b""),
            (b"..", b""),
            (b"../../a", b"a"),
            (b"a/b/../../..", b""),
            (b"./usr//lib/", b"usr/lib"),
            (b"/usr/./lib/../bin", b"usr/bin"),
            (b"a/.../b", b"a/.../b"),
            (b"a/..b/c", b"a/..b/c"),
            (b"stargz.index.json", b"stargz.index.json"),
            (b"./stargz.index.json", b"stargz.index.json"),
            (b"x/../.prefetch.landmark", b".prefetch.landmark"),
        ];
        for (raw, want) in cases {
            assert_eq!(clean(raw), want, "{:?}", core::str::from_utf8(raw));
        }
        assert_eq!(parent_of(b"a/b/c"), b"a/b");
        assert_eq!(parent_of(b"a"), b"");
        assert_eq!(base_of(b"a/b/c"), b"c");
        assert_eq!(base_of(b"a"), b"a");
    }

    /// The fast path of `clean_into` must agree with the component-by-component one on every
    /// name built from awkward pieces.
    #[test]
    fn fast_path_agrees_with_the_general_case() {
        let pieces: [&[u8]; 8] = [b"", b".", b"..", b"a", b"b.c", b"...", b"/", b"x\0y"];
        let mut checked = 0;
        for a in pieces {
            for b in pieces {
                for c in pieces {
                    for sep in [&b"/"[..], b"//", b""] {
                        let name = [a, sep, b, b"/", c].concat();
                        let (mut fast, mut general) = (b"prefix".to_vec(), b"prefix".to_vec());
                        let fast_ok = clean_into(&name, &mut fast);
                        let general_ok = clean_by_components(&name, &mut general);
                        assert_eq!((fast_ok, &fast), (general_ok, &general), "name {:?}", name);
                        checked += 1;
                    }
                }
            }
        }
        assert_eq!(checked, 8 * 8 * 8 * 3);
        assert!(!clean_into(b"a/x\0y/", &mut Vec::new()), "a NUL byte is refused on the fast path too");
        let mut out = Vec::new();
        assert!(clean_into(b"usr/lib/", &mut out));
        assert_eq!(out, b"usr/lib");
    }
}
