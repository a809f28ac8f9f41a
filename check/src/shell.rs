//! Your own model from the shell: a binary of your crate that checks a
//! recorded history against your [`JsonModel`] the way `concord-sim check
//! --model NAME` checks one against a built-in model. Same flags (those
//! that make sense for one model), same report, same exit codes
//! ([`super::cli::LINEARIZABLE`] 0, [`super::cli::NOT_LINEARIZABLE`] 1,
//! [`super::cli::UNKNOWN`] 2, [`super::cli::MALFORMED`] 3,
//! [`super::cli::EMPTY`] 4).
//!
//! A history is JSON lines in the envelope of [`super::typed`] (`client`,
//! `op`, `call`, `return`, `ok`) with your model's own fields, which your
//! [`JsonModel`] reads. A complete binary for a flag that can be raised and
//! never lowered:
//!
//! ```no_run
//! use std::process::ExitCode;
//!
//! use concord_check::typed::{field_bool, JsonModel};
//! use concord_check::Model;
//! use serde_json::{Map, Value};
//!
//! /// `{"op":"raise"}`, or `{"op":"is_raised","raised":true}`.
//! struct Flag;
//!
//! #[derive(Clone, Debug, PartialEq, Eq, Hash)]
//! enum Input {
//!     Raise,
//!     IsRaised,
//! }
//!
//! impl Model for Flag {
//!     type State = bool;
//!     type Input = Input;
//!     // A raise answers nothing; a read answers whether it saw the flag up.
//!     type Output = Option<bool>;
//!
//!     fn name(&self) -> String {
//!         "flag".into()
//!     }
//!     fn init(&self) -> bool {
//!         false
//!     }
//!     fn step(&self, raised: &bool, input: &Input, output: &Option<bool>) -> Option<bool> {
//!         match (input, output) {
//!             (Input::Raise, None) => Some(true),
//!             (Input::IsRaised, Some(seen)) => (seen == raised).then_some(*raised),
//!             _ => None,
//!         }
//!     }
//!     fn step_unknown(&self, raised: &bool, input: &Input) -> Vec<bool> {
//!         vec![*raised || *input == Input::Raise]
//!     }
//! }
//!
//! impl JsonModel for Flag {
//!     fn op_names(&self) -> &'static [&'static str] {
//!         &["raise", "is_raised"]
//!     }
//!     fn input_from_json(&self, op: &str, _line: &Map<String, Value>) -> Result<Input, String> {
//!         Ok(if op == "raise" { Input::Raise } else { Input::IsRaised })
//!     }
//!     fn output_from_json(
//!         &self,
//!         input: &Input,
//!         line: &Map<String, Value>,
//!     ) -> Result<Option<bool>, String> {
//!         match input {
//!             Input::Raise => Ok(None),
//!             Input::IsRaised => field_bool(line, "raised").map(Some),
//!         }
//!     }
//!     fn input_to_json(&self, input: &Input, line: &mut Map<String, Value>) {
//!         let op = if *input == Input::Raise { "raise" } else { "is_raised" };
//!         line.insert("op".into(), op.into());
//!     }
//!     fn output_to_json(&self, output: &Option<bool>, line: &mut Map<String, Value>) {
//!         if let Some(seen) = output {
//!             line.insert("raised".into(), (*seen).into());
//!         }
//!     }
//! }
//!
//! // `my-checker history.jsonl`, `my-checker - < history.jsonl`,
//! // `my-checker --timeout 60 --html report.html history.jsonl`, ...
//! fn main() -> ExitCode {
//!     concord_check::main_with(Flag)
//! }
//! ```
//!
//! [`run_with`] is the same with the arguments, standard input and output
//! in your hands, for tests. `sim/examples/own_model_check.rs` is a lock
//! service's model checked this way, and `docs/checker.md` the walk from
//! recording a history to its verdict.
//!
//! It needs no optional feature: a crate that depends on concord-check
//! has it, without the simulator.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use super::cli::{finish, CliOutput, Format, ModelArgs, LINEARIZABLE, MALFORMED};
use super::typed::{parse_jsonl, JsonModel};
use super::CheckConfig;
use crate::history::HistoryError;

