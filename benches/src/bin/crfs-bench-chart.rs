//! `crfs-bench-chart [--font TTF] [--readme README.md] [RESULTS_DIR]`: draws the charts of the
//! last benchmark runs and regenerates the README's performance section from them.
//!
//! Reads, from RESULTS_DIR (default `benches/results`), whichever exist of `core.tsv`
//! (`compare.sh`), `fuse.tsv` (`fuse-compare.sh`), `convert.tsv` (`convert-compare.sh`),
//! `nfs.tsv` (`nfs-compare.sh`), `registry.tsv` (`registry-compare.sh`) and `podman.tsv`
//! (`podman-compare.sh`); writes `NAME.png`
//! beside each, and with `--readme` replaces what lies between the README's
//! `<!-- benches:begin ... -->` and `<!-- benches:end -->` markers with tables made from the same
//! files and links to the charts. Numbers are never typed by hand: rerun the scripts, then this.

use std::path::{Path, PathBuf};

use crfs_benches::report::{Bars, Fuse, Pairs, replace_section};
use crfs_benches::{Args, BenchResult, chart, run};

const USAGE: &str = "crfs-bench-chart [--font TTF] [--readme README.md] [RESULTS_DIR]";

/// A results file of crfs-against-a-peer rows and how the README shows it.
struct PairsReport {
    name: &'static str,
    script: &'static str,
    title: &'static str,
    series: &'static str,
    intro: &'static str,
}

/// In README order, after the FUSE section.
const PAIRS_REPORTS: [PairsReport; 4] = [
    PairsReport {
        name: "convert",
        script: "convert-compare.sh",
        title: "crfs convert vs Go estargz.Build (median of peer ÷ crfs; above 1: crfs better)",
        series: "Go estargz.Build (go-1: 1 goroutine, go-default: all cores)",
        intro: "Converting the tar to gzip eStargz (4 MiB chunks): `crfs convert` against the reference \
                Go `estargz.Build` on one goroutine (go-1) and on every core (go-default); CPU is user + sys.",
    },
    PairsReport {
        name: "nfs",
        script: "nfs-compare.sh",
        title: "crfs over NFS vs crfs over FUSE (FUSE ÷ NFS: wall time for libnfs, crfs CPU for the kernel client)",
        series: "crfs FUSE mount",
        intro: "Serving over NFS: every file read through `crfs nfs` by libnfs (16 requests in flight, as the \
                Linux client sends, or one at a time) against the same blob mounted with FUSE; and crfs's own \
                CPU time (user + sys) serving the Linux kernel's NFS client (Debian's kernel under qemu, \
                `mount -t nfs -o nolock`, and with `nocto,actimeo=86400`) against serving FUSE, for reading \
                every file and for `ls -lR`. A fresh server and cold caches each time.",
    },
    PairsReport {
        name: "registry",
        script: "registry-compare.sh",
        title: "lazy crfs mount from a loopback registry vs pull + extract and vs the local blob (peer ÷ crfs)",
        series: "pull + extract / local blob / least bytes",
        intro: "From a registry: a lazy `crfs mount` of the image on a loopback docker-registry (no disk \
                cache) against pulling it (`skopeo copy` + `tar -x`) and against `crfs mount` of the same \
                blob on local disk, from a cold page cache; bytes are what the registry sent.",
    },
    PairsReport {
        name: "podman",
        script: "podman-compare.sh",
        title: "podman run through crfs store vs podman run with a plain pull (plain ÷ crfs)",
        series: "podman run, plain gzip image pulled whole",
        intro: "Containers: `podman run IMAGE python3 -c 'print(1)'` from an empty podman storage, with \
                `crfs store` as podman's additional layer store (the image converted by `crfs image convert`) \
                against podman pulling the same image as plain gzip; a Python runtime layer plus the corpus, \
                on a loopback docker-registry, cold page cache.",
    },
];

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
        let pairs = |name: &str| -> BenchResult<Option<Pairs>> {
            read(&format!("{name}.tsv"))?.map(|t| Pairs::parse(&t).map_err(|e| format!("{name}.tsv: {e}"))).transpose()
        };
        let draw = |name: &str, bars: &Bars, width: u32| -> BenchResult<()> {
            let png = dir.join(format!("{name}.png"));
            chart::draw(bars, &png, (width, 560))?;
            println!("wrote {}", png.display());
            Ok(())
        };
        let mut found = 0;
        let mut section = String::new();
        if let Some(core) = pairs("core")? {
            found += 1;
            draw(
                "core",
                &core.bars(
                    "crfs-core vs Go reference / gzip (median of peer ÷ crfs; above 1: crfs better)",
                    "Go estargz v0.12 (gzip -dc for verify)",
                ),
                1300,
            )?;
            section.push_str(&format!(
                "Library (`benches/results/core.md`, `benches/compare.sh`): crfs-core against the Go reference \
                 (estargz v0.12) and `gzip -dc`, median [min–max] of the last run.\n\n{}\n\
                 ![crfs-core vs the reference](benches/results/core.png)\n\n",
                core.markdown()
            ));
        }
        if let Some(fuse) =
            read("fuse.tsv")?.map(|t| Fuse::parse(&t).map_err(|e| format!("fuse.tsv: {e}"))).transpose()?
        {
            found += 1;
            draw("fuse", &fuse.bars(), 1200)?;
            section.push_str(&format!(
                "FUSE (`benches/results/fuse.md`, `benches/fuse-compare.sh`): the same files mounted by crfs \
                 (eStargz), squashfuse_ll (gzip squashfs), ratarmount (tar.gz) and read from the extracted tree; \
                 *cold* starts from a dropped page cache and a fresh mount, *warm* repeats the operation on that \
                 mount; median [min–max] of {}, from the last full run.\n\n{}\n\
                 ![crfs FUSE vs peers](benches/results/fuse.png)\n\n",
                fuse.runs().map_or("the runs".to_string(), |n| format!("{n} runs")),
                fuse.markdown()
            ));
        }
        for report in &PAIRS_REPORTS {
            let Some(rows) = pairs(report.name)? else { continue };
            found += 1;
            let bars = rows.bars(report.title, report.series);
            // Room for each group's label under its bars.
            draw(report.name, &bars, (bars.groups.len() as u32 * 165).clamp(900, 2000))?;
            section.push_str(&format!(
                "{} From `benches/results/{name}.md` (`benches/{script}`), median [min–max] of the last run.\n\n{}\n\
                 ![{name}](benches/results/{name}.png)\n\n",
                report.intro,
                rows.markdown(),
                name = report.name,
                script = report.script,
            ));
        }
        if found == 0 {
            return Err(format!("{}: no core, fuse, convert, nfs, registry or podman .tsv", dir.display()));
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
