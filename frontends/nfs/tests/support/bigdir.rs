//! A layer with one directory of 5,000 names, some of them hardlinks, for the NFS tests of
//! crfs-nfs and the crfs CLI (included by path from both). The tar is written here; the
//! reference Go writer (testdata/interop `build`) turns it into an eStargz blob.

use std::path::{Path, PathBuf};

/// Names in `big/`.
pub const ENTRIES: usize = 5000;
/// Every this many files, one more name (`fNNNN.link`) is a hardlink to `fNNNN`.
pub const LINK_EVERY: usize = 250;

/// The names `big/` holds, sorted.
pub fn names() -> Vec<String> {
    let mut names = Vec::with_capacity(ENTRIES);
    let mut i: usize = 0;
    while names.len() < ENTRIES {
        names.push(format!("f{i:04}"));
        if i.is_multiple_of(LINK_EVERY) && names.len() < ENTRIES {
            names.push(format!("f{i:04}.link"));
        }
        i += 1;
    }
    names.sort();
    names
}

/// The content of `big/NAME` (a hardlink has its target's).
pub fn content(name: &str) -> Vec<u8> {
    let target = name.trim_end_matches(".link");
    format!("{target} of crfs's NFS big-directory test\n").into_bytes()
}

fn octal(field: &mut [u8], value: u64) {
    let text = format!("{value:0width$o}\0", width = field.len() - 1);
    field.copy_from_slice(text.as_bytes());
}

/// One ustar header: `kind` is b'0' (file), b'1' (hardlink to `link`) or b'5' (directory).
fn header(name: &str, kind: u8, mode: u64, size: u64, link: &str) -> [u8; 512] {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    octal(&mut h[100..108], mode);
    octal(&mut h[108..116], 0);
    octal(&mut h[116..124], 0);
    octal(&mut h[124..136], size);
    octal(&mut h[136..148], 1_600_000_000);
    h[148..156].copy_from_slice(b"        ");
    h[156] = kind;
    h[157..157 + link.len()].copy_from_slice(link.as_bytes());
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    let sum: u64 = h.iter().map(|&b| u64::from(b)).sum();
    let text = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(text.as_bytes());
    h
}

/// Writes the tar of `big/`.
pub fn write_tar(path: &Path) {
    let mut tar = Vec::new();
    tar.extend_from_slice(&header("big/", b'5', 0o755, 0, ""));
    // Files first, then the hardlinks, as tar writers order them (target before link).
    let all = names();
    for name in all.iter().filter(|n| !n.ends_with(".link")) {
        let data = content(name);
        tar.extend_from_slice(&header(&format!("big/{name}"), b'0', 0o644, data.len() as u64, ""));
        tar.extend_from_slice(&data);
        tar.resize(tar.len().div_ceil(512) * 512, 0);
    }
    for name in all.iter().filter(|n| n.ends_with(".link")) {
        let target = format!("big/{}", name.trim_end_matches(".link"));
        tar.extend_from_slice(&header(&format!("big/{name}"), b'1', 0o644, 0, &target));
    }
    tar.extend_from_slice(&[0u8; 1024]);
    std::fs::write(path, tar).unwrap();
}

/// The eStargz blob of `big/`, built in `dir` with the Go reference writer; `None` outside CI
/// when Go is missing.
pub fn blob(dir: &Path) -> Option<PathBuf> {
    let interop = crfs_testkit::interop_bin()?;
    let tar = dir.join("big.tar");
    let blob = dir.join("big.esgz");
    write_tar(&tar);
    let (t, b) = (tar.to_str().unwrap(), blob.to_str().unwrap());
    crfs_testkit::interop(&interop, &["build", "-in", t, "-out", b]);
    Some(blob)
}
