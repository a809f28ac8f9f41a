//! Self-contained HTML reports: the history checker's pages
//! ([`concord_check::report`], all re-exported here) and
//! [`timeline_page`], one simulated run (`concord-sim replay --html`):
//! one lane per node (role and term over time, crashes, pauses, commit
//! indices), one for the network (partitions), one per client (its
//! operations), and the failure, if any, as a red line across all lanes.

use std::collections::BTreeMap;
use std::fmt::Write as _;

pub use concord_check::report::*;

use crate::engine::{format_time, RunReport};
use crate::history::{Operation, Outcome};

/// Parses `"becomes Leader in term 3"` into (role, term).
fn parse_role(text: &str) -> Option<(&str, &str)> {
    let rest = text.strip_prefix("becomes ")?;
    let (role, term) = rest.split_once(" in term ")?;
    Some((role, term))
}

/// The timeline of one simulated run (recorded with
/// `SimConfig::timeline` on) and its client history.
pub fn timeline_page(report: &RunReport, history: &[Operation]) -> String {
    let nodes = report.config.nodes;
    let end = report
        .timeline
        .iter()
        .map(|e| e.time_ns)
        .chain(history.iter().map(|o| o.ret.unwrap_or(o.call)))
        .max()
        .unwrap_or(0)
        .max(report.simulated_ns)
        .max(1);
    let mut clients: Vec<u64> = history.iter().map(|o| o.client).collect();
    clients.sort_unstable();
    clients.dedup();
    let mut lanes: Vec<(String, &'static str)> = (1..=nodes)
        .map(|n| (format!("node n{n}"), "node"))
        .collect();
    let network_lane = lanes.len();
    lanes.push(("network".to_string(), "network"));
    let client_lane: BTreeMap<u64, usize> = clients
        .iter()
        .enumerate()
        .map(|(i, &c)| (c, network_lane + 1 + i))
        .collect();
    for c in &clients {
        lanes.push((format!("client {c}"), "client"));
    }
    let mut bars = Vec::new();
    let mut marks = Vec::new();
    for n in 1..=nodes as u64 {
        let lane = (n - 1) as usize;
        let mut role: Option<(u64, String, String)> = None; // start, role, term
        let mut down: Option<u64> = None;
        let mut paused: Option<u64> = None;
        let mut last_commit: Option<u64> = None;
        let close_role =
            |bars: &mut Vec<Bar>, role: &mut Option<(u64, String, String)>, at: u64| {
                if let Some((start, r, term)) = role.take() {
                    bars.push(Bar {
                        lane,
                        start,
                        end: Some(at),
                        class: format!("role role-{}", r.to_lowercase()),
                        label: format!("{} t{term}", r.chars().next().unwrap_or('?')),
                        title: format!("n{n} {r} in term {term} from {}", format_time(start)),
                        overlay: false,
                    });
                }
            };
        for e in report.timeline.iter().filter(|e| e.node == Some(n)) {
            let at = e.time_ns;
            if let Some((r, term)) = parse_role(&e.text) {
                close_role(&mut bars, &mut role, at);
                role = Some((at, r.to_string(), term.to_string()));
            } else if e.text.starts_with("CRASH") {
                close_role(&mut bars, &mut role, at);
                down = Some(at);
            } else if e.text == "restart" {
                if let Some(start) = down.take() {
                    bars.push(Bar {
                        lane,
                        start,
                        end: Some(at),
                        class: "crashed".to_string(),
                        label: "down".to_string(),
                        title: format!(
                            "n{n} crashed at {}, restarted at {}",
                            format_time(start),
                            format_time(at)
                        ),
                        overlay: false,
                    });
                }
                role = Some((at, "Follower".to_string(), "?".to_string()));
            } else if e.text == "paused" {
                paused = Some(at);
            } else if e.text.starts_with("resumed") {
                if let Some(start) = paused.take() {
                    bars.push(Bar {
                        lane,
                        start,
                        end: Some(at),
                        class: "paused".to_string(),
                        label: String::new(),
                        title: format!(
                            "n{n} paused from {} to {}",
                            format_time(start),
                            format_time(at)
                        ),
                        overlay: true,
                    });
                }
            } else if let Some(index) = e.text.strip_prefix("commit index ") {
                // At most one tick per ~2 px, so the roles stay visible.
                if last_commit.is_some_and(|t| at - t < end / 600) {
                    continue;
                }
                last_commit = Some(at);
                marks.push(Mark {
                    lane: Some(lane),
                    at,
                    class: "commit",
                    title: format!("n{n} commit index {index} at {}", format_time(at)),
                });
            }
        }
        close_role(&mut bars, &mut role, end);
        if let Some(start) = down {
            bars.push(Bar {
                lane,
                start,
                end: None,
                class: "crashed".to_string(),
                label: "down".to_string(),
                title: format!("n{n} crashed at {}", format_time(start)),
                overlay: false,
            });
        }
        if let Some(start) = paused {
            bars.push(Bar {
                lane,
                start,
                end: None,
                class: "paused".to_string(),
                label: String::new(),
                title: format!("n{n} paused from {}", format_time(start)),
                overlay: true,
            });
        }
    }
    // Network: a partition lasts until the next network event.
    let partition_bar = |open: Option<(u64, String)>, end: u64| {
        open.map(|(start, text)| Bar {
            lane: network_lane,
            start,
            end: Some(end),
            class: "partition".to_string(),
            title: format!("{} – {}: {text}", format_time(start), format_time(end)),
            label: text,
            overlay: false,
        })
    };
    let mut open: Option<(u64, String)> = None;
    let mut failures = Vec::new();
    for e in report.timeline.iter().filter(|e| e.node.is_none()) {
        if let Some(what) = e.text.strip_prefix("network: ") {
            if let Some(bar) = partition_bar(open.take(), e.time_ns) {
                bars.push(bar);
            }
            open = Some((e.time_ns, what.to_string()));
        } else if e.text == "network healed" {
            if let Some(bar) = partition_bar(open.take(), e.time_ns) {
                bars.push(bar);
            }
        } else if let Some(what) = e.text.strip_prefix("FAILURE ") {
            failures.push(what.to_string());
            marks.push(Mark {
                lane: None,
                at: e.time_ns,
                class: "failure",
                title: format!("FAILURE at {}: {what}", format_time(e.time_ns)),
            });
        }
    }
    if let Some((start, text)) = open {
        bars.push(Bar {
            lane: network_lane,
            start,
            end: None,
            class: "partition".to_string(),
            label: text.clone(),
            title: format!("from {}: {text}", format_time(start)),
            overlay: false,
        });
    }
    for o in history {
        let class = match o.outcome {
            Outcome::Ok(_) => "op ok",
            Outcome::Failed => "op failed",
            Outcome::Unknown => "op unknown",
        };
        bars.push(Bar {
            lane: client_lane[&o.client],
            start: o.call,
            end: match o.outcome {
                Outcome::Unknown => None,
                _ => Some(o.ret.unwrap_or(o.call)),
            },
            class: class.to_string(),
            label: o.op.name().to_string(),
            title: format!(
                "{o} (called {}{})",
                format_time(o.call),
                o.ret
                    .map_or(String::new(), |r| format!(", returned {}", format_time(r)))
            ),
            overlay: false,
        });
    }
    if let Some(f) = &report.failure {
        if failures.is_empty() {
            failures.push(f.to_string());
        }
    }
    let chart = Chart {
        id: "timeline",
        lanes,
        lo: 0,
        hi: end,
        bars,
        marks,
        time_label: format_time,
    };
    let mut body = String::new();
    let seed = report.config.seed;
    match &report.failure {
        Some(f) => {
            let _ = write!(
                body,
                "<h1 class=\"verdict-bad\">seed {seed}: FAILED</h1>\n<p id=\"failure\">{}</p>\n",
                escape(&f.to_string())
            );
        }
        None => {
            let _ = writeln!(body, "<h1 class=\"verdict-good\">seed {seed}: passed</h1>");
        }
    }
    let _ = writeln!(
        body,
        "<p>{} nodes, simulated {}, {} client operations ({} ok), committed index {}, trace hash {:016x}. Faults enabled: {}.</p>",
        nodes,
        format_time(report.simulated_ns),
        report.operations,
        report.operations_ok,
        report.committed,
        report.trace_hash,
        escape(&report.plan.enabled().to_string())
    );
    body.push_str(r#"<p class="legend"><span><i class="swatch" style="background:#6fbf73"></i>leader</span><span><i class="swatch" style="background:#f7d79a"></i>candidate</span><span><i class="swatch" style="background:#f7efc4"></i>pre-candidate</span><span><i class="swatch" style="background:#cfe3f7"></i>follower</span><span><i class="swatch" style="background:#555"></i>crashed</span><span><i class="swatch" style="background:#ccc"></i>paused (hatched)</span><span><i class="swatch" style="background:#f3c0c0"></i>partition</span><span>blue ticks under a node: its commit index advances; red line: the failure; client bars: green ok, hatched failed, beige unknown</span></p>"#);
    body.push('\n');
    body.push_str(&chart.render());
    if !report.plan.events.is_empty() {
        body.push_str("<h2>Fault schedule</h2>\n<pre>");
        for event in &report.plan.events {
            let _ = writeln!(
                body,
                "{:>12}  {}",
                format_time(event.at_ns),
                escape(&event.fault.to_string())
            );
        }
        body.push_str("</pre>\n");
    }
    page(&format!("concord-sim seed {seed}"), &body)
}
