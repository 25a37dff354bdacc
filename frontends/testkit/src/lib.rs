//! crfs-testkit: what the test suites and benchmarks of several crates share.
//!
//! The canonical listing format (one tab-separated line per name, the same text the Go
//! interop helper in testdata/interop prints), computed either from a crfs index or from a
//! real directory tree (a FUSE mount, an extracted tar); the Go helper itself, built on
//! demand; the kernel NFS client's VM ([`guest`]: the CLI's kernel-client test and
//! `crfs-bench-kernel-nfs`); and small process helpers. Test and benchmark support only: never
//! a dependency of a shipped crate.

#![deny(missing_docs)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test support code

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;

pub mod guest;

use base64::Engine as _;
use crfs_core::{Digest, Kind, Layer, NodeId, ReadAt};
use sha2::{Digest as _, Sha256};

/// The repository's testdata directory.
pub fn testdata() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata")
}

/// A scratch directory under the target dir, unique to this process and `name`, emptied.
pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/test-scratch")
        .join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Whether the tests run in CI, where every external tool must be present.
pub fn in_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false")
}

/// `ok`, for a test's required component `what`: when missing, a skip message outside CI
/// and a failure in it.
pub fn need(ok: bool, what: &str) -> bool {
    assert!(ok || !in_ci(), "CI needs {what}");
    if !ok {
        eprintln!("SKIPPED: {what} is missing");
    }
    ok
}

/// Whether the tests run as root (`id -u` prints 0).
pub fn is_root() -> bool {
    std::process::Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout == b"0\n")
}

