//! Every command of README.md and docs/ still means what the docs say:
//!
//! * `concord-cli` and `concord-node` command lines parse with the
//!   binaries' own parsers (the real-process tests run what they do);
//! * `cargo run --example`, `cargo bench ... --bench`, `cargo test --test` and
//!   `cargo install --path` name targets that exist, and every variable set
//!   in front of one is read by that target's code;
//! * a script exists, is executable and parses (`bash -n`);
//! * a `cargo test` line without `--test` is one `.ci/run` runs verbatim;
//! * a `rust` block is a piece of a file under `examples/`, which `cargo
//!   test` builds.
//!
//! `concord-sim` commands are run by `sim/tests/doc_commands.rs`. Benchmarks
//! and examples are not run here: they take minutes or serve until Ctrl-C;
//! their spelling is what rots between sittings, and it is checked here in
//! well under a second.

use std::path::{Path, PathBuf};
use std::process::Command;

use clap::Parser;
use concord_node::client::CliArgs;
use concord_node::server::NodeArgs;

#[path = "common/doc_commands.rs"]
mod doc_commands;
use doc_commands::{all, blocks, doc_files, root, DocCommand, Program};

/// Every file below `dir` (relative to the root), recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![root().join(dir)];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files
}

/// Whether some file of `files` mentions `word`.
fn mentioned(files: &[PathBuf], word: &str) -> bool {
    files.iter().any(|file| {
        std::fs::read_to_string(file)
            .map(|text| text.contains(word))
            .unwrap_or(false)
    })
}

/// Checks that every variable `command` sets is read by one of `files`.
fn variables_read(command: &DocCommand, files: &[PathBuf]) -> Result<(), String> {
    for (name, _) in &command.env {
        if !mentioned(files, name) {
            return Err(format!("sets {name}, which its target never reads"));
        }
    }
    Ok(())
}

/// The target's sources: the file and any support directory beside it,
/// and the package's `src/`. The file is where the package's manifest
/// puts the target (a `[[test]]` or `[[example]]` with a `path`: the
/// core's integration tests, package `concord-tests`, are the files of
/// `tests/` itself), else `KIND/NAME.rs` or `KIND/NAME/main.rs`.
fn target_files(package: &Path, kind: &str, name: &str) -> Result<Vec<PathBuf>, String> {
    let table = match kind {
        "tests" => "[[test]]",
        "examples" => "[[example]]",
        _ => "[[bench]]",
    };
    let manifest = std::fs::read_to_string(root().join(package).join("Cargo.toml"))
        .map_err(|e| format!("{}: {e}", package.display()))?;
    let kind_dir = match target_path(&manifest, table, name) {
        Some(path) => {
            let file = package.join(&path);
            if !root().join(&file).is_file() {
                return Err(format!("{kind} target {name}: no file {}", file.display()));
            }
            file.parent()
                .map_or_else(|| package.to_path_buf(), Path::to_path_buf)
        }
        None => {
            let kind_dir = package.join(kind);
            let single = root().join(&kind_dir).join(format!("{name}.rs"));
            let dir = root().join(&kind_dir).join(name);
            if !single.is_file() && !dir.join("main.rs").is_file() {
                return Err(format!("no {kind} target {name} in {}", package.display()));
            }
            kind_dir
        }
    };
    let mut files = files_under(&kind_dir);
    files.extend(files_under(&package.join("src")));
    Ok(files)
}

/// The `path` of the target table `table` (`[[bench]]`, `[[test]]`,
/// `[[example]]`) named `name` in `manifest` (a Cargo.toml), if it gives
/// one.
fn target_path(manifest: &str, table: &str, name: &str) -> Option<String> {
    let value = |line: &str, key: &str| {
        let value = line.strip_prefix(key)?.trim().strip_prefix('=')?.trim();
        Some(value.trim_matches('"').to_string())
    };
    // Each such table as (name, path), in order.
    let mut targets: Vec<(Option<String>, Option<String>)> = Vec::new();
    let mut in_table = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_table = line == table;
            if in_table {
                targets.push((None, None));
            }
        } else if let (true, Some(target)) = (in_table, targets.last_mut()) {
            target.0 = target.0.take().or_else(|| value(line, "name"));
            target.1 = target.1.take().or_else(|| value(line, "path"));
        }
    }
    targets
        .into_iter()
        .find(|(target, _)| target.as_deref() == Some(name))
        .and_then(|(_, path)| path)
}

/// A bench target's sources: the package's `.rs` files. The target is
/// the package's `[[bench]]` of that name (at its `path`, or
/// `benches/NAME.rs`); every benchmark lives in crate `concord-bench`
/// (`benches/`), whose `[[bench]]`s name their paths.
fn bench_files(package: &Path, name: &str) -> Result<Vec<PathBuf>, String> {
    let manifest = std::fs::read_to_string(root().join(package).join("Cargo.toml"))
        .map_err(|e| format!("{}: {e}", package.display()))?;
    let Some(path) = target_path(&manifest, "[[bench]]", name) else {
        return target_files(package, "benches", name);
    };
    if !root().join(package).join(&path).is_file() {
        return Err(format!(
            "bench {name}: no file {}",
            package.join(path).display()
        ));
    }
    Ok(files_under(package)
        .into_iter()
        .filter(|file| file.extension().is_some_and(|ext| ext == "rs"))
        .collect())
}

