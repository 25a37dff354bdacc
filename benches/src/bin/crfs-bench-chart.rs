//! `crfs-bench-chart [--font TTF] [--readme README.md] [RESULTS_DIR]`: draws the charts of the
//! last benchmark runs and regenerates the README's performance section from them.
//!
//! Reads `RESULTS_DIR/fuse.tsv` (from `fuse-compare.sh`) and `RESULTS_DIR/core.tsv` (from
//! `compare.sh`), whichever exist (default directory: `benches/results`), writes `fuse.png` and
//! `core.png` beside them, and with `--readme` replaces what lies between the README's
//! `<!-- benches:begin ... -->` and `<!-- benches:end -->` markers with tables made from the same
//! files and links to the charts. Numbers are never typed by hand: rerun the scripts, then this.

use std::path::{Path, PathBuf};

use crfs_benches::report::{Core, Fuse, replace_section};
use crfs_benches::{Args, BenchResult, chart, run};

const USAGE: &str = "crfs-bench-chart [--font TTF] [--readme README.md] [RESULTS_DIR]";

fn main() -> std::process::ExitCode {
    run("crfs-bench-chart", || {
        let args = Args::parse(&["font", "readme"])?;
        args.only(&["font", "readme"])?;
        let dir = match args.positional() {
            [] => PathBuf::from("benches/results"),
            [d] => PathBuf::from(d),
            _ => return Err(format!("usage: {USAGE}")),
        };
        chart::register_font(Path::new(args.value("font").unwrap_or(chart::DEFAULT_FONT)))?;
        let read = |name: &str| -> BenchResult<Option<String>> {
            let path = dir.join(name);
            match std::fs::read_to_string(&path) {
                Ok(text) => Ok(Some(text)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(format!("{}: {e}", path.display())),
            }
        };
        let core = read("core.tsv")?.map(|t| Core::parse(&t).map_err(|e| format!("core.tsv: {e}"))).transpose()?;
        let fuse = read("fuse.tsv")?.map(|t| Fuse::parse(&t).map_err(|e| format!("fuse.tsv: {e}"))).transpose()?;
        if core.is_none() && fuse.is_none() {
            return Err(format!("{}: neither core.tsv nor fuse.tsv", dir.display()));
        }
        let mut section = String::new();
        if let Some(core) = &core {
            let png = dir.join("core.png");
            chart::draw(&core.bars(), &png, (1300, 560))?;
            println!("wrote {}", png.display());
            section.push_str(&format!(
                "Library (`benches/results/core.md`, `benches/compare.sh`): crfs-core against the Go reference \
                 (estargz v0.12) and `gzip -dc`, median [min–max] of the last run.\n\n{}\n\
                 ![crfs-core vs the reference](benches/results/core.png)\n\n",
                core.markdown()
            ));
        }
        if let Some(fuse) = &fuse {
            let png = dir.join("fuse.png");
            chart::draw(&fuse.bars(), &png, (1200, 560))?;
            println!("wrote {}", png.display());
            section.push_str(&format!(
                "FUSE (`benches/results/fuse.md`, `benches/fuse-compare.sh`): the same files mounted by crfs \
                 (eStargz), squashfuse_ll (gzip squashfs), ratarmount (tar.gz) and read from the extracted tree; \
                 *cold* starts from a dropped page cache and a fresh mount, *warm* repeats the operation on that \
                 mount; median [min–max] of {}, from the last full run.\n\n{}\n\
                 ![crfs FUSE vs peers](benches/results/fuse.png)\n",
                fuse.runs().map_or("the runs".to_string(), |n| format!("{n} runs")),
                fuse.markdown()
            ));
        }
        if let Some(readme) = args.value("readme") {
            let text = std::fs::read_to_string(readme).map_err(|e| format!("{readme}: {e}"))?;
            let new = replace_section(&text, &section).map_err(|e| format!("{readme}: {e}"))?;
            if new != text {
                std::fs::write(readme, new).map_err(|e| format!("{readme}: {e}"))?;
            }
            println!("regenerated the benchmark section of {readme}");
        }
        Ok(())
    })
}
