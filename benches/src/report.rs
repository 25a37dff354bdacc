//! Results files → ratios for the charts and markdown for the README.
//!
//! The harness scripts write each report twice: `results/NAME.md` for people and
//! `results/NAME.tsv` for this module (tab-separated, one header line, raw medians). Nothing
//! here measures anything: it only reshapes what the scripts measured, so the README and the
//! charts always show the numbers of the last run.

use std::collections::BTreeMap;

use crate::BenchResult;

/// A tab-separated table with a header line.
#[derive(Debug, Clone)]
pub struct Tsv {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Tsv {
    /// Parses `text`; every row must have as many fields as the header.
    pub fn parse(text: &str) -> BenchResult<Tsv> {
        let mut lines = text.lines().filter(|l| !l.is_empty());
        let header: Vec<String> = lines.next().ok_or("empty TSV")?.split('\t').map(String::from).collect();
        let mut rows = Vec::new();
        for (i, line) in lines.enumerate() {
            let row: Vec<String> = line.split('\t').map(String::from).collect();
            if row.len() != header.len() {
                return Err(format!("TSV line {}: {} fields, the header has {}", i + 2, row.len(), header.len()));
            }
            rows.push(row);
        }
        Ok(Tsv { header, rows })
    }

    fn column(&self, name: &str) -> BenchResult<usize> {
        self.header.iter().position(|h| h == name).ok_or_else(|| format!("TSV has no column {name}"))
    }

    /// Each row as a map from column name to field.
    fn records(&self) -> Vec<BTreeMap<&str, &str>> {
        self.rows
            .iter()
            .map(|r| self.header.iter().map(String::as_str).zip(r.iter().map(String::as_str)).collect())
            .collect()
    }
}

fn number(record: &BTreeMap<&str, &str>, name: &str) -> BenchResult<f64> {
    let v = record.get(name).ok_or_else(|| format!("no field {name}"))?;
    v.parse().map_err(|_| format!("{name} = {v:?}: not a number"))
}

/// Grouped bars: for each group (x), one value per series (`None` where it was not measured).
#[derive(Debug, Clone, PartialEq)]
pub struct Bars {
    pub title: String,
    pub y_label: String,
    pub groups: Vec<String>,
    pub series: Vec<(String, Vec<Option<f64>>)>,
}

/// One measured median with its range.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Cell {
    median: f64,
    min: f64,
    max: f64,
}

/// The FUSE side-by-side results (`fuse.tsv`, written by `fuse-compare.sh`).
#[derive(Debug, Clone)]
pub struct Fuse {
    /// Systems in the order the script lists them, crfs first.
    systems: Vec<String>,
    /// (op, cache, system) → cell; rss ops are `rss:OP` with cache `-`, in KiB.
    cells: BTreeMap<(String, String, String), Cell>,
    /// Runs behind each operation's median (the `n` of crfs's cold `find`), if the file says.
    runs: Option<u64>,
}

/// The operations of `fuse-compare.sh`, in report order, with their table labels.
const FUSE_OPS: [(&str, &str); 4] =
    [("find", "`find`"), ("ls-lR", "`ls -lR`"), ("read-all", "read every file"), ("rand4k", "random 4 KiB reads")];

/// Short chart labels of the same operations.
fn short_op(op: &str) -> &str {
    match op {
        "read-all" => "read all",
        "rand4k" => "rand 4 KiB",
        other => other,
    }
}

/// Column order: crfs, the peers the script knows in its order, any other, local disk last.
fn system_rank(s: &str) -> (usize, String) {
    let known = ["crfs", "squashfuse_ll", "ratarmount"];
    let rank = known.iter().position(|k| *k == s).unwrap_or(if s == "local" { 4 } else { 3 });
    (rank, s.to_string())
}

impl Fuse {
    pub fn parse(text: &str) -> BenchResult<Fuse> {
        let tsv = Tsv::parse(text)?;
        for c in ["op", "cache", "system", "median", "min", "max"] {
            tsv.column(c)?;
        }
        let mut systems: Vec<String> = Vec::new();
        let mut cells = BTreeMap::new();
        let mut runs = None;
        for r in tsv.records() {
            let system = r["system"].to_string();
            if !systems.contains(&system) {
                systems.push(system.clone());
            }
            let cell = Cell { median: number(&r, "median")?, min: number(&r, "min")?, max: number(&r, "max")? };
            if (r["op"], r["cache"], system.as_str()) == ("find", "cold", "crfs") {
                runs = r.get("n").and_then(|n| n.parse().ok());
            }
            cells.insert((r["op"].to_string(), r["cache"].to_string(), system), cell);
        }
        if !systems.iter().any(|s| s == "crfs") {
            return Err("fuse.tsv has no crfs rows".into());
        }
        systems.sort_by_key(|s| system_rank(s));
        Ok(Fuse { systems, cells, runs })
    }

