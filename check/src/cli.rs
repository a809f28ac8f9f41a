//! `concord-sim check`: checking a history of the key-value store
//! ([`run_kv`], its own search and per-key report) or of any built-in
//! model (`--model NAME`, [`run`]) read from JSON lines (or, for
//! registers, a Jepsen JSON history), with the same exit codes. The binary
//! parses the flags and prints what these return, so that a closed
//! standard output ends it quietly.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::typed::{parse_jsonl, to_jsonl, JsonModel};
use super::{check_parallel, jepsen, CheckConfig, ModelReport, Op, Outcome, Verdict};
use crate::history::HistoryError;
use crate::linearizability::{check_history_parallel, CheckResult, KeyVerdict, Report};
use crate::models::{
    Bank, CasRegister, Counter, Queue, Register, RegisterInput, RegisterOutput, Set, NAMES,
};

/// Exit code: linearizable.
pub const LINEARIZABLE: u8 = 0;
/// Exit code: not linearizable.
pub const NOT_LINEARIZABLE: u8 = 1;
/// Exit code: a limit was reached (not a pass).
pub const UNKNOWN: u8 = 2;
/// Exit code: bad input or arguments.
pub const MALFORMED: u8 = 3;
/// Exit code: nothing to check (no operation, or none completed), unless
/// allowed.
pub const EMPTY: u8 = 4;

/// Input formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// JSON lines ([`super::typed`], or [`crate::history`] for `kv`).
    Jsonl,
    /// A Jepsen JSON history ([`super::jepsen`]; registers only).
    Jepsen,
}

impl Format {
    /// Parses `jsonl` or `jepsen`.
    pub fn parse(text: &str) -> Result<Format, String> {
        match text {
            "jsonl" => Ok(Format::Jsonl),
            "jepsen" => Ok(Format::Jepsen),
            other => Err(format!("unknown format {other:?} (jsonl or jepsen)")),
        }
    }
}

/// What the check was asked for (besides the history's text).
#[derive(Clone, Debug)]
pub struct ModelArgs {
    /// The model's name (one of [`NAMES`]).
    pub model: String,
    /// The input format.
    pub format: Format,
    /// The bank's accounts (`a=100,b=50`).
    pub accounts: Option<String>,
    /// Accept an empty history (exit 0 instead of [`EMPTY`]).
    pub allow_empty: bool,
    /// Limits.
    pub cfg: CheckConfig,
    /// Parts checked in parallel.
    pub threads: usize,
    /// Where to write the history as JSON lines.
    pub write_jsonl: Option<PathBuf>,
    /// Where to write the history as a Jepsen JSON history (registers).
    pub write_jepsen: Option<PathBuf>,
    /// Where to write an HTML report.
    pub html: Option<PathBuf>,
    /// The history's name in messages.
    pub shown: String,
    /// What the report's first line names as the checker:
    /// "concord-sim check", or a user's own binary
    /// ([`super::shell::main_with`]).
    pub program: String,
}

