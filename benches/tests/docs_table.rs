//! docs/benchmarks.md lists every benchmark: one row per `[[bench]]` target
//! of this crate's Cargo.toml, under the heading of its layer (the folder
//! of its file: `core`, `runtime`, `multi`, `checker`, `peers`), naming the
//! one command that runs it; that command is also a line of the page's
//! `sh` block, where `node/tests/doc_commands.rs` checks it. No row names a
//! target that is gone.

use std::path::Path;

/// One `[[bench]]` of Cargo.toml.
#[derive(Debug, Default)]
struct Bench {
    name: String,
    path: String,
    required_features: Vec<String>,
}

/// The `[[bench]]` tables of `manifest`, in order.
fn benches(manifest: &str) -> Vec<Bench> {
    let value = |line: &str, key: &str| {
        let rest = line.strip_prefix(key)?.trim_start().strip_prefix('=')?;
        Some(rest.trim().to_string())
    };
    let unquote = |value: &str| value.trim().trim_matches('"').to_string();
    let mut benches = Vec::new();
    let mut in_bench = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') && !line.starts_with("[\"") {
            in_bench = line == "[[bench]]";
            if in_bench {
                benches.push(Bench::default());
            }
            continue;
        }
        let Some(bench) = benches.last_mut().filter(|_| in_bench) else {
            continue;
        };
        if let Some(name) = value(line, "name") {
            bench.name = unquote(&name);
        } else if let Some(path) = value(line, "path") {
            bench.path = unquote(&path);
        } else if let Some(list) = value(line, "required-features") {
            bench.required_features = list
                .trim_matches(['[', ']'])
                .split(',')
                .map(unquote)
                .filter(|feature| !feature.is_empty())
                .collect();
        }
    }
    benches
}

/// The rows of the page's tables as (heading, bench name, whole row).
fn rows(page: &str) -> Vec<(String, String, String)> {
    let mut heading = String::new();
    let mut rows = Vec::new();
    for line in page.lines() {
        if let Some(title) = line.strip_prefix("## ") {
            heading = title.trim().to_string();
        } else if let Some(rest) = line.strip_prefix("| `") {
            if let Some(end) = rest.find("` |") {
                rows.push((heading.clone(), rest[..end].to_string(), line.to_string()));
            }
        }
    }
    rows
}

/// The lines of the page's `sh` blocks.
fn sh_lines(page: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut in_sh = false;
    for line in page.lines() {
        if line.starts_with("```") {
            in_sh = !in_sh && line.trim() == "```sh";
        } else if in_sh {
            lines.push(line.trim().to_string());
        }
    }
    lines
}

fn crate_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn docs_benchmarks_lists_every_bench_target() {
    let manifest = std::fs::read_to_string(crate_dir().join("Cargo.toml")).unwrap();
    let page = std::fs::read_to_string(crate_dir().join("../docs/benchmarks.md")).unwrap();
    let targets = benches(&manifest);
    assert!(
        targets.len() >= 20,
        "only {} [[bench]] targets read",
        targets.len()
    );
    let rows = rows(&page);
    let sh = sh_lines(&page);
    let mut failures = Vec::new();
    for bench in &targets {
        let name = &bench.name;
        let layer = bench.path.split('/').next().unwrap_or_default();
        if !crate_dir().join(&bench.path).is_file() || !bench.path.contains('/') {
            failures.push(format!(
                "{name}: path {:?} is not a file of a layer folder",
                bench.path
            ));
        }
        let mine: Vec<_> = rows.iter().filter(|(_, row, _)| row == name).collect();
        let [(heading, _, row)] = mine.as_slice() else {
            failures.push(format!(
                "{name}: {} rows in docs/benchmarks.md, not 1",
                mine.len()
            ));
            continue;
        };
        if heading != layer {
            failures.push(format!(
                "{name}: listed under `## {heading}`, its file is in {layer}/"
            ));
        }
        // The row's command: its last backquoted cell.
        let command = row
            .trim_end_matches(['|', ' '])
            .rsplit("| ")
            .next()
            .unwrap_or_default()
            .trim()
            .trim_matches('`');
        let features = if bench.required_features.is_empty() {
            String::new()
        } else {
            " --features ".to_string()
        };
        if !command.starts_with("cargo bench -p concord-bench ")
            || !command.ends_with(&format!(" --bench {name}"))
            || !command.contains(&features)
        {
            failures.push(format!(
                "{name}: the row's command `{command}` is not `cargo bench -p concord-bench{} --bench {name}`",
                if features.is_empty() { "" } else { " --features ..." }
            ));
        }
        if !sh.iter().any(|line| line == command) {
            failures.push(format!(
                "{name}: `{command}` is not a line of the page's sh block"
            ));
        }
    }
    for (_, name, _) in &rows {
        if !targets.iter().any(|bench| &bench.name == name) {
            failures.push(format!(
                "docs/benchmarks.md has a row for {name}, no [[bench]] target"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_manifest_reader_reads_a_bench_table() {
    let manifest = "[package]\nname = \"x\"\n\n[[bench]]\nname = \"a\"\npath = \"core/a.rs\"\n\
        harness = false\nrequired-features = [\"f\", \"g\"]\n\n[[test]]\nname = \"t\"\n";
    let read = benches(manifest);
    assert_eq!(read.len(), 1, "{read:?}");
    assert_eq!(read[0].name, "a");
    assert_eq!(read[0].path, "core/a.rs");
    assert_eq!(read[0].required_features, ["f", "g"]);
}