    /// How many runs each median is of, when the file says.
    pub fn runs(&self) -> Option<u64> {
        self.runs
    }

    fn get(&self, op: &str, cache: &str, system: &str) -> Option<Cell> {
        self.cells.get(&(op.to_string(), cache.to_string(), system.to_string())).copied()
    }

    fn peers(&self) -> impl Iterator<Item = &String> {
        self.systems.iter().filter(|s| *s != "crfs")
    }

    /// Peer time ÷ crfs time for every operation and cache state: above 1, crfs is faster.
    pub fn bars(&self) -> Bars {
        let mut groups = Vec::new();
        let mut keys = Vec::new();
        for (op, _) in FUSE_OPS {
            for cache in ["cold", "warm"] {
                if self.get(op, cache, "crfs").is_some() {
                    groups.push(format!("{} {cache}", short_op(op)));
                    keys.push((op, cache));
                }
            }
        }
        let series = self
            .peers()
            .map(|peer| {
                let values = keys
                    .iter()
                    .map(|&(op, cache)| {
                        let c = self.get(op, cache, "crfs")?;
                        let p = self.get(op, cache, peer)?;
                        (c.median > 0.0).then(|| p.median / c.median)
                    })
                    .collect();
                (system_label(peer), values)
            })
            .collect();
        Bars {
            title: "crfs FUSE mount vs peers (median time of peer ÷ crfs; above 1: crfs faster)".into(),
            y_label: "peer time ÷ crfs time (log scale)".into(),
            groups,
            series,
        }
    }

    /// Markdown tables: times with ratios, mount times, peak RSS.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let peers: Vec<&String> = self.peers().collect();
        out.push_str("| operation | cache |");
        for s in &self.systems {
            out.push_str(&format!(" {} |", system_label(s)));
        }
        for p in &peers {
            out.push_str(&format!(" crfs ÷ {} |", system_label(p)));
        }
        out.push_str(&format!("\n|---|---|{}\n", "---|".repeat(self.systems.len() + peers.len())));
        for (op, label) in FUSE_OPS {
            for cache in ["cold", "warm"] {
                let Some(crfs) = self.get(op, cache, "crfs") else { continue };
                out.push_str(&format!("| {label} | {cache} |"));
                for s in &self.systems {
                    out.push_str(&format!(" {} |", self.get(op, cache, s).map_or("—".into(), |c| seconds(&c))));
                }
                for p in &peers {
                    out.push_str(&format!(
                        " {} |",
                        self.get(op, cache, p).map_or("—".into(), |c| ratio(crfs.median, c.median))
                    ));
                }
                out.push('\n');
            }
        }
        let servers: Vec<&String> = self.systems.iter().filter(|s| *s != "local").collect();
        if servers.iter().any(|s| self.get("mount", "cold", s).is_some()) {
            out.push_str("\n| mount (cold cache) |");
            for s in &servers {
                out.push_str(&format!(" {} |", system_label(s)));
            }
            out.push_str(&format!("\n|---|{}\n| mount time |", "---|".repeat(servers.len())));
            for s in &servers {
                out.push_str(&format!(" {} |", self.get("mount", "cold", s).map_or("—".into(), |c| seconds(&c))));
            }
            out.push('\n');
            if servers.iter().any(|s| self.get("mount-first", "cold", s).is_some()) {
                out.push_str("| first mount (builds an index) |");
                for s in &servers {
                    out.push_str(&format!(
                        " {} |",
                        self.get("mount-first", "cold", s).map_or("—".into(), |c| seconds(&c))
                    ));
                }
                out.push('\n');
            }
            for (op, label) in FUSE_OPS {
                let key = format!("rss:{op}");
                if servers.iter().all(|s| self.get(&key, "-", s).is_none()) {
                    continue;
                }
                out.push_str(&format!("| peak RSS after {label} |"));
                for s in &servers {
                    out.push_str(&format!(" {} |", self.get(&key, "-", s).map_or("—".into(), |c| mib(c.median))));
                }
                out.push('\n');
            }
        }
        out
    }
}

