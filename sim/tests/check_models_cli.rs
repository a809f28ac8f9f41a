//! `concord-sim check --model NAME`: a linearizable and a non-linearizable
//! history of every built-in model, bad input (exit 3 with the line and
//! the reason), empty histories (exit 4 unless allowed), `--threads 0`,
//! Jepsen histories in and out, a closed standard output, and the HTML
//! explanation's layout (every operation labelled, no label overlapping
//! another, an ordinal time axis).

mod common;
use common::concord_sim;

use std::path::PathBuf;
use std::process::{Command, Stdio};

/// Writes `text` to a fresh file in the target's temporary directory.
fn file(name: &str, text: &str) -> PathBuf {
    common::file_in("check_models_cli", name, text)
}

fn check(model: &[&str], name: &str, text: &str) -> (i32, String, String) {
    let path = file(name, text);
    let mut args = vec!["check", path.to_str().unwrap()];
    args.extend_from_slice(model);
    concord_sim(&args)
}

/// Runs [`check`], which must refuse its input (exit code 3); what it
/// printed on standard error.
fn refused(model: &[&str], name: &str, text: &str) -> String {
    let (code, stdout, stderr) = check(model, name, text);
    assert_eq!(code, 3, "{stdout}{stderr}");
    stderr
}

/// (model flags, linearizable history, non-linearizable history, what
/// the failure report must say).
fn cases() -> Vec<(Vec<&'static str>, &'static str, &'static str, &'static str)> {
    vec![
        (
            vec!["--model", "register"],
            r#"{"client":1,"op":"write","value":"a","call":0,"return":10,"ok":true}
{"client":2,"op":"read","value":"a","call":5,"return":20,"ok":true}
{"client":3,"op":"write","value":7,"call":30,"return":null}"#,
            r#"{"client":1,"op":"write","value":"a","call":0,"return":10,"ok":true}
{"client":1,"op":"write","value":"b","call":20,"return":30,"ok":true}
{"client":2,"op":"read","value":"a","call":40,"return":50,"ok":true}"#,
            "states the register could be in just before: \"b\"",
        ),
        (
            vec!["--model", "cas-register"],
            r#"{"client":1,"op":"write","value":"a","call":0,"return":10,"ok":true}
{"client":2,"op":"cas","from":"a","to":"b","swapped":true,"call":11,"return":20,"ok":true}
{"client":3,"op":"read","value":"b","call":21,"return":30,"ok":true}"#,
            r#"{"client":1,"op":"write","value":"a","call":0,"return":10,"ok":true}
{"client":2,"op":"cas","from":"a","to":"b","swapped":false,"call":11,"return":20,"ok":true}"#,
            "cas \"a\"->\"b\" => swapped=false",
        ),
        (
            vec!["--model", "kv"],
            r#"{"client":1,"op":"put","key":"k","value":"a","call":0,"return":10,"ok":true}
{"client":2,"op":"get","key":"k","value":"a","call":11,"return":20,"ok":true}"#,
            r#"{"client":1,"op":"put","key":"k","value":"a","call":0,"return":10,"ok":true}
{"client":2,"op":"get","key":"k","value":"","call":11,"return":20,"ok":true}"#,
            "values the key could hold just before: [\"a\"]",
        ),
        (
            vec!["--model", "set"],
            r#"{"client":1,"op":"add","value":"x","result":true,"call":0,"return":10,"ok":true}
{"client":2,"op":"contains","value":"x","result":true,"call":11,"return":20,"ok":true}
{"client":2,"op":"remove","value":"y","result":false,"call":11,"return":20,"ok":true}"#,
            r#"{"client":1,"op":"add","value":"x","result":true,"call":0,"return":10,"ok":true}
{"client":2,"op":"contains","value":"x","result":false,"call":11,"return":20,"ok":true}"#,
            "part \"x\"",
        ),
        (
            vec!["--model", "queue"],
            r#"{"client":1,"op":"enqueue","value":"a","call":0,"return":10,"ok":true}
{"client":2,"op":"dequeue","value":"a","call":11,"return":20,"ok":true}
{"client":2,"op":"dequeue","value":null,"call":21,"return":30,"ok":true}"#,
            r#"{"client":1,"op":"enqueue","value":"a","call":0,"return":10,"ok":true}
{"client":2,"op":"dequeue","value":null,"call":11,"return":20,"ok":true}"#,
            "states the queue could be in just before: [\"a\"]",
        ),
        (
            vec!["--model", "counter"],
            r#"{"client":1,"op":"add","amount":3,"call":0,"return":10,"ok":true}
{"client":2,"op":"read","value":3,"call":11,"return":20,"ok":true}"#,
            r#"{"client":1,"op":"add","amount":3,"call":0,"return":10,"ok":true}
{"client":2,"op":"read","value":0,"call":11,"return":20,"ok":true}"#,
            "states the counter could be in just before: 3",
        ),
        (
            vec!["--model", "bank", "--accounts", "a=10,b=0"],
            r#"{"client":1,"op":"transfer","from":"a","to":"b","amount":4,"transferred":true,"call":0,"return":10,"ok":true}
{"client":2,"op":"balance","account":"b","value":4,"call":11,"return":20,"ok":true}
{"client":3,"op":"total","value":10,"call":11,"return":20,"ok":true}
{"client":3,"op":"transfer","from":"b","to":"a","amount":9,"transferred":false,"call":21,"return":30,"ok":true}"#,
            r#"{"client":1,"op":"transfer","from":"a","to":"b","amount":4,"transferred":true,"call":0,"return":10,"ok":true}
{"client":3,"op":"total","value":10,"call":11,"return":20,"ok":true}
{"client":2,"op":"balance","account":"b","value":0,"call":21,"return":30,"ok":true}"#,
            "states the bank could be in just before: {a=6, b=4}",
        ),
    ]
}