/// Checks one command; the error says what is wrong.
fn check(command: &DocCommand, ci: &str) -> Result<(), String> {
    let words = |args: &[String]| args.to_vec();
    match &command.program {
        Program::Cli(args) => {
            CliArgs::try_parse_from(std::iter::once("concord-cli".to_string()).chain(words(args)))
                .map(drop)
                .map_err(|e| e.to_string())
        }
        Program::Node(args) => {
            NodeArgs::try_parse_from(std::iter::once("concord-node".to_string()).chain(words(args)))
                .map(drop)
                .map_err(|e| e.to_string())
        }
        Program::Sim(_) => Ok(()), // sim/tests/doc_commands.rs runs these
        Program::Example { package, name } => {
            variables_read(command, &target_files(package, "examples", name)?)
        }
        Program::Bench { package, name } => variables_read(command, &bench_files(package, name)?),
        Program::Test { package, args } => {
            if ci.contains(&command.text) {
                return Ok(());
            }
            let name = args
                .iter()
                .position(|w| w == "--test")
                .and_then(|at| args.get(at + 1))
                .ok_or("a cargo test that .ci/run does not run, and names no --test")?;
            let files = target_files(package, "tests", name)?;
            let filters = args
                .iter()
                .skip_while(|w| *w != "--")
                .skip(1)
                .filter(|w| !w.starts_with('-'));
            for filter in filters {
                if !mentioned(&files, &format!("fn {filter}")) {
                    return Err(format!("no test {filter} in {name}"));
                }
            }
            variables_read(command, &files)
        }
        Program::Install(path) => {
            // Without --locked, cargo install resolves every dependency
            // afresh and builds versions this tree never tested.
            if !command
                .text
                .split_whitespace()
                .any(|word| word == "--locked")
            {
                return Err("a cargo install without --locked".to_string());
            }
            let manifest = root().join(path).join("Cargo.toml");
            match std::fs::read_to_string(&manifest) {
                Ok(_) if root().join(path).join("src/bin").is_dir() => Ok(()),
                Ok(_) => Err(format!("{} has no binaries", path.display())),
                Err(e) => Err(format!("{}: {e}", manifest.display())),
            }
        }
        Program::Script(path) => {
            let file = root().join(path);
            let mode = std::os::unix::fs::PermissionsExt::mode(
                &std::fs::metadata(&file)
                    .map_err(|e| format!("{}: {e}", path.display()))?
                    .permissions(),
            );
            if mode & 0o111 == 0 {
                return Err(format!("{} is not executable", path.display()));
            }
            let parsed = Command::new("bash").arg("-n").arg(&file).status();
            if !parsed.map(|s| s.success()).unwrap_or(false) {
                return Err(format!("bash -n {} fails", path.display()));
            }
            variables_read(command, &[file])
        }
        // A real-process test scrapes the metric (cli_args.rs's
        // local-cluster test makes the README's scrape), and the
        // metrics doc lists it.
        Program::Scrape { metric } => {
            let metrics_doc = root().join("docs/metrics.md");
            if !mentioned(&[metrics_doc], metric) {
                return Err(format!("docs/metrics.md does not list {metric}"));
            }
            if !mentioned(
                &files_under(Path::new("node/tests")),
                &format!("\\n{metric}"),
            ) {
                return Err(format!("no test of node/tests scrapes {metric}"));
            }
            Ok(())
        }
        Program::Unknown(words) => Err(format!(
            "no test or .ci/run step checks {words:?}: teach node/tests/common/doc_commands.rs"
        )),
    }
}

#[test]
fn every_doc_command_parses_and_names_what_exists() {
    let ci = std::fs::read_to_string(root().join(".ci/run")).expect(".ci/run is readable");
    let commands = all();
    assert!(
        commands.len() >= 40,
        "only {} commands found",
        commands.len()
    );
    let failures: Vec<String> = commands
        .iter()
        .filter_map(|command| {
            check(command, &ci)
                .err()
                .map(|error| format!("{}: `{}`: {error}", command.place, command.text))
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_readme_starts_with_the_two_commands_and_ci_runs_the_second() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    assert!(
        readme.lines().count() <= 200,
        "README.md has grown past 200 lines"
    );
    let (_, first) = &blocks(&readme, "sh")[0];
    let lines: Vec<&str> = first.lines().collect();
    assert_eq!(lines.len(), 2, "{first}");
    assert!(lines[0].starts_with("cargo run --release -p concord-sim -- run --seeds "));
    let test = lines[1].split(" #").next().unwrap().trim();
    let ci = std::fs::read_to_string(root().join(".ci/run")).unwrap();
    assert!(
        ci.lines().any(|line| line.trim() == test),
        ".ci/run must run `{test}`"
    );
}

#[test]
fn every_rust_block_is_code_that_cargo_test_builds() {
    let examples: Vec<String> = files_under(Path::new("examples"))
        .iter()
        .filter_map(|file| std::fs::read_to_string(file).ok())
        .collect();
    for file in doc_files() {
        let text = std::fs::read_to_string(root().join(&file)).unwrap();
        for (line, block) in blocks(&text, "rust") {
            assert!(
                examples.iter().any(|example| example.contains(&block)),
                "{file}:{line}: a rust block that is no piece of examples/"
            );
        }
    }
}
