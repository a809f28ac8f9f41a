//! Forced recovery of a multi-group server for real: three `concord-node
//! --groups 2` processes take acknowledged writes in both groups, all
//! three are killed, two data directories are destroyed, `concord-cli
//! force-recover --group G` makes the survivor the only voter of each
//! group, the catalog (group 0) too (offline, on its shared log), and
//! the survivor started alone reads back every acknowledged write and
//! takes new ones.
//!
//! ```text
//! cargo test -p concord-node --test multi_group_forced_recovery -- --nocapture
//! ```

#[path = "common/multi_cluster.rs"]
mod multi_cluster;
#[path = "common/processes.rs"]
mod processes;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use concord_services::sharded_kv::ShardMap;
use multi_cluster::{client, proxied_cluster, text};
use processes::cli_binary;

const CLUSTER: &str = "multi-forced";
const GROUPS: u64 = 2;
const NODES: [u64; 3] = [1, 2, 3];
const SURVIVOR: u64 = 1;
const CONFIRM_LOSS: &str = "--i-understand-acknowledged-writes-may-be-lost";

/// `concord-cli force-recover` of `data_dir` as node `node_id`, with
/// `args` added: its exit status and what it printed (both streams).
fn force_recover(
    transcript: &mut String,
    data_dir: &std::path::Path,
    node_id: u64,
    args: &[&str],
) -> (i32, String) {
    let output = Command::new(cli_binary())
        .arg("force-recover")
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--node-id", &node_id.to_string()])
        .args(["--reason", "two machines lost in the fire"])
        .args(args)
        .output()
        .expect("run concord-cli force-recover");
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let code = output.status.code().unwrap_or(-1);
    transcript.push_str(&format!(
        "$ concord-cli force-recover --node-id {node_id} {}\n{printed}(exit status {code})\n",
        args.join(" ")
    ));
    (code, printed)
}