#[test]
fn every_model_passes_and_fails_with_its_exit_code() {
    for (i, (flags, good, bad, says)) in cases().into_iter().enumerate() {
        let (code, stdout, stderr) = check(&flags, &format!("good{i}.jsonl"), good);
        assert_eq!(code, 0, "{flags:?}: {stdout}{stderr}");
        assert!(stdout.contains("LINEARIZABLE"), "{stdout}");
        assert!(stdout.starts_with("concord-sim check: "), "{stdout}");
        let (code, stdout, stderr) = check(&flags, &format!("bad{i}.jsonl"), bad);
        assert_eq!(code, 1, "{flags:?}: {stdout}{stderr}");
        assert!(stdout.contains("NOT LINEARIZABLE"), "{stdout}");
        assert!(
            stdout.contains(says),
            "{flags:?} should say {says:?}:\n{stdout}"
        );
    }
}

fn assert_malformed(flags: &[&str], text: &str, line: usize, reason: &str) {
    let stderr = refused(flags, "malformed.jsonl", text);
    assert!(
        stderr.contains(&format!("line {line}: ")) && stderr.contains(reason),
        "want line {line} and {reason:?}:\n{stderr}"
    );
}

#[test]
fn bad_input_exits_3_with_the_line_and_the_reason() {
    let ok = r#"{"client":1,"op":"enqueue","value":"a","call":0,"return":1,"ok":true}"#;
    // An operation the model does not know.
    assert_malformed(
        &["--model", "queue"],
        &format!("{ok}\n{{\"client\":1,\"op\":\"push\",\"value\":\"a\",\"call\":0,\"return\":1,\"ok\":true}}"),
        2,
        "the queue model has no operation \"push\" (it knows enqueue, dequeue)",
    );
    // A response of the wrong shape.
    assert_malformed(
        &["--model", "counter"],
        r#"{"client":1,"op":"read","value":"three","call":0,"return":1,"ok":true}"#,
        1,
        "result of read: field \"value\" must be an integer",
    );
    assert_malformed(
        &["--model", "set"],
        r#"{"client":1,"op":"add","value":"x","call":0,"return":1,"ok":true}"#,
        1,
        "missing field \"result\"",
    );
    // Times out of order.
    assert_malformed(
        &["--model", "queue"],
        &format!("{ok}\n\n{{\"client\":1,\"op\":\"dequeue\",\"value\":null,\"call\":9,\"return\":3,\"ok\":true}}"),
        3,
        "return time 3 is before call time 9",
    );
    // An account the bank does not have.
    assert_malformed(
        &["--model", "bank", "--accounts", "a=1"],
        r#"{"client":1,"op":"balance","account":"z","value":0,"call":0,"return":1,"ok":true}"#,
        1,
        "account \"z\" is not one of the bank's (a)",
    );
    // An unknown model, a bank without accounts, Jepsen for a queue.
    let stderr = refused(&["--model", "stack"], "m.jsonl", ok);
    assert!(
        stderr.contains("unknown model \"stack\"; the models are register"),
        "{stderr}"
    );
    let stderr = refused(&["--model", "bank"], "m.jsonl", ok);
    assert!(stderr.contains("--accounts"), "{stderr}");
    let stderr = refused(&["--model", "queue", "--format", "jepsen"], "m.jsonl", ok);
    assert!(stderr.contains("register and cas-register"), "{stderr}");
}

