//! Self-contained HTML reports: one file each, inline CSS and SVG, no
//! scripts, nothing fetched from the network.
//!
//! * [`check_page`]: a non-linearizable history. The explanation (the
//!   shrunk sub-history) one labelled row per operation on an ordinal time
//!   axis ([`explanation_svg`]), and below it the failing key's latest
//!   operations before the stuck return on a real time axis, one lane per
//!   client. Operations that returned before the stuck one form the
//!   longest prefix the checker could linearize (green); the operation that
//!   cannot be placed is red; operations still pending then are grey,
//!   unknown outcomes run to the right edge, failed ones are hatched.
//! * [`verdict_page`]: any other verdict, with the per-key statistics.
//! * [`model_page`]: any verdict of a check against a model.
//! * [`Chart`] and [`page`]: the pieces the pages are drawn with, for a
//!   host's own pages (the simulator's timeline of a run,
//!   `concord-sim replay --html`, is drawn with them).
//!
//! Every drawn element carries a `class` naming what it is (`lane`,
//! `op`, `stuck`, `prefix`, `role-leader`, `crashed`, `failure`, ...) and a
//! `<title>` tooltip with its details, so the pages can be read by tools
//! as well as people.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::history::{Operation, Outcome};
use crate::linearizability::{Failure, Report};

/// Operations of the failing key drawn as context below the explanation
/// (the latest ones called before the stuck return).
pub const CONTEXT_OPS_MAX: usize = 200;

