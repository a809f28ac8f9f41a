//! The orders experiment: latency of `place_order` versus cluster size,
//! as a table and an SVG plot. Running the clusters is the benchmark's
//! job (`cargo bench -p concord-bench --bench orders_latency`); this module
//! holds the statistics and the rendering, so they can be tested.

use std::fmt::Write as _;
use std::time::Duration;

/// One line of the plot: its name, colour and the figure it draws.
type Series = (&'static str, &'static str, fn(&SizeResult) -> f64);

/// Latency figures of one run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stats {
    /// Operations measured.
    pub count: usize,
    /// Median, milliseconds.
    pub p50_ms: f64,
    /// 99th percentile, milliseconds.
    pub p99_ms: f64,
    /// Mean, milliseconds.
    pub mean_ms: f64,
}

/// Nearest-rank percentile of sorted samples (`percent` in 0..=100).
fn percentile(sorted: &[Duration], percent: usize) -> Duration {
    debug_assert!(!sorted.is_empty() && percent <= 100);
    // Nearest rank: the smallest sample with at least `percent` % of the
    // samples at or below it.
    let rank = (percent * sorted.len()).div_ceil(100).max(1);
    sorted[rank - 1]
}

impl Stats {
    /// Figures of `samples`; `None` when there are none.
    pub fn of(samples: &[Duration]) -> Option<Stats> {
        if samples.is_empty() {
            return None;
        }
        let mut sorted = samples.to_vec();
        sorted.sort_unstable();
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let total: f64 = sorted.iter().map(|d| ms(*d)).sum();
        Some(Stats {
            count: sorted.len(),
            p50_ms: ms(percentile(&sorted, 50)),
            p99_ms: ms(percentile(&sorted, 99)),
            mean_ms: total / sorted.len() as f64,
        })
    }
}

/// Every run of one cluster size.
#[derive(Clone, Debug, PartialEq)]
pub struct SizeResult {
    /// Servers in the cluster.
    pub servers: usize,
    /// One entry per run.
    pub runs: Vec<Stats>,
}

impl SizeResult {
    /// The mean over runs of each figure (p50, p99, mean).
    pub fn averages(&self) -> (f64, f64, f64) {
        let n = self.runs.len().max(1) as f64;
        let sum = |f: fn(&Stats) -> f64| self.runs.iter().map(f).sum::<f64>() / n;
        (sum(|s| s.p50_ms), sum(|s| s.p99_ms), sum(|s| s.mean_ms))
    }
}

/// The results as a Markdown table: one row per run, and per size the
/// average over runs.
pub fn table(results: &[SizeResult], clients: usize, orders_per_client: usize) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "place_order latency, {clients} client threads x {orders_per_client} orders, fsync on, one machine\n"
    );
    let _ = writeln!(
        out,
        "| servers | run | orders | p50 ms | p99 ms | mean ms |"
    );
    let _ = writeln!(out, "| ---: | ---: | ---: | ---: | ---: | ---: |");
    for result in results {
        for (run, stats) in result.runs.iter().enumerate() {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {:.2} | {:.2} | {:.2} |",
                result.servers,
                run + 1,
                stats.count,
                stats.p50_ms,
                stats.p99_ms,
                stats.mean_ms
            );
        }
        let (p50, p99, mean) = result.averages();
        let _ = writeln!(
            out,
            "| **{}** | **avg** | | **{p50:.2}** | **{p99:.2}** | **{mean:.2}** |",
            result.servers
        );
    }
    out
}

