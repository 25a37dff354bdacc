//! crfs-benches: the side-by-side benchmark harness (see benches/README.md).
//!
//! Owns the measured programs only: each binary in `src/bin/` does exactly one thing to one
//! blob through crfs-core and exits, so an outside timer (`benches/compare.sh`, which runs
//! `/usr/bin/time`) sees that thing and nothing else. The peers' counterparts live in
//! `testdata/interop` (the Go reference library) or are plain system tools (`gzip`).
//! This crate must never be a dependency of a shipped crate.
//!
//! It also turns results into pictures and prose: [`report`] reads the scripts' TSV files,
//! [`chart`] draws them as PNG, and `crfs-bench-chart` regenerates `benches/results/*.png` and
//! the README's performance section from them.

#![deny(missing_docs)]

pub mod chart;
pub mod report;

use std::path::{Path, PathBuf};

use crfs_core::{FileReadAt, Index, Kind, Layer, NodeId};

/// Errors are messages: every binary prints one and exits non-zero.
pub type BenchResult<T> = Result<T, String>;

/// Opens a local blob and indexes its TOC, with helper threads as crfs's commands do.
pub fn open_layer(path: &Path) -> BenchResult<Layer<FileReadAt>> {
    let file = FileReadAt::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let options = crfs_core::OpenOptions { threads: true, ..Default::default() };
    Layer::open_with(file, &options).map_err(|e| format!("{}: {e}", path.display()))
}

/// Every regular-file inode of the index once, in node (TOC) order. Hardlink names are not
/// listed: they resolve to a node that already is.
pub fn regular_files(index: &Index) -> Vec<NodeId> {
    (0..index.len())
        .filter_map(|i| NodeId::try_from(i).ok())
        .filter(|&id| index.node(id).is_some_and(|n| n.kind() == Kind::Reg))
        .collect()
}

/// A deterministic xorshift64* generator: the same corpus on every run and machine (the
/// micro-benchmarks' fixtures).
pub struct Rng(pub u64);

impl Rng {
    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number below `n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// `len` bytes of source-code-like text (compresses about 3:1 with gzip -9, like a
    /// Python tree), or, when `random` is set, half text and half random bytes.
    pub fn content(&mut self, len: usize, random: bool) -> Vec<u8> {
        const WORDS: [&str; 24] = [
            "def ", "self", ".value", " = ", "return ", "import ", "os", "sys", "(", ")", ":\n    ", "\n", "if ",
            "else", " in ", "for ", "None", "True", "path", "data", "0x", "# ", "class ", ", ",
        ];
        let mut out = Vec::with_capacity(len);
        while out.len() < len {
            if random && self.below(2) == 0 {
                out.extend_from_slice(&self.next_u64().to_le_bytes());
            } else {
                out.extend_from_slice(WORDS[self.below(WORDS.len() as u64) as usize].as_bytes());
                if self.below(8) == 0 {
                    out.extend_from_slice(self.below(100_000).to_string().as_bytes());
                }
            }
        }
        out.truncate(len);
        out
    }
}

/// A tiny command-line reader: positional arguments plus `--name value` and `--flag` options.
#[derive(Debug, Default)]
pub struct Args {
    positional: Vec<String>,
    options: Vec<(String, Option<String>)>,
}

impl Args {
    /// Parses `std::env::args()`; `valued` lists the options that take a value.
    pub fn parse(valued: &[&str]) -> BenchResult<Args> {
        Self::parse_from(std::env::args().skip(1), valued)
    }

    /// Parses `args` (without the program name).
    pub fn parse_from(args: impl IntoIterator<Item = String>, valued: &[&str]) -> BenchResult<Args> {
        let mut out = Args::default();
        let mut it = args.into_iter();
        while let Some(arg) = it.next() {
            if let Some(name) = arg.strip_prefix("--") {
                if let Some((k, v)) = name.split_once('=') {
                    out.options.push((k.to_string(), Some(v.to_string())));
                } else if valued.contains(&name) {
                    let v = it.next().ok_or_else(|| format!("--{name} needs a value"))?;
                    out.options.push((name.to_string(), Some(v)));
                } else {
                    out.options.push((name.to_string(), None));
                }
            } else {
                out.positional.push(arg);
            }
        }
        Ok(out)
    }

    /// The positional arguments.
    pub fn positional(&self) -> &[String] {
        &self.positional
    }

    /// The single positional argument, as a path.
    pub fn one_path(&self, usage: &str) -> BenchResult<PathBuf> {
        match self.positional.as_slice() {
            [p] => Ok(PathBuf::from(p)),
            _ => Err(format!("usage: {usage}")),
        }
    }

    /// Whether `--name` was given.
    pub fn flag(&self, name: &str) -> bool {
        self.options.iter().any(|(k, _)| k == name)
    }

    /// The value of the last `--name`, if any.
    pub fn value(&self, name: &str) -> Option<&str> {
        self.options.iter().rev().find(|(k, _)| k == name).and_then(|(_, v)| v.as_deref())
    }

    /// The value of `--name` as a number, or `default`.
    pub fn number(&self, name: &str, default: u64) -> BenchResult<u64> {
        match self.value(name) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|_| format!("--{name} {v}: not a number")),
        }
    }

    /// Fails on any option outside `known`.
    pub fn only(&self, known: &[&str]) -> BenchResult<()> {
        match self.options.iter().find(|(k, _)| !known.contains(&k.as_str())) {
            Some((k, _)) => Err(format!("unknown option --{k}")),
            None => Ok(()),
        }
    }
}

/// Runs `body`, printing its error as `PROGRAM: message` and exiting 1 on failure.
pub fn run(program: &str, body: impl FnOnce() -> BenchResult<()>) -> std::process::ExitCode {
    match body() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("{program}: {message}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parses_options_and_positionals() {
        let a = Args::parse_from(args(&["--mode", "chunk", "blob", "--verify", "--piece=4096"]), &["mode", "piece"])
            .unwrap();
        assert_eq!(a.positional(), ["blob"]);
        assert_eq!(a.value("mode"), Some("chunk"));
        assert!(a.flag("verify"));
        assert_eq!(a.number("piece", 1).unwrap(), 4096);
        assert_eq!(a.number("threads", 1).unwrap(), 1);
        assert!(a.only(&["mode", "piece", "verify"]).is_ok());
        assert!(a.only(&["mode"]).is_err());
        assert!(Args::parse_from(args(&["--mode"]), &["mode"]).is_err());
    }

    #[test]
    fn reads_every_file_of_the_sample() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/sample.esgz");
        let layer = open_layer(&path).unwrap();
        let files = regular_files(layer.index());
        assert!(!files.is_empty());
        let mut chunk = Vec::new();
        for id in files {
            for i in 0..layer.index().chunks(id).len() {
                layer.read_chunk(id, i, true, &mut chunk).unwrap();
            }
        }
    }
}
