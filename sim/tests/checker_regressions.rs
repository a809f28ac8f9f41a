//! Histories the simulator produced that the linearizability checker
//! misjudged. Kept here (ignored until the checker is fixed) so the
//! checker's owner can pick them up: run with `--ignored`.

use concord_sim::history::parse_jsonl;
use concord_sim::linearizability::check_history;

/// From `concord-sim run --seeds 0..10000` (seed 3432, 5 nodes, default
/// flags), reduced by hand. Linearizable: put "0.5;" -> cas "0.5;"->"4.5;"
/// -> append "6.6;" -> get reads "4.5;6.6;". The checker reports it not
/// linearizable ("values the key could hold just before: <other>"): a
/// value that no read observes directly ("4.5;", written by a cas of
/// unknown outcome) seems to be abstracted away although a later append
/// builds on it.
#[test]
#[ignore = "linearizability checker false positive: append on a cas-written value no read observes"]
fn cas_then_append_read_back_is_linearizable() {
    let history = r#"
{"client":0,"op":"put","key":"k6","value":"0.5;","call":10,"return":null}
{"client":4,"op":"cas","key":"k6","from":"0.5;","to":"4.5;","call":20,"return":null}
{"client":6,"op":"append","key":"k6","value":"6.6;","call":100,"return":200,"ok":true}
{"client":2,"op":"get","key":"k6","value":"4.5;6.6;","call":300,"return":400,"ok":true}
"#;
    let ops = parse_jsonl(history).unwrap();
    let result = check_history(&ops);
    assert!(result.is_ok(), "{result}");
}

/// From `concord-sim run --seeds 0..4000 --nodes 3` (seed 149), reduced:
/// put "2.12;" (unknown) -> append "4.6;" (unknown) -> append "4.9;" ->
/// get reads "2.12;4.6;4.9;". Linearizable in that order.
#[test]
#[ignore = "linearizability checker false positive: appends onto values written by unknown-outcome operations"]
fn unknown_put_then_appends_read_back_is_linearizable() {
    let history = r#"
{"client":2,"op":"put","key":"k1","value":"2.12;","call":10,"return":null}
{"client":4,"op":"append","key":"k1","value":"4.6;","call":20,"return":null}
{"client":4,"op":"append","key":"k1","value":"4.9;","call":100,"return":200,"ok":true}
{"client":6,"op":"get","key":"k1","value":"2.12;4.6;4.9;","call":300,"return":400,"ok":true}
"#;
    let ops = parse_jsonl(history).unwrap();
    let result = check_history(&ops);
    assert!(result.is_ok(), "{result}");
}
