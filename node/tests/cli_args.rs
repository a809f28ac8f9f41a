//! The binaries' command lines as a user meets them: bad flags, bad config
//! keys and bad commands exit 2 with a message naming the flag or the key
//! and the file; the example config parses; `--help`, environment
//! fallbacks and shell completions work; an unreachable cluster is a clear
//! runtime error, not a hang.

#[path = "common/processes.rs"]
mod processes;

use std::path::{Path, PathBuf};
use std::process::Command;

use concord_node::server::{load_config, ServerSettings, CONFIG_KEYS};
use processes::Scratch;

const NODE: &str = env!("CARGO_BIN_EXE_concord-node");
const CLI: &str = env!("CARGO_BIN_EXE_concord-cli");

/// A binary's exit code, stdout and stderr, run without any `CONCORD_*`
/// variable of the caller's environment (they are flag fallbacks).
fn run(binary: &str, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut command = Command::new(binary);
    for (name, _) in std::env::vars() {
        if name.starts_with("CONCORD_") {
            command.env_remove(name);
        }
    }
    let output = command
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("run the binary");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).to_string(),
        String::from_utf8_lossy(&output.stderr).to_string(),
    )
}

/// Asserts exit status 2 and every `expected` fragment on stderr.
fn assert_refused(binary: &str, args: &[&str], expected: &[&str]) {
    let (code, _, stderr) = run(binary, args, &[]);
    assert_eq!(code, 2, "{binary} {args:?} exited {code}: {stderr}");
    for fragment in expected {
        assert!(
            stderr.contains(fragment),
            "{binary} {args:?}: {stderr:?} lacks {fragment:?}"
        );
    }
}

fn example_config() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/server.toml")
}

#[test]
fn the_example_config_parses_and_sets_every_key() {
    let path = example_config();
    let config = load_config(&path).expect("the example config parses");
    let settings = ServerSettings::merge(&Default::default(), &config, Some(&path))
        .expect("the example config is a complete, consistent server");
    assert_eq!(settings.id, 1);
    assert_eq!(settings.listen, "127.0.0.1:7001");
    assert_eq!(settings.peers.len(), 3);
    assert_eq!(settings.cluster_id, "demo");
    assert_eq!(settings.snapshot_every_entries, Some(100_000));
    // The example documents every key there is, set or as a commented-out
    // line (`# tls-ca = ...`: files a fresh machine does not have): a key
    // added to the config without an example line fails here.
    let text = std::fs::read_to_string(&path).unwrap();
    let table: toml::Table = toml::from_str(&text).unwrap();
    let commented: Vec<&str> = text
        .lines()
        .filter_map(|line| {
            line.strip_prefix("# ")?
                .split_once(" = ")
                .map(|(key, _)| key)
        })
        .filter(|key| CONFIG_KEYS.contains(key))
        .collect();
    let mut keys: Vec<&str> = table.keys().map(String::as_str).chain(commented).collect();
    keys.sort_unstable();
    let mut known = CONFIG_KEYS.to_vec();
    known.sort_unstable();
    assert_eq!(keys, known);
}

/// The flags of a valid one-node cluster (`--data-dir` aside).
const ONE_NODE: [&str; 8] = [
    "--id",
    "1",
    "--listen",
    "127.0.0.1:1",
    "--peers",
    "1=127.0.0.1:1",
    "--cluster-id",
    "c",
];