/// Escapes text for HTML element content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = r#"
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #222; }
h1 { font-size: 20px; margin: 0 0 8px; }
h2 { font-size: 16px; margin: 24px 0 6px; }
.verdict-bad { color: #b00020; }
.verdict-good { color: #1b7f3b; }
.verdict-unknown { color: #a15c00; }
pre { background: #f6f6f6; padding: 8px; overflow-x: auto; font-size: 12px; }
table { border-collapse: collapse; font-size: 13px; }
td, th { border: 1px solid #ddd; padding: 2px 8px; text-align: right; }
td:first-child, th:first-child { text-align: left; }
.legend span { display: inline-block; margin-right: 14px; }
.swatch { display: inline-block; width: 14px; height: 10px; margin-right: 4px; vertical-align: middle; border: 1px solid #555; }
svg { background: #fff; border: 1px solid #ddd; max-width: 100%; height: auto; }
svg text { font: 11px system-ui, sans-serif; }
svg .lane-label { font-weight: 600; }
svg .axis { stroke: #999; }
svg .grid { stroke: #eee; }
svg .lane-bg { fill: #fafafa; }
svg .op rect { stroke: #333; stroke-width: 0.6; }
svg .prefix rect { fill: #9ed9a8; }
svg .pending rect { fill: #d0d0d0; }
svg .unknown rect { fill: #e8e0c8; stroke-dasharray: 3 2; }
svg .failed rect { fill: url(#hatch); }
svg .stuck rect { fill: #e53935; stroke: #7f0000; stroke-width: 2; }
svg .in-explanation rect { stroke: #000; stroke-width: 2; }
svg .role-follower { fill: #cfe3f7; }
svg .role-precandidate { fill: #f7efc4; }
svg .role-candidate { fill: #f7d79a; }
svg .role-leader { fill: #6fbf73; }
svg .crashed { fill: #555; }
svg .paused { fill: url(#hatch); }
svg .partition { fill: #f3c0c0; stroke: #b05050; stroke-width: 0.6; }
svg .commit { stroke: #1a3d7c; stroke-width: 1; }
svg .failure { stroke: #e00; stroke-width: 2.5; }
svg .ok rect { fill: #9ed9a8; }
"#;

const HATCH: &str = r##"<defs><pattern id="hatch" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)"><rect width="6" height="6" fill="#f2f2f2"/><line x1="0" y1="0" x2="0" y2="6" stroke="#999" stroke-width="2"/></pattern></defs>"##;

/// A whole HTML page: `body` under the reports' style sheet, titled
/// `title` (escaped here; `body` is inserted as is).
pub fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n{body}</body>\n</html>\n",
        escape(title)
    )
}

/// A bar on one lane of a [`Chart`].
pub struct Bar {
    /// The lane's index in [`Chart::lanes`].
    pub lane: usize,
    /// Where it starts on the time axis.
    pub start: u64,
    /// `None`: runs to the right edge.
    pub end: Option<u64>,
    /// Class of the enclosing group (e.g. `op prefix`).
    pub class: String,
    /// Text drawn inside the bar (cut to fit).
    pub label: String,
    /// Tooltip.
    pub title: String,
    /// Draw thinner, in the lower half of the lane (overlays).
    pub overlay: bool,
}

/// A vertical mark: on one lane, or across all of them (`lane: None`).
pub struct Mark {
    /// The lane's index in [`Chart::lanes`], `None` for all lanes.
    pub lane: Option<usize>,
    /// Where on the time axis.
    pub at: u64,
    /// Class of the mark (e.g. `failure`).
    pub class: &'static str,
    /// Tooltip.
    pub title: String,
}

/// Lanes on a shared time axis, rendered as one SVG ([`Chart::render`]).
pub struct Chart {
    /// The SVG element's id.
    pub id: &'static str,
    /// Per lane: its label and its class.
    pub lanes: Vec<(String, &'static str)>,
    /// The time at the left edge.
    pub lo: u64,
    /// The time at the right edge.
    pub hi: u64,
    /// The bars, drawn in order.
    pub bars: Vec<Bar>,
    /// The marks, drawn over the bars.
    pub marks: Vec<Mark>,
    /// How to print a time on the axis.
    pub time_label: fn(u64) -> String,
}

const LABEL_W: f64 = 150.0;
const PLOT_W: f64 = 1150.0;
const LANE_H: f64 = 26.0;
const AXIS_H: f64 = 24.0;

impl Chart {
    fn x(&self, t: u64) -> f64 {
        let span = (self.hi - self.lo).max(1) as f64;
        LABEL_W + (t.saturating_sub(self.lo).min(self.hi - self.lo) as f64) * PLOT_W / span
    }

    /// The chart as one `<svg>` element.
    pub fn render(&self) -> String {
        let height = AXIS_H + LANE_H * self.lanes.len() as f64 + 4.0;
        let width = LABEL_W + PLOT_W + 10.0;
        let mut s = String::new();
        let _ = write!(
            s,
            "<svg id=\"{}\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\">{HATCH}",
            self.id
        );
        // Axis with ten ticks.
        s.push_str("<g class=\"time-axis\">");
        for i in 0..=10u64 {
            let t = self.lo + (self.hi - self.lo) * i / 10;
            let x = self.x(t);
            let anchor = match i {
                0 => "start",
                10 => "end",
                _ => "middle",
            };
            let _ = write!(
                s,
                "<line class=\"grid\" x1=\"{x:.1}\" y1=\"{AXIS_H}\" x2=\"{x:.1}\" y2=\"{height}\"/><text x=\"{x:.1}\" y=\"14\" text-anchor=\"{anchor}\">{}</text>",
                escape(&(self.time_label)(t))
            );
        }
        s.push_str("</g>");
        for (i, (label, class)) in self.lanes.iter().enumerate() {
            let y = AXIS_H + LANE_H * i as f64;
            let _ = write!(
                s,
                "<g class=\"lane {class}\" data-lane=\"{}\"><rect class=\"lane-bg\" x=\"{LABEL_W}\" y=\"{y:.1}\" width=\"{PLOT_W}\" height=\"{}\"/><text class=\"lane-label\" x=\"6\" y=\"{:.1}\">{}</text>",
                escape(label),
                LANE_H - 2.0,
                y + LANE_H / 2.0 + 4.0,
                escape(label)
            );
            for b in self.bars.iter().filter(|b| b.lane == i) {
                let x0 = self.x(b.start);
                let x1 = b.end.map_or(LABEL_W + PLOT_W, |e| self.x(e)).max(x0 + 2.0);
                let (by, bh) = if b.overlay {
                    (y + LANE_H * 0.55, LANE_H * 0.35)
                } else {
                    (y + 3.0, LANE_H - 8.0)
                };
                let _ = write!(
                    s,
                    "<g class=\"{}\"><title>{}</title><rect x=\"{x0:.1}\" y=\"{by:.1}\" width=\"{:.1}\" height=\"{bh:.1}\"/>",
                    b.class,
                    escape(&b.title),
                    x1 - x0
                );
                // Labels only where they fit (about 6 px per character).
                if !b.label.is_empty() && (x1 - x0) > 6.0 * b.label.chars().count() as f64 + 4.0 {
                    let _ = write!(
                        s,
                        "<text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
                        x0 + 3.0,
                        by + bh / 2.0 + 4.0,
                        escape(&b.label)
                    );
                } else if b.class.contains("stuck") {
                    // The stuck operation is always labelled, left of it.
                    let _ = write!(
                        s,
                        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" font-weight=\"bold\">{}</text>",
                        x0 - 3.0,
                        by + bh / 2.0 + 4.0,
                        escape(&b.label)
                    );
                }
                s.push_str("</g>");
            }
            for m in self.marks.iter().filter(|m| m.lane == Some(i)) {
                let x = self.x(m.at);
                let _ = write!(
                    s,
                    "<line class=\"{}\" x1=\"{x:.1}\" y1=\"{:.1}\" x2=\"{x:.1}\" y2=\"{:.1}\"><title>{}</title></line>",
                    m.class,
                    y + LANE_H - 10.0,
                    y + LANE_H - 5.0,
                    escape(&m.title)
                );
            }
            s.push_str("</g>");
        }
        for m in self.marks.iter().filter(|m| m.lane.is_none()) {
            let x = self.x(m.at);
            let _ = write!(
                s,
                "<line class=\"{}\" x1=\"{x:.1}\" y1=\"{AXIS_H}\" x2=\"{x:.1}\" y2=\"{height}\"><title>{}</title></line>",
                m.class,
                escape(&m.title)
            );
        }
        s.push_str("</svg>\n");
        s
    }
}

/// Where an operation stands relative to the stuck return at `t`.
fn op_class(o: &Operation, stuck: &Operation, t: u64) -> &'static str {
    if o == stuck {
        return "op stuck";
    }
    match (&o.outcome, o.ret) {
        (Outcome::Failed, _) => "op failed",
        (Outcome::Unknown, _) => "op unknown",
        (Outcome::Ok(_), Some(r)) if r < t => "op prefix",
        _ => "op pending",
    }
}

/// One lane per client of `ops`, sorted by client id.
fn client_chart(
    id: &'static str,
    ops: &[&Operation],
    failure: &Failure,
    explanation: &[Operation],
) -> Chart {
    let t = failure.stuck_op.ret.unwrap_or(failure.stuck_op.call);
    let mut lanes: BTreeMap<u64, usize> = BTreeMap::new();
    for o in ops {
        lanes.insert(o.client, 0);
    }
    for (i, v) in lanes.values_mut().enumerate() {
        *v = i;
    }
    let lo = ops.iter().map(|o| o.call).min().unwrap_or(0);
    let hi = ops
        .iter()
        .map(|o| o.ret.unwrap_or(o.call))
        .max()
        .unwrap_or(lo)
        .max(t)
        .max(lo + 1);
    // A little room on the right for unknown outcomes.
    let hi = hi + (hi - lo) / 20 + 1;
    let bars = ops
        .iter()
        .map(|o| {
            let mut class = op_class(o, &failure.stuck_op, t).to_string();
            if explanation.contains(o) {
                class.push_str(" in-explanation");
            }
            let label = match &o.op {
                crate::history::Op::Get => match &o.outcome {
                    Outcome::Ok(crate::history::Output::Value(v)) => format!("get {v:?}"),
                    _ => "get".to_string(),
                },
                crate::history::Op::Put { value } => format!("put {value:?}"),
                crate::history::Op::Append { value } => format!("app {value:?}"),
                crate::history::Op::Cas { from, to } => format!("cas {from:?}→{to:?}"),
            };
            Bar {
                lane: lanes[&o.client],
                start: o.call,
                end: if matches!(o.outcome, Outcome::Unknown) {
                    None
                } else {
                    Some(o.ret.unwrap_or(o.call))
                },
                class,
                label,
                title: o.to_string(),
                overlay: false,
            }
        })
        .collect();
    Chart {
        id,
        lanes: lanes
            .keys()
            .map(|c| (format!("client {c}"), "client"))
            .collect(),
        lo,
        hi,
        bars,
        marks: vec![Mark {
            lane: None,
            at: t,
            class: "failure",
            title: format!("stuck return at {t}"),
        }],
        time_label: |t| t.to_string(),
    }
}

/// One operation of an explanation: its own row, labelled.
pub struct ExplainedOp {
    /// The label, drawn left of the row (the operation in words).
    pub label: String,
    /// The tooltip.
    pub title: String,
    /// Class of its group (`op stuck`, `op prefix`, ...).
    pub class: String,
    /// Call time.
    pub call: u64,
    /// Return time; `None` when the outcome is unknown (runs to the right).
    pub ret: Option<u64>,
}

/// Width of one character of the SVG's 11 px font, rounded up: label
/// boxes are laid out with it.
pub const CHAR_W: f64 = 6.6;
/// Height of one row of the explanation chart.
pub const ROW_H: f64 = 20.0;
/// Longest label drawn in full; longer ones end in "…" (the tooltip has
/// all of it).
const LABEL_CHARS_MAX: usize = 90;

/// The explanation of a failure as an SVG: one row per operation, its
/// label in a column of its own (so labels never overlap, whatever the
/// times), its interval on an *ordinal* time axis: every distinct call or
/// return time is one step, so an operation of a few nanoseconds next to
/// one of seconds is as visible as the other. Ticks show real times.
pub fn explanation_svg(id: &str, ops: &[ExplainedOp], stuck_at: Option<u64>) -> String {
    let mut times: Vec<u64> = ops
        .iter()
        .flat_map(|o| std::iter::once(o.call).chain(o.ret))
        .chain(stuck_at)
        .collect();
    times.sort_unstable();
    times.dedup();
    let rank = |t: u64| times.partition_point(|&x| x < t);
    let steps = times.len().max(2) - 1;
    let label = |o: &ExplainedOp| -> String {
        if o.label.chars().count() > LABEL_CHARS_MAX {
            let cut: String = o.label.chars().take(LABEL_CHARS_MAX - 1).collect();
            format!("{cut}…")
        } else {
            o.label.clone()
        }
    };
    let longest = ops
        .iter()
        .map(|o| label(o).chars().count())
        .max()
        .unwrap_or(0);
    let label_w = 12.0 + CHAR_W * longest as f64;
    // Wide enough for a time label per step where there are few steps.
    let step_w = (900.0 / steps as f64).clamp(4.0, 70.0);
    let plot_w = step_w * steps as f64 + 40.0;
    let x = |t: u64| label_w + 20.0 + rank(t) as f64 * step_w;
    let width = label_w + plot_w + 20.0;
    let height = AXIS_H + ROW_H * ops.len() as f64 + 6.0;
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg id=\"{id}\" class=\"explanation\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{width:.0}\" height=\"{height:.0}\" viewBox=\"0 0 {width:.1} {height:.1}\" data-axis=\"ordinal\">{HATCH}"
    );
    // Ticks: real times, as many as fit without overlapping.
    s.push_str("<g class=\"time-axis\">");
    let tick_chars = times.iter().map(|t| t.to_string().len()).max().unwrap_or(1);
    let every = ((CHAR_W * tick_chars as f64 + 8.0) / step_w)
        .ceil()
        .max(1.0) as usize;
    for (i, &t) in times.iter().enumerate() {
        let xt = x(t);
        let _ = write!(
            s,
            "<line class=\"grid\" x1=\"{xt:.1}\" y1=\"{AXIS_H}\" x2=\"{xt:.1}\" y2=\"{height:.1}\"/>"
        );
        if i % every == 0 {
            let _ = write!(
                s,
                "<text class=\"tick\" x=\"{xt:.1}\" y=\"14\" text-anchor=\"middle\">{t}</text>"
            );
        }
    }
    s.push_str("</g>");
    for (i, o) in ops.iter().enumerate() {
        let y = AXIS_H + ROW_H * i as f64;
        let x0 = x(o.call);
        let x1 = match o.ret {
            Some(r) => x(r),
            None => label_w + plot_w,
        };
        // A zero-length interval still gets a visible bar.
        let (x0, x1) = if x1 - x0 < step_w * 0.5 {
            (x0 - step_w * 0.25, x0 + step_w * 0.25)
        } else {
            (x0, x1)
        };
        let _ = write!(
            s,
            "<g class=\"{}\" data-row=\"{i}\"><title>{}</title><text class=\"op-label\" x=\"6\" y=\"{:.1}\">{}</text><rect x=\"{x0:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\"/></g>",
            o.class,
            escape(&o.title),
            y + ROW_H / 2.0 + 4.0,
            escape(&label(o)),
            y + 3.0,
            (x1 - x0).max(2.0),
            ROW_H - 6.0
        );
    }
    if let Some(t) = stuck_at {
        let xt = x(t);
        let _ = write!(
            s,
            "<line class=\"failure\" x1=\"{xt:.1}\" y1=\"{AXIS_H}\" x2=\"{xt:.1}\" y2=\"{height:.1}\"><title>stuck return at {t}</title></line>"
        );
    }
    s.push_str("</svg>\n");
    s
}

/// The explanation rows of a key-value failure.
fn kv_explanation(failure: &Failure) -> Vec<ExplainedOp> {
    let t = failure.stuck_op.ret.unwrap_or(failure.stuck_op.call);
    failure
        .sub_history
        .iter()
        .map(|o| ExplainedOp {
            label: o.to_string(),
            title: o.to_string(),
            class: op_class(o, &failure.stuck_op, t).to_string(),
            call: o.call,
            ret: match o.outcome {
                Outcome::Unknown => None,
                _ => Some(o.ret.unwrap_or(o.call)),
            },
        })
        .collect()
}

/// The report of a check against any [`Model`](crate::Model): the
/// verdict, the explanation of a failure (one labelled row per operation
/// on an ordinal time axis) and the per-part statistics.
pub fn model_page<M: crate::Model>(
    model: &M,
    ops: &[crate::Op<M::Input, M::Output>],
    report: &crate::ModelReport,
) -> String {
    use crate::{describe_op, Outcome as O, Verdict};
    let mut body = String::new();
    match &report.verdict {
        Verdict::NotLinearizable(f) => {
            let t = ops[f.stuck_index].ret.unwrap_or(ops[f.stuck_index].call);
            let _ = write!(
                body,
                "<h1 class=\"verdict-bad\">NOT LINEARIZABLE ({} model){}</h1>\n<p>No valid order remains once this operation returns: <b id=\"stuck-op\">{}</b>. States the {} could be in just before: {}.</p>\n",
                escape(&f.model),
                if f.part.is_empty() { String::new() } else { escape(&format!(": part {:?}", f.part)) },
                escape(&f.stuck),
                escape(&f.model),
                escape(&f.possible_states.join(", ")),
            );
            body.push_str(OP_LEGEND);
            let rows: Vec<ExplainedOp> = f
                .sub_history
                .iter()
                .map(|&i| {
                    let o = &ops[i];
                    let class = if i == f.stuck_index {
                        "op stuck"
                    } else {
                        match (&o.outcome, o.ret) {
                            (O::Failed, _) => "op failed",
                            (O::Unknown, _) => "op unknown",
                            (O::Ok(_), Some(r)) if r < t => "op prefix",
                            _ => "op pending",
                        }
                    };
                    let text = format!("#{i} {}", describe_op(model, o));
                    ExplainedOp {
                        label: text.clone(),
                        title: text,
                        class: class.to_string(),
                        call: o.call,
                        ret: match o.outcome {
                            O::Unknown => None,
                            _ => Some(o.ret.unwrap_or(o.call)),
                        },
                    }
                })
                .collect();
            let _ = write!(
                body,
                "<h2>Explanation: {} operations</h2>\n<p>{} Time axis: ordinal (one step per distinct call or return time; real times at the ticks).</p>\n",
                rows.len(),
                if f.explained {
                    "Not linearizable; without the stuck operation it is."
                } else {
                    "Unshrunk: everything of the part called before the stuck return."
                }
            );
            body.push_str(&explanation_svg("explanation", &rows, Some(t)));
        }
        other => {
            let class = if other.is_ok() {
                "verdict-good"
            } else {
                "verdict-unknown"
            };
            let _ = writeln!(
                body,
                "<h1 class=\"{class}\">{} ({} model)</h1>",
                escape(&other.to_string()),
                escape(&model.name())
            );
        }
    }
    body.push_str("<h2>Parts</h2>\n");
    let rows = report.parts.iter().map(|p| PartRow {
        name: &p.part,
        counts: [p.ops, p.completed, p.unknown, p.failed],
        elapsed: p.elapsed,
        verdict: p.verdict.clone(),
    });
    statistics_table(&mut body, "part", rows);
    let title = match &report.verdict {
        Verdict::NotLinearizable(_) => "NOT LINEARIZABLE".to_string(),
        other => other.to_string(),
    };
    page(&title, &body)
}

const OP_LEGEND: &str = r#"<p class="legend"><span><i class="swatch" style="background:#9ed9a8"></i>returned before the stuck operation: the longest prefix that could be linearized</span><span><i class="swatch" style="background:#e53935"></i>the operation that cannot be placed</span><span><i class="swatch" style="background:#d0d0d0"></i>still pending then</span><span><i class="swatch" style="background:#e8e0c8"></i>unknown outcome (may take effect any time after its call)</span><span><i class="swatch" style="background:#eee"></i>failed</span><span>red line: the stuck return; bold outline: part of the explanation</span></p>"#;

/// The report of a non-linearizable history: `ops` is the checked
/// history, `failure` the checker's explanation.
pub fn check_page(ops: &[Operation], failure: &Failure) -> String {
    let t = failure.stuck_op.ret.unwrap_or(failure.stuck_op.call);
    let mut body = String::new();
    let _ = write!(
        body,
        "<h1 class=\"verdict-bad\">NOT LINEARIZABLE: key {}</h1>\n<p>No valid order remains once this operation returns: <b id=\"stuck-op\">{}</b>. Values the key could hold just before: {}.</p>\n",
        escape(&format!("{:?}", failure.key)),
        escape(&failure.stuck_op.to_string()),
        escape(&format!("{:?}", failure.possible_values)),
    );
    body.push_str(OP_LEGEND);
    let _ = write!(
        body,
        "<h2>Explanation: {} operations</h2>\n<p>{}</p>\n",
        failure.sub_history.len(),
        if failure.explained {
            "Not linearizable; without the stuck operation it is, and it keeps every write the stuck operation could have seen."
        } else {
            "Unshrunk: everything on the key called before the stuck return. It is not linearizable, but no smaller sub-history that is linearizable without the stuck operation was found, so the other operations may contradict each other as well."
        }
    );
    body.push_str("<p>Time axis: ordinal (one step per distinct call or return time; real times at the ticks), one row per operation.</p>\n");
    body.push_str(&explanation_svg(
        "explanation",
        &kv_explanation(failure),
        Some(t),
    ));
    let mut context: Vec<&Operation> = ops
        .iter()
        .filter(|o| o.key == failure.key && o.call <= t)
        .collect();
    context.sort_by_key(|o| (o.call, o.ret.unwrap_or(u64::MAX)));
    let total = context.len();
    if total > CONTEXT_OPS_MAX {
        context.drain(..total - CONTEXT_OPS_MAX);
    }
    let _ = writeln!(
        body,
        "<h2>The key's history up to the stuck return ({} of {} operations called by then)</h2>",
        context.len(),
        total
    );
    body.push_str(&client_chart("context", &context, failure, &failure.sub_history).render());
    let _ = write!(
        body,
        "<h2>Explanation as JSON lines</h2>\n<pre id=\"jsonl\">{}</pre>\n",
        escape(&failure.to_jsonl())
    );
    page(&format!("NOT LINEARIZABLE: key {:?}", failure.key), &body)
}

/// One row of [`statistics_table`]: a part (or key) of a checked history.
struct PartRow<'a> {
    name: &'a str,
    /// Operations, completed, unknown, failed.
    counts: [usize; 4],
    elapsed: std::time::Duration,
    verdict: String,
}

/// Appends to `body` the table of the parts (or keys) of a checked
/// history, the first column headed `what`.
fn statistics_table<'a>(body: &mut String, what: &str, rows: impl Iterator<Item = PartRow<'a>>) {
    let _ = writeln!(
        body,
        "<table><tr><th>{what}</th><th>ops</th><th>completed</th><th>unknown</th><th>failed</th><th>time (s)</th><th>verdict</th></tr>"
    );
    for row in rows {
        let [ops, completed, unknown, failed] = row.counts;
        let _ = writeln!(
            body,
            "<tr><td>{}</td><td>{ops}</td><td>{completed}</td><td>{unknown}</td><td>{failed}</td><td>{:.3}</td><td>{}</td></tr>",
            escape(row.name),
            row.elapsed.as_secs_f64(),
            escape(&row.verdict)
        );
    }
    body.push_str("</table>\n");
}

/// A page for any verdict other than a failure: the verdict and the
/// per-key statistics.
pub fn verdict_page(verdict: &str, report: &Report) -> String {
    let class = if report.result.is_ok() {
        "verdict-good"
    } else {
        "verdict-unknown"
    };
    let mut body = format!("<h1 class=\"{class}\">{}</h1>\n", escape(verdict));
    let rows = report.keys.iter().map(|k| PartRow {
        name: &k.key,
        counts: [k.ops, k.completed, k.unknown, k.failed],
        elapsed: k.elapsed,
        verdict: k.verdict.to_string(),
    });
    statistics_table(&mut body, "key", rows);
    page(verdict, &body)
}
