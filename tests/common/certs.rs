//! Certificates for a concord cluster, made with rcgen: a CA, one
//! certificate per node (`node-<id>.<cluster-id>`) and a client certificate
//! (`client.<cluster-id>`), as `runtime/src/tls.rs` expects them. Shared by
//! `examples/make_certs.rs` (for a local test cluster) and `tests/tls.rs`
//! (which also makes the bad ones: expired, from another CA, naming
//! someone else).
//!
//! Included with `#[path = ...] mod certs;`.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};

const DAY: Duration = Duration::from_secs(86_400);

/// When a certificate is valid, relative to now.
#[derive(Clone, Copy, Debug)]
pub enum Validity {
    /// From a day ago until `days` from now.
    Days(u64),
    /// Expired: from ten days ago until yesterday.
    Expired,
}

impl Validity {
    fn apply(self, params: &mut CertificateParams) {
        let now = SystemTime::now();
        match self {
            Validity::Days(days) => {
                params.not_before = (now - DAY).into();
                params.not_after = (now + DAY * days.max(1) as u32).into();
            }
            Validity::Expired => {
                params.not_before = (now - DAY * 10).into();
                params.not_after = (now - DAY).into();
            }
        }
    }
}

/// A certificate authority: its certificate and key.
pub struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

/// A certificate and its private key, PEM-encoded.
pub struct Issued {
    /// The certificate.
    pub cert_pem: String,
    /// Its private key (PKCS#8).
    pub key_pem: String,
}

impl Ca {
    /// A new CA named `name`, valid for `days`.
    pub fn new(name: &str, days: u64) -> Result<Ca, rcgen::Error> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} CA"));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        Validity::Days(days).apply(&mut params);
        let cert = params.self_signed(&key)?;
        Ok(Ca { cert, key })
    }

    /// The CA certificate.
    pub fn cert_pem(&self) -> String {
        self.cert.pem()
    }

    /// The CA's private key: keep it to issue more certificates later.
    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    /// A certificate for `names` (DNS subject alternative names), usable by
    /// a server and a client of TLS alike: a node is both.
    pub fn issue(&self, names: &[String], validity: Validity) -> Result<Issued, rcgen::Error> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(names.to_vec())?;
        if let Some(first) = names.first() {
            params
                .distinguished_name
                .push(DnType::CommonName, first.clone());
        }
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        validity.apply(&mut params);
        let cert = params.signed_by(&key, &self.cert, &self.key)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// `node-<id>.<cluster-id>`, as `concord_tokio::tls::node_name`.
pub fn node_name(id: u64, cluster_id: &str) -> String {
    format!("node-{id}.{cluster_id}")
}

/// `client.<cluster-id>`, as `concord_tokio::tls::client_name`.
pub fn client_name(cluster_id: &str) -> String {
    format!("client.{cluster_id}")
}

/// Writes `contents` to `dir/name`; private keys (`.key`) readable by
/// their owner only.
pub fn write_file(dir: &Path, name: &str, contents: &str) -> std::io::Result<PathBuf> {
    let path = dir.join(name);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    if name.ends_with(".key") {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(&path)?.write_all(contents.as_bytes())?;
    Ok(path)
}

/// Writes `issued` as `<stem>.pem` and `<stem>.key` in `dir`; returns the
/// two paths.
pub fn write_issued(
    dir: &Path,
    stem: &str,
    issued: &Issued,
) -> std::io::Result<(PathBuf, PathBuf)> {
    Ok((
        write_file(dir, &format!("{stem}.pem"), &issued.cert_pem)?,
        write_file(dir, &format!("{stem}.key"), &issued.key_pem)?,
    ))
}

/// A CA and certificates for nodes `1..=nodes` and a client of
/// `cluster_id`, written to `dir`: `ca.pem`, `ca.key`, `node-<id>.pem`,
/// `node-<id>.key`, `client.pem`, `client.key`.
pub fn write_cluster(dir: &Path, cluster_id: &str, nodes: u64, days: u64) -> Result<Ca, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let ca = Ca::new(cluster_id, days).map_err(|e| format!("cannot make the CA: {e}"))?;
    let io = |e: std::io::Error| format!("cannot write to {}: {e}", dir.display());
    write_file(dir, "ca.pem", &ca.cert_pem()).map_err(io)?;
    write_file(dir, "ca.key", &ca.key_pem()).map_err(io)?;
    for id in 1..=nodes {
        let issued = ca
            .issue(&[node_name(id, cluster_id)], Validity::Days(days))
            .map_err(|e| format!("cannot make node {id}'s certificate: {e}"))?;
        write_issued(dir, &format!("node-{id}"), &issued).map_err(io)?;
    }
    let issued = ca
        .issue(&[client_name(cluster_id)], Validity::Days(days))
        .map_err(|e| format!("cannot make the client certificate: {e}"))?;
    write_issued(dir, "client", &issued).map_err(io)?;
    Ok(ca)
}
