//! Three real `concord-node` processes with mutual TLS pass the kill/restart
//! scenario of `real_cluster.rs`: SIGKILL the leader, keep
//! serving, restart every node from disk, nothing acknowledged lost; and
//! every node ran TLS with no peer certificate refused.
//!
//! Certificates are made at run time with rcgen (the same code as the root
//! crate's `examples/make_certs.rs` and `tests/tls.rs`).
//!
//! A client configured unlike the servers is told so at connect time, with
//! exit status 4: plaintext to TLS servers ("server expects
//! TLS"), TLS to a plaintext server ("server does not use TLS"), a client
//! certificate from another CA ("certificate not trusted by the server"),
//! a CA that did not sign the servers' certificates.

#[path = "../../tests/common/certs.rs"]
mod certs;
#[path = "common/processes.rs"]
mod processes;
use processes::output_of;

const CLUSTER: &str = "tls-test";

#[test]
fn three_tls_processes_survive_sigkill_of_the_leader_and_full_restart() {
    let dir = std::env::temp_dir().join(format!("concord-tls-cluster-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    certs::write_cluster(&dir, CLUSTER, 3, 30).expect("make the certificates");
    let mut cluster = processes::NodeProcesses::on_loopback("tls", CLUSTER);
    cluster.use_tls(dir.clone());
    processes::survive_sigkill_of_the_leader_and_full_restart(&mut cluster);
    // Every node ran with TLS, and no peer's certificate was refused.
    for id in 1..=3 {
        let log = without_ansi_colours(&cluster.log_text(id));
        assert!(
            log.contains("tls=true"),
            "node {id} did not run TLS:\n{log}"
        );
        assert!(!log.contains("TLS is off"), "node {id}:\n{log}");
        assert!(!log.contains("certificate names"), "node {id}:\n{log}");
        assert!(!log.contains("UnknownIssuer"), "node {id}:\n{log}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs `concord-cli` with `args`: exit code, stdout, stderr.
fn cli(args: &[&str]) -> (i32, String, String) {
    output_of(std::process::Command::new(env!("CARGO_BIN_EXE_concord-cli")).args(args))
}

/// `concord-cli --servers <servers> --cluster-id CLUSTER [--tls-* of
/// (ca, cert, key) in dir] <args>`.
fn cli_with(
    servers: &str,
    tls: Option<(&std::path::Path, [&str; 3])>,
    args: &[&str],
) -> (i32, String, String) {
    let mut all: Vec<String> = vec![
        "--servers".into(),
        servers.into(),
        "--cluster-id".into(),
        CLUSTER.into(),
        "--timeout-ms".into(),
        "1000".into(),
    ];
    if let Some((dir, [ca, cert, key])) = tls {
        for (flag, file) in [("--tls-ca", ca), ("--tls-cert", cert), ("--tls-key", key)] {
            all.push(flag.into());
            all.push(dir.join(file).display().to_string());
        }
    }
    all.extend(args.iter().map(|a| a.to_string()));
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    cli(&all)
}

/// Asserts a run ended with exit status 4 naming `expected`, quickly and
/// without claiming the operation may have been applied.
fn assert_named(what: &str, run: impl FnOnce() -> (i32, String, String), expected: &str) {
    let started = std::time::Instant::now();
    let (code, stdout, stderr) = run();
    let took = started.elapsed();
    assert_eq!(code, 4, "{what}: exit {code}\n{stdout}{stderr}");
    assert!(
        stderr.contains(expected) || stdout.contains(expected),
        "{what}: {expected:?} not named\n{stdout}{stderr}"
    );
    assert!(
        !stderr.contains("may or may not"),
        "{what}: nothing was sent\n{stderr}"
    );
    // Named at connect time, not after 30 attempts.
    assert!(
        took < std::time::Duration::from_secs(10),
        "{what}: took {took:?}"
    );
}

#[test]
fn tls_and_plaintext_mismatches_are_named_at_connect_time() {
    let dir = std::env::temp_dir().join(format!("concord-tls-mismatch-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    certs::write_cluster(&dir, CLUSTER, 3, 30).expect("make the certificates");
    // A client certificate for this cluster's name from another CA.
    let other = certs::Ca::new("other", 30).expect("another CA");
    certs::write_file(&dir, "other-ca.pem", &other.cert_pem()).unwrap();
    let issued = other
        .issue(&[certs::client_name(CLUSTER)], certs::Validity::Days(30))
        .unwrap();
    certs::write_issued(&dir, "other-client", &issued).unwrap();

    let mut cluster = processes::NodeProcesses::on_loopback("tls-mismatch", CLUSTER);
    cluster.use_tls(dir.clone());
    for id in 1..=3 {
        cluster.start(id);
    }
    let servers = cluster.servers().join(",");
    let good = Some((dir.as_path(), ["ca.pem", "client.pem", "client.key"]));
    // The cluster serves a well-configured client.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (code, stdout, stderr) = cli_with(&servers, good, &["kv", "put", "k", "v"]);
        if code == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "TLS cluster never served: {stdout}{stderr}"
        );
    }

    assert_named(
        "plaintext client, TLS servers",
        || cli_with(&servers, None, &["kv", "put", "k", "v"]),
        "server expects TLS",
    );
    assert_named(
        "plaintext status of TLS servers",
        || cli_with(&servers, None, &["status"]),
        "server expects TLS",
    );
    assert_named(
        "client certificate from another CA",
        || {
            cli_with(
                &servers,
                Some((&dir, ["ca.pem", "other-client.pem", "other-client.key"])),
                &["kv", "get", "k"],
            )
        },
        "certificate not trusted by the server",
    );
    assert_named(
        "a CA that did not sign the servers' certificates",
        || {
            cli_with(
                &servers,
                Some((
                    &dir,
                    ["other-ca.pem", "other-client.pem", "other-client.key"],
                )),
                &["kv", "get", "k"],
            )
        },
        "the server's certificate is not trusted here",
    );

    // A TLS client and a plaintext server.
    let mut plain = processes::NodeProcesses::on_loopback("tls-mismatch-plain", CLUSTER);
    plain.start(1);
    let addr = plain.addr(1);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::net::TcpStream::connect(&addr).is_err() {
        assert!(std::time::Instant::now() < deadline, "node never listened");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_named(
        "TLS client, plaintext server",
        || cli_with(&addr, good, &["kv", "get", "k"]),
        "server does not use TLS",
    );
    drop(plain);
    drop(cluster);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `text` without the terminal colour sequences (`ESC [ ... m`) a node
/// writes into its log.
fn without_ansi_colours(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