#[test]
fn empty_history_is_not_a_pass_unless_allowed() {
    for flags in [vec![], vec!["--model", "queue"]] {
        let (code, stdout, _) = check(&flags, "empty.jsonl", "\n");
        assert_eq!(code, 4, "{stdout}");
        assert!(
            stdout.contains("EMPTY: the history has no operations"),
            "{stdout}"
        );
        let mut allowed = flags.clone();
        allowed.push("--allow-empty");
        let (code, stdout, _) = check(&allowed, "empty.jsonl", "");
        assert_eq!(code, 0, "{stdout}");
    }
    // Nothing completed: nothing was observed.
    let (code, stdout, _) = check(
        &[],
        "unknown-only.jsonl",
        r#"{"client":1,"op":"put","key":"k","value":"a","call":0,"return":null}"#,
    );
    assert_eq!(code, 4, "{stdout}");
    assert!(
        stdout.contains("none of the 1 operations completed"),
        "{stdout}"
    );
}

#[test]
fn zero_threads_is_refused() {
    let stderr = refused(&["--threads", "0"], "t.jsonl", "");
    assert!(stderr.contains("must be at least 1"), "{stderr}");
}

const JEPSEN: &str = r#"[
{"process":0,"type":"invoke","f":"write","value":3},
{"process":1,"type":"invoke","f":"read","value":null},
{"process":0,"type":"ok","f":"write","value":3},
{"process":1,"type":"ok","f":"read","value":null},
{"process":2,"type":"invoke","f":"cas","value":[3,4]},
{"process":2,"type":"ok","f":"cas","value":[3,4]},
{"process":3,"type":"invoke","f":"cas","value":[3,5]},
{"process":3,"type":"fail","f":"cas","value":[3,5]},
{"process":4,"type":"invoke","f":"write","value":9},
{"process":4,"type":"info","f":"write","value":9},
{"process":1,"type":"invoke","f":"read","value":null},
{"process":1,"type":"ok","f":"read","value":4},
{"process":"nemesis","type":"info","f":"start","value":null}
]"#;