/// Puts `key` = `value` until acknowledged (within 30 s).
async fn put_acked(
    kv: &mut concord_services::sharded_kv_client::ShardedKvClient,
    key: &str,
    value: &str,
) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match kv.put(key.to_string(), value.to_string()).await {
            Ok(()) => return,
            Err(error) => {
                assert!(Instant::now() < deadline, "put {key}: {error}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Reads `key` until answered (within 30 s).
async fn read(kv: &mut concord_services::sharded_kv_client::ShardedKvClient, key: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match kv.get(key.to_string()).await {
            Ok(value) => return text(value),
            Err(error) => {
                assert!(Instant::now() < deadline, "get {key}: {error}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forced_recovery_of_every_group_of_a_survivor_after_two_disks_are_destroyed() {
    let base = processes::fresh_dir("multi-forced");
    let (mut nodes, _network) = proxied_cluster(base.clone(), CLUSTER, GROUPS, &NODES, &[]).await;
    for id in NODES {
        nodes.start(id);
    }
    let map = ShardMap::new(GROUPS).unwrap();
    let keys: Vec<String> = (0..24).map(|i| format!("key-{i}")).collect();
    for group in map.group_ids() {
        assert!(
            keys.iter().any(|key| map.group_of(key.as_bytes()) == group),
            "no key of group {group}"
        );
    }
    let mut acked = BTreeMap::new();
    {
        let mut kv = client(CLUSTER, GROUPS, &nodes.listen);
        for (i, key) in keys.iter().enumerate() {
            let value = format!("before-{i}");
            put_acked(&mut kv, key, &value).await;
            acked.insert(key.clone(), value);
        }
    }
    // Every follower receives the leaders' last entries and commit
    // indexes with the next heartbeats.
    tokio::time::sleep(Duration::from_secs(2)).await;
    nodes.assert_running();

    let survivor_dir = base.join(format!("node-{SURVIVOR}"));
    let mut transcript = String::new();
    // The server runs: refused, nothing written.
    let (code, printed) = force_recover(&mut transcript, &survivor_dir, SURVIVOR, &[CONFIRM_LOSS]);
    assert_eq!(code, 1, "{transcript}");
    assert!(
        printed.contains("is in use by another process"),
        "{transcript}"
    );
    assert!(printed.contains("stop the server first"), "{transcript}");

    // The majority is lost for good: every server killed, two disks
    // destroyed.
    for id in NODES {
        nodes.sigkill(id);
    }
    for id in NODES.into_iter().filter(|id| *id != SURVIVOR) {
        std::fs::remove_dir_all(base.join(format!("node-{id}"))).expect("destroy a disk");
    }

    // Without the confirmation: the plan, nothing written.
    let (code, printed) = force_recover(&mut transcript, &survivor_dir, SURVIVOR, &[]);
    assert_eq!(code, 1, "{transcript}");
    assert!(
        printed.contains("FORCED RECOVERY (UNSAFE) of group 1"),
        "{transcript}"
    );
    assert!(
        printed.contains("voters {1, 2, 3}") || printed.contains("--peers"),
        "{transcript}"
    );
    assert!(printed.contains("MAY BE LOST"), "{transcript}");
    // Another node's id: refused.
    let (code, printed) = force_recover(&mut transcript, &survivor_dir, 2, &[CONFIRM_LOSS]);
    assert_eq!(code, 1, "{transcript}");
    assert!(printed.contains("belongs to node 1"), "{transcript}");
    // A group this server does not have.
    let (code, printed) = force_recover(
        &mut transcript,
        &survivor_dir,
        SURVIVOR,
        &["--group", "9", CONFIRM_LOSS],
    );
    assert_eq!(code, 1, "{transcript}");
    assert!(printed.contains("no state of group 9"), "{transcript}");
    // Group 1 by default, then group 2 and the catalog (group 0); each
    // twice (the second writes nothing).
    for group in [None, Some("2"), Some("0")] {
        let mut args = vec![CONFIRM_LOSS];
        if let Some(group) = group {
            args.extend(["--group", group]);
        }
        let (code, printed) = force_recover(&mut transcript, &survivor_dir, SURVIVOR, &args);
        assert_eq!(code, 0, "{transcript}");
        assert!(printed.contains("DONE"), "{transcript}");
        assert!(
            printed.contains(&format!(
                "group {}'s forced configuration",
                group.unwrap_or("1")
            )),
            "{transcript}"
        );
        let (code, printed) = force_recover(&mut transcript, &survivor_dir, SURVIVOR, &args);
        assert_eq!(code, 0, "{transcript}");
        assert!(printed.contains("nothing written"), "{transcript}");
    }

    // The survivor alone (its --peers still names the lost servers):
    // one of three, it can serve only as the sole voter the log says.
    nodes.start(SURVIVOR);
    let alone: BTreeMap<u64, String> = [(SURVIVOR, nodes.listen[&SURVIVOR].clone())].into();
    let mut kv = client(CLUSTER, GROUPS, &alone);
    for (key, value) in &acked {
        assert_eq!(
            &read(&mut kv, key).await,
            value,
            "{key}: an acknowledged write the survivor held is not read back\n{transcript}"
        );
    }
    for (i, key) in keys.iter().enumerate() {
        put_acked(&mut kv, key, &format!("after-{i}")).await;
    }
    for (i, key) in keys.iter().enumerate() {
        assert_eq!(read(&mut kv, key).await, format!("after-{i}"));
    }
    nodes.assert_running();
    // Each group's members, as the survivor's log now says (the catalog,
    // group 0, too).
    for group in ["1", "2", "0"] {
        let output = Command::new(cli_binary())
            .args(["--servers", &alone[&SURVIVOR], "--cluster-id", CLUSTER])
            .args(["--groups", &GROUPS.to_string()])
            .args(["member", "list", "--group", group])
            .output()
            .expect("run concord-cli member list");
        let listing = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "member list --group {group}: {listing}"
        );
        transcript.push_str(&format!(
            "$ concord-cli member list --group {group}\n{listing}"
        ));
        assert!(
            listing.contains("voters: 1  learners"),
            "group {group}: {listing}"
        );
        assert!(listing.contains("leader 1"), "group {group}: {listing}");
    }
    println!("{transcript}");
}

/// The layout decides: a directory holding neither log, and `--group`
/// on a single-group server's directory, are refused naming what the
/// directory holds; nothing is created in them.
#[test]
fn force_recover_names_the_layout_it_refuses() {
    let base = processes::fresh_dir("multi-forced-layout");
    let mut transcript = String::new();
    let (code, printed) = force_recover(&mut transcript, &base, 1, &[CONFIRM_LOSS]);
    assert_eq!(code, 1, "{transcript}");
    assert!(
        printed.contains("holds no write-ahead log (no log/, no wal/)"),
        "{transcript}"
    );
    assert!(printed.contains("--data-dir"), "{transcript}");
    std::fs::create_dir_all(base.join("wal")).unwrap();
    let (code, printed) = force_recover(&mut transcript, &base, 1, &["--group", "1", CONFIRM_LOSS]);
    assert_eq!(code, 1, "{transcript}");
    assert!(
        printed.contains("the write-ahead log of a single-group server")
            && printed.contains("leave --group out"),
        "{transcript}"
    );
    let names: Vec<_> = std::fs::read_dir(&base)
        .unwrap()
        .map(|item| item.unwrap().file_name())
        .collect();
    assert_eq!(names, ["wal"], "{transcript}");
    let _ = std::fs::remove_dir_all(&base);
}