/// The core side-by-side results (`core.tsv`, written by `compare.sh`).
#[derive(Debug, Clone)]
pub struct Core {
    rows: Vec<CoreRow>,
}

#[derive(Debug, Clone)]
struct CoreRow {
    crfs: String,
    peer: String,
    metric: String,
    crfs_cell: Cell,
    peer_cell: Cell,
    label: String,
}

impl Core {
    pub fn parse(text: &str) -> BenchResult<Core> {
        let tsv = Tsv::parse(text)?;
        let mut rows = Vec::new();
        for r in tsv.records() {
            let cell = |p: &str| -> BenchResult<Cell> {
                Ok(Cell {
                    median: number(&r, &format!("{p}_median"))?,
                    min: number(&r, &format!("{p}_min"))?,
                    max: number(&r, &format!("{p}_max"))?,
                })
            };
            let field = |n: &str| r.get(n).map(|v| v.to_string()).ok_or_else(|| format!("core.tsv: no field {n}"));
            rows.push(CoreRow {
                crfs: field("crfs")?,
                peer: field("peer")?,
                metric: field("metric")?,
                crfs_cell: cell("crfs")?,
                peer_cell: cell("peer")?,
                label: field("label")?,
            });
        }
        if rows.is_empty() {
            return Err("core.tsv has no rows".into());
        }
        Ok(Core { rows })
    }

    /// Reference ÷ crfs for every row: above 1, crfs is faster (or smaller).
    pub fn bars(&self) -> Bars {
        let groups = self
            .rows
            .iter()
            .map(|r| {
                let name = r.crfs.trim_end_matches(".crfs").replace("readall.crfs.", "read ");
                if r.metric == "rss" {
                    format!("{name} RSS")
                } else if let Some(peer) = r.peer.strip_prefix("readall.ref.").filter(|p| *p != "readat") {
                    format!("{name} vs {peer}")
                } else {
                    name
                }
            })
            .collect();
        let values = self
            .rows
            .iter()
            .map(|r| (r.crfs_cell.median > 0.0).then(|| r.peer_cell.median / r.crfs_cell.median))
            .collect();
        Bars {
            title: "crfs-core vs Go reference / gzip (median of peer ÷ crfs; above 1: crfs better)".into(),
            y_label: "peer ÷ crfs (log scale)".into(),
            groups,
            series: vec![("Go estargz v0.12 (gzip -dc for verify)".into(), values)],
        }
    }

    pub fn markdown(&self) -> String {
        let mut out = String::from("| measurement | crfs | peer | crfs ÷ peer |\n|---|---|---|---|\n");
        for r in &self.rows {
            let show = |c: &Cell| if r.metric == "rss" { format!("{} MiB", mib_range(c)) } else { seconds(c) };
            out.push_str(&format!(
                "| {} | {} | {} | {} |\n",
                r.label,
                show(&r.crfs_cell),
                show(&r.peer_cell),
                ratio(r.crfs_cell.median, r.peer_cell.median)
            ));
        }
        out
    }
}

fn system_label(s: &str) -> String {
    match s {
        "local" => "local disk".into(),
        other => other.into(),
    }
}

/// A number of seconds (or MiB) with 2 to 3 significant digits.
fn short(x: f64) -> String {
    if x < 0.1 {
        format!("{x:.3}")
    } else if x < 100.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.0}")
    }
}

fn seconds(c: &Cell) -> String {
    format!("{} s [{}–{}]", short(c.median), short(c.min), short(c.max))
}

fn mib(kib: f64) -> String {
    format!("{} MiB", short(kib / 1024.0))
}

fn mib_range(c: &Cell) -> String {
    format!("{} [{}–{}]", short(c.median / 1024.0), short(c.min / 1024.0), short(c.max / 1024.0))
}

fn ratio(a: f64, b: f64) -> String {
    if b <= 0.0 {
        return "—".into();
    }
    let r = a / b;
    if r < 0.1 { format!("{r:.3}×") } else { format!("{r:.2}×") }
}

/// The README markers the generated section sits between.
pub const BEGIN_MARKER: &str =
    "<!-- benches:begin (generated by crfs-bench-chart from benches/results; do not edit) -->";
