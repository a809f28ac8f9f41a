//! `madsim-sweep`: the runtime users deploy, swept over a range of seeds
//! under madsim, the way `concord-sim run` sweeps the core.
//!
//! Each seed runs `multi_scenario::run_multi_group`: real multi-group hosts (3 by default,
//! `--nodes N` up to 7; the
//! loop, shared log on the page-cache disk model, TCP transport and
//! listener, routing clients of the sharded key-value store) on madsim's
//! simulated network and clock, through rounds of faults (kills with a
//! crashed disk, a failing disk, an fsync failing once with EIO, a disk
//! full for one write, isolation, one-way cuts, a slow and a lossy network,
//! connections reset), checked linearizable per group, with no
//! acknowledged append lost, every session write applied exactly once
//! (at most once when its outcome is unknown) and every group led again
//! after the heal. The summary gives the seeds, the virtual time, the
//! operations checked, the session writes checked, the faults by kind
//! and each failure with the command that replays it with the servers'
//! logs.
//!
//! Built only with `RUSTFLAGS="--cfg madsim"`; `scripts/madsim-sweep`
//! builds and runs it:
//!
//! ```text
//! scripts/madsim-sweep --seeds 0..100 --groups 64 --jobs 2
//! scripts/madsim-sweep --seeds 17..18 --groups 64 --log   # replay one seed
//! ```

#[cfg(not(madsim))]
fn main() {
    eprintln!(
        "madsim-sweep runs only in a madsim build: use scripts/madsim-sweep \
         (it builds with RUSTFLAGS=\"--cfg madsim\")"
    );
    std::process::exit(2);
}

#[cfg(madsim)]
fn main() {
    sweep::main();
}

#[cfg(madsim)]
mod sweep {
    use std::collections::BTreeMap;
    use std::io::{BufRead, BufReader, Write};
    use std::ops::Range;
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    use concord_madsim_tests::multi_scenario::{
        capture_panics, run_seed, MultiReport, MultiScenario, RuntimeMistake,
        CLOCK_SKEW_SAFE_PERMILLE_MAX, NODES_MAX,
    };

    /// Most child processes.
    const JOBS_MAX: u64 = 64;

    const USAGE: &str = "usage: madsim-sweep --seeds A..B [--nodes N] [--groups G] [--clients C] \
                         [--faults N] [--clock-skew PERMILLE] [--bug NAME] \
                         [--lying-fsync NODES] [--jobs J] [--log] \
                         [--quiet]";

    /// What the command line asks.
    #[derive(Clone, Debug)]
    struct Options {
        seeds: Range<u64>,
        scenario: MultiScenario,
        jobs: u64,
        /// Print the servers' logs (with virtual time): a replay.
        log: bool,
        quiet: bool,
        /// Run as a child: one line per seed on stdout.
        child: bool,
    }

    fn parse(args: &[String]) -> Result<Options, String> {
        let mut options = Options {
            seeds: 0..0,
            scenario: MultiScenario::default(),
            jobs: 1,
            log: false,
            quiet: false,
            child: false,
        };
        let mut seeds = None;
        let mut i = 0;
        while i < args.len() {
            let flag = args[i].as_str();
            let mut value = || -> Result<&str, String> {
                i += 1;
                args.get(i)
                    .map(String::as_str)
                    .ok_or(format!("{flag} needs a value"))
            };
            match flag {
                "--seeds" => seeds = Some(parse_range(value()?)?),
                "--nodes" => options.scenario.nodes = parse_number(flag, value()?, 3..=NODES_MAX)?,
                "--groups" => options.scenario.groups = parse_number(flag, value()?, 1..=1024)?,
                "--clients" => options.scenario.clients = parse_number(flag, value()?, 1..=64)?,
                "--faults" => {
                    options.scenario.fault_rounds = parse_number(flag, value()?, 0..=1000)? as u32
                }
                "--bug" => {
                    let name = value()?;
                    let mistake = RuntimeMistake::named(name).ok_or_else(|| {
                        let names: Vec<&str> =
                            RuntimeMistake::ALL.iter().map(|(_, n)| *n).collect();
                        format!(
                            "--bug {name:?}: no such mistake; there are {}",
                            names.join(", ")
                        )
                    })?;
                    options.scenario.planted = Some(mistake);
                }
                // Not a fault of the swarm: a disk no runtime can defend
                // against, to show that the checks catch what it loses.
                "--lying-fsync" => {
                    options.scenario.lying_fsync_nodes =
                        parse_number(flag, value()?, 0..=NODES_MAX)?
                }
                "--clock-skew" => {
                    options.scenario.clock_skew_permille =
                        parse_number(flag, value()?, 0..=900)? as u32
                }
                "--jobs" => options.jobs = parse_number(flag, value()?, 1..=JOBS_MAX)?,
                "--log" => options.log = true,
                "--quiet" => options.quiet = true,
                "--child" => options.child = true,
                "-h" | "--help" => return Err(String::new()),
                other => return Err(format!("unknown argument {other:?}")),
            }
            i += 1;
        }
        options.seeds = seeds.ok_or("--seeds A..B is required")?;
        let s = &options.scenario;
        if s.lying_fsync_nodes > s.nodes {
            return Err(format!(
                "--lying-fsync {}: more than the cluster's {} nodes",
                s.lying_fsync_nodes, s.nodes
            ));
        }
        if options.seeds.is_empty() {
            return Err(format!(
                "--seeds {}..{} is empty",
                options.seeds.start, options.seeds.end
            ));
        }
        Ok(options)
    }

