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
    /// The chart's title.
    pub title: String,
    /// What the y axis measures, with its unit.
    pub y_label: String,
    /// The x axis: one label per group of bars.
    pub groups: Vec<String>,
    /// One named series per bar colour, with a value per group.
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
    /// Reads a `fuse-compare.sh` TSV file.
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

/// Crfs-against-a-peer rows: `core.tsv` (from `compare.sh`) and the `convert.tsv`, `nfs.tsv`
/// and `registry.tsv` the other harness scripts write (`harness_pair` in `benches/harness.sh`).
///
/// Columns: `crfs`, `peer` (sample keys), `metric` (`wall` or `cpu` seconds, `rss` KiB, `bytes`),
/// `crfs_median`, `crfs_min`, `crfs_max`, the same for `peer`, and `label`; optional: `group`
/// (the chart's short name of the row), `target` and `met` (the goal in words and whether the
/// run met it, `-` for none), `n` (runs).
#[derive(Debug, Clone)]
pub struct Pairs {
    rows: Vec<PairRow>,
}

/// What a row measures, which sets its unit.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Metric {
    /// Seconds of wall time.
    Wall,
    /// Seconds of CPU time.
    Cpu,
    /// KiB of peak resident memory.
    Rss,
    /// Bytes (sent, fetched, written).
    Bytes,
}

impl Metric {
    fn parse(s: &str) -> BenchResult<Metric> {
        match s {
            "wall" => Ok(Metric::Wall),
            "cpu" => Ok(Metric::Cpu),
            "rss" => Ok(Metric::Rss),
            "bytes" => Ok(Metric::Bytes),
            other => Err(format!("metric {other:?}: not wall, cpu, rss or bytes")),
        }
    }

    fn show(self, c: &Cell) -> String {
        match self {
            Metric::Wall | Metric::Cpu => seconds(c),
            Metric::Rss => format!("{} MiB", mib_range(c)),
            Metric::Bytes => bytes(c),
        }
    }
}

#[derive(Debug, Clone)]
struct PairRow {
    crfs: String,
    peer: String,
    metric: Metric,
    crfs_cell: Cell,
    peer_cell: Cell,
    label: String,
    group: Option<String>,
    target: Option<String>,
    met: Option<String>,
}

impl PairRow {
    /// The chart's name of the row: its `group`, else one made from the sample keys of
    /// `compare.sh` (which writes no group).
    fn group(&self) -> String {
        if let Some(g) = &self.group {
            return g.clone();
        }
        let name = self.crfs.trim_end_matches(".crfs").replace("readall.crfs.", "read ");
        if self.metric == Metric::Rss {
            format!("{name} RSS")
        } else if let Some(peer) = self.peer.strip_prefix("readall.ref.").filter(|p| *p != "readat") {
            format!("{name} vs {peer}")
        } else {
            name
        }
    }
}

/// A field that may be absent or `-`.
fn optional(record: &BTreeMap<&str, &str>, name: &str) -> Option<String> {
    record.get(name).filter(|v| !v.is_empty() && **v != "-").map(|v| v.to_string())
}

impl Pairs {
    /// Reads one of those TSV files.
    pub fn parse(text: &str) -> BenchResult<Pairs> {
        let tsv = Tsv::parse(text)?;
        let mut rows = Vec::new();
        for (i, r) in tsv.records().into_iter().enumerate() {
            let line = |e: String| format!("row {}: {e}", i + 1);
            let cell = |p: &str| -> BenchResult<Cell> {
                Ok(Cell {
                    median: number(&r, &format!("{p}_median"))?,
                    min: number(&r, &format!("{p}_min"))?,
                    max: number(&r, &format!("{p}_max"))?,
                })
            };
            let field = |n: &str| r.get(n).map(|v| v.to_string()).ok_or_else(|| format!("no field {n}"));
            rows.push(PairRow {
                crfs: field("crfs").map_err(line)?,
                peer: field("peer").map_err(line)?,
                metric: Metric::parse(&field("metric").map_err(line)?).map_err(line)?,
                crfs_cell: cell("crfs").map_err(line)?,
                peer_cell: cell("peer").map_err(line)?,
                label: field("label").map_err(line)?,
                group: optional(&r, "group"),
                target: optional(&r, "target"),
                met: optional(&r, "met"),
            });
        }
        if rows.is_empty() {
            return Err("no rows".into());
        }
        Ok(Pairs { rows })
    }

