//! Grouped bar charts as PNG, drawn with plotters' bitmap backend (no external tool).
//!
//! Text is rendered by plotters' `ab_glyph` feature from a TrueType file read at run time
//! (default: Debian's fonts-dejavu-core `DejaVuSans.ttf`), so no system font library is linked.

use std::path::Path;

use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::BenchResult;
use crate::report::Bars;

/// Where Debian's fonts-dejavu-core puts its sans-serif face.
pub const DEFAULT_FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

/// The family name charts ask plotters for; [`register_font`] binds it to a file.
const FAMILY: &str = "sans-serif";

/// Loads `path` as the charts' font. The bytes live for the rest of the process (plotters
/// keeps fonts in a global registry that wants `'static` data); call it once.
pub fn register_font(path: &Path) -> BenchResult<()> {
    let bytes = std::fs::read(path).map_err(|e| format!("font {}: {e}", path.display()))?;
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    plotters::style::register_font(FAMILY, FontStyle::Normal, bytes)
        .map_err(|_| format!("font {}: not a TrueType/OpenType font", path.display()))
}

const COLORS: [RGBColor; 5] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
];

/// Draws `bars` as a PNG of `size` pixels at `out`: a log-scale y axis, a line at 1 (parity
/// with crfs), each bar labelled with its value.
pub fn draw(bars: &Bars, out: &Path, size: (u32, u32)) -> BenchResult<()> {
    let values: Vec<f64> =
        bars.series.iter().flat_map(|(_, v)| v.iter().flatten().copied()).filter(|v| *v > 0.0).collect();
    if values.is_empty() || bars.groups.is_empty() {
        return Err(format!("{}: nothing to draw", out.display()));
    }
    let lo = values.iter().copied().fold(1.0f64, f64::min) / 2.0;
    // Headroom above the tallest bar for its label and the legend box.
    let hi = values.iter().copied().fold(1.0f64, f64::max) * 12.0;
    let n = bars.groups.len();
    let err = |e: DrawingAreaErrorKind<_>| format!("{}: {e}", out.display());

    let root = BitMapBackend::new(out, size).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    // Group i is centred on x = i, so the mesh's integer ticks fall under the groups.
    let mut chart = ChartBuilder::on(&root)
        .caption(&bars.title, (FAMILY, 22))
        .margin(16)
        .x_label_area_size(70)
        .y_label_area_size(70)
        .build_cartesian_2d(-0.5f64..n as f64 - 0.5, (lo..hi).log_scale())
        .map_err(err)?;
    let groups = bars.groups.clone();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .y_max_light_lines(1)
        .x_labels(n)
        .x_label_formatter(&|x| {
            let i = x.round();
            let label = (i >= 0.0 && (x - i).abs() < 1e-6).then(|| groups.get(i as usize)).flatten();
            label.cloned().unwrap_or_default()
        })
        .x_label_style((FAMILY, 14))
        .y_label_style((FAMILY, 14))
        .y_desc(&bars.y_label)
        .y_label_formatter(&|y| if *y >= 1.0 { format!("{y:.0}×") } else { format!("{y:.2}×") })
        .draw()
        .map_err(err)?;
    chart
        .draw_series(std::iter::once(PathElement::new(vec![(-0.5, 1.0), (n as f64 - 0.5, 1.0)], BLACK.stroke_width(2))))
        .map_err(err)?
        .label("crfs (= 1)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.stroke_width(2)));

    let k = bars.series.len() as f64;
    let width = 0.8 / k;
    for (s, (name, values)) in bars.series.iter().enumerate() {
        let color = COLORS[s % COLORS.len()];
        let left = |g: usize| g as f64 - 0.4 + s as f64 * width;
        let rects = values.iter().enumerate().filter_map(|(g, v)| {
            v.filter(|v| *v > 0.0).map(|v| Rectangle::new([(left(g), lo), (left(g) + width * 0.92, v)], color.filled()))
        });
        chart
            .draw_series(rects)
            .map_err(err)?
            .label(name.as_str())
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 16, y + 6)], color.filled()));
        let labels = values.iter().enumerate().filter_map(|(g, v)| {
            v.filter(|v| *v > 0.0).map(|v| {
                let text = if v >= 10.0 { format!("{v:.0}") } else { format!("{v:.1}") };
                Text::new(text, (left(g) + width * 0.1, v * 1.15), (FAMILY, 12).into_font())
            })
        });
        chart.draw_series(labels).map_err(err)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font((FAMILY, 14))
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// PNG width and height from the IHDR chunk.
    fn png_size(bytes: &[u8]) -> Option<(u32, u32)> {
        if bytes.len() < 24 || &bytes[..8] != b"\x89PNG\r\n\x1a\n" || &bytes[12..16] != b"IHDR" {
            return None;
        }
        let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        Some((be(&bytes[16..20]), be(&bytes[20..24])))
    }

    #[test]
    fn draws_a_png() {
        let font = Path::new(DEFAULT_FONT);
        if !font.exists() {
            assert!(!crfs_testkit::in_ci(), "{DEFAULT_FONT} missing (apt-get install fonts-dejavu-core)");
            eprintln!("skipping: {DEFAULT_FONT} missing");
            return;
        }
        register_font(font).unwrap();
        let bars = Bars {
            title: "test".into(),
            y_label: "ratio".into(),
            groups: vec!["find cold".into(), "find warm".into(), "ls -lR cold".into()],
            series: vec![
                ("a".into(), vec![Some(2.0), Some(0.5), None]),
                ("b".into(), vec![Some(30.0), Some(1.0), Some(4.0)]),
            ],
        };
        let dir = std::env::temp_dir().join(format!("crfs-chart-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("chart.png");
        draw(&bars, &out, (800, 400)).unwrap();
        let bytes = std::fs::read(&out).unwrap();
        assert_eq!(png_size(&bytes), Some((800, 400)));
        // Not a blank image: a chart of bars and text compresses to more than a white page.
        assert!(bytes.len() > 5_000, "{} bytes", bytes.len());
        let empty = Bars { series: vec![("a".into(), vec![None, None, None])], ..bars };
        assert!(draw(&empty, &out, (800, 400)).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