#[test]
fn node_flags_refused_with_a_clear_message() {
    let cases: &[(&[&str], &[&str])] = &[
        (
            &[],
            &["missing --id (or CONCORD_ID, or `id` in the --config file)"],
        ),
        (
            &["--id", "zero"],
            &[
                "invalid value 'zero' for '--id <ID>'",
                "\"zero\" is not a node id",
            ],
        ),
        (&["--id", "0"], &["0 is reserved"]),
        (
            &["--id", "1", "--listen", "nowhere"],
            &["'--listen <HOST:PORT>'", "is not a host:port address"],
        ),
        (
            &["--peers", "2:127.0.0.1:2"],
            &[
                "'--peers <ID=HOST:PORT,...>'",
                "is not of the form id=host:port",
            ],
        ),
        (
            &["--peers", "2=127.0.0.1:2,2=127.0.0.1:3"],
            &["node 2 is listed twice"],
        ),
        (
            &["--tick-ms", "0"],
            &["'--tick-ms <MS>'", "between 1 and 10000"],
        ),
        (&["--bogus"], &["unexpected argument '--bogus'", "Usage:"]),
        (
            &["--peer", "1=127.0.0.1:1"],
            &["tip: a similar argument exists: '--peers'"],
        ),
        (&["--id"], &["a value is required for '--id <ID>'"]),
        (
            &[
                "--id",
                "1",
                "--listen",
                "127.0.0.1:1",
                "--peers",
                "1=127.0.0.1:2",
                "--data-dir",
                "/nonexistent/x",
                "--cluster-id",
                "c",
            ],
            &["--peers lists node 1 at 127.0.0.1:2 but --listen is 127.0.0.1:1"],
        ),
        (
            &[
                "--id",
                "1",
                "--listen",
                "127.0.0.1:1",
                "--peers",
                "2=127.0.0.1:2",
            ],
            &["missing --data-dir"],
        ),
        (
            &[&ONE_NODE[..], &["--join"]].concat(),
            &["missing --data-dir"],
        ),
        (
            // Listing itself is allowed with --join (a node that joined
            // restarts with the current voters), not naming no voter.
            &[&ONE_NODE[..], &["--data-dir", "/nonexistent/x", "--join"]].concat(),
            &["--join: --peers must name the voters of the cluster to join"],
        ),
        // A server that is not one of --peers would campaign
        // alone forever; two nodes at one address, or one no one can
        // dial, never form a cluster.
        (
            &[
                "--id",
                "4",
                "--listen",
                "127.0.0.1:4",
                "--peers",
                "1=127.0.0.1:1,2=127.0.0.1:2,3=127.0.0.1:3",
                "--data-dir",
                "/nonexistent/x",
                "--cluster-id",
                "c",
            ],
            &[
                "--id 4 is not one of --peers (nodes 1, 2, 3)",
                "start it with --join",
            ],
        ),
        (
            &[
                "--id",
                "1",
                "--listen",
                "127.0.0.1:1",
                "--peers",
                "1=127.0.0.1:1,2=127.0.0.1:1",
                "--data-dir",
                "/nonexistent/x",
                "--cluster-id",
                "c",
            ],
            &[
                "'--peers <ID=HOST:PORT,...>'",
                "nodes 1 and 2 are both at 127.0.0.1:1",
            ],
        ),
        (
            &[
                "--id",
                "1",
                "--listen",
                "127.0.0.1:1",
                "--peers",
                "1=127.0.0.1:1,2=127.0.0.1:0",
                "--data-dir",
                "/nonexistent/x",
                "--cluster-id",
                "c",
            ],
            &["'--peers <ID=HOST:PORT,...>'", "port 0 cannot be dialled"],
        ),
        (
            &[
                "--id",
                "4",
                "--listen",
                "127.0.0.1:2",
                "--peers",
                "1=127.0.0.1:1,2=127.0.0.1:2",
                "--data-dir",
                "/nonexistent/x",
                "--cluster-id",
                "c",
                "--join",
            ],
            &["--listen 127.0.0.1:2 is the address of node 2 in --peers"],
        ),
        (
            &["--storage", "tape"],
            &["\"tape\" is no storage: give memory or disk"],
        ),
        (
            &[
                &ONE_NODE[..],
                &["--data-dir", "/nonexistent/x", "--storage", "disk"],
                &["--service", "chat"],
            ]
            .concat(),
            &["the chat service keeps its state in memory"],
        ),
        (
            &[
                &ONE_NODE[..],
                &["--data-dir", "/nonexistent/x", "--storage", "disk"],
                &["--groups", "65"],
            ]
            .concat(),
            &["at most 64 groups; --groups 65 is more"],
        ),
    ];
    for (args, expected) in cases {
        assert_refused(NODE, args, expected);
    }
}