    fn parse_range(text: &str) -> Result<Range<u64>, String> {
        let (a, b) = text
            .split_once("..")
            .ok_or(format!("--seeds {text:?}: expected A..B"))?;
        let a: u64 = a
            .parse()
            .map_err(|_| format!("--seeds {text:?}: {a:?} is not a number"))?;
        let b: u64 = b
            .parse()
            .map_err(|_| format!("--seeds {text:?}: {b:?} is not a number"))?;
        Ok(a..b)
    }

    fn parse_number(
        flag: &str,
        text: &str,
        allowed: std::ops::RangeInclusive<u64>,
    ) -> Result<u64, String> {
        let n: u64 = text
            .parse()
            .map_err(|_| format!("{flag} {text:?}: not a number"))?;
        if !allowed.contains(&n) {
            return Err(format!(
                "{flag} {n}: must be within {}..={}",
                allowed.start(),
                allowed.end()
            ));
        }
        Ok(n)
    }

    /// One seed's line between a child and its parent.
    fn seed_line(seed: u64, result: &Result<MultiReport, String>) -> String {
        match result {
            Ok(report) => {
                let kinds: Vec<&str> = report
                    .faults
                    .iter()
                    .map(|f| f.split_whitespace().next().unwrap_or("?"))
                    .collect();
                format!(
                    "seed {seed} ok {} {} {} {} {} {} {}/{} {}/{}/{}/{} {}",
                    report.operations,
                    report.appends_checked,
                    (report.first_led + report.virtual_time).as_millis(),
                    report.syncs_failed,
                    report.writes_failed,
                    report.rots_refused,
                    u64::from(report.leases),
                    report.lease_reads,
                    report.session_writes_checked,
                    report.session_writes_unknown,
                    report.session_retries,
                    report.connections_reset,
                    if kinds.is_empty() {
                        "-".to_string()
                    } else {
                        kinds.join(",")
                    }
                )
            }
            Err(message) => format!("seed {seed} fail {}", message.replace('\n', " | ")),
        }
    }

    /// What the sweep saw.
    #[derive(Default)]
    struct Totals {
        seeds: u64,
        passed: u64,
        operations: u64,
        appends_checked: u64,
        virtual_ms: u64,
        /// Fsyncs failed with EIO, writes failed with ENOSPC.
        syncs_failed: u64,
        writes_failed: u64,
        /// Rots of synced bytes, each refused at the restart.
        rots_refused: u64,
        /// Seeds that leased their reads, and the lease reads served.
        lease_seeds: u64,
        lease_reads: u64,
        /// Session writes checked, of them of unknown outcome; copies
        /// sent again after a lost answer; connections reset.
        session_writes: u64,
        session_unknown: u64,
        session_retries: u64,
        connections_reset: u64,
        faults: BTreeMap<String, u64>,
        failures: Vec<(u64, String)>,
        /// Seeds a child reported.
        reported: std::collections::BTreeSet<u64>,
        /// Seeds after a child's death, never run.
        not_run: u64,
    }