/// The averages as an SVG line plot: latency (ms) against servers, one
/// line each for p50, mean and p99.
pub fn svg(results: &[SizeResult]) -> String {
    const WIDTH: f64 = 640.0;
    const HEIGHT: f64 = 400.0;
    const LEFT: f64 = 70.0;
    const RIGHT: f64 = 150.0;
    const TOP: f64 = 40.0;
    const BOTTOM: f64 = 60.0;
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let max_servers = results.iter().map(|r| r.servers).max().unwrap_or(1).max(2) as f64;
    let max_ms = results
        .iter()
        .map(|r| r.averages().1)
        .fold(0.0f64, f64::max)
        .max(0.001)
        * 1.1;
    let x = |servers: f64| LEFT + (servers - 1.0) / (max_servers - 1.0) * plot_w;
    let y = |ms: f64| TOP + plot_h - ms / max_ms * plot_h;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        out,
        r#"<text x="{}" y="20" text-anchor="middle" font-size="14">orders: place_order latency vs cluster size</text>"#,
        LEFT + plot_w / 2.0
    );
    // Axes, ticks and labels.
    let _ = writeln!(
        out,
        r#"<path d="M{LEFT},{TOP} V{} H{}" stroke="black" fill="none"/>"#,
        TOP + plot_h,
        LEFT + plot_w
    );
    for result in results {
        let px = x(result.servers as f64);
        let _ = writeln!(
            out,
            r#"<text x="{px:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            TOP + plot_h + 18.0,
            result.servers
        );
    }
    for step in 0..=4 {
        let ms = max_ms * step as f64 / 4.0;
        let py = y(ms);
        let _ = writeln!(
            out,
            r##"<line x1="{LEFT}" x2="{:.1}" y1="{py:.1}" y2="{py:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{ms:.1}</text>"##,
            LEFT + plot_w,
            LEFT - 6.0,
            py + 4.0
        );
    }
    let _ = writeln!(
        out,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">servers</text>"#,
        LEFT + plot_w / 2.0,
        HEIGHT - 15.0
    );
    let _ = writeln!(
        out,
        r#"<text x="18" y="{:.1}" text-anchor="middle" transform="rotate(-90 18 {:.1})">latency (ms)</text>"#,
        TOP + plot_h / 2.0,
        TOP + plot_h / 2.0
    );
    let series: [Series; 3] = [
        ("p50", "#1f77b4", |r| r.averages().0),
        ("mean", "#2ca02c", |r| r.averages().2),
        ("p99", "#d62728", |r| r.averages().1),
    ];
    for (i, (name, color, value)) in series.iter().enumerate() {
        let points: Vec<String> = results
            .iter()
            .map(|r| format!("{:.1},{:.1}", x(r.servers as f64), y(value(r))))
            .collect();
        let _ = writeln!(
            out,
            r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2"/>"#,
            points.join(" ")
        );
        for point in &points {
            let (px, py) = point.split_once(',').unwrap_or(("0", "0"));
            let _ = writeln!(out, r#"<circle cx="{px}" cy="{py}" r="3" fill="{color}"/>"#);
        }
        let ly = TOP + 20.0 * i as f64;
        let lx = LEFT + plot_w + 20.0;
        let _ = writeln!(
            out,
            r#"<line x1="{lx}" x2="{}" y1="{ly}" y2="{ly}" stroke="{color}" stroke-width="2"/><text x="{}" y="{}">{name}</text>"#,
            lx + 20.0,
            lx + 26.0,
            ly + 4.0
        );
    }
    let _ = writeln!(out, "</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let stats = Stats::of(&samples).unwrap();
        assert_eq!(stats.count, 100);
        assert!((stats.p50_ms - 50.0).abs() < 1e-9);
        assert!((stats.p99_ms - 99.0).abs() < 1e-9);
        assert!((stats.mean_ms - 50.5).abs() < 1e-9);
        assert_eq!(Stats::of(&[]), None);
        let one = Stats::of(&[Duration::from_millis(7)]).unwrap();
        assert!((one.p99_ms - 7.0).abs() < 1e-9 && (one.p50_ms - 7.0).abs() < 1e-9);
    }

    #[test]
    fn table_and_plot_show_every_size() {
        let run = |ms: u64| Stats::of(&[Duration::from_millis(ms)]).unwrap();
        let results = vec![
            SizeResult {
                servers: 1,
                runs: vec![run(1), run(3)],
            },
            SizeResult {
                servers: 3,
                runs: vec![run(4)],
            },
        ];
        assert_eq!(results[0].averages(), (2.0, 2.0, 2.0));
        let table = table(&results, 4, 10);
        assert!(
            table.contains("| **1** | **avg** | | **2.00** |"),
            "{table}"
        );
        assert_eq!(table.matches("\n| 1 |").count(), 2);
        let svg = svg(&results);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 3);
    }
}