pub const END_MARKER: &str = "<!-- benches:end -->";

/// Replaces what lies between the markers (which stay) with `generated`.
pub fn replace_section(readme: &str, generated: &str) -> BenchResult<String> {
    let begin = readme.find(BEGIN_MARKER).ok_or("README has no begin marker")?;
    let after_begin = begin + BEGIN_MARKER.len();
    let end =
        readme[after_begin..].find(END_MARKER).ok_or("README has no end marker after the begin marker")? + after_begin;
    if readme[end + END_MARKER.len()..].contains(BEGIN_MARKER) {
        return Err("README has more than one generated section".into());
    }
    Ok(format!("{}\n{}\n{}", &readme[..after_begin], generated.trim_end(), &readme[end..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FUSE: &str = "op\tcache\tsystem\tmedian\tmin\tmax\tn\tunit\n\
        find\tcold\tcrfs\t1.0\t0.9\t1.2\t3\ts\n\
        find\tcold\tsquashfuse_ll\t2.0\t1.8\t2.5\t3\ts\n\
        find\tcold\tlocal\t0.5\t0.5\t0.6\t3\ts\n\
        find\twarm\tcrfs\t0.1\t0.1\t0.1\t3\ts\n\
        mount\tcold\tcrfs\t0.2\t0.2\t0.3\t3\ts\n\
        rss:find\t-\tcrfs\t20480\t20480\t20480\t3\tKiB\n";

    #[test]
    fn fuse_ratios_and_tables() {
        let f = Fuse::parse(FUSE).unwrap();
        assert_eq!(f.runs(), Some(3));
        let bars = f.bars();
        assert_eq!(bars.groups, ["find cold", "find warm"]);
        assert_eq!(bars.series.len(), 2);
        assert_eq!(bars.series[0], ("squashfuse_ll".to_string(), vec![Some(2.0), None]));
        assert_eq!(bars.series[1], ("local disk".to_string(), vec![Some(0.5), None]));
        let md = f.markdown();
        assert!(
            md.contains(
                "| `find` | cold | 1.00 s [0.90–1.20] | 2.00 s [1.80–2.50] | 0.50 s [0.50–0.60] | 0.50× | 2.00× |"
            ),
            "{md}"
        );
        assert!(md.contains("| peak RSS after `find` | 20.00 MiB | — |"), "{md}");
        assert!(Fuse::parse("op\tcache\tsystem\tmedian\tmin\tmax\nfind\tcold\tlocal\t1\t1\tx\n").is_err());
    }

    #[test]
    fn core_rows() {
        let text = "crfs\tpeer\tmetric\tcrfs_median\tcrfs_min\tcrfs_max\tpeer_median\tpeer_min\tpeer_max\ttarget_ratio\tlabel\n\
            open.crfs\topen.ref\twall\t0.2\t0.1\t0.3\t0.4\t0.4\t0.5\t0.3334\topen\n\
            open.crfs\topen.ref\trss\t45000\t45000\t45100\t90000\t88000\t92000\t0.5\trss\n";
        let c = Core::parse(text).unwrap();
        assert_eq!(c.bars().groups, ["open", "open RSS"]);
        assert_eq!(c.bars().series[0].1, vec![Some(2.0), Some(2.0)]);
        let md = c.markdown();
        assert!(md.contains("| open | 0.20 s [0.10–0.30] | 0.40 s [0.40–0.50] | 0.50× |"), "{md}");
        assert!(md.contains("| rss | 43.95 [43.95–44.04] MiB | 87.89 [85.94–89.84] MiB | 0.50× |"), "{md}");
    }

    #[test]
    fn replaces_only_between_markers() {
        let readme = format!("# x\nbefore\n{BEGIN_MARKER}\nold numbers\n{END_MARKER}\nafter\n");
        let out = replace_section(&readme, "new table\n").unwrap();
        assert_eq!(out, format!("# x\nbefore\n{BEGIN_MARKER}\nnew table\n{END_MARKER}\nafter\n"));
        // Idempotent: running it again changes nothing.
        assert_eq!(replace_section(&out, "new table\n").unwrap(), out);
        assert!(replace_section("no markers", "x").is_err());
        assert!(replace_section(&format!("{END_MARKER}{BEGIN_MARKER}"), "x").is_err());
        assert!(replace_section(&format!("{readme}{readme}"), "x").is_err());
    }
}