    impl Totals {
        fn add_line(&mut self, line: &str) -> Result<(), String> {
            let bad = || format!("a child wrote {line:?}");
            let mut words = line.splitn(4, ' ');
            if words.next() != Some("seed") {
                return Err(bad());
            }
            let seed: u64 = words.next().and_then(|s| s.parse().ok()).ok_or_else(bad)?;
            let verdict = words.next().ok_or_else(bad)?;
            let rest = words.next().unwrap_or("");
            self.seeds += 1;
            self.reported.insert(seed);
            match verdict {
                "ok" => {
                    let fields: Vec<&str> = rest.split(' ').collect();
                    let [ops, appends, virtual_ms, syncs_failed, writes_failed, rots, leases, sessions, kinds] =
                        fields[..]
                    else {
                        return Err(bad());
                    };
                    let number = |text: &str| text.parse::<u64>().map_err(|_| bad());
                    self.rots_refused += number(rots)?;
                    let (leased, lease_reads) = leases.split_once('/').ok_or_else(bad)?;
                    self.lease_seeds += number(leased)?;
                    self.lease_reads += number(lease_reads)?;
                    // Session writes checked, of unknown outcome, copies
                    // sent again, connections reset: `a/b/c/d`.
                    let sessions: Vec<u64> = sessions
                        .split('/')
                        .map(|n| n.parse::<u64>().map_err(|_| bad()))
                        .collect::<Result<_, _>>()?;
                    let [writes, unknown, retries, resets] = sessions[..] else {
                        return Err(bad());
                    };
                    self.session_writes += writes;
                    self.session_unknown += unknown;
                    self.session_retries += retries;
                    self.connections_reset += resets;
                    self.syncs_failed += syncs_failed.parse::<u64>().map_err(|_| bad())?;
                    self.writes_failed += writes_failed.parse::<u64>().map_err(|_| bad())?;
                    self.passed += 1;
                    self.operations += ops.parse::<u64>().map_err(|_| bad())?;
                    self.appends_checked += appends.parse::<u64>().map_err(|_| bad())?;
                    self.virtual_ms += virtual_ms.parse::<u64>().map_err(|_| bad())?;
                    for kind in kinds.split(',').filter(|k| *k != "-") {
                        *self.faults.entry(kind.to_string()).or_default() += 1;
                    }
                }
                "fail" => self.failures.push((seed, rest.to_string())),
                _ => return Err(bad()),
            }
            Ok(())
        }
    }

    /// The command-line arguments that ask for `s` (all but the seeds):
    /// what a child is started with and what a replay names.
    fn scenario_args(s: &MultiScenario) -> Vec<String> {
        let mut args: Vec<String> = [
            ("--nodes", s.nodes.to_string()),
            ("--groups", s.groups.to_string()),
            ("--clients", s.clients.to_string()),
            ("--faults", s.fault_rounds.to_string()),
            ("--clock-skew", s.clock_skew_permille.to_string()),
        ]
        .into_iter()
        .flat_map(|(flag, value)| [flag.to_string(), value])
        .collect();
        if let Some(mistake) = s.planted {
            args.extend(["--bug".to_string(), mistake.name().to_string()]);
        }
        if s.lying_fsync_nodes > 0 {
            args.extend(["--lying-fsync".to_string(), s.lying_fsync_nodes.to_string()]);
        }
        args
    }

    fn replay_command(seed: u64, options: &Options) -> String {
        format!(
            "scripts/madsim-sweep --seeds {seed}..{} {} --log",
            seed + 1,
            scenario_args(&options.scenario).join(" ")
        )
    }

    /// Prints the servers' logs with the virtual time of each line and
    /// the node it came from (madsim's `node` span): a replay's timeline.
    fn install_log() {
        struct VirtualTime;
        impl tracing_subscriber::fmt::time::FormatTime for VirtualTime {
            fn format_time(
                &self,
                w: &mut tracing_subscriber::fmt::format::Writer<'_>,
            ) -> std::fmt::Result {
                match madsim::time::TimeHandle::try_current() {
                    Some(time) => write!(w, "{:>12.6}s", time.elapsed().as_secs_f64()),
                    None => write!(w, "{:>13}", "-"),
                }
            }
        }
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_timer(VirtualTime)
            .with_ansi(false)
            .with_writer(std::io::stderr)
            .init();
    }