    /// Peer ÷ crfs for every row, one series named `series`: above 1, crfs is faster (or
    /// smaller, or fetches less).
    pub fn bars(&self, title: &str, series: &str) -> Bars {
        let groups = self.rows.iter().map(PairRow::group).collect();
        let values = self
            .rows
            .iter()
            .map(|r| (r.crfs_cell.median > 0.0).then(|| r.peer_cell.median / r.crfs_cell.median))
            .collect();
        Bars {
            title: title.into(),
            y_label: "peer ÷ crfs (log scale)".into(),
            groups,
            series: vec![(series.into(), values)],
        }
    }

    /// One table row per row; target and met columns when any row has a target.
    pub fn markdown(&self) -> String {
        let targets = self.rows.iter().any(|r| r.target.is_some());
        let mut out = String::from("| measurement | crfs | peer | crfs ÷ peer |");
        out.push_str(if targets { " target | met |\n|---|---|---|---|---|---|\n" } else { "\n|---|---|---|---|\n" });
        for r in &self.rows {
            out.push_str(&format!(
                "| {} | {} | {} | {} |",
                r.label,
                r.metric.show(&r.crfs_cell),
                r.metric.show(&r.peer_cell),
                ratio(r.crfs_cell.median, r.peer_cell.median)
            ));
            if targets {
                let dash = || "—".to_string();
                let met = r.met.as_deref().map(|m| if m == "no" { "**no**".to_string() } else { m.to_string() });
                out.push_str(&format!(" {} | {} |", r.target.clone().unwrap_or_else(dash), met.unwrap_or_else(dash)));
            }
            out.push('\n');
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

/// A byte count: exact below 10 MiB (where a few KiB of excess matter), else in MiB, with the
/// range when the runs differ.
fn bytes(c: &Cell) -> String {
    let v = |x: f64| {
        if c.median < 10.0 * 1048576.0 { thousands(x.round() as u64) } else { format!("{:.1}", x / 1048576.0) }
    };
    let unit = if c.median < 10.0 * 1048576.0 { "bytes" } else { "MiB" };
    if c.min == c.max {
        format!("{} {unit}", v(c.median))
    } else {
        format!("{} [{}–{}] {unit}", v(c.median), v(c.min), v(c.max))
    }
}

/// `1234567` as `1,234,567`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(d);
    }
    out
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
/// The README marker the generated section ends at.
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
        let c = Pairs::parse(text).unwrap();
        let bars = c.bars("t", "s");
        assert_eq!(bars.groups, ["open", "open RSS"]);
        assert_eq!(bars.series, vec![("s".to_string(), vec![Some(2.0), Some(2.0)])]);
        let md = c.markdown();
        assert!(md.contains("| open | 0.20 s [0.10–0.30] | 0.40 s [0.40–0.50] | 0.50× |"), "{md}");
        assert!(md.contains("| rss | 43.95 [43.95–44.04] MiB | 87.89 [85.94–89.84] MiB | 0.50× |"), "{md}");
    }

    const PAIRS_HEADER: &str = "crfs\tpeer\tmetric\tcrfs_median\tcrfs_min\tcrfs_max\tpeer_median\tpeer_min\tpeer_max\tn\ttarget\tmet\tgroup\tlabel\n";

    #[test]
    fn registry_rows_with_targets_and_bytes() {
        let text = format!(
            "{PAIRS_HEADER}\
             small.crfs\tsmall.pull\twall\t0.5\t0.4\t0.9\t20\t19\t25\t3\t≤ 0.05×\tyes\tsmall file\tto a small file\n\
             small.crfs\tleast\tbytes\t409600\t409600\t409600\t327680\t327680\t327680\t3\t≤ least + 64 KiB\tno\tsmall file bytes\tbytes for it\n\
             all.crfs\tall.pull\tbytes\t235929600\t235000000\t236000000\t190840832\t190840832\t190840832\t3\t-\t-\tevery file bytes\tsent\n\
             all.crfs\tall.local\tcpu\t8\t7.5\t9\t4\t4\t4.5\t3\t-\t-\tevery file vs local CPU\tCPU\n"
        );
        let p = Pairs::parse(&text).unwrap();
        let bars = p.bars("registry", "peer");
        assert_eq!(bars.groups, ["small file", "small file bytes", "every file bytes", "every file vs local CPU"]);
        assert_eq!(bars.series[0].1, vec![Some(40.0), Some(0.8), Some(190840832.0 / 235929600.0), Some(0.5)]);
        let md = p.markdown();
        assert!(
            md.starts_with("| measurement | crfs | peer | crfs ÷ peer | target | met |\n|---|---|---|---|---|---|\n"),
            "{md}"
        );
        assert!(
            md.contains("| to a small file | 0.50 s [0.40–0.90] | 20.00 s [19.00–25.00] | 0.025× | ≤ 0.05× | yes |"),
            "{md}"
        );
        assert!(
            md.contains("| bytes for it | 409,600 bytes | 327,680 bytes | 1.25× | ≤ least + 64 KiB | **no** |"),
            "{md}"
        );
        assert_eq!(thousands(2451872), "2,451,872");
        assert_eq!(thousands(999), "999");
        assert!(md.contains("| sent | 225.0 [224.1–225.1] MiB | 182.0 MiB | 1.24× | — | — |"), "{md}");
        assert!(md.contains("| CPU | 8.00 s [7.50–9.00] | 4.00 s [4.00–4.50] | 2.00× | — | — |"), "{md}");
    }