/// Percent-encodes bytes outside 0x21..=0x7e, and `%` itself.
pub fn escape(bytes: &[u8]) -> String {
    let mut s = String::new();
    for &b in bytes {
        if (0x21..=0x7e).contains(&b) && b != b'%' {
            s.push(char::from(b));
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
    s
}

/// One listing line; see testdata/interop/main.go for the format.
#[allow(clippy::too_many_arguments)]
fn line(
    path: &[u8],
    kind: &str,
    mode: u32,
    uid: u32,
    gid: u32,
    size: u64,
    mtime: i64,
    nlink: Option<u64>,
    link: Option<&[u8]>,
    dev: Option<(u32, u32)>,
    sha: Option<String>,
    mut xattrs: Vec<String>,
) -> String {
    xattrs.sort();
    let shown = if path.is_empty() { ".".to_string() } else { escape(path) };
    format!(
        "{shown}\t{kind}\t{mode:04o}\t{uid}\t{gid}\t{size}\t{mtime}\t{}\t{}\t{}\t{}\t{}",
        nlink.map_or("-".into(), |n| n.to_string()),
        link.map_or("-".into(), escape),
        dev.map_or("-".into(), |(a, b)| format!("{a},{b}")),
        sha.unwrap_or_else(|| "-".into()),
        if xattrs.is_empty() { "-".to_string() } else { xattrs.join(",") },
    )
}

fn xattr_field(name: &[u8], value: &[u8]) -> String {
    format!("{}={}", escape(name), base64::engine::general_purpose::STANDARD.encode(value))
}

fn join_lines(mut lines: Vec<String>) -> String {
    lines.sort();
    let mut out = String::new();
    for l in lines {
        out.push_str(&l);
        out.push('\n');
    }
    out
}

/// The listing of a layer, from crfs-core's index, reading and verifying every file.
pub fn layer_listing<R: ReadAt>(layer: &Layer<R>) -> String {
    let index = layer.index();
    let mut lines = Vec::new();
    let mut data = Vec::new();
    for id in 0..index.len() as NodeId {
        let path = index.path(id);
        let inode = index.resolve(id);
        let node = index.node(inode).unwrap();
        let kind = node.kind();
        let sha = (kind == Kind::Reg).then(|| {
            layer.read_file_verified(inode, &mut data).unwrap_or_else(|e| panic!("{}: {e}", escape(&path)));
            hex(&Digest::of(&data).0)
        });
        lines.push(line(
            &path,
            kind.name(),
            u32::from(node.mode()),
            node.uid(),
            node.gid(),
            node.size(),
            node.mtime().0,
            (kind != Kind::Dir).then_some(u64::from(node.nlink())),
            (kind == Kind::Symlink).then(|| index.symlink_target(inode)),
            matches!(kind, Kind::Char | Kind::Block).then(|| node.rdev()),
            sha,
            index.xattrs(inode).map(|(k, v)| xattr_field(k, v)).collect(),
        ));
    }
    join_lines(lines)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The listing of a real directory tree rooted at `root` (not following symlinks), hashing
/// every regular file and reading every xattr.
pub fn tree_listing(root: &Path) -> String {
    let mut lines = Vec::new();
    let mut stack: Vec<PathBuf> = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let full = root.join(&rel);
        let meta = std::fs::symlink_metadata(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()));
        let ft = meta.file_type();
        let kind = if ft.is_dir() {
            "dir"
        } else if ft.is_file() {
            "reg"
        } else if ft.is_symlink() {
            "symlink"
        } else if ft.is_char_device() {
            "char"
        } else if ft.is_block_device() {
            "block"
        } else if ft.is_fifo() {
            "fifo"
        } else {
            "other"
        };
        let sha = ft.is_file().then(|| {
            let data = std::fs::read(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()));
            hex(&Sha256::digest(&data))
        });
        let link = ft.is_symlink().then(|| std::fs::read_link(&full).unwrap().as_os_str().as_bytes().to_vec());
        let dev = (ft.is_char_device() || ft.is_block_device()).then(|| {
            let rdev = meta.rdev();
            (
                ((rdev >> 32) & 0xffff_f000 | (rdev >> 8) & 0xfff) as u32,
                ((rdev >> 12) & 0xffff_ff00 | rdev & 0xff) as u32,
            )
        });
        let mut xattrs = Vec::new();
        if !ft.is_symlink() {
            // A filesystem without xattrs may say so with EOPNOTSUPP (crfs-fuse does, so the
            // kernel stops asking); that is an empty list.
            let names = match xattr::list(&full) {
                Ok(names) => names.collect(),
                Err(e) if e.raw_os_error() == Some(95) => Vec::new(),
                Err(e) => panic!("listxattr {}: {e}", full.display()),
            };
            for name in names {
                let value = xattr::get(&full, &name).unwrap().unwrap_or_default();
                xattrs.push(xattr_field(name.as_bytes(), &value));
            }
        }
        lines.push(line(
            rel.as_os_str().as_bytes(),
            kind,
            meta.mode() & 0o7777,
            meta.uid(),
            meta.gid(),
            if ft.is_file() || ft.is_symlink() { meta.size() } else { 0 },
            meta.mtime(),
            (!ft.is_dir()).then_some(meta.nlink()),
            link.as_deref(),
            dev,
            sha,
            xattrs,
        ));
        if ft.is_dir() {
            for entry in std::fs::read_dir(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display())) {
                stack.push(rel.join(entry.unwrap().file_name()));
            }
        }
    }
    join_lines(lines)
}

/// Fails with the first differing lines of two listings.
pub fn assert_same_listing(what: &str, got: &str, want: &str) {
    if got == want {
        return;
    }
    let got_lines: std::collections::BTreeSet<&str> = got.lines().collect();
    let want_lines: std::collections::BTreeSet<&str> = want.lines().collect();
    let mut report = String::new();
    for l in want_lines.difference(&got_lines).take(10) {
        report.push_str(&format!("  want: {l}\n"));
    }
    for l in got_lines.difference(&want_lines).take(10) {
        report.push_str(&format!("  got:  {l}\n"));
    }
    panic!("{what}: listings differ\n{report}");
}