#[test]
fn jepsen_histories_round_trip() {
    let (code, stdout, stderr) = check(
        &["--model", "cas-register", "--format", "jepsen"],
        "jepsen.json",
        JEPSEN,
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    // A stale read: the last read sees the initial nil after the cas.
    let stale = JEPSEN.replace(
        r#""ok","f":"read","value":4"#,
        r#""ok","f":"read","value":null"#,
    );
    let (code, stdout, _) = check(
        &["--model", "cas-register", "--format", "jepsen"],
        "stale.json",
        &stale,
    );
    assert_eq!(code, 1, "{stdout}");
    // Out to JSON lines and Jepsen again: same verdicts.
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("check_models_cli");
    let jsonl = dir.join("from-jepsen.jsonl");
    let back = dir.join("back.json");
    let (code, _, _) = check(
        &[
            "--model",
            "cas-register",
            "--format",
            "jepsen",
            "--write-jsonl",
            jsonl.to_str().unwrap(),
            "--write-jepsen",
            back.to_str().unwrap(),
        ],
        "jepsen2.json",
        JEPSEN,
    );
    assert_eq!(code, 0);
    let lines = std::fs::read_to_string(&jsonl).unwrap();
    assert_eq!(lines.lines().count(), 6, "{lines}");
    assert!(
        lines.contains(r#""op":"cas""#) && lines.contains(r#""return":null"#),
        "{lines}"
    );
    let (code, _, _) = concord_sim(&["check", "--model", "cas-register", jsonl.to_str().unwrap()]);
    assert_eq!(code, 0);
    let (code, _, _) = concord_sim(&[
        "check",
        "--model",
        "cas-register",
        "--format",
        "jepsen",
        back.to_str().unwrap(),
    ]);
    assert_eq!(code, 0);
    let exported: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&back).unwrap()).unwrap();
    let events = exported.as_array().unwrap();
    // Every operation invoked and completed once; the unknown one as info.
    assert_eq!(events.len(), 12);
    assert!(events
        .iter()
        .any(|e| e["type"] == "info" && e["f"] == "write" && e["value"] == 9));
    assert!(events
        .iter()
        .any(|e| e["type"] == "ok" && e["f"] == "read" && e["value"].is_null()));
    // Each process has at most one operation outstanding.
    let mut open = std::collections::BTreeSet::new();
    for e in events {
        let p = e["process"].as_i64().unwrap();
        if e["type"] == "invoke" {
            assert!(open.insert(p), "process {p} invoked twice");
        } else {
            assert!(open.remove(&p));
        }
    }
    // A plain register refuses a cas, with the operation's index.
    let jepsen_register = ["--model", "register", "--format", "jepsen"];
    let stderr = refused(&jepsen_register, "reg.json", JEPSEN);
    assert!(
        stderr.contains("operation #2 is a compare-and-set"),
        "{stderr}"
    );
    // Broken Jepsen input: the event's position and the reason.
    let broken = r#"[{"process":0,"type":"ok","f":"read","value":1}]"#;
    let stderr = refused(&jepsen_register, "broken.json", broken);
    assert!(
        stderr.contains("line 1: process 0 completes an operation it never invoked"),
        "{stderr}"
    );
}

#[test]
fn closed_stdout_exits_quietly_with_the_verdict() {
    let (_, good, bad, _) = cases().remove(4);
    for (text, expected) in [(good, 0), (bad, 1)] {
        let path = file(&format!("pipe{expected}.jsonl"), text);
        let mut child = Command::new(env!("CARGO_BIN_EXE_concord-sim"))
            .args(["check", "--model", "queue", path.to_str().unwrap()])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(expected), "{stderr}");
        assert!(
            !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
            "{stderr}"
        );
    }
}

/// The boxes of an explanation SVG's labels, bars and ticks, as laid out
/// (labels at `report::CHAR_W` per character of the 11 px font).
struct Layout {
    labels: Vec<(String, f64, f64, f64)>, // text, x0, x1, y
    bars: Vec<(f64, f64, f64)>,           // x0, x1, y
    ticks: Vec<(f64, f64)>,               // x0, x1
    axis: String,
}

fn attr(tag: &str, name: &str) -> f64 {
    let key = format!(" {name}=\"");
    let start = tag.find(&key).unwrap_or_else(|| panic!("{name} in {tag}")) + key.len();
    let end = start + tag[start..].find('"').unwrap();
    tag[start..end].parse().unwrap()
}

fn layout(html: &str) -> Layout {
    let start = html
        .find("<svg id=\"explanation\"")
        .expect("explanation svg");
    let svg = &html[start..start + html[start..].find("</svg>").unwrap()];
    let axis_at = svg.find("data-axis=\"").unwrap() + 11;
    let axis = svg[axis_at..axis_at + svg[axis_at..].find('"').unwrap()].to_string();
    let cw = concord_sim::report::CHAR_W;
    let mut l = Layout {
        labels: vec![],
        bars: vec![],
        ticks: vec![],
        axis,
    };
    for piece in svg.split('<').skip(1) {
        let tag_end = piece.find('>').unwrap();
        let tag = &piece[..tag_end];
        let text = piece[tag_end + 1..]
            .replace("&quot;", "\"")
            .replace("&gt;", ">")
            .replace("&lt;", "<")
            .replace("&#39;", "'")
            .replace("&amp;", "&");
        let text = text.as_str();
        if tag.starts_with("text class=\"op-label\"") {
            let x = attr(tag, "x");
            let n = text.chars().count() as f64;
            l.labels
                .push((text.to_string(), x, x + cw * n, attr(tag, "y")));
        } else if tag.starts_with("text class=\"tick\"") {
            let x = attr(tag, "x");
            let half = cw * text.chars().count() as f64 / 2.0;
            l.ticks.push((x - half, x + half));
        } else if tag.starts_with("rect x=") {
            let x = attr(tag, "x");
            l.bars.push((x, x + attr(tag, "width"), attr(tag, "y")));
        }
    }
    l
}