/// A data directory whose key-value store is on disk is refused with
/// `--storage memory` (its keys would be ignored), before anything in it
/// changes.
#[test]
fn a_disk_data_directory_is_refused_with_storage_memory() {
    let dir = std::env::temp_dir().join(format!("concord-disk-dir-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("kv-disk/group-1")).unwrap();
    let dir_text = dir.display().to_string();
    let args = [&ONE_NODE[..], &["--data-dir", &dir_text]].concat();
    let (code, _, stderr) = run(NODE, &args, &[]);
    let entries = std::fs::read_dir(&dir).unwrap().count();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("start it with --storage disk"), "{stderr}");
    assert_eq!(entries, 1, "the data directory was written to");
}

/// A build without feature `disk` refuses `--storage disk` at start, naming
/// the feature, before it touches the data directory.
#[cfg(not(feature = "disk"))]
#[test]
fn storage_disk_without_the_feature_is_refused_naming_it() {
    let dir = std::env::temp_dir().join(format!("concord-no-disk-{}", std::process::id()));
    let dir_text = dir.display().to_string();
    let args = [
        &ONE_NODE[..],
        &["--data-dir", &dir_text, "--storage", "disk"],
    ]
    .concat();
    let (code, _, stderr) = run(NODE, &args, &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("built with feature disk"), "{stderr}");
    assert!(!dir.exists(), "the data directory was created");
}

#[test]
fn node_config_keys_refused_naming_the_key_and_the_file() {
    let scratch = Scratch::new("keys");
    let cases: &[(&str, &str)] = &[
        (
            "peer = 3\n",
            "unknown key `peer` in {file}, expected `peers`",
        ),
        (
            "cluster_id = \"c\"\n",
            "unknown key `cluster_id` in {file}, expected `cluster-id`",
        ),
        (
            "tick-ms = \"fast\"\n",
            "key `tick-ms` in {file}: invalid type: string \"fast\", expected u64",
        ),
        (
            "id = 1\nlisten = \"127.0.0.1:1\"\ndata-dir = \"/x\"\ncluster-id = \"c\"\n\
             [peers]\n1 = \"127.0.0.1:1\"\n2 = \"nowhere\"\n",
            "key `peers.2` in {file}: \"nowhere\" is not a host:port address",
        ),
        ("id = 0\n", "key `id` in {file}: 0 is reserved"),
        ("[peers\n", "{file} is not valid TOML: "),
    ];
    for (i, (text, expected)) in cases.iter().enumerate() {
        let file = scratch.file(&format!("server-{i}.toml"), text);
        let expected = expected.replace("{file}", &file);
        assert_refused(NODE, &["--config", &file], &[&expected]);
    }
    let missing = scratch.0.join("absent.toml");
    let missing = missing.to_string_lossy();
    assert_refused(
        NODE,
        &["--config", &missing],
        &[&format!("cannot read the config file {missing}")],
    );
}

#[test]
fn flags_and_environment_override_the_config_file() {
    let scratch = Scratch::new("override");
    // A complete file whose listen address disagrees with its own peers:
    // refused as is (exit 2); once a flag or a variable fixes the address
    // the settings pass, and the node stops at the core's check of the
    // file's too-long lease (exit 1) instead of serving: that is the
    // override at work, without a server left running.
    let file = scratch.file(
        "server.toml",
        "id = 1\nlisten = \"127.0.0.1:9\"\ncluster-id = \"c\"\nlease-ticks = 100\n\
         [peers]\n1 = \"127.0.0.1:1\"\n",
    );
    let data_dir = scratch.0.join("data");
    let data_dir = data_dir.to_string_lossy().to_string();
    let (code, _, stderr) = run(NODE, &["--config", &file, "--data-dir", &data_dir], &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--listen is 127.0.0.1:9"), "{stderr}");
    let flag = run(
        NODE,
        &[
            "--config",
            &file,
            "--data-dir",
            &data_dir,
            "--listen",
            "127.0.0.1:1",
        ],
        &[],
    );
    let variable = run(
        NODE,
        &[],
        &[
            ("CONCORD_CONFIG", &file),
            ("CONCORD_DATA_DIR", &data_dir),
            ("CONCORD_LISTEN", "127.0.0.1:1"),
        ],
    );
    for (code, _, stderr) in [flag, variable] {
        // Past every settings check: refused by the core's lease rule (a
        // runtime error, exit 1), so the settings merged as promised.
        assert_eq!(code, 1, "{stderr}");
        assert!(stderr.contains("invalid settings"), "{stderr}");
        assert!(stderr.contains("lease"), "{stderr}");
    }
}

#[test]
fn help_and_completions_for_both_binaries() {
    for (binary, name, fragment) in [
        (NODE, "concord-node", "--snapshot-every-entries"),
        (CLI, "concord-cli", "transfer-leader"),
    ] {
        let (code, stdout, stderr) = run(binary, &["--help"], &[]);
        assert_eq!(code, 0, "{stderr}");
        assert!(stdout.contains("Usage:"), "{stdout}");
        for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
            let (code, stdout, stderr) = run(binary, &["completions", shell], &[]);
            assert_eq!(code, 0, "{name} completions {shell}: {stderr}");
            assert!(stdout.contains(name), "{name} completions {shell}");
            if shell == "bash" {
                assert!(
                    stdout.contains(fragment),
                    "{name}'s bash completions lack {fragment}"
                );
            }
        }
        assert_refused(binary, &["completions", "tcsh"], &["invalid value 'tcsh'"]);
    }
    let (_, stdout, _) = run(NODE, &["--help"], &[]);
    for variable in [
        "CONCORD_ID",
        "CONCORD_PEERS",
        "CONCORD_DATA_DIR",
        "CONCORD_CONFIG",
    ] {
        assert!(stdout.contains(variable), "--help does not name {variable}");
    }
}

#[test]
fn cli_arguments_refused_with_a_clear_message() {
    let s = ["--servers", "127.0.0.1:1"];
    let with = |rest: &[&str]| -> Vec<String> {
        s.iter()
            .chain(rest)
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
    };
    let cases: Vec<(Vec<String>, &[&str])> = vec![
        (
            vec!["kv".into(), "get".into(), "k".into()],
            &["missing --servers (or CONCORD_SERVERS)"],
        ),
        (with(&[]), &["Usage:"]),
        (
            vec!["--servers".into(), "localhost".into(), "status".into()],
            &["is not a host:port address"],
        ),
        (
            with(&["kv", "put", "k"]),
            &["required arguments were not provided", "<VALUE>"],
        ),
        (
            with(&["frobnicate"]),
            &["unrecognized subcommand 'frobnicate'"],
        ),
        (
            with(&["kv", "get", "--read", "stale", "k"]),
            &[
                "invalid value 'stale' for '--read <PATH>'",
                "index, lease, follower, log",
            ],
        ),
        (
            with(&["kv", "cas", "k", "v"]),
            &["cas takes KEY EXPECTED NEW"],
        ),
        (
            with(&["get", "k"]),
            &["`concord-cli get` is now `concord-cli kv get`"],
        ),
        (
            with(&["put", "k", "v"]),
            &["`concord-cli put` is now `concord-cli kv put`"],
        ),
        (with(&["kv"]), &["get-many", "put-many"]),
        (with(&["chat", "send", "ann"]), &["<BODY>"]),
        (
            with(&["kv", "put-many", "novalue"]),
            &["\"novalue\" is not KEY=VALUE"],
        ),
        (with(&["member"]), &["add-learner", "transfer-leader"]),
        (with(&["member", "promote", "0"]), &["0 is reserved"]),
        (
            with(&["member", "add-learner", "4", "x"]),
            &["is not a host:port address"],
        ),
        (
            with(&["member", "remove", "3", "4"]),
            &["unexpected argument '4'"],
        ),
    ];
    for (args, expected) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_refused(CLI, &args, expected);
    }
}