/// Most arguments a command line may have: far more than every flag
/// given twice, so a bound that only a runaway script reaches.
const ARGS_MAX: usize = 256;

/// Runs the process as `concord-sim check` for `model`: reads the
/// command line and, for the history `-`, standard input; prints the
/// report; returns the exit code for `main` to return.
///
/// A closed standard output (`my-checker history.jsonl | head -1`) ends
/// it quietly with the verdict's exit code, as `concord-sim` does.
pub fn main_with<M: JsonModel>(model: M) -> ExitCode {
    let out = run_with(&model, std::env::args_os(), &mut std::io::stdin().lock());
    // Write errors are ignored: the exit code is the verdict either way,
    // and a reader that went away has nothing left to be told.
    let _ = std::io::stdout().lock().write_all(out.stdout.as_bytes());
    let _ = std::io::stderr().lock().write_all(out.stderr.as_bytes());
    ExitCode::from(out.code)
}

/// Checks a history against `model` as `concord-sim check` would, with
/// `args` as the command line (its first item the program's name, as in
/// [`std::env::args_os`]) and `stdin` read only for the history `-`.
/// Returns what to print and the exit code instead of printing.
pub fn run_with<M, I, S>(model: &M, args: I, stdin: &mut dyn Read) -> CliOutput
where
    M: JsonModel,
    I: IntoIterator<Item = S>,
    S: Into<OsString>,
{
    // The program's name, and one argument past the bound to tell that
    // the bound was passed.
    let args: Vec<OsString> = args
        .into_iter()
        .take(ARGS_MAX + 2)
        .map(Into::into)
        .collect();
    let program = args
        .first()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|| "check".to_string());
    let flags = match parse_flags(&model.name(), args.get(1..).unwrap_or_default()) {
        Ok(Parsed::Check(flags)) => flags,
        Ok(Parsed::Help) => {
            return CliOutput {
                code: LINEARIZABLE,
                stdout: help(&program, &model.name()),
                stderr: String::new(),
            }
        }
        Err(message) => return usage_error(&message),
    };
    let shown = flags.history.display().to_string();
    let mut text = String::new();
    let read = if shown == "-" {
        stdin.read_to_string(&mut text)
    } else {
        std::fs::File::open(&flags.history).and_then(|mut f| f.read_to_string(&mut text))
    };
    if let Err(error) = read {
        return error_output(format!("cannot read history {shown}: {error}"));
    }
    let ops = match parse_jsonl(model, &text) {
        Ok(ops) => ops,
        Err(error) => {
            let at = match error {
                HistoryError::Malformed { line, message } => format!("line {line}: {message}"),
                other => other.to_string(),
            };
            let mut out = error_output(format!("{shown}: {at}"));
            out.stderr.push_str(&format!(
                "(the envelope is documented in concord_check::typed; the {} model's own \
                 fields by its JsonModel implementation)\n",
                model.name()
            ));
            return out;
        }
    };
    let args = ModelArgs {
        model: model.name(),
        format: Format::Jsonl,
        accounts: None,
        allow_empty: flags.allow_empty,
        cfg: CheckConfig {
            max_steps: flags.max_steps,
            max_frontier: flags.max_configs,
            max_memory_bytes: flags
                .max_memory_bytes
                .unwrap_or_else(super::memory::memory_bytes_default),
            time_limit: flags.timeout,
            ..CheckConfig::default()
        },
        threads: flags.threads,
        write_jsonl: flags.write_jsonl,
        write_jepsen: None,
        html: flags.html,
        shown,
        // The binary's own name, not its path: the report reads like
        // `concord-sim check`'s, under the user's program.
        program: std::path::Path::new(&program).file_name().map_or_else(
            || program.clone(),
            |name| name.to_string_lossy().into_owned(),
        ),
    };
    finish(&args, model, &ops)
}