/// The Go interop helper (testdata/interop), built once per source change with Debian's
/// reference estargz package (GOPATH mode). `None` outside CI when Go is missing.
pub fn interop_bin() -> Option<PathBuf> {
    let src = testdata().join("interop");
    let have_go = Command::new("go").arg("version").output().is_ok_and(|o| o.status.success());
    if !have_go {
        assert!(!in_ci(), "CI needs Go (golang-go) for the interop tests");
        eprintln!("skipping: go is not installed");
        return None;
    }
    let tmp = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/interop");
    std::fs::create_dir_all(&tmp).unwrap();
    let bin = tmp.join("interop");
    let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let fresh = matches!((mtime(&bin), mtime(&src.join("main.go"))), (Some(b), Some(s)) if b >= s);
    if !fresh {
        // Tests run as threads and as processes: build to a private name, then rename into place.
        let thread = format!("{:?}", std::thread::current().id()).replace(|c: char| !c.is_ascii_alphanumeric(), "");
        let private = tmp.join(format!("interop.{}.{thread}", std::process::id()));
        let status = Command::new("go")
            .args(["build", "-trimpath", "-o"])
            .arg(&private)
            .arg(".")
            .current_dir(&src)
            .env("GO111MODULE", "off")
            .env("GOFLAGS", "")
            .env("GOPATH", format!("{}:/usr/share/gocode", tmp.join("gopath").display()))
            .status()
            .expect("running go build");
        assert!(
            status.success(),
            "go build of testdata/interop failed (is golang-github-containerd-stargz-snapshotter-dev installed?)"
        );
        std::fs::rename(&private, &bin).expect("installing the interop binary");
    }
    Some(bin)
}

/// Runs the interop helper and returns its stdout.
pub fn interop(bin: &Path, args: &[&str]) -> String {
    let out = Command::new(bin).args(args).output().expect("running interop");
    assert!(out.status.success(), "interop {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("interop output is UTF-8")
}

/// The files of a fuzz corpus directory (`fuzz/corpus/TARGET`, `fuzz/artifacts/TARGET`),
/// sorted, dotfiles (`.gitkeep`) left out; none when the directory does not exist.
pub fn corpus_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file() && !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')))
        .collect();
    files.sort();
    files
}

/// The listing of any crfs-vfs filesystem, walked through its read-only operations the way a
/// front-end would (lookups, readdir, reads, xattrs).
pub fn fs_listing(fs: &dyn crfs_vfs::ReadOnlyFs) -> String {
    fs_listing_at(fs, crfs_vfs::ROOT_INO)
}

