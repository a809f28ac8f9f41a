//! Makes a CA and certificates for a local concord test cluster, for
//! `concord-node --tls-ca/--tls-cert/--tls-key` and
//! `concord-cli --tls-ca/--tls-cert/--tls-key`:
//!
//! ```text
//! cargo run --example make_certs -- --cluster-id demo --nodes 3 --out certs
//! ```
//!
//! writes `ca.pem` and `ca.key` (keep the CA key to issue more
//! certificates; no node needs it), `node-<id>.pem` and `node-<id>.key`
//! naming `node-<id>.<cluster-id>` for ids 1 to `--nodes`, and `client.pem`
//! and `client.key` naming `client.<cluster-id>`. Keys are PKCS#8 PEM,
//! readable by their owner only. `--days` sets the validity (default 365).
//! For a test cluster only: a production CA key belongs offline.

#[path = "../tests/common/certs.rs"]
mod certs;

// println! and friends that stop quietly at a closed pipe.
#[macro_use]
extern crate concord_cli_output;

use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "\
usage: make_certs --cluster-id <NAME> --out <DIR> [--nodes <N>] [--days <DAYS>]

  --cluster-id  the cluster's name, as given to concord-node (a DNS name:
                letters, digits, '-' and '.')
  --out         directory to write the files to (created if missing)
  --nodes       certificates for node ids 1 to N (default 3)
  --days        validity in days from now (default 365)";

struct Args {
    cluster_id: String,
    out: PathBuf,
    nodes: u64,
    days: u64,
}

fn parse_args(argv: Vec<String>) -> Result<Args, String> {
    let (mut cluster_id, mut out, mut nodes, mut days) = (None, None, 3u64, 365u64);
    let mut it = argv.into_iter();
    while let Some(flag) = it.next() {
        if flag == "--help" || flag == "-h" {
            return Err(String::new());
        }
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let number = |what: &str| -> Result<u64, String> {
            match value.parse::<u64>() {
                Ok(n) if (1..=10_000).contains(&n) => Ok(n),
                _ => Err(format!("{what}: {value:?} is not a number from 1 to 10000")),
            }
        };
        match flag.as_str() {
            "--cluster-id" => cluster_id = Some(value.clone()),
            "--out" => out = Some(PathBuf::from(&value)),
            "--nodes" => nodes = number("--nodes")?,
            "--days" => days = number("--days")?,
            other => return Err(format!("unknown option {other:?}")),
        }
    }
    Ok(Args {
        cluster_id: cluster_id.ok_or("missing --cluster-id")?,
        out: out.ok_or("missing --out")?,
        nodes,
        days,
    })
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1).collect()) {
        Ok(args) => args,
        Err(message) if message.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("make_certs: {message}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let name = certs::node_name(1, &args.cluster_id);
    if name.len() > 253
        || !args.cluster_id.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
    {
        eprintln!(
            "make_certs: --cluster-id {:?} cannot be used with TLS: certificates name nodes \
             node-<id>.<cluster-id>, so it must be a DNS name (letters, digits, '-' and '.')",
            args.cluster_id
        );
        return ExitCode::from(2);
    }
    match certs::write_cluster(&args.out, &args.cluster_id, args.nodes, args.days) {
        Ok(_) => {
            println!(
                "wrote ca.pem, ca.key, node-1..{n}.pem/.key and client.pem/.key for cluster {c:?} \
                 to {out}, valid for {days} days\n\
                 node 1: concord-node ... --cluster-id {c} --tls-ca {out}/ca.pem \
                 --tls-cert {out}/node-1.pem --tls-key {out}/node-1.key\n\
                 client: concord-cli ... --cluster-id {c} --tls-ca {out}/ca.pem \
                 --tls-cert {out}/client.pem --tls-key {out}/client.key",
                n = args.nodes,
                c = args.cluster_id,
                out = args.out.display(),
                days = args.days,
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("make_certs: {e}");
            ExitCode::FAILURE
        }
    }
}