/// The flags of `concord-sim check` that mean something for one model.
#[derive(Clone, Debug, PartialEq)]
struct Flags {
    /// The history's path, `-` for standard input.
    history: PathBuf,
    /// Wall-clock limit of the whole check.
    timeout: Option<Duration>,
    /// Parts checked in parallel, at least 1.
    threads: usize,
    /// An empty history exits 0 instead of 4.
    allow_empty: bool,
    /// Also write the history read as JSON lines.
    write_jsonl: Option<PathBuf>,
    /// Write the failing part as an HTML page.
    html: Option<PathBuf>,
    /// Most search configurations alive at once on one part.
    max_configs: usize,
    /// Memory bound of the search in bytes (`None`: a quarter of the
    /// machine's memory, as `concord-sim check`).
    max_memory_bytes: Option<u64>,
    /// Search step limit per part.
    max_steps: u64,
}

/// What the command line asks for.
#[derive(Debug, PartialEq)]
enum Parsed {
    /// A check.
    Check(Flags),
    /// The help text.
    Help,
}

fn usage_error(message: &str) -> CliOutput {
    // `concord-sim check` exits 3 on a usage error too: 2 means "unknown".
    CliOutput {
        code: MALFORMED,
        stdout: String::new(),
        stderr: format!("error: {message}\n\nFor more information, try '--help'.\n"),
    }
}

fn error_output(message: String) -> CliOutput {
    CliOutput {
        code: MALFORMED,
        stdout: String::new(),
        stderr: format!("error: {message}\n"),
    }
}

fn parse_flags(model_name: &str, args: &[OsString]) -> Result<Parsed, String> {
    if args.len() > ARGS_MAX {
        return Err(format!("more than {ARGS_MAX} arguments"));
    }
    // The defaults of `concord-sim check` (sim/src/main.rs), which are
    // the checker's own.
    let defaults = CheckConfig::default();
    let mut flags = Flags {
        history: PathBuf::new(),
        timeout: None,
        threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        allow_empty: false,
        write_jsonl: None,
        html: None,
        max_configs: defaults.max_frontier,
        max_memory_bytes: None,
        max_steps: defaults.max_steps,
    };
    let mut history: Option<PathBuf> = None;
    let mut only_positional = false;
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        let text = arg.to_string_lossy();
        if only_positional || text == "-" || !text.starts_with('-') {
            if history.is_some() {
                return Err(format!(
                    "unexpected argument {text:?}: give one history file"
                ));
            }
            history = Some(PathBuf::from(arg));
            continue;
        }
        let (name, inline) = match text.split_once('=') {
            Some((name, value)) => (name.to_string(), Some(value.to_string())),
            None => (text.to_string(), None),
        };
        let mut value = |what: &str| -> Result<String, String> {
            if let Some(value) = &inline {
                return Ok(value.clone());
            }
            rest.next()
                .map(|v| v.to_string_lossy().into_owned())
                .ok_or_else(|| format!("{name} needs a value: {name} {what}"))
        };
        match name.as_str() {
            "--" => only_positional = true,
            "-h" | "--help" => return Ok(Parsed::Help),
            "--allow-empty" => flags.allow_empty = true,
            "--timeout" => flags.timeout = Some(parse_timeout(&value("SECONDS")?)?),
            "--threads" => flags.threads = parse_threads(&value("N")?)?,
            "--max-configs" => flags.max_configs = parse_number(&name, &value("N")?)?,
            "--max-memory" => {
                let text = value("BYTES")?;
                let bytes = super::memory::parse_bytes(&text)
                    .map_err(|e| format!("invalid value {text:?} for {name}: {e}"))?;
                flags.max_memory_bytes = Some(bytes);
            }
            "--max-steps" => flags.max_steps = parse_number(&name, &value("N")?)?,
            "--write-jsonl" => flags.write_jsonl = Some(PathBuf::from(value("FILE")?)),
            "--html" => flags.html = Some(PathBuf::from(value("FILE")?)),
            // Accepted so that a script written for `concord-sim check`
            // runs unchanged, when it means this binary's model and format.
            "--model" => {
                let asked = value("NAME")?;
                if asked != model_name {
                    return Err(format!(
                        "--model {asked}: this program checks the {model_name} model only \
                         (concord-sim check --model {asked} checks a built-in model)"
                    ));
                }
            }
            "--format" => {
                let asked = value("FORMAT")?;
                if asked != "jsonl" {
                    return Err(format!(
                        "--format {asked}: this program reads JSON lines only (--format jsonl)"
                    ));
                }
            }
            "--accounts" | "--write-jepsen" | "--key-rows" => {
                return Err(format!(
                    "{name} is a flag of concord-sim check's built-in models, not of the \
                     {model_name} model"
                ))
            }
            _ => return Err(format!("unexpected argument {text:?}")),
        }
    }
    flags.history = history.ok_or("the history to check is missing: give FILE, or - for stdin")?;
    assert!(flags.threads >= 1, "threads are checked when parsed");
    Ok(Parsed::Check(flags))
}

