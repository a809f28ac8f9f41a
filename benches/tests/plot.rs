//! The SVG line chart of `concord_bench::plot`: where it puts points.

use concord_bench::plot::{
    line_chart, nice_ceiling, Series, BOTTOM, HEIGHT, LEFT, RIGHT, TOP, WIDTH,
};

fn points_of(svg: &str, n: usize) -> Vec<(f64, f64)> {
    let line = svg
        .lines()
        .filter(|l| l.starts_with("<polyline"))
        .nth(n)
        .expect("a polyline");
    let points = line
        .split("points=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    points
        .split_whitespace()
        .map(|p| {
            let (x, y) = p.split_once(',').unwrap();
            (x.parse().unwrap(), y.parse().unwrap())
        })
        .collect()
}

#[test]
fn every_series_is_a_line_inside_the_plot_area_and_gaps_are_skipped() {
    let labels: Vec<String> = ["1", "16", "64"].iter().map(|s| s.to_string()).collect();
    let series = [
        Series {
            name: "a<b".to_string(),
            values: vec![Some(10.0), Some(40.0), Some(95.0)],
        },
        Series {
            name: "c".to_string(),
            values: vec![Some(0.0), None, Some(20.0)],
        },
    ];
    let svg = line_chart("t", "x", "y", &labels, &series);
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    assert_eq!(svg.matches("<polyline").count(), 2);
    assert!(svg.contains("a&lt;b"), "legend text is escaped");
    let a = points_of(&svg, 0);
    assert_eq!(a.len(), 3);
    // The y axis runs to 100 (the rounded maximum, 95 -> 100): 95 is
    // near the top, 10 near the bottom, and x grows left to right.
    let (top, bottom) = (TOP, HEIGHT - BOTTOM);
    for &(x, y) in &a {
        assert!((LEFT..=WIDTH - RIGHT).contains(&x) && (top..=bottom).contains(&y));
    }
    assert!(a[0].0 < a[1].0 && a[1].0 < a[2].0);
    assert!(
        a[2].1 < a[1].1 && a[1].1 < a[0].1,
        "higher values are drawn higher"
    );
    assert!((a[2].1 - (top + (bottom - top) * 0.05)).abs() < 0.1);
    let c = points_of(&svg, 1);
    assert_eq!(c.len(), 2, "the missing cell leaves a gap");
    assert!((c[0].1 - bottom).abs() < 0.1, "zero sits on the x axis");
}

#[test]
fn the_y_axis_ends_at_one_two_or_five_times_a_power_of_ten() {
    assert_eq!(nice_ceiling(95.0), 100.0);
    assert_eq!(nice_ceiling(101.0), 200.0);
    assert_eq!(nice_ceiling(0.3), 0.5);
    assert_eq!(nice_ceiling(0.0), 1.0);
    assert_eq!(nice_ceiling(5000.0), 5000.0);
}