#[test]
fn cli_reaches_no_cluster_with_a_clear_error() {
    // An unreachable cluster is a clear runtime error (exit 1), not a hang;
    // `status` prints a row per unreachable server, then fails (it
    // used to exit 0 as if the cluster had answered).
    let (code, stdout, stderr) = run(
        CLI,
        &["--servers", "127.0.0.1:9", "--timeout-ms", "200", "status"],
        &[],
    );
    assert_eq!(code, 1, "no server answered `status`: {stderr}");
    assert!(stderr.contains("no server answered"), "{stderr}");
    assert!(
        stdout.contains("127.0.0.1:9") && stdout.contains("unreachable"),
        "{stdout}"
    );
    let (code, _, stderr) = run(
        CLI,
        &["kv", "get", "k"],
        &[
            ("CONCORD_SERVERS", "127.0.0.1:9"),
            ("CONCORD_TIMEOUT_MS", "100"),
        ],
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("gave up after"), "{stderr}");
}

#[test]
fn witness_flags_keys_and_subcommand_parse_and_are_checked() {
    use clap::Parser;
    use concord_node::server::{parse_config, NodeArgs};
    let peers = "1=127.0.0.1:1,2=127.0.0.1:2,3=127.0.0.1:3";
    let base = [
        "--peers",
        peers,
        "--cluster-id",
        "c",
        "--data-dir",
        "/nonexistent/x",
    ];
    let merge = |extra: &[&str], file: &str| {
        let mut argv = vec!["concord-node"];
        argv.extend_from_slice(&base);
        if !extra.contains(&"--listen") {
            argv.extend_from_slice(&["--listen", "127.0.0.1:3"]);
        }
        argv.extend_from_slice(extra);
        let flags = NodeArgs::try_parse_from(argv).expect("valid flags").server;
        let config = parse_config(file, Path::new("s.toml")).expect("valid file");
        ServerSettings::merge(&flags, &config, Some(Path::new("s.toml")))
    };
    // Born with a witness: the list alone makes node 3 one; --witness
    // agrees; the file's keys do the same.
    let listed = merge(&["--id", "3", "--witnesses", "3"], "").unwrap();
    assert!(listed.is_witness() && !listed.witness);
    assert_eq!(listed.witnesses, [3].into());
    let settings = listed.node_settings();
    assert!(settings.is_witness());
    assert_eq!(settings.raft_config().witnesses, [3].into());
    let full = merge(
        &["--id", "1", "--listen", "127.0.0.1:1", "--witnesses", "3"],
        "",
    )
    .unwrap();
    assert!(!full.is_witness());
    assert_eq!(full.node_settings().raft_config().witnesses, [3].into());
    let from_file = merge(&["--id", "3"], "witness = true\nwitnesses = [3]\n").unwrap();
    assert!(from_file.witness && from_file.is_witness());
    // Joining as a witness: itself alone, not a learner.
    let joining = merge(
        &[
            "--id",
            "4",
            "--listen",
            "127.0.0.1:4",
            "--join",
            "--witness",
        ],
        "",
    )
    .unwrap();
    let raft = joining.node_settings().raft_config();
    assert_eq!(raft.witnesses, [4].into());
    assert!(raft.learners.is_empty());
    assert_eq!(raft.voters, [1, 2, 3].into());
    raft.validate()
        .expect("a joining witness's configuration is valid");
    // Refusals, each naming what to do.
    let refused = |extra: &[&str], file: &str, needle: &str| {
        let e = merge(extra, file).unwrap_err().to_string();
        assert!(e.contains(needle), "{extra:?} {file:?}: {e}");
    };
    refused(&["--id", "3", "--witness"], "", "not in --witnesses");
    refused(
        &["--id", "3", "--witnesses", "4"],
        "",
        "which --peers does not list",
    );
    refused(&["--id", "3", "--witnesses", "2,3"], "", "not a majority");
    refused(&["--id", "3", "--witnesses", "3,3"], "", "twice");
    refused(&["--id", "3"], "witnesses = [2, 3]\n", "not a majority");
    refused(
        &["--id", "3"],
        "witnesses = [0]\n",
        "key `witnesses` in s.toml: 0 is reserved",
    );
    let node_3 = [&base[..], &["--id", "3", "--listen", "127.0.0.1:3"]].concat();
    assert_refused(
        NODE,
        &[&node_3[..], &["--witnesses", "0"]].concat(),
        &["'--witnesses <ID,...>'", "0 is reserved"],
    );
    // The environment fallbacks reach the same checks.
    let (code, _, stderr) = run(NODE, &node_3, &[("CONCORD_WITNESS", "true")]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("--witness: node 3 is one of the voters"),
        "{stderr}"
    );
    let (code, _, stderr) = run(NODE, &node_3, &[("CONCORD_WITNESSES", "2,3")]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("not a majority"), "{stderr}");
    // The CLI's add-witness.
    let s = ["--servers", "127.0.0.1:1"];
    assert_refused(
        CLI,
        &[&s[..], &["member", "add-witness", "5", "x"]].concat(),
        &["is not a host:port address"],
    );
    assert_refused(
        CLI,
        &[&s[..], &["member", "add-witness", "0", "127.0.0.1:5"]].concat(),
        &["0 is reserved"],
    );
    assert_refused(CLI, &[&s[..], &["member"]].concat(), &["add-witness"]);
    let args = concord_node::client::CliArgs::try_parse_from([
        "concord-cli",
        "--servers",
        "127.0.0.1:1",
        "member",
        "add-witness",
        "5",
        "127.0.0.1:7005",
    ])
    .expect("add-witness parses");
    assert!(matches!(
        args.command,
        concord_node::client::CliCommand::Member(concord_node::client::MemberCommand::AddWitness {
            id: 5,
            ref addr
        }) if addr == "127.0.0.1:7005"
    ));
}

