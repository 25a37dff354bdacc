//! `crfs-bench-open BLOB`: opens a blob with `Layer::open_with` and helper threads, as crfs's
//! commands do (footer, TOC fetch, inflate, digest, index) and exits. Timed from outside: wall time and peak RSS of the whole process.
//! Prints the node count so the run can be checked against the reference's.

use crfs_benches::{Args, open_layer, run};

fn main() -> std::process::ExitCode {
    run("crfs-bench-open", || {
        let args = Args::parse(&[])?;
        args.only(&[])?;
        let blob = args.one_path("crfs-bench-open BLOB")?;
        let layer = open_layer(&blob)?;
        let stats = layer.index().stats();
        println!("entries {} regular-files {} chunks {}", stats.nodes, stats.regular_files, stats.chunks);
        Ok(())
    })
}
