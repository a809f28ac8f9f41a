//! A small line chart written as SVG, for benchmark results: one line per
//! series over a shared set of x categories (client counts, say). Written
//! by hand rather than with a plotting crate: a benchmark's figure needs
//! only axes, lines, points and a legend. `peers/vs_etcd.rs` includes
//! this file by `#[path]`, so it depends on nothing.
#![allow(dead_code)]

use std::fmt::Write as _;
use std::path::PathBuf;

/// Where a benchmark writes its CSV and plots: `CONCORD_BENCH_OUT`, or
/// `target/bench-results/` of the workspace (every crate that includes
/// this file sits one level below the workspace root).
pub fn results_dir() -> PathBuf {
    std::env::var_os("CONCORD_BENCH_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join("target")
                .join("bench-results")
        })
}

/// Writes `files` (name, contents) into [`results_dir`], creating it;
/// returns the directory.
pub fn write_results(files: &[(&str, String)]) -> std::io::Result<PathBuf> {
    let dir = results_dir();
    std::fs::create_dir_all(&dir)?;
    for (name, contents) in files {
        std::fs::write(dir.join(name), contents)?;
    }
    Ok(dir.canonicalize().unwrap_or(dir))
}

/// One line of a chart.
pub struct Series {
    /// Legend text.
    pub name: String,
    /// One value per x category; `None` leaves a gap (a cell not measured).
    pub values: Vec<Option<f64>>,
}

/// Width of the image, in pixels.
pub const WIDTH: f64 = 640.0;
/// Height of the image, in pixels.
pub const HEIGHT: f64 = 400.0;
/// Margin left of the plot area (y labels), in pixels.
pub const LEFT: f64 = 80.0;
/// Margin right of the plot area (the legend), in pixels.
pub const RIGHT: f64 = 150.0;
/// Margin above the plot area (the title), in pixels.
pub const TOP: f64 = 40.0;
/// Margin below the plot area (x labels), in pixels.
pub const BOTTOM: f64 = 60.0;
const COLOURS: [&str; 6] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
];

/// An SVG line chart: `x_labels` evenly spaced on the x axis, y from 0 to
/// a rounded maximum of the values.
pub fn line_chart(
    title: &str,
    x_title: &str,
    y_title: &str,
    x_labels: &[String],
    series: &[Series],
) -> String {
    let y_max = nice_ceiling(
        series
            .iter()
            .flat_map(|s| s.values.iter().flatten())
            .fold(0.0_f64, |a, &b| a.max(b)),
    );
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let x_at = |i: usize| {
        if x_labels.len() <= 1 {
            LEFT + plot_w / 2.0
        } else {
            LEFT + plot_w * i as f64 / (x_labels.len() - 1) as f64
        }
    };
    let y_at = |v: f64| TOP + plot_h * (1.0 - v / y_max);
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        out,
        r#"<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/><text x="{}" y="22" text-anchor="middle" font-size="14">{}</text>"#,
        WIDTH / 2.0,
        escape(title)
    );
    // Axes, y grid with five steps, x ticks.
    let _ = writeln!(
        out,
        r#"<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{}" stroke="black"/><line x1="{LEFT}" y1="{0}" x2="{1}" y2="{0}" stroke="black"/>"#,
        TOP + plot_h,
        LEFT + plot_w
    );
    for step in 0..=5 {
        let v = y_max * step as f64 / 5.0;
        let y = y_at(v);
        let _ = writeln!(
            out,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT + plot_w,
            LEFT - 6.0,
            y + 4.0,
            short(v)
        );
    }
    for (i, label) in x_labels.iter().enumerate() {
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            x_at(i),
            TOP + plot_h + 18.0,
            escape(label)
        );
    }
    let _ = writeln!(
        out,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
        LEFT + plot_w / 2.0,
        HEIGHT - 16.0,
        escape(x_title)
    );
    let _ = writeln!(
        out,
        r#"<text x="18" y="{0:.1}" text-anchor="middle" transform="rotate(-90 18 {0:.1})">{1}</text>"#,
        TOP + plot_h / 2.0,
        escape(y_title)
    );
    for (n, s) in series.iter().enumerate() {
        let colour = COLOURS[n % COLOURS.len()];
        let points: Vec<String> = s
            .values
            .iter()
            .enumerate()
            .filter_map(|(i, v)| v.map(|v| format!("{:.1},{:.1}", x_at(i), y_at(v))))
            .collect();
        let _ = writeln!(
            out,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{}"/>"#,
            points.join(" ")
        );
        for p in &points {
            let (x, y) = p.split_once(',').unwrap_or(("0", "0"));
            let _ = writeln!(out, r#"<circle cx="{x}" cy="{y}" r="3" fill="{colour}"/>"#);
        }
        let ly = TOP + 10.0 + 20.0 * n as f64;
        let lx = LEFT + plot_w + 14.0;
        let _ = writeln!(
            out,
            r#"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="{colour}" stroke-width="2"/><text x="{}" y="{}">{}</text>"#,
            lx + 20.0,
            lx + 26.0,
            ly + 4.0,
            escape(&s.name)
        );
    }
    let _ = writeln!(out, "</svg>");
    out
}

/// 1, 2 or 5 times a power of ten, at least `v` (1 when `v` is 0): the
/// top of the y axis.
pub fn nice_ceiling(v: f64) -> f64 {
    if v <= 0.0 || !v.is_finite() {
        return 1.0;
    }
    let base = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * base)
        .find(|&c| c >= v)
        .unwrap_or(10.0 * base)
}

/// A tick label: 12k, 1.5M, 0.25.
fn short(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if v >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else if v >= 10.0 || v == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