#[test]
fn log_format_and_metrics_listen_come_from_the_config_file_or_a_flag() {
    use clap::Parser;
    use concord_node::observability::LogFormat;
    use concord_node::server::{parse_config, NodeArgs};
    let merge = |extra: &[&str], file: &str| {
        let mut argv = vec!["concord-node"];
        argv.extend(ONE_NODE);
        argv.extend(["--data-dir", "/nonexistent/x"]);
        argv.extend_from_slice(extra);
        let flags = NodeArgs::try_parse_from(argv).expect("valid flags").server;
        let config = parse_config(file, Path::new("s.toml")).expect("valid file");
        ServerSettings::merge(&flags, &config, Some(Path::new("s.toml")))
    };
    // Neither: text logs, no endpoint.
    let default = merge(&[], "").unwrap();
    assert_eq!(default.log_format, LogFormat::Text);
    assert_eq!(default.metrics_listen, None);
    // The file's keys.
    let file = "log-format = \"json\"\nmetrics-listen = \"127.0.0.1:9101\"\n";
    let from_file = merge(&[], file).unwrap();
    assert_eq!(from_file.log_format, LogFormat::Json);
    assert_eq!(from_file.metrics_listen.as_deref(), Some("127.0.0.1:9101"));
    // Flags override them.
    let flags = merge(
        &["--log-format", "text", "--metrics-listen", "127.0.0.1:9202"],
        file,
    )
    .unwrap();
    assert_eq!(flags.log_format, LogFormat::Text);
    assert_eq!(flags.metrics_listen.as_deref(), Some("127.0.0.1:9202"));
    // A format that does not exist names the key and the choices.
    let refused = merge(&[], "log-format = \"xml\"\n")
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("key `log-format` in s.toml")
            && refused.contains("\"xml\" is not a log format; expected text or json"),
        "{refused}"
    );
    let refused = parse_config("metrics-listen = 9101\n", Path::new("s.toml"))
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("key `metrics-listen` in s.toml"),
        "{refused}"
    );
}