#[test]
fn html_explanation_labels_every_operation_without_overlap() {
    // A stale read whose explanation spans ten seconds, with writes of a
    // few nanoseconds: on a linear axis they were slivers of 1-3 px.
    let text = r#"{"client":1,"op":"write","value":"a","call":0,"return":3,"ok":true}
{"client":2,"op":"write","value":"b","call":5,"return":6,"ok":true}
{"client":4,"op":"write","value":"c","call":8,"return":10,"ok":true}
{"client":5,"op":"read","value":"c","call":11,"return":12,"ok":true}
{"client":3,"op":"read","value":"b","call":10000000000,"return":10000000002,"ok":true}"#;
    let html_path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("check_models_cli/stale.html");
    let (code, stdout, _) = check(
        &["--model", "register", "--html", html_path.to_str().unwrap()],
        "stale-long.jsonl",
        text,
    );
    assert_eq!(code, 1, "{stdout}");
    let html = std::fs::read_to_string(&html_path).unwrap();
    let l = layout(&html);
    assert_eq!(l.axis, "ordinal");
    // Every operation of the explanation has its label and its bar.
    let explained = stdout.lines().filter(|line| line.contains("| #")).count();
    assert!(explained >= 3, "{stdout}");
    assert_eq!(l.labels.len(), explained, "{html}");
    assert_eq!(l.bars.len(), explained);
    for (op, name) in [
        ("#1 ", "write \"b\""),
        ("#2 ", "write \"c\""),
        ("#4 ", "read => \"b\""),
    ] {
        assert!(
            l.labels
                .iter()
                .any(|(t, ..)| t.starts_with(op) && t.contains(name)),
            "no label for {name}: {:?}",
            l.labels
        );
    }
    // No two labels overlap; no label runs into any bar; bars are wide
    // enough to see.
    for (i, a) in l.labels.iter().enumerate() {
        for b in &l.labels[i + 1..] {
            let apart_x = a.2 <= b.1 || b.2 <= a.1;
            let apart_y = (a.3 - b.3).abs() >= 12.0;
            assert!(apart_x || apart_y, "labels overlap: {a:?} {b:?}");
        }
        for bar in &l.bars {
            assert!(a.2 <= bar.0, "label {a:?} runs into bar {bar:?}");
        }
    }
    for bar in &l.bars {
        assert!(bar.1 - bar.0 >= 8.0, "bar too thin: {bar:?}");
    }
    for (i, a) in l.ticks.iter().enumerate() {
        for b in &l.ticks[i + 1..] {
            assert!(a.1 <= b.0 || b.1 <= a.0, "tick labels overlap: {a:?} {b:?}");
        }
    }
    // The key-value report uses the same explanation chart.
    let kv = text
        .replace("\"op\":\"write\"", "\"op\":\"put\",\"key\":\"k\"")
        .replace("\"op\":\"read\"", "\"op\":\"get\",\"key\":\"k\"");
    let kv_html = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("check_models_cli/stale-kv.html");
    let (code, _, _) = check(
        &["--html", kv_html.to_str().unwrap()],
        "stale-kv.jsonl",
        &kv,
    );
    assert_eq!(code, 1);
    let l = layout(&std::fs::read_to_string(&kv_html).unwrap());
    assert_eq!(l.axis, "ordinal");
    assert!(l.labels.len() >= 3);
    for bar in &l.bars {
        assert!(bar.1 - bar.0 >= 8.0, "bar too thin: {bar:?}");
    }
}
