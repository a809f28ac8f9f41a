//! `concord-sim check` on histories as another system would record them:
//! one test per exit code (0 linearizable, 1 not, 2 unknown, 3 malformed),
//! the per-key statistics, the explanation of a stale read, the
//! same verdict whatever `--threads`, and the HTML report's structure.

mod common;
use common::concord_sim;

use std::path::PathBuf;

use concord_sim::histgen::{corrupt_stale_read, generate, GenConfig};
use concord_sim::history::{parse_jsonl, to_jsonl, Op};

/// Writes `text` to a fresh file in the target's temporary directory.
fn file(name: &str, text: &str) -> PathBuf {
    common::file_in("check_cli", name, text)
}

const STALE_READ: &str = r#"{"client":1,"op":"put","key":"k","value":"a","call":0,"return":10,"ok":true}
{"client":1,"op":"put","key":"k","value":"b","call":20,"return":30,"ok":true}
{"client":2,"op":"get","key":"k","value":"a","call":40,"return":50,"ok":true}
"#;

#[test]
fn linearizable_history_exits_0_with_per_key_statistics() {
    let hist = generate(&GenConfig {
        seed: 7,
        ops: 3000,
        keys: 5,
        p_unknown: 0.05,
        ..GenConfig::default()
    });
    let path = file("ok.jsonl", &to_jsonl(&hist));
    let (code, stdout, stderr) = concord_sim(&["check", path.to_str().unwrap(), "--threads", "2"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("LINEARIZABLE"), "{stdout}");
    assert!(stdout.contains("3000 operations on 5 keys"), "{stdout}");
    for key in ["\"k0\"", "\"k4\""] {
        let row = stdout
            .lines()
            .find(|l| l.trim_start().starts_with(key))
            .unwrap_or_else(|| panic!("no row for {key}:\n{stdout}"));
        assert!(row.contains("linearizable"), "{row}");
    }
    assert!(stdout.contains("completed") && stdout.contains("unknown"));
}

#[test]
fn stale_read_exits_1_and_keeps_both_puts() {
    let path = file("stale.jsonl", STALE_READ);
    let html = path.with_extension("html");
    let (code, stdout, stderr) = concord_sim(&[
        "check",
        path.to_str().unwrap(),
        "--html",
        html.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(stdout.contains("NOT LINEARIZABLE"), "{stdout}");
    assert!(
        stdout.contains("minimal sub-history of 3 operations"),
        "{stdout}"
    );
    // The JSON lines of the explanation: both puts and the get.
    let jsonl: String = stdout
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| format!("{l}\n"))
        .collect();
    let ops = parse_jsonl(&jsonl).unwrap();
    assert_eq!(ops.len(), 3, "{stdout}");
    assert!(ops.iter().any(|o| o.op == Op::Put { value: "a".into() }));
    assert!(ops.iter().any(|o| o.op == Op::Put { value: "b".into() }));

    // The HTML page: self-contained; the explanation one labelled row per
    // operation on an ordinal axis, the context one lane per client;
    // exactly one stuck operation per chart, the prefix marked.
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.starts_with("<!DOCTYPE html>"));
    assert!(!page.contains("<script"), "no scripts");
    assert!(!page.contains("src=\"http") && !page.contains("href=\"http"));
    let svg_of = |chart: &str| {
        let start = page.find(&format!("<svg id=\"{chart}\"")).unwrap();
        page[start..start + page[start..].find("</svg>").unwrap()].to_string()
    };
    let explanation = svg_of("explanation");
    assert!(explanation.contains("data-axis=\"ordinal\""));
    assert_eq!(explanation.matches("class=\"op-label\"").count(), 3);
    let context = svg_of("context");
    assert_eq!(context.matches("<g class=\"lane client\"").count(), 2);
    assert!(
        context.contains("data-lane=\"client 1\"") && context.contains("data-lane=\"client 2\"")
    );
    for svg in [&explanation, &context] {
        assert_eq!(svg.matches("class=\"op stuck").count(), 1);
        assert_eq!(svg.matches("class=\"op prefix").count(), 2);
    }
    assert!(page.contains("id=\"stuck-op\""));
}

#[test]
fn verdict_is_the_same_with_any_number_of_threads() {
    let mut hist = generate(&GenConfig {
        seed: 3,
        ops: 4000,
        keys: 8,
        ..GenConfig::default()
    });
    corrupt_stale_read(&mut hist, 3).expect("a read to corrupt");
    let path = file("threads.jsonl", &to_jsonl(&hist));
    let explanation = |threads: &str| {
        let (code, stdout, _) =
            concord_sim(&["check", path.to_str().unwrap(), "--threads", threads]);
        assert_eq!(code, 1, "{stdout}");
        let start = stdout.find("NOT LINEARIZABLE").unwrap();
        stdout[start..].to_string()
    };
    let one = explanation("1");
    assert_eq!(one, explanation("2"));
    assert_eq!(one, explanation("7"));
}

#[test]
fn hard_history_exits_2_and_names_the_limit() {
    // Many concurrent puts and a read: more than a tiny memory limit. One
    // value is written twice, so the key is not decided as an unambiguous
    // register (which needs no search at all) but searched.
    let mut text = String::new();
    text.push_str("{\"client\":98,\"op\":\"put\",\"key\":\"k\",\"value\":\"v0\",\"call\":0,\"return\":100,\"ok\":true}\n");
    for i in 0..16 {
        text.push_str(&format!(
            "{{\"client\":{i},\"op\":\"put\",\"key\":\"k\",\"value\":\"v{i}\",\"call\":0,\"return\":100,\"ok\":true}}\n"
        ));
    }
    text.push_str("{\"client\":99,\"op\":\"get\",\"key\":\"k\",\"value\":\"v3\",\"call\":50,\"return\":60,\"ok\":true}\n");
    let path = file("hard.jsonl", &text);
    let (code, stdout, stderr) =
        concord_sim(&["check", path.to_str().unwrap(), "--max-configs", "10"]);
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(stdout.contains("UNKNOWN (not a pass)"), "{stdout}");
    assert!(stdout.contains("configuration limit"), "{stdout}");
    assert!(stdout.contains("--max-configs"), "{stdout}");
    // The bound in bytes: an unknown verdict that names it and says what
    // to do instead of raising it.
    let (code, stdout, stderr) =
        concord_sim(&["check", path.to_str().unwrap(), "--max-memory", "1K"]);
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(stdout.contains("UNKNOWN (not a pass)"), "{stdout}");
    assert!(
        stdout.contains("memory bound of 1.0 KiB (--max-memory"),
        "{stdout}"
    );
    assert!(stdout.contains("split the history"), "{stdout}");
    let (code, _, stderr) = concord_sim(&["check", path.to_str().unwrap(), "--max-memory", "1X"]);
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("unknown suffix"), "{stderr}");
    let (code, stdout, _) = concord_sim(&["check", path.to_str().unwrap(), "--max-steps", "5"]);
    assert_eq!(code, 2, "{stdout}");
    assert!(stdout.contains("step limit of 5"), "{stdout}");
}