/// What to print and the exit code.
#[derive(Clone, Debug, Default)]
pub struct CliOutput {
    /// The exit code.
    pub code: u8,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl CliOutput {
    /// This output with exit code `code`.
    fn ending(mut self, code: u8) -> CliOutput {
        self.code = code;
        self
    }

    fn error(code: u8, message: String) -> CliOutput {
        CliOutput {
            code,
            stdout: String::new(),
            stderr: format!("error: {message}\n"),
        }
    }
}

fn malformed(shown: &str, e: HistoryError, model: &str) -> CliOutput {
    let mut out = match e {
        HistoryError::Malformed { line, message } => {
            CliOutput::error(MALFORMED, format!("{shown}: line {line}: {message}"))
        }
        other => CliOutput::error(MALFORMED, format!("{shown}: {other}")),
    };
    out.stderr.push_str(&format!(
        "(the {model} model's format is documented in concord_check::models and concord_check::typed)\n"
    ));
    out
}

/// The verdict of an empty history, if it is one: no operation, or none
/// that completed (nothing was observed, so nothing was checked).
pub fn emptiness(total: usize, completed: usize) -> Option<String> {
    if total == 0 {
        Some("EMPTY: the history has no operations, so nothing was checked (a recorder that wrote nothing?); --allow-empty accepts it".to_string())
    } else if completed == 0 {
        Some(format!(
            "EMPTY: none of the {total} operations completed (all failed or unknown), so nothing was observed to check; --allow-empty accepts it"
        ))
    } else {
        None
    }
}

/// Runs the check of `text` against the model `args.model`.
pub fn run(args: &ModelArgs, text: &str) -> CliOutput {
    let shown = args.shown.as_str();
    let registers = |cas: bool| -> Result<Vec<Op<RegisterInput, RegisterOutput>>, CliOutput> {
        let name = if cas { "cas-register" } else { "register" };
        let ops = match args.format {
            Format::Jsonl if cas => parse_jsonl(&CasRegister::default(), text),
            Format::Jsonl => parse_jsonl(&Register::default(), text),
            Format::Jepsen => jepsen::read_json(text),
        }
        .map_err(|e| malformed(shown, e, name))?;
        if !cas {
            if let Some(i) = ops
                .iter()
                .position(|o| matches!(o.input, RegisterInput::Cas { .. }))
            {
                return Err(CliOutput::error(
                    MALFORMED,
                    format!(
                        "{shown}: operation #{i} is a compare-and-set, which the register model does not know (use --model cas-register)"
                    ),
                ));
            }
        }
        Ok(ops)
    };
    if args.format == Format::Jepsen && !matches!(args.model.as_str(), "register" | "cas-register")
    {
        return CliOutput::error(
            MALFORMED,
            format!(
                "--format jepsen reads register and cas-register histories, not {}",
                args.model
            ),
        );
    }
    if args.write_jepsen.is_some() && !matches!(args.model.as_str(), "register" | "cas-register") {
        return CliOutput::error(
            MALFORMED,
            "--write-jepsen writes register and cas-register histories only".to_string(),
        );
    }
    match args.model.as_str() {
        "register" | "cas-register" => {
            let cas = args.model == "cas-register";
            let ops = match registers(cas) {
                Ok(ops) => ops,
                Err(out) => return out,
            };
            let mut extra = String::new();
            if let Some(path) = &args.write_jepsen {
                match std::fs::write(path, jepsen::write_json(&ops)) {
                    Ok(()) => {
                        extra.push_str(&format!("Jepsen history written to {}\n", path.display()))
                    }
                    Err(e) => {
                        return CliOutput::error(
                            MALFORMED,
                            format!("cannot write {}: {e}", path.display()),
                        )
                    }
                }
            }
            let mut out = if cas {
                finish(args, &CasRegister::default(), &ops)
            } else {
                finish(args, &Register::default(), &ops)
            };
            out.stdout.push_str(&extra);
            out
        }
        "set" => parse_and_finish(args, &Set, text),
        "queue" => parse_and_finish(args, &Queue, text),
        "counter" => parse_and_finish(args, &Counter, text),
        "bank" => {
            let Some(spec) = &args.accounts else {
                return CliOutput::error(
                    MALFORMED,
                    "the bank model needs its accounts and opening balances: --accounts a=100,b=50"
                        .to_string(),
                );
            };
            match Bank::parse(spec) {
                Ok(bank) => parse_and_finish(args, &bank, text),
                Err(e) => CliOutput::error(MALFORMED, format!("--accounts: {e}")),
            }
        }
        other => CliOutput::error(
            MALFORMED,
            format!(
                "unknown model {other:?}; the models are {}",
                NAMES.join(", ")
            ),
        ),
    }
}

fn parse_and_finish<M: JsonModel>(args: &ModelArgs, model: &M, text: &str) -> CliOutput {
    match parse_jsonl(model, text) {
        Ok(ops) => finish(args, model, &ops),
        Err(e) => malformed(&args.shown, e, &model.name()),
    }
}

/// Checks `ops` against `model` and renders what `concord-sim check`
/// prints for it, with its exit code; `args.model`, `args.format`,
/// `args.accounts` and `args.write_jepsen` are not read. The one path of
/// every JSON-lines model, built-in or a user's ([`super::shell`]).
pub fn finish<M: JsonModel>(
    args: &ModelArgs,
    model: &M,
    ops: &[Op<M::Input, M::Output>],
) -> CliOutput {
    let mut out = CliOutput::default();
    if let Some(path) = &args.write_jsonl {
        if let Err(e) = std::fs::write(path, to_jsonl(model, ops)) {
            return CliOutput::error(MALFORMED, format!("cannot write {}: {e}", path.display()));
        }
        out.stdout
            .push_str(&format!("JSON lines written to {}\n", path.display()));
    }
    let completed = ops
        .iter()
        .filter(|o| matches!(o.outcome, Outcome::Ok(_)))
        .count();
    if let Some(message) = emptiness(ops.len(), completed) {
        if args.allow_empty {
            out.stdout
                .push_str(&format!("{message}\naccepted (--allow-empty)\n"));
            out.code = LINEARIZABLE;
        } else {
            out.stdout.push_str(&format!("{message}\n"));
            out.code = EMPTY;
        }
        return out;
    }
    let started = Instant::now();
    let report = check_parallel(model, ops, &args.cfg, args.threads);
    let wall = started.elapsed();
    print_report(&mut out.stdout, args, model, &report, ops.len(), wall);
    if let Some(path) = &args.html {
        let page = crate::report::model_page(model, ops, &report);
        match std::fs::write(path, page) {
            Ok(()) => out
                .stdout
                .push_str(&format!("HTML report written to {}\n", path.display())),
            Err(e) => out
                .stderr
                .push_str(&format!("error: cannot write {}: {e}\n", path.display())),
        }
    }
    out.code = match &report.verdict {
        Verdict::Linearizable => LINEARIZABLE,
        Verdict::NotLinearizable(_) => NOT_LINEARIZABLE,
        Verdict::Unknown { .. } => UNKNOWN,
        Verdict::Invalid { .. } => MALFORMED,
    };
    out
}

fn print_report<M: JsonModel>(
    s: &mut String,
    args: &ModelArgs,
    model: &M,
    report: &ModelReport,
    ops: usize,
    wall: std::time::Duration,
) {
    let threads = args.threads;
    use std::fmt::Write as _;
    let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
    let _ = writeln!(
        s,
        "{}: {} against the {} model, {}, {}, {:.3} s",
        args.program,
        plural(ops, "operation"),
        model.name(),
        plural(report.parts.len(), "part"),
        plural(threads.max(1), "thread"),
        wall.as_secs_f64()
    );
    if report.parts.len() > 1 {
        // The slowest parts, at most 20.
        let mut rows: Vec<usize> = (0..report.parts.len()).collect();
        rows.sort_by(|&a, &b| {
            report.parts[b]
                .elapsed
                .cmp(&report.parts[a].elapsed)
                .then(a.cmp(&b))
        });
        rows.truncate(20);
        let _ = writeln!(
            s,
            "per part (the {} slowest of {}):",
            rows.len(),
            report.parts.len()
        );
        let _ = writeln!(
            s,
            "  {:<24} {:>8} {:>9} {:>8} {:>7} {:>10}  verdict",
            "part", "ops", "completed", "unknown", "failed", "time (s)"
        );
        for &i in &rows {
            let p = &report.parts[i];
            let _ = writeln!(
                s,
                "  {:<24} {:>8} {:>9} {:>8} {:>7} {:>10.3}  {}",
                format!("{:?}", p.part),
                p.ops,
                p.completed,
                p.unknown,
                p.failed,
                p.elapsed.as_secs_f64(),
                p.verdict
            );
        }
    } else if let Some(p) = report.parts.first() {
        let _ = writeln!(
            s,
            "{} completed, {} unknown, {} failed; {}",
            p.completed,
            p.unknown,
            p.failed,
            if p.decided_directly {
                "decided directly (unambiguous)".to_string()
            } else {
                format!("{} search steps", p.steps)
            }
        );
    }
    match &report.verdict {
        Verdict::Linearizable => {
            let _ = writeln!(s, "LINEARIZABLE");
        }
        Verdict::Unknown { limit, .. } => {
            let flag = match limit {
                super::Limit::Time(_) => " (raise --timeout)",
                super::Limit::Configurations(_) => {
                    " (--max-configs; the bound that matters is --max-memory)"
                }
                super::Limit::Memory { .. } => "",
                super::Limit::Steps(_) => " (raise --max-steps)",
                super::Limit::PendingOperations(_) => "",
                super::Limit::Pace { .. } => "",
            };
            let _ = writeln!(s, "{}{flag}", report.verdict);
        }
        other => {
            let _ = writeln!(s, "{other}");
        }
    }
}

/// Runs the key-value store's check of `text` (JSON lines of
/// [`crate::history`]) with its own search ([`check_history_parallel`])
/// and report: counts, a table of the `key_rows` slowest keys, the
/// verdict with its explanation. `concord-sim check` without `--model`
/// (or with `--model kv`) on JSON lines; [`run`] checks the other models,
/// and the key-value model from a Jepsen history.
pub fn run_kv(args: &ModelArgs, key_rows: usize, text: &str) -> CliOutput {
    let mut out = CliOutput::default();
    macro_rules! outln {
        ($($t:tt)*) => {{
            let _ = writeln!(out.stdout, $($t)*);
        }};
    }
    macro_rules! errln {
        ($($t:tt)*) => {{
            let _ = writeln!(out.stderr, $($t)*);
        }};
    }
    let shown = args.shown.as_str();
    if args.write_jepsen.is_some() {
        errln!("error: --write-jepsen writes register and cas-register histories only");
        return out.ending(MALFORMED);
    }
    let ops = match crate::history::parse_jsonl(text) {
        Ok(ops) => ops,
        Err(HistoryError::Malformed { line, message }) => {
            errln!("error: {shown}: line {line}: {message}");
            errln!("(the format is documented in concord_check::history, check/src/history.rs)");
            return out.ending(MALFORMED);
        }
        Err(error) => {
            errln!("error: {shown}: {error}");
            return out.ending(MALFORMED);
        }
    };
    if let Some(path) = &args.write_jsonl {
        match std::fs::write(path, crate::history::to_jsonl(&ops)) {
            Ok(()) => outln!("JSON lines written to {}", path.display()),
            Err(error) => {
                errln!("error: cannot write {}: {error}", path.display());
                return out.ending(MALFORMED);
            }
        }
    }
    let completed = ops
        .iter()
        .filter(|o| matches!(o.outcome, crate::history::Outcome::Ok(_)))
        .count();
    if let Some(message) = emptiness(ops.len(), completed) {
        outln!("{message}");
        if args.allow_empty {
            outln!("accepted (--allow-empty)");
            return out.ending(LINEARIZABLE);
        }
        return out.ending(EMPTY);
    }
    let started = Instant::now();
    let report = check_history_parallel(&ops, &args.cfg, args.threads);
    let wall = started.elapsed();
    print_kv_report(&mut out.stdout, args, key_rows, &report, ops.len(), wall);
    if let Some(path) = &args.html {
        let page = match &report.result {
            CheckResult::NotLinearizable(failure) => crate::report::check_page(&ops, failure),
            other => crate::report::verdict_page(&other.to_string(), &report),
        };
        match std::fs::write(path, page) {
            Ok(()) => outln!("HTML report written to {}", path.display()),
            Err(error) => {
                errln!("error: cannot write {}: {error}", path.display());
            }
        }
    }
    out.code = match &report.result {
        CheckResult::Ok => LINEARIZABLE,
        CheckResult::NotLinearizable(_) => NOT_LINEARIZABLE,
        CheckResult::Unknown(_) => UNKNOWN,
        CheckResult::Invalid { .. } => MALFORMED,
    };
    out
}

/// The key-value check's report: counts, the per-key table, the verdict.
fn print_kv_report(
    stdout: &mut String,
    args: &ModelArgs,
    key_rows: usize,
    report: &Report,
    ops: usize,
    wall: Duration,
) {
    macro_rules! outln {
        ($($t:tt)*) => {{
            let _ = writeln!(stdout, $($t)*);
        }};
    }
    macro_rules! out {
        ($($t:tt)*) => {{
            let _ = write!(stdout, $($t)*);
        }};
    }
    let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
    outln!(
        "{}: {} on {}, {}, {:.3} s",
        args.program,
        plural(ops, "operation"),
        plural(report.keys.len(), "key"),
        plural(args.threads.max(1), "thread"),
        wall.as_secs_f64()
    );
    let mut rows: Vec<usize> = (0..report.keys.len()).collect();
    if rows.len() > key_rows {
        rows.sort_by(|&a, &b| {
            report.keys[b]
                .elapsed
                .cmp(&report.keys[a].elapsed)
                .then(a.cmp(&b))
        });
        rows.truncate(key_rows);
        outln!(
            "per key (the {} slowest of {}; --key-rows shows more):",
            rows.len(),
            report.keys.len()
        );
    } else {
        outln!("per key:");
    }
    outln!(
        "  {:<24} {:>8} {:>9} {:>8} {:>7} {:>10}  verdict",
        "key",
        "ops",
        "completed",
        "unknown",
        "failed",
        "time (s)"
    );
    for &i in &rows {
        let k = &report.keys[i];
        let time = if k.verdict == KeyVerdict::Skipped {
            "-".to_string()
        } else {
            format!("{:.3}", k.elapsed.as_secs_f64())
        };
        outln!(
            "  {:<24} {:>8} {:>9} {:>8} {:>7} {:>10}  {}",
            format!("{:?}", k.key),
            k.ops,
            k.completed,
            k.unknown,
            k.failed,
            time,
            k.verdict
        );
    }
    match &report.result {
        CheckResult::Ok => outln!("LINEARIZABLE"),
        CheckResult::NotLinearizable(failure) => out!("{failure}"),
        CheckResult::Unknown(exhausted) => {
            let flag = match exhausted.limit {
                crate::linearizability::Limit::Time(_) => " (raise --timeout)",
                crate::linearizability::Limit::Configurations(_) => {
                    " (--max-configs; the bound that matters is --max-memory)"
                }
                crate::linearizability::Limit::Memory { .. } => "",
                crate::linearizability::Limit::Steps(_) => " (raise --max-steps)",
                crate::linearizability::Limit::PendingOperations(_) => "",
                crate::linearizability::Limit::Pace { .. } => "",
            };
            outln!("{exhausted}{flag}");
        }
        CheckResult::Invalid { index, message } => {
            outln!("invalid history: operation #{index}: {message}")
        }
    }
}
