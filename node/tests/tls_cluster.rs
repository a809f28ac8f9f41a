//! Three real `concord-node` processes with mutual TLS pass the kill/restart
//! scenario of `real_cluster.rs` (issue 14): SIGKILL the leader, keep
//! serving, restart every node from disk, nothing acknowledged lost; and
//! every node ran TLS with no peer certificate refused.
//!
//! Certificates are made at run time with rcgen (the same code as the root
//! crate's `examples/make_certs.rs` and `tests/tls.rs`).

#[path = "../../tests/common/certs.rs"]
mod certs;
#[path = "common/processes.rs"]
mod processes;

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