/// [`fs_listing`] of the subtree at inode `root`, paths relative to it.
pub fn fs_listing_at(fs: &dyn crfs_vfs::ReadOnlyFs, root: u64) -> String {
    use crfs_vfs::FileKind;
    let mut lines = Vec::new();
    let mut stack: Vec<(Vec<u8>, u64)> = vec![(Vec::new(), root)];
    while let Some((path, ino)) = stack.pop() {
        let a = fs.getattr(ino).unwrap_or_else(|e| panic!("{}: {e:?}", escape(&path)));
        let kind = match a.kind {
            FileKind::Dir => "dir",
            FileKind::Reg => "reg",
            FileKind::Symlink => "symlink",
            FileKind::Char => "char",
            FileKind::Block => "block",
            FileKind::Fifo => "fifo",
        };
        let sha = (a.kind == FileKind::Reg).then(|| {
            let data = fs.read(ino, 0, u32::try_from(a.size).unwrap()).unwrap();
            assert_eq!(data.len() as u64, a.size, "{}", escape(&path));
            hex(&Sha256::digest(&data))
        });
        let link = (a.kind == FileKind::Symlink).then(|| fs.readlink(ino).unwrap());
        let names = fs.listxattr(ino).unwrap();
        let xattrs = names
            .split(|&b| b == 0)
            .filter(|n| !n.is_empty())
            .map(|n| xattr_field(n, &fs.getxattr(ino, n).unwrap()))
            .collect();
        let mtime = a
            .mtime
            .duration_since(std::time::UNIX_EPOCH)
            .map_or_else(|e| -(e.duration().as_secs() as i64), |d| d.as_secs() as i64);
        lines.push(line(
            &path,
            kind,
            u32::from(a.perm),
            a.uid,
            a.gid,
            a.size,
            mtime,
            (a.kind != FileKind::Dir).then_some(u64::from(a.nlink)),
            link.as_deref(),
            matches!(a.kind, FileKind::Char | FileKind::Block).then_some((a.rdev_major, a.rdev_minor)),
            sha,
            xattrs,
        ));
        if a.kind == FileKind::Dir {
            let mut entries = Vec::new();
            fs.readdir(ino, 0, &mut |e| {
                entries.push((e.name.to_vec(), e.attr));
                true
            })
            .unwrap();
            for (name, listed) in entries {
                let mut p = path.clone();
                if !p.is_empty() {
                    p.push(b'/');
                }
                p.extend_from_slice(&name);
                // The attributes a listing gives (READDIRPLUS sends them as they are) must be
                // exactly what lookup gives, "." and ".." included.
                assert_eq!(fs.lookup(ino, &name).unwrap(), listed, "the listing's attributes of {}", escape(&p));
                if name != b"." && name != b".." {
                    stack.push((p, listed.ino));
                }
            }
        }
    }
    join_lines(lines)
}

/// A tiny ustar writer for test layers (names under 100 bytes).
#[derive(Default)]
pub struct TarBuilder {
    out: Vec<u8>,
}

/// What a [`TarBuilder`] entry is.
#[derive(Clone, Copy, Debug)]
pub enum TarEntry<'a> {
    /// A directory.
    Dir,
    /// A regular file with these contents.
    File(&'a [u8]),
    /// A symbolic link to this target.
    Symlink(&'a str),
    /// A hard link to this earlier name.
    Hardlink(&'a str),
}

impl TarBuilder {
    /// Appends an entry with mode `mode` and mtime `mtime`.
    pub fn add(&mut self, name: &str, entry: TarEntry<'_>, mode: u32, mtime: u64) -> &mut Self {
        let mut h = [0u8; 512];
        assert!(name.len() < 100, "{name}: too long for this writer");
        h[..name.len()].copy_from_slice(name.as_bytes());
        let octal = |field: &mut [u8], v: u64| {
            let s = format!("{v:0width$o}", width = field.len() - 1);
            field[..s.len()].copy_from_slice(s.as_bytes());
        };
        octal(&mut h[100..108], u64::from(mode));
        octal(&mut h[108..116], 0);
        octal(&mut h[116..124], 0);
        let (typeflag, data, link): (u8, &[u8], &str) = match entry {
            TarEntry::Dir => (b'5', &[], ""),
            TarEntry::File(d) => (b'0', d, ""),
            TarEntry::Symlink(t) => (b'2', &[], t),
            TarEntry::Hardlink(t) => (b'1', &[], t),
        };
        octal(&mut h[124..136], data.len() as u64);
        octal(&mut h[136..148], mtime);
        h[156] = typeflag;
        h[157..157 + link.len()].copy_from_slice(link.as_bytes());
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].copy_from_slice(b"        ");
        let sum: u64 = h.iter().map(|&b| u64::from(b)).sum();
        let s = format!("{sum:06o}\0 ");
        h[148..156].copy_from_slice(s.as_bytes());
        self.out.extend_from_slice(&h);
        self.out.extend_from_slice(data);
        self.out.resize(self.out.len().div_ceil(512) * 512, 0);
        self
    }

    /// The finished archive (with the two zero blocks).
    pub fn finish(&mut self) -> Vec<u8> {
        let mut out = std::mem::take(&mut self.out);
        out.resize(out.len() + 1024, 0);
        out
    }
}