    pub fn main() {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let options = match parse(&args) {
            Ok(options) => options,
            Err(message) => {
                if message.is_empty() {
                    println!("{USAGE}");
                    std::process::exit(0);
                }
                eprintln!("madsim-sweep: {message}\n{USAGE}");
                std::process::exit(2);
            }
        };
        if options.log {
            install_log();
        } else {
            capture_panics();
        }
        if options.child {
            let stdout = std::io::stdout();
            for seed in options.seeds.clone() {
                let line = seed_line(seed, &run_seed(seed, options.scenario));
                let mut out = stdout.lock();
                let _ = writeln!(out, "{line}");
                let _ = out.flush();
            }
            return;
        }
        let started = Instant::now();
        let totals = run_children(&options);
        let totals = match totals {
            Ok(totals) => totals,
            Err(message) => {
                eprintln!("madsim-sweep: {message}");
                std::process::exit(1);
            }
        };
        let wall = started.elapsed().as_secs_f64();
        let s = &options.scenario;
        println!(
            "madsim-sweep: {} seeds ({}..{}) of {} multi-group hosts, {} groups, {} clients, \
             {} faults each, in {wall:.1}s with {} jobs ({:.0} seeds per minute)",
            totals.seeds,
            options.seeds.start,
            options.seeds.end,
            s.nodes,
            s.groups,
            s.clients,
            s.fault_rounds,
            options.jobs,
            totals.seeds as f64 * 60.0 / wall.max(1e-9),
        );
        println!(
            "  {:.0} simulated seconds ({:.0} per wall second), {} client operations checked, \
             {} acknowledged appends found",
            totals.virtual_ms as f64 / 1000.0,
            totals.virtual_ms as f64 / 1000.0 / wall.max(1e-9),
            totals.operations,
            totals.appends_checked
        );
        let faults: Vec<String> = totals
            .faults
            .iter()
            .map(|(kind, n)| format!("{kind}={n}"))
            .collect();
        println!("  faults injected: {}", faults.join(" "));
        println!(
            "  session writes checked exactly once: {} ({} of unknown outcome, at most once; \
             {} copies sent again after a lost answer); connections reset: {}",
            totals.session_writes,
            totals.session_unknown,
            totals.session_retries,
            totals.connections_reset
        );
        if s.lying_fsync_nodes > 0 {
            println!(
                "  nodes whose fsync lies (reports success, keeps nothing): {}",
                s.lying_fsync_nodes
            );
        }
        println!(
            "  disk errors that struck (each node then stopped and restarted): {} fsyncs failed \
             with EIO, {} writes failed with ENOSPC; {} rots of synced bytes, each refused at \
             the restart naming the file",
            totals.syncs_failed, totals.writes_failed, totals.rots_refused
        );
        println!(
            "  clocks: each node's rate within ±{}‰ of nominal{}; {} seeds leased their reads, \
             {} lease reads served",
            s.clock_skew_permille,
            if s.clock_skew_permille > CLOCK_SKEW_SAFE_PERMILLE_MAX {
                format!(
                    " (beyond the {CLOCK_SKEW_SAFE_PERMILLE_MAX}‰ the leases' drift bound \
                     declares safe: stale lease reads may be found)"
                )
            } else {
                String::new()
            },
            totals.lease_seeds,
            totals.lease_reads
        );
        println!("  failures: {}", totals.failures.len());
        if totals.not_run > 0 {
            println!("  not run (after a process died): {} seeds", totals.not_run);
        }
        for (seed, message) in &totals.failures {
            println!("    seed {seed}: {message}");
            println!("      replay: {}", replay_command(*seed, &options));
        }
        if !totals.failures.is_empty() || totals.not_run > 0 {
            std::process::exit(1);
        }
    }

    /// Splits the seeds over `jobs` children of this executable, reads
    /// their lines as they come, and adds them up; progress on stderr. A
    /// child that dies (madsim aborts on some failures) leaves its seeds
    /// unreported: the first of them is counted a failure, the rest as
    /// not run.
    fn run_children(options: &Options) -> Result<Totals, String> {
        let exe = std::env::current_exe().map_err(|e| format!("cannot find myself: {e}"))?;
        let count = options.seeds.end - options.seeds.start;
        let jobs = options.jobs.min(count);
        let (tx, rx) = std::sync::mpsc::channel::<Result<String, String>>();
        let mut children = Vec::new();
        for job in 0..jobs {
            let from = options.seeds.start + count * job / jobs;
            let to = options.seeds.start + count * (job + 1) / jobs;
            let s = &options.scenario;
            let mut command = Command::new(&exe);
            command
                .arg("--child")
                .args(["--seeds", &format!("{from}..{to}")])
                .args(scenario_args(s))
                .stdout(Stdio::piped());
            if options.log {
                command.arg("--log");
            }
            let mut child = command
                .spawn()
                .map_err(|e| format!("cannot start a child: {e}"))?;
            let stdout = child.stdout.take().expect("piped");
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let sent = tx.send(line.map_err(|e| format!("reading a child: {e}")));
                    if sent.is_err() {
                        break;
                    }
                }
            });
            children.push((from..to, child));
        }
        drop(tx);
        let mut totals = Totals::default();
        let mut last_progress = Instant::now();
        for line in rx {
            totals.add_line(&line?)?;
            if !options.quiet && last_progress.elapsed() >= Duration::from_secs(10) {
                last_progress = Instant::now();
                eprintln!(
                    "  ... {} of {count} seeds, {} failed",
                    totals.seeds,
                    totals.failures.len()
                );
            }
        }
        for (range, mut child) in children {
            let status = child
                .wait()
                .map_err(|e| format!("waiting for a child: {e}"))?;
            let first_unreported = range.clone().find(|seed| !totals.reported.contains(seed));
            if let Some(seed) = first_unreported {
                totals.failures.push((
                    seed,
                    format!(
                        "the process running seeds {}..{} stopped ({status}) in this seed",
                        range.start, range.end
                    ),
                ));
                totals.not_run += range.end - seed - 1;
            }
        }
        totals.failures.sort();
        Ok(totals)
    }
}
