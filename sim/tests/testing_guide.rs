//! docs/testing-your-service.md stays true: every Rust block of the guide
//! is code that compiles and runs here (in `sim/examples/bank/service.rs`
//! or `sim/tests/bank.rs`, which CI runs), and the commands it names
//! exist.

fn read(path: &str) -> String {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    std::fs::read_to_string(format!("{root}/{path}")).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn blocks<'a>(text: &'a str, lang: &str) -> Vec<&'a str> {
    let fence = format!("```{lang}\n");
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find(&fence) {
        let body = &rest[i + fence.len()..];
        let end = body.find("```").expect("closed block");
        out.push(&body[..end]);
        rest = &body[end + 3..];
    }
    out
}

#[test]
fn every_rust_block_of_the_guide_is_tested_code() {
    let guide = read("docs/testing-your-service.md");
    let sources = read("sim/examples/bank/service.rs") + &read("sim/tests/bank.rs");
    let rust = blocks(&guide, "rust");
    assert!(rust.len() >= 5, "{} rust blocks", rust.len());
    for block in rust {
        assert!(
            sources.contains(block),
            "this block of the guide is not in the tested sources:\n{block}"
        );
    }
}

#[test]
fn the_guide_names_what_exists() {
    let guide = read("docs/testing-your-service.md");
    for name in [
        "CONCORD_SIM_SEED",
        "CONCORD_SIM_SEEDS",
        "harness::scenario",
        "Checked::new",
        "--model bank",
        "--format jepsen",
    ] {
        assert!(guide.contains(name), "{name}");
    }
    assert_eq!(concord_sim::harness::SEED_VAR, "CONCORD_SIM_SEED");
    assert_eq!(concord_sim::harness::SEEDS_VAR, "CONCORD_SIM_SEEDS");
}