    #[test]
    fn convert_and_nfs_rows() {
        let convert = format!(
            "{PAIRS_HEADER}\
             crfs:9\tgo-1:9\tcpu\t22.26\t21.94\t23.07\t94.07\t94.07\t94.86\t3\t-\t-\tL9 CPU vs go-1\tlevel 9 CPU\n\
             crfs:9\tgo-1:9\trss\t163560\t149192\t172168\t233468\t227712\t241436\t3\t-\t-\tL9 RSS vs go-1\tlevel 9 RSS\n"
        );
        let c = Pairs::parse(&convert).unwrap();
        assert_eq!(c.bars("c", "Go").groups, ["L9 CPU vs go-1", "L9 RSS vs go-1"]);
        let md = c.markdown();
        // No row has a target: no target columns.
        assert!(md.starts_with("| measurement | crfs | peer | crfs ÷ peer |\n|---|---|---|---|\n"), "{md}");
        assert!(md.contains("| level 9 CPU | 22.26 s [21.94–23.07] | 94.07 s [94.07–94.86] | 0.24× |"), "{md}");
        assert!(md.contains("| level 9 RSS | 160 [146–168] MiB | 228 [222–236] MiB | 0.70× |"), "{md}");
        let nfs = format!(
            "{PAIRS_HEADER}nfs-pipelined\tfuse-tar\twall\t5.16\t5.13\t6.38\t8.45\t5.46\t8.8\t3\t≤ 2×\tyes\tpipelined vs 1 reader\tNFS vs FUSE\n"
        );
        let n = Pairs::parse(&nfs).unwrap();
        let v = n.bars("n", "FUSE").series[0].1[0].unwrap();
        assert!((v - 8.45 / 5.16).abs() < 1e-9, "{v}");
        assert!(
            n.markdown().contains("| NFS vs FUSE | 5.16 s [5.13–6.38] | 8.45 s [5.46–8.80] | 0.61× | ≤ 2× | yes |")
        );
    }

    #[test]
    fn bad_pairs_are_refused() {
        let row = |metric: &str, median: &str| {
            format!("{PAIRS_HEADER}a\tb\t{metric}\t{median}\t1\t1\t1\t1\t1\t3\t-\t-\tg\tl\n")
        };
        assert!(Pairs::parse(&row("wall", "1")).is_ok());
        let e = Pairs::parse(&row("joules", "1")).unwrap_err();
        assert!(e.contains("row 1") && e.contains("joules"), "{e}");
        let e = Pairs::parse(&row("wall", "fast")).unwrap_err();
        assert!(e.contains("crfs_median"), "{e}");
        assert!(Pairs::parse(PAIRS_HEADER).unwrap_err().contains("no rows"));
        let no_label = "crfs\tpeer\tmetric\tcrfs_median\tcrfs_min\tcrfs_max\tpeer_median\tpeer_min\tpeer_max\n\
            a\tb\twall\t1\t1\t1\t1\t1\t1\n";
        assert!(Pairs::parse(no_label).unwrap_err().contains("label"));
        // A row with a field missing is refused by the TSV reader.
        assert!(Pairs::parse(&format!("{PAIRS_HEADER}a\tb\twall\n")).is_err());
    }

    /// The results the scripts last wrote into benches/results all parse.
    #[test]
    fn committed_results_parse() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("results");
        for name in ["core", "convert", "nfs", "registry", "podman"] {
            let text = std::fs::read_to_string(dir.join(format!("{name}.tsv"))).unwrap();
            let p = Pairs::parse(&text).unwrap_or_else(|e| panic!("{name}.tsv: {e}"));
            assert!(p.bars(name, name).series[0].1.iter().all(|v| v.is_some_and(|v| v > 0.0)), "{name}.tsv");
        }
        let fuse = std::fs::read_to_string(dir.join("fuse.tsv")).unwrap();
        assert!(Fuse::parse(&fuse).unwrap().runs().is_some());
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