#[test]
fn timeout_exits_2_and_names_the_time_limit() {
    let hist = generate(&GenConfig {
        seed: 1,
        ops: 100_000,
        keys: 1,
        p_unknown: 0.0,
        ..GenConfig::default()
    });
    let path = file("slow.jsonl", &to_jsonl(&hist));
    let (code, stdout, stderr) =
        concord_sim(&["check", path.to_str().unwrap(), "--timeout", "0.001"]);
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(stdout.contains("time limit of 0.001 s"), "{stdout}");
    assert!(stdout.contains("--timeout"), "{stdout}");
}

#[test]
fn malformed_input_exits_3_with_line_and_reason() {
    let path = file(
        "bad.jsonl",
        &format!("{STALE_READ}{{\"client\":1,\"op\":\"frobnicate\",\"key\":\"k\",\"call\":1,\"return\":2,\"ok\":true}}\n"),
    );
    let (code, stdout, stderr) = concord_sim(&["check", path.to_str().unwrap()]);
    assert_eq!(code, 3, "{stdout}{stderr}");
    assert!(stderr.contains("line 4"), "{stderr}");
    assert!(stderr.contains("frobnicate"), "{stderr}");
    let path = file("bad2.jsonl", "{\"client\":1,\"op\":\"get\",\"key\":\"k\",\"call\":9,\"return\":2,\"ok\":true,\"value\":\"\"}\n");
    let (code, _, stderr) = concord_sim(&["check", path.to_str().unwrap()]);
    assert_eq!(code, 3);
    assert!(
        stderr.contains("line 1") && stderr.contains("before call time"),
        "{stderr}"
    );
    let (code, _, stderr) = concord_sim(&["check", "/nonexistent/history.jsonl"]);
    assert_eq!(code, 3);
    assert!(stderr.contains("cannot read history"), "{stderr}");
    // Bad arguments are 3 as well, never the 2 of "unknown".
    let (code, _, stderr) = concord_sim(&["check", path.to_str().unwrap(), "--threads", "many"]);
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("--threads"), "{stderr}");
    let (code, _, stderr) = concord_sim(&["check", path.to_str().unwrap(), "--timeout", "-1"]);
    assert_eq!(code, 3, "{stderr}");
}
