//! The commands of README.md, benches/README.md and docs/*.md, read the
//! way a person would type them: every line of a `sh` code block (`\`
//! continues a line, `#` starts a comment, `NAME=value` alone sets a
//! variable later lines use as `$NAME`), split into words and sorted by
//! the program they run.
//!
//! Two tests share this file: `node/tests/doc_commands.rs` checks the
//! command lines of `concord-cli` and `concord-node` against their real
//! parsers and every `cargo` and script command against the targets it
//! names; `sim/tests/doc_commands.rs` runs every `concord-sim` command.
//! A command neither knows fails, so a doc cannot hold a command nothing
//! checks.

#![allow(dead_code)] // each test uses its own part

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Docs whose commands another test checks (their own authors' tests).
pub const CHECKED_ELSEWHERE: &[&str] = &["docs/sharded-store.md", "docs/testing-your-service.md"];

/// Most commands the docs may hold: a bound on what the tests run.
pub const COMMANDS_MAX: usize = 400;

/// One command of a doc.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DocCommand {
    /// The doc and line it starts on, for failure messages.
    pub place: String,
    /// The line as written (continuations joined, comment dropped).
    pub text: String,
    /// `NAME=value` words before the program.
    pub env: Vec<(String, String)>,
    /// What it runs.
    pub program: Program,
}

/// What a command runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Program {
    /// `concord-sim ARGS`, or `cargo run ... -p concord-sim -- ARGS`.
    Sim(Vec<String>),
    /// `concord-cli ARGS` (also through `cargo run`).
    Cli(Vec<String>),
    /// `concord-node ARGS` (also through `cargo run`).
    Node(Vec<String>),
    /// `cargo run ... --example NAME`: the package's directory and NAME.
    Example { package: PathBuf, name: String },
    /// `cargo bench ... --bench NAME`.
    Bench { package: PathBuf, name: String },
    /// `cargo test ...`: its words after `cargo test`.
    Test { package: PathBuf, args: Vec<String> },
    /// `cargo install --path DIR`.
    Install(PathBuf),
    /// A script of the repository, by its path.
    Script(PathBuf),
    /// `curl -s http://ADDR/metrics | grep '^NAME'`: a scrape of a
    /// server's metrics for NAME.
    Scrape { metric: String },
    /// Nothing this file knows.
    Unknown(Vec<String>),
}

/// The repository's root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("a member's parent is the workspace")
        .to_path_buf()
}

/// README.md, benches/README.md and every doc of docs/ not
/// [`CHECKED_ELSEWHERE`], relative to the root.
pub fn doc_files() -> Vec<String> {
    let mut files = vec!["README.md".to_string(), "benches/README.md".to_string()];
    let mut docs: Vec<String> = std::fs::read_dir(root().join("docs"))
        .expect("docs/ is readable")
        .map(|entry| format!("docs/{}", entry.unwrap().file_name().to_string_lossy()))
        .filter(|name| name.ends_with(".md") && !CHECKED_ELSEWHERE.contains(&name.as_str()))
        .collect();
    docs.sort();
    files.extend(docs);
    files
}

/// The code blocks of `text` in language `language`, each with the line
/// number of its first line.
pub fn blocks(text: &str, language: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    // The open block: its first line's number, its tag, its lines.
    let mut open: Option<(usize, String, Vec<&str>)> = None;
    for (number, line) in text.lines().enumerate() {
        let fence = line.trim_start().strip_prefix("```");
        match (open.take(), fence) {
            (None, Some(tag)) => open = Some((number + 2, tag.trim().to_string(), Vec::new())),
            (None, None) => {}
            (Some((start, tag, lines)), Some(_)) => {
                if tag == language {
                    found.push((start, lines.join("\n")));
                }
            }
            (Some((start, tag, mut lines)), None) => {
                lines.push(line);
                open = Some((start, tag, lines));
            }
        }
    }
    assert!(open.is_none(), "a code block is never closed");
    found
}

/// Splits `line` into words as a shell would: quotes group, `#` at the
/// start of a word starts a comment.
pub fn words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                in_word = true;
            }
            (None, '#') if !in_word => break,
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            (None, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    assert!(quote.is_none(), "an unclosed quote in {line:?}");
    if in_word {
        words.push(word);
    }
    words
}

/// `NAME=value`, if `word` is one.
fn assignment(word: &str) -> Option<(String, String)> {
    let (name, value) = word.split_once('=')?;
    let is_name = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    is_name.then(|| (name.to_string(), value.to_string()))
}

/// Every command of every doc.
pub fn all() -> Vec<DocCommand> {
    let mut commands = Vec::new();
    for file in doc_files() {
        let text = std::fs::read_to_string(root().join(&file)).expect("a doc is readable");
        for (start, body) in blocks(&text, "sh") {
            commands.extend(of_block(&file, start, &body));
        }
    }
    assert!(
        commands.len() <= COMMANDS_MAX,
        "{} commands",
        commands.len()
    );
    commands
}

