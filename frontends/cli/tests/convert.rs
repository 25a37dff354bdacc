//! `crfs convert`: every input form gives the same blob, the thread count never changes a byte,
//! crfs and the reference Go reader read the output, plain `tar -xzf` sees the input's tree, and
//! bad inputs fail with one line and leave nothing behind.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test support code

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crfs_core::{Digest, FileReadAt, Layer, OpenOptions};
use crfs_testkit::{
    assert_same_listing, in_ci, interop, interop_bin, layer_listing, scratch_dir, testdata, tree_listing,
};

fn crfs(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_crfs")).args(args).output().expect("running crfs")
}

fn crfs_stdin(args: &[&str], input: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_crfs"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    out
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn all_types_tar() -> PathBuf {
    testdata().join("fixtures/all-types.tar")
}

/// The three summary lines; panics unless they are exactly that.
fn summary(text: &[u8]) -> (Digest, Digest, u64) {
    let text = String::from_utf8(text.to_vec()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    // zstd:chunked adds manifest-checksum and manifest-position.
    if lines.len() == 5 {
        assert!(lines[3].starts_with("manifest-checksum sha256:") && lines[4].starts_with("manifest-position "));
    } else {
        assert_eq!(lines.len(), 3, "{text}");
    }
    let toc = Digest::parse(lines[0].strip_prefix("toc-digest ").unwrap()).unwrap();
    let diff = Digest::parse(lines[1].strip_prefix("diff-id ").unwrap()).unwrap();
    let size = lines[2].strip_prefix("uncompressed-size ").unwrap().parse().unwrap();
    (toc, diff, size)
}

fn convert_ok(args: &[&str]) -> (Digest, Digest, u64) {
    let mut full = vec!["convert"];
    full.extend_from_slice(args);
    let o = crfs(&full);
    assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
    summary(&o.stdout)
}

fn have(tool: &str) -> bool {
    let ok = Command::new(tool).arg("--version").output().is_ok_and(|o| o.status.success());
    if !ok {
        assert!(!in_ci(), "CI needs {tool}");
        eprintln!("skipping the {tool} part: {tool} is not installed");
    }
    ok
}

#[test]
fn every_input_form_gives_the_same_blob() {
    let dir = scratch_dir("convert-forms");
    let tar = all_types_tar();
    let out = dir.join("plain.esgz");
    let printed = convert_ok(&[s(&tar), s(&out)]);
    let blob = std::fs::read(&out).unwrap();

    // crfs reads it back: the TOC digest printed, the input's listing.
    let layer = Layer::open_with(
        FileReadAt::open(&out).unwrap(),
        &OpenOptions { expected_toc_digest: Some(printed.0), ..OpenOptions::default() },
    )
    .unwrap();
    let want = std::fs::read_to_string(testdata().join("fixtures/all-types.tar.list")).unwrap();
    assert_same_listing("crfs reading crfs convert output", &layer_listing(&layer), &want);
    let o = crfs(&["verify", "--toc-digest", &printed.0.to_string(), s(&out)]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    // Standard input, and standard output (the summary then goes to stderr).
    let o = crfs_stdin(&["convert", "-", "-"], &std::fs::read(&tar).unwrap());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(o.stdout == blob, "stdin to stdout differs");
    assert_eq!(summary(&o.stderr), printed);

    // A named pipe is spooled like standard input.
    let fifo = dir.join("in.fifo");
    if Command::new("mkfifo").arg(&fifo).status().is_ok_and(|s| s.success()) {
        let (path, bytes) = (fifo.clone(), std::fs::read(&tar).unwrap());
        let feeder = std::thread::spawn(move || std::fs::write(path, bytes).unwrap());
        let out_fifo = dir.join("fifo.esgz");
        assert_eq!(convert_ok(&[s(&fifo), s(&out_fifo)]), printed);
        feeder.join().unwrap();
        assert!(std::fs::read(&out_fifo).unwrap() == blob);
    }

    // tar.gz and tar.zst inputs.
    if have("gzip") {
        let gz = dir.join("in.tar.gz");
        let status = Command::new("sh").arg("-c").arg(format!("gzip -c < '{}' > '{}'", s(&tar), s(&gz))).status();
        assert!(status.unwrap().success());
        let out_gz = dir.join("gz.esgz");
        assert_eq!(convert_ok(&[s(&gz), s(&out_gz)]), printed);
        assert!(std::fs::read(&out_gz).unwrap() == blob);
        // A gzip stream from stdin, too.
        let o = crfs_stdin(&["convert", "-", s(&dir.join("gz-stdin.esgz"))], &std::fs::read(&gz).unwrap());
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(summary(&o.stdout), printed);
    }
    if Command::new("zstd").arg("--version").output().is_ok_and(|o| o.status.success()) {
        let zst = dir.join("in.tar.zst");
        let status = Command::new("zstd").args(["-q", "-o", s(&zst), s(&tar)]).status();
        assert!(status.unwrap().success());
        let out_zst = dir.join("zst.esgz");
        assert_eq!(convert_ok(&[s(&zst), s(&out_zst)]), printed);
        assert!(std::fs::read(&out_zst).unwrap() == blob);
    }
    // Re-converting a blob (the reference's eStargz and zstd:chunked of the same tar): the old
    // TOC and landmarks are dropped, the result is the same blob.
    for name in ["all-types.esgz", "all-types.zstdchunked"] {
        let again = dir.join(format!("re-{name}"));
        assert_eq!(convert_ok(&[s(&testdata().join("fixtures").join(name)), s(&again)]), printed, "{name}");
        assert!(std::fs::read(&again).unwrap() == blob, "{name}");
    }

    // No temporary files are left next to the outputs.
    for entry in std::fs::read_dir(&dir).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        assert!(!name.contains("crfs-tmp"), "left behind: {name}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn thread_count_never_changes_a_byte() {
    let dir = scratch_dir("convert-threads");
    let tar = all_types_tar();
    let mut blobs = Vec::new();
    for threads in ["1", "2", "3", "8"] {
        for (format, chunk, level) in
            [("estargz", "4096", "6"), ("estargz", "1K", "1"), ("estargz", "4M", "9"), ("zstd-chunked", "4096", "3")]
        {
            let out = dir.join(format!("t{threads}-{format}-{chunk}-{level}.esgz"));
            let args = ["--threads", threads, "--format", format, "--chunk-size", chunk, "--level", level];
            let mut full = args.to_vec();
            full.extend([s(&tar), s(&out)]);
            convert_ok(&full);
            blobs.push(((format, chunk, level), std::fs::read(&out).unwrap()));
        }
    }
    for (key, blob) in &blobs[4..] {
        let first = &blobs.iter().find(|(k, _)| k == key).unwrap().1;
        assert!(blob == first, "{key:?}: output depends on the thread count");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn prioritized_files_and_missing_names() {
    let dir = scratch_dir("convert-prio");
    let list = dir.join("prio.txt");
    std::fs::write(&list, "links/hard2\n\n  /xattr/file  \nno/such/file\n").unwrap();
    let out = dir.join("p.esgz");
    let o = crfs(&[
        "convert",
        "--prioritize",
        "files/medium.bin",
        "--prioritize-from",
        s(&list),
        s(&all_types_tar()),
        s(&out),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("prioritized file not in the layer: no/such/file"), "{stderr}");
    let layer = Layer::open(FileReadAt::open(&out).unwrap()).unwrap();
    // Everything before the landmark is the prioritized region; the three files are in it.
    let landmark = layer.index().prefetch_landmark().expect("a .prefetch.landmark");
    let index = layer.index();
    for path in ["files/medium.bin", "files/data.bin", "xattr/file"] {
        let mut id = crfs_core::ROOT;
        for part in path.split('/') {
            id = index.lookup(id, part.as_bytes()).unwrap();
        }
        let first = index.chunks(index.resolve(id)).get(0).unwrap().offset;
        assert!(first < landmark, "{path} at {first}, landmark at {landmark}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

/// `tree_listing` without the root line and the files eStargz adds, and with the mtimes of
/// directories tar made itself (parents without an entry: extraction time) blanked.
fn listing_without_estargz_files(root: &Path) -> String {
    let recent = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() - 86_400;
    tree_listing(root)
        .lines()
        .filter(|l| {
            let path = l.split('\t').next().unwrap();
            !matches!(path, "." | "stargz.index.json" | ".no.prefetch.landmark" | ".prefetch.landmark")
        })
        .map(|l| {
            let mut f: Vec<&str> = l.split('\t').collect();
            if f[1] == "dir" && f[6].parse::<u64>().is_ok_and(|t| t > recent) {
                f[6] = "now";
            }
            format!("{}\n", f.join("\t"))
        })
        .collect()
}

/// Directory mtimes zeroed: GNU tar sets a directory's times when it leaves it, so entries that
/// prioritization moves ahead of their siblings touch it again later (containerd's applier sets
/// them at the end and does not see this).
fn without_dir_mtimes(listing: &str) -> String {
    listing
        .lines()
        .map(|l| {
            let mut f: Vec<&str> = l.split('\t').collect();
            if f[1] == "dir" {
                f[6] = "-";
            }
            format!("{}\n", f.join("\t"))
        })
        .collect()
}

#[test]
fn plain_tar_extracts_the_input_tree() {
    if !have("tar") {
        return;
    }
    let dir = scratch_dir("convert-untar");
    let tar = all_types_tar();
    let extract = |args: &[&str], src: &Path, to: &Path| {
        std::fs::create_dir_all(to).unwrap();
        let o = Command::new("tar")
            .args(["--xattrs", "--xattrs-include=*", "--same-owner", "-p"])
            .args(args)
            .arg(src)
            .arg("-C")
            .arg(to)
            .output()
            .unwrap();
        // Devices and trusted.* xattrs need root; elsewhere both sides fail the same way.
        assert!(o.status.success() || !is_root(), "tar {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    };
    extract(&["-xf"], &tar, &dir.join("direct"));
    let want = listing_without_estargz_files(&dir.join("direct"));
    for (i, args) in
        [vec!["--chunk-size", "4096"], vec!["--level", "1", "--prioritize", "links/hard2"]].iter().enumerate()
    {
        let blob = dir.join(format!("b{i}.esgz"));
        let mut full = args.clone();
        full.extend([s(&tar), s(&blob)]);
        convert_ok(&full);
        let to = dir.join(format!("via-estargz-{i}"));
        extract(&["-xzf"], &blob, &to);
        assert!(to.join("stargz.index.json").exists());
        let got = listing_without_estargz_files(&to);
        let what = format!("tar -xzf of the blob ({args:?}) vs tar -xf of the input");
        if args.contains(&"--prioritize") {
            assert_same_listing(&what, &without_dir_mtimes(&got), &without_dir_mtimes(&want));
        } else {
            assert_same_listing(&what, &got, &want);
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_inputs_fail_cleanly_and_leave_nothing() {
    let dir = scratch_dir("convert-bad");
    let tar = std::fs::read(all_types_tar()).unwrap();
    let mut gz = Vec::new();
    crfs_core::writer::compress::gzip_member(&mut crfs_core::writer::MinizDeflate::new(6), 6, &tar, &mut gz).unwrap();
    let mut broken_gz = gz.clone();
    let mid = broken_gz.len() / 2;
    broken_gz[mid..mid + 64].fill(0x55);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty", vec![], "not a tar archive"),
        ("random", (0..10_000u32).map(|i| (i * 7919 % 251) as u8).collect(), "not a tar archive"),
        ("cut-in-header", tar[..700].to_vec(), "truncated tar"),
        ("cut-in-payload", tar[..512 * 3 + 10].to_vec(), "truncated tar"),
        ("broken-gzip", broken_gz, "broken gzip input"),
        ("cut-gzip", gz[..gz.len() / 3].to_vec(), "broken gzip input"),
        (
            "broken-zstd",
            {
                let mut z = std::fs::read(testdata().join("fixtures/all-types.zstdchunked")).unwrap();
                z[100..140].fill(0xee);
                z
            },
            "broken zstd input",
        ),
        (
            "gzip-of-garbage",
            {
                let mut g = Vec::new();
                crfs_core::writer::compress::gzip_member(
                    &mut crfs_core::writer::MinizDeflate::new(1),
                    1,
                    &[7u8; 5000],
                    &mut g,
                )
                .unwrap();
                g
            },
            "not a tar archive",
        ),
    ];
    for (name, bytes, want) in cases {
        let input = dir.join(format!("{name}.in"));
        std::fs::write(&input, &bytes).unwrap();
        let out = dir.join(format!("{name}.esgz"));
        let o = crfs(&["convert", s(&input), s(&out)]);
        let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(!o.status.success(), "{name}: succeeded");
        assert_eq!(stderr.lines().count(), 1, "{name}: {stderr}");
        assert!(stderr.starts_with("crfs: ") && stderr.contains(want), "{name}: {stderr}");
        assert!(o.stdout.is_empty(), "{name}: printed a summary");
        assert!(!out.exists(), "{name}: left an output file");
        // The same through stdin.
        let o = crfs_stdin(&["convert", "-", s(&out)], &bytes);
        assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains(want), "{name} (stdin)");
        assert!(!out.exists(), "{name} (stdin): left an output file");
    }
    let o = crfs(&["convert", s(&dir.join("missing.tar")), s(&dir.join("x.esgz"))]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("missing.tar"));
    let o = crfs(&["convert", "--level", "10", s(&all_types_tar()), s(&dir.join("x.esgz"))]);
    assert!(!o.status.success());
    for entry in std::fs::read_dir(&dir).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        assert!(name.ends_with(".in"), "left behind: {name}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn reference_reader_opens_crfs_convert_output() {
    let Some(bin) = interop_bin() else { return };
    let dir = scratch_dir("convert-go");
    for kind in ["all-types", "chunks", "many"] {
        let tar = dir.join(format!("{kind}.tar"));
        interop(&bin, &["mktar", "-kind", kind, "-out", s(&tar)]);
        let want = interop(&bin, &["list-tar", s(&tar)]);
        let prio = match kind {
            "all-types" => "links/hard2",
            "chunks" => "chunks/big-9MiB",
            _ => "d13/f042",
        };
        for (i, args) in [
            vec![],
            vec!["--chunk-size", "4096", "--level", "6"],
            vec!["--chunk-size", "1M", "--level", "1", "--prioritize", prio],
            vec!["--level", "0", "--threads", "1"],
            vec!["--format", "zstd-chunked", "--chunk-size", "64K", "--prioritize", prio],
        ]
        .into_iter()
        .enumerate()
        {
            let blob = dir.join(format!("{kind}-{i}.esgz"));
            let mut full = args.clone();
            full.extend([s(&tar), s(&blob)]);
            let (toc, ..) = convert_ok(&full);
            let listed = interop(&bin, &["list", s(&blob)]);
            assert_same_listing(&format!("{kind} {args:?}: reference listing"), &listed, &want);
            let verified = interop(&bin, &["verify", s(&blob), &toc.to_string()]);
            assert_eq!(verified.trim(), "ok", "{kind} {args:?}");
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