fn parse_timeout(text: &str) -> Result<Duration, String> {
    match text.parse::<f64>() {
        Ok(s) if s.is_finite() && s > 0.0 => Ok(Duration::from_secs_f64(s)),
        _ => Err(format!(
            "--timeout {text} must be a positive number of seconds"
        )),
    }
}

fn parse_threads(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("--threads must be at least 1".to_string()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("--threads: {text:?} is not a number of threads")),
    }
}

fn parse_number<T: std::str::FromStr>(flag: &str, text: &str) -> Result<T, String> {
    text.parse()
        .map_err(|_| format!("{flag}: {text:?} is not a whole number"))
}

fn help(program: &str, model_name: &str) -> String {
    let defaults = CheckConfig::default();
    format!(
        "Check a history of the {model_name} model for linearizability (concord-sim check for \
         your own model).\n\
         Exit 0: linearizable; 1: not linearizable; 2: unknown (a time or memory limit was \
         reached; the limit is named); 3: malformed input (line number and reason) or bad \
         arguments; 4: empty (no operation, or none completed; see --allow-empty).\n\
         \n\
         Usage: {program} [OPTIONS] <HISTORY>\n\
         \n\
         Arguments:\n\
         \x20 <HISTORY>  JSON lines: the envelope of concord_check::typed with the \
         {model_name} model's fields (- reads standard input)\n\
         \n\
         Options:\n\
         \x20     --timeout <SECONDS>  Wall-clock limit of the whole check (decimals allowed); \
         reaching it gives exit code 2. No limit by default\n\
         \x20     --threads <N>        Parts checked in parallel; the verdict does not depend \
         on it. At least 1 [default: the available cores]\n\
         \x20     --allow-empty        Accept an empty history with exit 0 instead of 4\n\
         \x20     --write-jsonl <FILE> Also write the history read as JSON lines\n\
         \x20     --max-configs <N>    Most search configurations alive at once on one part \
         (a count: --max-memory bounds memory); reaching it gives exit code 2 [default: {}]\n\
         \x20     --max-memory <BYTES> Memory bound of the search, counted, in bytes (suffixes \
         K, M, G, T); reaching it gives exit code 2 [default: a quarter of the machine's \
         memory]\n\
         \x20     --max-steps <N>      Search step limit per part; reaching it gives exit code \
         2 [default: {}]\n\
         \x20     --html <FILE>        Write the failing part's operations as an HTML page\n\
         \x20 -h, --help               Print help\n",
        defaults.max_frontier, defaults.max_steps
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{EMPTY, NOT_LINEARIZABLE, UNKNOWN};
    use crate::models::Counter;

    fn run(args: &[&str], stdin: &str) -> CliOutput {
        let argv = std::iter::once("my-checker").chain(args.iter().copied());
        run_with(&Counter, argv, &mut stdin.as_bytes())
    }

    const LINEARIZABLE_HISTORY: &str = concat!(
        r#"{"client":1,"op":"add","amount":2,"call":0,"return":10,"ok":true}"#,
        "\n",
        r#"{"client":2,"op":"read","value":2,"call":20,"return":30,"ok":true}"#,
        "\n",
    );

    /// The read misses an add that returned before it was called.
    const STALE_READ: &str = concat!(
        r#"{"client":1,"op":"add","amount":2,"call":0,"return":10,"ok":true}"#,
        "\n",
        r#"{"client":2,"op":"read","value":0,"call":20,"return":30,"ok":true}"#,
        "\n",
    );

    #[test]
    fn verdicts_have_the_exit_codes_of_concord_sim_check() {
        let ok = run(&["-"], LINEARIZABLE_HISTORY);
        assert_eq!(ok.code, LINEARIZABLE, "{ok:?}");
        assert!(ok.stdout.contains("against the counter model"), "{ok:?}");
        assert!(ok.stdout.ends_with("LINEARIZABLE\n"), "{ok:?}");
        let stale = run(&["--threads", "1", "-"], STALE_READ);
        assert_eq!(stale.code, NOT_LINEARIZABLE, "{stale:?}");
        assert!(
            stale.stdout.contains("NOT LINEARIZABLE (counter model)"),
            "{stale:?}"
        );
        let empty = run(&["-"], "");
        assert_eq!(empty.code, EMPTY, "{empty:?}");
        let allowed = run(&["--allow-empty", "-"], "");
        assert_eq!(allowed.code, LINEARIZABLE, "{allowed:?}");
        let limited = run(&["--max-steps=0", "-"], STALE_READ);
        assert_eq!(limited.code, UNKNOWN, "{limited:?}");
        assert!(limited.stdout.contains("raise --max-steps"), "{limited:?}");
    }

    #[test]
    fn bad_input_and_bad_arguments_exit_3_with_the_reason() {
        let bad = run(
            &["-"],
            "{\"client\":1,\"op\":\"sub\",\"call\":0,\"return\":null}\n",
        );
        assert_eq!(bad.code, MALFORMED, "{bad:?}");
        assert!(bad.stderr.contains("-: line 1: "), "{bad:?}");
        assert!(bad.stderr.contains("no operation \"sub\""), "{bad:?}");
        let missing = run(&["/nonexistent/history.jsonl"], "");
        assert_eq!(missing.code, MALFORMED, "{missing:?}");
        assert!(
            missing.stderr.contains("cannot read history"),
            "{missing:?}"
        );
        for (args, says) in [
            (&[][..], "history to check is missing"),
            (&["a", "b"][..], "give one history file"),
            (&["--threads", "0", "-"][..], "at least 1"),
            (&["--timeout", "-1", "-"][..], "positive number of seconds"),
            (&["--timeout"][..], "--timeout needs a value"),
            (&["--model", "queue", "-"][..], "counter model only"),
            (&["--format", "jepsen", "-"][..], "JSON lines only"),
            (&["--accounts", "a=1", "-"][..], "built-in models"),
            (
                &["--frobnicate", "-"][..],
                "unexpected argument \"--frobnicate\"",
            ),
            (
                &["--allow-empty"; ARGS_MAX + 1][..],
                "more than 256 arguments",
            ),
        ] {
            let out = run(args, LINEARIZABLE_HISTORY);
            assert_eq!(out.code, MALFORMED, "{args:?}: {out:?}");
            assert!(out.stderr.contains(says), "{args:?}: {out:?}");
        }
    }

    #[test]
    fn flags_are_read_as_concord_sim_check_reads_them() {
        let args: Vec<OsString> = [
            "--timeout=1.5",
            "--threads",
            "3",
            "--model",
            "counter",
            "--format",
            "jsonl",
            "--max-configs",
            "10",
            "--max-memory",
            "64M",
            "--max-steps=20",
            "--html",
            "r.html",
            "--write-jsonl",
            "w.jsonl",
            "--allow-empty",
            "--",
            "-h",
        ]
        .map(OsString::from)
        .to_vec();
        let Ok(Parsed::Check(flags)) = parse_flags("counter", &args) else {
            panic!("{:?}", parse_flags("counter", &args));
        };
        assert_eq!(
            flags,
            Flags {
                history: PathBuf::from("-h"),
                timeout: Some(Duration::from_millis(1500)),
                threads: 3,
                allow_empty: true,
                write_jsonl: Some(PathBuf::from("w.jsonl")),
                html: Some(PathBuf::from("r.html")),
                max_configs: 10,
                max_memory_bytes: Some(64 << 20),
                max_steps: 20,
            }
        );
        let help = run(&["--help"], "");
        assert_eq!(help.code, LINEARIZABLE);
        assert!(help
            .stdout
            .contains("Usage: my-checker [OPTIONS] <HISTORY>"));
    }
}