/// The commands of one `sh` block starting at line `start` of `file`.
pub fn of_block(file: &str, start: usize, body: &str) -> Vec<DocCommand> {
    let mut variables: BTreeMap<String, String> = BTreeMap::new();
    let mut commands = Vec::new();
    let mut joined = String::new();
    let mut first_line = start;
    for (offset, line) in body.lines().enumerate() {
        if joined.is_empty() {
            first_line = start + offset;
        }
        match line.trim_end().strip_suffix('\\') {
            Some(part) => {
                joined.push_str(part);
                joined.push(' ');
                continue;
            }
            None => joined.push_str(line),
        }
        let line = std::mem::take(&mut joined);
        let mut words = words(&line);
        for word in &mut words {
            for (name, value) in &variables {
                *word = word.replace(&format!("${name}"), value);
            }
        }
        let env: Vec<(String, String)> = words.iter().map_while(|w| assignment(w)).collect();
        let rest = words.split_off(env.len());
        if rest.is_empty() {
            variables.extend(env);
            continue;
        }
        let text = line.split(" #").next().unwrap_or(&line).trim().to_string();
        commands.push(DocCommand {
            place: format!("{file}:{first_line}"),
            text,
            env,
            program: program(&rest),
        });
    }
    commands
}

/// The directory of workspace package `name`.
fn package_dir(name: &str) -> PathBuf {
    match name {
        "concord" => PathBuf::from("."),
        "concord-sim" => PathBuf::from("sim"),
        "concord-check" => PathBuf::from("check"),
        "concord-node" => PathBuf::from("node"),
        "concord-bench" => PathBuf::from("benches"),
        "concord-services" => PathBuf::from("services"),
        "concord-tests" => PathBuf::from("tests"),
        other => PathBuf::from(format!("<no package {other}>")),
    }
}

/// The value after flag `flag` in `words`.
fn flag_value(words: &[String], flag: &str) -> Option<String> {
    let at = words.iter().position(|w| w == flag)?;
    words.get(at + 1).cloned()
}

/// What `words` (a command without its leading assignments) runs.
pub fn program(words: &[String]) -> Program {
    // `COMMAND &` runs COMMAND in the background: the same command.
    let words = match words.split_last() {
        Some((last, rest)) if last == "&" => rest,
        _ => words,
    };
    let unknown = || Program::Unknown(words.to_vec());
    let Some(first) = words.first() else {
        return unknown();
    };
    if first == "curl" {
        let scrape = words.iter().any(|w| w.ends_with("/metrics"))
            && words
                .windows(2)
                .any(|pair| pair[0] == "|" && pair[1] == "grep");
        return match words.last().and_then(|w| w.strip_prefix('^')) {
            Some(metric) if scrape => Program::Scrape {
                metric: metric.to_string(),
            },
            _ => unknown(),
        };
    }
    let args = || words[1..].to_vec();
    match first.as_str() {
        "concord-sim" => return Program::Sim(args()),
        "concord-cli" => return Program::Cli(args()),
        "concord-node" => return Program::Node(args()),
        "cargo" => {}
        path if path.contains('/') => return Program::Script(PathBuf::from(path)),
        _ => return unknown(),
    }
    let Some(sub) = words.get(1) else {
        return unknown();
    };
    let (before, after) = match words.iter().position(|w| w == "--") {
        Some(at) => (&words[..at], words[at + 1..].to_vec()),
        None => (words, Vec::new()),
    };
    let package = package_dir(&flag_value(before, "-p").unwrap_or_else(|| "concord".to_string()));
    match sub.as_str() {
        "run" => {
            if let Some(name) = flag_value(before, "--example") {
                return Program::Example { package, name };
            }
            match flag_value(before, "--bin").as_deref() {
                Some("concord-cli") => Program::Cli(after),
                Some("concord-node") => Program::Node(after),
                Some(_) => unknown(),
                None if package == Path::new("sim") => Program::Sim(after),
                None if package == Path::new("node") => Program::Node(after),
                None => unknown(),
            }
        }
        "bench" => match flag_value(before, "--bench") {
            Some(name) => Program::Bench { package, name },
            None => unknown(),
        },
        "test" => Program::Test {
            package,
            args: words[2..].to_vec(),
        },
        "install" => match flag_value(before, "--path") {
            Some(path) => Program::Install(PathBuf::from(path)),
            None => unknown(),
        },
        _ => unknown(),
    }
}

#[test]
fn a_block_is_read_as_a_person_types_it() {
    let body = "S=a:1,b:2\n# a comment\nconcord-cli --servers $S kv put k \"two words\"  # note\n\
        X_MAX=3 cargo bench -p concord-bench \\\n    --bench reads\n";
    let commands = of_block("doc.md", 10, body);
    assert_eq!(commands.len(), 2, "{commands:?}");
    assert_eq!(
        commands[0].program,
        Program::Cli(
            ["--servers", "a:1,b:2", "kv", "put", "k", "two words"]
                .map(String::from)
                .to_vec()
        )
    );
    assert_eq!(commands[0].place, "doc.md:12");
    assert_eq!(
        commands[1].env,
        vec![("X_MAX".to_string(), "3".to_string())]
    );
    assert_eq!(
        commands[1].program,
        Program::Bench {
            package: PathBuf::from("benches"),
            name: "reads".to_string()
        }
    );
    assert_eq!(commands[1].place, "doc.md:13");
}