#[test]
fn a_bad_log_format_key_stops_the_binary_with_status_2() {
    let scratch = Scratch::new("log-format");
    let file = scratch.file(
        "server.toml",
        "id = 1\nlisten = \"127.0.0.1:1\"\ndata-dir = \"/nonexistent/x\"\ncluster-id = \"c\"\n\
         log-format = \"yaml\"\n[peers]\n1 = \"127.0.0.1:1\"\n",
    );
    assert_refused(
        NODE,
        &["--config", &file],
        &[&format!(
            "key `log-format` in {file}: \"yaml\" is not a log format; expected text or json"
        )],
    );
}

/// `count` consecutive ports of 127.0.0.1 that nothing listens on now.
fn free_ports(count: u16) -> u16 {
    for _ in 0..100 {
        let first = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if first.checked_add(count).is_none() {
            continue;
        }
        let held: Vec<_> = (first..first + count)
            .map(|port| std::net::TcpListener::bind(("127.0.0.1", port)))
            .collect();
        if held.iter().all(Result::is_ok) {
            return first;
        }
    }
    panic!("no {count} consecutive free ports");
}

/// The body of `GET /metrics` at `addr`.
fn scrape(addr: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect to the metrics port");
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    text
}

/// `local-cluster` refuses a port in use before it starts anything (it
/// used to announce a cluster of servers that had all exited), serves
/// each server's metrics on its own port with `--metrics-listen`,
/// reports a server that exits, and stops on SIGTERM; its servers run
/// without transparent huge pages.
#[test]
fn local_cluster_refuses_a_busy_port_serves_metrics_and_reports_an_exited_server() {
    use std::io::BufRead;
    let scratch = Scratch::new("local-cluster");
    let data_dir = scratch.0.to_string_lossy().to_string();
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_port = busy.local_addr().unwrap().port().to_string();
    let (code, stdout, stderr) = run(
        NODE,
        &[
            "local-cluster",
            "--nodes",
            "1",
            "--base-port",
            &busy_port,
            "--data-dir",
            &data_dir,
        ],
        &[],
    );
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        stderr.contains(&format!("cannot listen on 127.0.0.1:{busy_port}"))
            && stderr.contains("no server started"),
        "{stderr}"
    );
    assert!(!stdout.contains("cluster of"), "{stdout}");
    drop(busy);

    let base = free_ports(3);
    let metrics = free_ports(3);
    let mut child = Command::new(NODE)
        .args(["local-cluster", "--nodes", "3", "--data-dir", &data_dir])
        .args(["--base-port", &base.to_string()])
        .args(["--metrics-listen", &format!("127.0.0.1:{metrics}")])
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (lines_tx, lines) = std::sync::mpsc::channel::<String>();
    let stderr_tx = lines_tx.clone();
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = lines_tx.send(line);
        }
    });
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = stderr_tx.send(line);
        }
    });
    let mut seen = Vec::new();
    let wait_for = |seen: &mut Vec<String>, what: &dyn Fn(&str) -> bool| -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::time::Instant::now() < deadline {
            if let Ok(line) = lines.recv_timeout(std::time::Duration::from_millis(200)) {
                seen.push(line.clone());
                if what(&line) {
                    return line;
                }
            }
        }
        panic!("not within 30 s; output so far:\n{}", seen.join("\n"));
    };
    wait_for(&mut seen, &|line| {
        line.starts_with("kv cluster of 3 of 3 servers")
    });
    let server_2 = wait_for(&mut seen, &|line| {
        line.trim_start().starts_with("server 2:")
    });
    let pid: u32 = server_2
        .split("pid ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .and_then(|pid| pid.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {server_2:?}"));
    for port in metrics..metrics + 3 {
        let text = scrape(&format!("127.0.0.1:{port}"));
        // README.md's one-liner greps this metric.
        assert!(
            text.contains("200 OK") && text.contains("\nconcord_commit_index"),
            "port {port}: {text}"
        );
    }
    // Every server turns transparent huge pages off for itself (its
    // memory comes and goes in waves; clearing fresh 2 MiB pages cost a
    // follower 6-8 % of its CPU).
    #[cfg(target_os = "linux")]
    for process in [pid, child.id()] {
        let status = std::fs::read_to_string(format!("/proc/{process}/status")).unwrap();
        let thp = status
            .lines()
            .find(|line| line.starts_with("THP_enabled:"))
            .map(|line| line.split_whitespace().nth(1).unwrap_or("?").to_string());
        match thp {
            Some(enabled) => assert_eq!(enabled, "0", "process {process}: {status}"),
            None => eprintln!("SKIPPED the huge-pages check: this kernel's /proc/PID/status has no THP_enabled line"),
        }
    }
    let killed = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    wait_for(&mut seen, &|line| {
        line.contains("local-cluster: server 2 (") && line.contains("exited")
    });
    let stopped = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(stopped.success());
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}: {}", seen.join("\n"));
}
