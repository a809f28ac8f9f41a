//! Mutual TLS for peer and client connections (rustls, TLS 1.3 only).
//!
//! With TLS on, every connection a server accepts is a TLS 1.3 connection
//! on which the other side presented a certificate signed by the cluster's
//! CA; the concord handshake ([`Hello`](super::wire::Hello)) then runs
//! inside it. A certificate names who may use it, as a DNS subject
//! alternative name:
//!
//! | who | name |
//! | --- | --- |
//! | node 3 of cluster `prod` | `node-3.prod` ([`node_name`]) |
//! | a client of cluster `prod` | `client.prod` ([`client_name`]) |
//!
//! The accepting side checks the name against what the handshake claims
//! (the node id and the cluster id), so a node with a valid certificate
//! cannot pose as another node nor join another cluster signed by the same
//! CA. A node dialling a peer asks for that peer's name, so a server cannot
//! answer in another's place; a client accepts any node of its cluster and
//! checks that the node id the server answers with is the one its
//! certificate names.
//!
//! Plaintext stays available (no [`TlsConfig`]) and is what madsim builds
//! get: the simulated network carries plaintext only, and there
//! [`TlsConfig::load`] refuses with [`TlsError::Unavailable`].
//!
//! `cargo run --example make_certs` writes a CA and
//! certificates for a local test cluster (see the README, "TLS").

use std::path::PathBuf;

use thiserror::Error;

use concord::NodeId;

/// The DNS name a certificate of node `id` of cluster `cluster_id` must
/// carry: `node-<id>.<cluster-id>`.
pub fn node_name(id: NodeId, cluster_id: &str) -> String {
    format!("node-{id}.{cluster_id}")
}

/// The DNS name a client certificate of cluster `cluster_id` must carry:
/// `client.<cluster-id>`.
pub fn client_name(cluster_id: &str) -> String {
    format!("client.{cluster_id}")
}

/// The node id `name` stands for if it is `node-<id>.<cluster_id>`.
/// (madsim builds have no TLS: only the real one reads certificates.)
#[cfg_attr(madsim, allow(dead_code))]
fn node_id_of(name: &str, cluster_id: &str) -> Option<NodeId> {
    let rest = name.strip_prefix("node-")?;
    let (id, cluster) = rest.split_once('.')?;
    if !cluster.eq_ignore_ascii_case(cluster_id) || !id.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    id.parse().ok()
}

/// Where a node's or client's TLS material lives: three PEM files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsPaths {
    /// The CA certificate(s) that sign every certificate of the cluster.
    pub ca: PathBuf,
    /// This side's certificate (chain), leaf first.
    pub cert: PathBuf,
    /// This side's private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

impl TlsPaths {
    /// The paths from three optional flags (`--tls-ca`, `--tls-cert`,
    /// `--tls-key`): all three give TLS, none gives plaintext, and some but
    /// not all is an error naming the missing ones.
    pub fn from_flags(
        ca: Option<PathBuf>,
        cert: Option<PathBuf>,
        key: Option<PathBuf>,
    ) -> Result<Option<TlsPaths>, TlsError> {
        match (ca, cert, key) {
            (None, None, None) => Ok(None),
            (Some(ca), Some(cert), Some(key)) => Ok(Some(TlsPaths { ca, cert, key })),
            (ca, cert, key) => {
                let missing: Vec<&str> = [
                    (ca.is_none(), "--tls-ca"),
                    (cert.is_none(), "--tls-cert"),
                    (key.is_none(), "--tls-key"),
                ]
                .into_iter()
                .filter_map(|(absent, flag)| absent.then_some(flag))
                .collect();
                Err(TlsError::Incomplete {
                    missing: missing.join(", "),
                })
            }
        }
    }
}

/// Who uses a [`TlsConfig`]: what its own certificate must name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsRole {
    /// A server of the cluster: `node-<id>.<cluster-id>`.
    Node(NodeId),
    /// A client: `client.<cluster-id>`.
    Client,
}

impl TlsRole {
    #[cfg_attr(madsim, allow(dead_code))]
    fn name(self, cluster_id: &str) -> String {
        match self {
            TlsRole::Node(id) => node_name(id, cluster_id),
            TlsRole::Client => client_name(cluster_id),
        }
    }
}

/// Why TLS material could not be loaded or a connection not secured.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum TlsError {
    /// Some but not all of the three paths were given.
    #[error("TLS needs all of --tls-ca, --tls-cert and --tls-key; missing {missing}")]
    Incomplete {
        /// The flags not given, comma separated.
        missing: String,
    },
    /// A file could not be read.
    #[error("cannot read the TLS {what} file {}: {source}", path.display())]
    Read {
        /// Which file: "CA", "certificate" or "private key".
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A file holds no usable PEM item of the expected kind, or a broken one.
    #[error("the TLS {what} file {} {problem}", path.display())]
    Pem {
        /// Which file: "CA", "certificate" or "private key".
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// The material is well-formed but unusable (a CA certificate rustls
    /// rejects, a key that does not match the certificate, a certificate
    /// naming someone else).
    #[error("the TLS {what} file {} is not usable: {problem}", path.display())]
    Rejected {
        /// Which file: "CA", "certificate" or "private key".
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        problem: String,
    },
    /// Certificates name nodes `node-<id>.<cluster-id>`, so with TLS the
    /// cluster id must be usable in a DNS name.
    #[error(
        "cluster id {cluster_id:?} cannot be used with TLS: certificates name nodes \
         node-<id>.<cluster-id>, so it must be a DNS name (letters, digits, '-' and '.')"
    )]
    ClusterIdNotDnsName {
        /// The cluster id.
        cluster_id: String,
    },
    /// This build has no TLS (madsim builds: the simulated network carries
    /// plaintext only).
    #[error("TLS is not available in this build (madsim simulations run in plaintext)")]
    Unavailable,
}

/// The DNS names (subject alternative names of type dNSName) of a DER
/// certificate, in the order they appear; empty when it has none or is not
/// a certificate. Used to say what a refused certificate names and to find
/// the node id a server's certificate stands for.
pub fn certificate_dns_names(der: &[u8]) -> Vec<String> {
    dns_names(der).unwrap_or_default()
}

/// One DER element at the start of `input`: its tag, its contents and what
/// follows it. `None` when `input` is too short or the length is not DER.
fn der_element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let octets = usize::from(first & 0x7f);
        if octets == 0 || octets > 4 {
            return None;
        }
        let mut len = 0usize;
        for _ in 0..octets {
            let (&byte, tail) = rest.split_first()?;
            len = (len << 8) | usize::from(byte);
            rest = tail;
        }
        len
    };
    if rest.len() < len {
        return None;
    }
    let (contents, rest) = rest.split_at(len);
    Some((tag, contents, rest))
}

const TAG_SEQUENCE: u8 = 0x30;
const TAG_OID: u8 = 0x06;
const TAG_BOOLEAN: u8 = 0x01;
const TAG_OCTET_STRING: u8 = 0x04;
/// `[3] EXPLICIT Extensions` in a TBSCertificate.
const TAG_EXTENSIONS: u8 = 0xa3;
/// `dNSName [2] IA5String` in a GeneralName.
const TAG_DNS_NAME: u8 = 0x82;
/// id-ce-subjectAltName, 2.5.29.17.
const OID_SUBJECT_ALT_NAME: &[u8] = &[0x55, 0x1d, 0x11];

fn dns_names(der: &[u8]) -> Option<Vec<String>> {
    let (TAG_SEQUENCE, certificate, _) = der_element(der)? else {
        return None;
    };
    let (TAG_SEQUENCE, mut tbs, _) = der_element(certificate)? else {
        return None;
    };
    while !tbs.is_empty() {
        let (tag, contents, rest) = der_element(tbs)?;
        tbs = rest;
        if tag != TAG_EXTENSIONS {
            continue;
        }
        let (TAG_SEQUENCE, mut extensions, _) = der_element(contents)? else {
            return None;
        };
        while !extensions.is_empty() {
            let (_, extension, rest) = der_element(extensions)?;
            extensions = rest;
            let (TAG_OID, oid, extension) = der_element(extension)? else {
                return None;
            };
            if oid == OID_SUBJECT_ALT_NAME {
                return subject_alt_dns_names(extension);
            }
        }
    }
    Some(Vec::new())
}

/// The dNSNames of a subjectAltName extension's `critical? extnValue`.
fn subject_alt_dns_names(extension: &[u8]) -> Option<Vec<String>> {
    let (mut tag, mut value, rest) = der_element(extension)?;
    if tag == TAG_BOOLEAN {
        (tag, value, _) = der_element(rest)?;
    }
    if tag != TAG_OCTET_STRING {
        return None;
    }
    let (TAG_SEQUENCE, mut names, _) = der_element(value)? else {
        return None;
    };
    let mut found = Vec::new();
    while !names.is_empty() {
        let (tag, name, rest) = der_element(names)?;
        names = rest;
        if tag == TAG_DNS_NAME {
            found.push(String::from_utf8_lossy(name).into_owned());
        }
    }
    Some(found)
}

/// What the other side's certificate names, kept from the TLS handshake to
/// be checked against the concord handshake.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerIdentity {
    /// The DNS names of the certificate the other side presented.
    pub names: Vec<String>,
}

impl PeerIdentity {
    fn has(&self, wanted: &str) -> bool {
        self.names.iter().any(|n| n.eq_ignore_ascii_case(wanted))
    }

    fn describe(&self) -> String {
        if self.names.is_empty() {
            "no DNS name".to_string()
        } else {
            self.names.join(", ")
        }
    }

    /// Whether this certificate may claim to be node `from` of `cluster_id`;
    /// the error says what it names instead.
    pub fn check_node(&self, from: NodeId, cluster_id: &str) -> Result<(), String> {
        let wanted = node_name(from, cluster_id);
        if self.has(&wanted) {
            Ok(())
        } else {
            Err(format!(
                "the peer claims to be node {from} of cluster {cluster_id:?} but its TLS \
                 certificate names {} (node {from} needs {wanted})",
                self.describe()
            ))
        }
    }

    /// Whether this certificate is a client certificate of `cluster_id`.
    pub fn check_client(&self, cluster_id: &str) -> Result<(), String> {
        let wanted = client_name(cluster_id);
        if self.has(&wanted) {
            Ok(())
        } else {
            Err(format!(
                "a client of cluster {cluster_id:?} connected with a TLS certificate naming {} \
                 (clients need {wanted})",
                self.describe()
            ))
        }
    }
}

#[cfg(not(madsim))]
pub use real::{accept, certificate_problem, dial, TlsConfig};

#[cfg(madsim)]
pub use simulated::{accept, certificate_problem, dial, TlsConfig};

#[cfg(not(madsim))]
mod real {
    use std::path::Path;
    use std::sync::Arc;

    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
    use tokio_rustls::rustls::client::danger::{
        HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
    };
    use tokio_rustls::rustls::client::WebPkiServerVerifier;
    use tokio_rustls::rustls::crypto::{ring, CryptoProvider};
    use tokio_rustls::rustls::server::WebPkiClientVerifier;
    use tokio_rustls::rustls::{
        self, ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme,
    };
    use tokio_rustls::{TlsAcceptor, TlsConnector};

    use super::{certificate_dns_names, node_id_of, PeerIdentity, TlsError, TlsPaths, TlsRole};
    use crate::transport::BoxStream;
    use concord::NodeId;

    /// Loaded TLS material of one node or client: what its connections
    /// present and whom they trust. Cheap to share behind an `Arc`.
    pub struct TlsConfig {
        cluster_id: String,
        /// Accepting side: client certificates required, from the CA.
        server: Arc<ServerConfig>,
        /// Dialling side: the server must be the node asked for.
        dial: Arc<ClientConfig>,
        /// Dialling side for clients: any node of the cluster.
        dial_any_node: Arc<ClientConfig>,
    }

    impl std::fmt::Debug for TlsConfig {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("TlsConfig")
                .field("cluster_id", &self.cluster_id)
                .finish_non_exhaustive()
        }
    }

    fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
        std::fs::read(path).map_err(|source| TlsError::Read {
            what,
            path: path.to_path_buf(),
            source,
        })
    }

    fn certificates(
        what: &'static str,
        path: &Path,
    ) -> Result<Vec<CertificateDer<'static>>, TlsError> {
        let pem = read(what, path)?;
        let certs = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TlsError::Pem {
                what,
                path: path.to_path_buf(),
                problem: format!("has a broken PEM certificate: {e}"),
            })?;
        if certs.is_empty() {
            return Err(TlsError::Pem {
                what,
                path: path.to_path_buf(),
                problem: "holds no PEM certificate (-----BEGIN CERTIFICATE-----)".to_string(),
            });
        }
        Ok(certs)
    }

    fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
        let pem = read("private key", path)?;
        PrivateKeyDer::from_pem_slice(&pem).map_err(|e| TlsError::Pem {
            what: "private key",
            path: path.to_path_buf(),
            problem: format!("holds no usable PEM private key (PKCS#8, PKCS#1 or SEC1): {e}"),
        })
    }

    fn provider() -> Arc<CryptoProvider> {
        Arc::new(ring::default_provider())
    }

    impl TlsConfig {
        /// Loads the CA, certificate and key at `paths` for `role` in
        /// cluster `cluster_id`. Errors name the file and what is wrong
        /// with it, including a certificate that does not name `role`
        /// (`node-<id>.<cluster-id>` or `client.<cluster-id>`).
        pub fn load(
            paths: &TlsPaths,
            cluster_id: &str,
            role: TlsRole,
        ) -> Result<TlsConfig, TlsError> {
            if ServerName::try_from(role.name(cluster_id)).is_err() {
                return Err(TlsError::ClusterIdNotDnsName {
                    cluster_id: cluster_id.to_string(),
                });
            }
            let ca = certificates("CA", &paths.ca)?;
            let chain = certificates("certificate", &paths.cert)?;
            let key = private_key(&paths.key)?;
            let own = PeerIdentity {
                names: certificate_dns_names(&chain[0]),
            };
            let wanted = role.name(cluster_id);
            if !own.has(&wanted) {
                return Err(TlsError::Rejected {
                    what: "certificate",
                    path: paths.cert.clone(),
                    problem: format!(
                        "it names {} but this {} needs {wanted}",
                        own.describe(),
                        match role {
                            TlsRole::Node(_) => "node",
                            TlsRole::Client => "client",
                        }
                    ),
                });
            }
            let mut roots = RootCertStore::empty();
            for cert in ca {
                roots.add(cert).map_err(|e| TlsError::Rejected {
                    what: "CA",
                    path: paths.ca.clone(),
                    problem: e.to_string(),
                })?;
            }
            let roots = Arc::new(roots);
            let key_problem = |e: rustls::Error| TlsError::Rejected {
                what: "private key",
                path: paths.key.clone(),
                problem: format!("{e} (does it belong to {}?)", paths.cert.display()),
            };
            let ca_problem = |e: String| TlsError::Rejected {
                what: "CA",
                path: paths.ca.clone(),
                problem: e,
            };
            let client_verifier =
                WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
                    .build()
                    .map_err(|e| ca_problem(e.to_string()))?;
            let server = ServerConfig::builder_with_provider(provider())
                .with_protocol_versions(&[&rustls::version::TLS13])
                .map_err(|e| ca_problem(e.to_string()))?
                .with_client_cert_verifier(client_verifier)
                .with_single_cert(chain.clone(), key.clone_key())
                .map_err(key_problem)?;
            let server_verifier =
                WebPkiServerVerifier::builder_with_provider(roots.clone(), provider())
                    .build()
                    .map_err(|e| ca_problem(e.to_string()))?;
            // Both dialling configurations: TLS 1.3 only, this node's
            // certificate; they differ in what they accept of the server.
            let dialling = || {
                ClientConfig::builder_with_provider(provider())
                    .with_protocol_versions(&[&rustls::version::TLS13])
                    .map_err(|e| ca_problem(e.to_string()))
            };
            let dial = dialling()?
                .with_webpki_verifier(server_verifier.clone())
                .with_client_auth_cert(chain.clone(), key.clone_key())
                .map_err(key_problem)?;
            let any_node = Arc::new(AnyNodeOf {
                cluster_id: cluster_id.to_string(),
                inner: server_verifier,
            });
            let dial_any_node = dialling()?
                .dangerous()
                .with_custom_certificate_verifier(any_node)
                .with_client_auth_cert(chain, key)
                .map_err(key_problem)?;
            Ok(TlsConfig {
                cluster_id: cluster_id.to_string(),
                server: Arc::new(server),
                dial: Arc::new(dial),
                dial_any_node: Arc::new(dial_any_node),
            })
        }

        /// The cluster these certificates belong to.
        pub fn cluster_id(&self) -> &str {
            &self.cluster_id
        }
    }

    /// Verifies a server certificate as one of any node of the cluster: the
    /// chain and validity as webpki does, for the `node-<id>.<cluster>`
    /// name the certificate carries. A client does not know node ids;
    /// after the concord handshake it checks the id the server answered.
    #[derive(Debug)]
    struct AnyNodeOf {
        cluster_id: String,
        inner: Arc<WebPkiServerVerifier>,
    }

    impl ServerCertVerifier for AnyNodeOf {
        fn verify_server_cert(
            &self,
            end_entity: &CertificateDer<'_>,
            intermediates: &[CertificateDer<'_>],
            _server_name: &ServerName<'_>,
            ocsp_response: &[u8],
            now: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            let names = certificate_dns_names(end_entity);
            let Some(name) = names
                .iter()
                .find(|name| node_id_of(name, &self.cluster_id).is_some())
            else {
                return Err(rustls::Error::General(format!(
                    "the server's certificate names {names:?}, no node-<id>.{} of this cluster",
                    self.cluster_id
                )));
            };
            let name = ServerName::try_from(name.clone())
                .map_err(|e| rustls::Error::General(e.to_string()))?;
            self.inner
                .verify_server_cert(end_entity, intermediates, &name, ocsp_response, now)
        }

        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            self.inner.verify_tls12_signature(message, cert, dss)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            self.inner.verify_tls13_signature(message, cert, dss)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.inner.supported_verify_schemes()
        }
    }

    fn identity(certs: Option<&[CertificateDer<'static>]>) -> PeerIdentity {
        PeerIdentity {
            names: certs
                .and_then(|certs| certs.first())
                .map(|leaf| certificate_dns_names(leaf))
                .unwrap_or_default(),
        }
    }

    /// The accepting side of the TLS handshake on a new connection: the
    /// other side must present a certificate signed by the cluster's CA.
    /// Returns the secured stream and what the certificate names, or the
    /// handshake's error (`UnexpectedEof` when the other side closed
    /// before finishing it; `InvalidData` for a refused certificate or
    /// bytes that are not TLS).
    pub async fn accept(
        tls: &TlsConfig,
        stream: BoxStream,
    ) -> Result<(BoxStream, PeerIdentity), std::io::Error> {
        let stream = TlsAcceptor::from(tls.server.clone()).accept(stream).await?;
        let identity = identity(stream.get_ref().1.peer_certificates());
        Ok((Box::new(stream), identity))
    }

    /// The dialling side of the TLS handshake: to node `node` when given
    /// (its certificate must name it), else to any node of the cluster.
    /// Returns the secured stream and what the server's certificate names.
    pub async fn dial(
        tls: &TlsConfig,
        stream: BoxStream,
        node: Option<NodeId>,
    ) -> Result<(BoxStream, PeerIdentity), std::io::Error> {
        let (config, name) = match node {
            Some(id) => (tls.dial.clone(), super::node_name(id, &tls.cluster_id)),
            None => (
                tls.dial_any_node.clone(),
                super::client_name(&tls.cluster_id),
            ),
        };
        let name = ServerName::try_from(name)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let stream = TlsConnector::from(config).connect(name, stream).await?;
        let identity = identity(stream.get_ref().1.peer_certificates());
        Ok((Box::new(stream), identity))
    }

    /// The rustls error inside an i/o error of a TLS stream, if any.
    fn rustls_error(e: &std::io::Error) -> Option<&rustls::Error> {
        e.get_ref()?.downcast_ref::<rustls::Error>()
    }

    /// A TLS failure that retrying cannot fix, in words for a person: the
    /// server refused this side's certificate (it answered with an alert
    /// about it), or this side does not trust the server's certificate.
    pub fn certificate_problem(e: &std::io::Error) -> Option<String> {
        use rustls::AlertDescription as Alert;
        match rustls_error(e)? {
            rustls::Error::AlertReceived(
                alert @ (Alert::BadCertificate
                | Alert::UnsupportedCertificate
                | Alert::CertificateRevoked
                | Alert::CertificateExpired
                | Alert::CertificateUnknown
                | Alert::UnknownCA
                | Alert::AccessDenied
                | Alert::CertificateRequired),
            ) => Some(format!(
                "certificate not trusted by the server (TLS alert {alert:?}): --tls-cert must be \
                 signed by the cluster's CA and be valid now"
            )),
            rustls::Error::InvalidCertificate(reason) => Some(format!(
                "the server's certificate is not trusted here ({reason:?}): --tls-ca must be \
                 the CA that signed the cluster's certificates"
            )),
            // Only this module's verifier makes these during a handshake:
            // a certificate of another cluster, or none naming a node.
            rustls::Error::General(reason) => Some(format!(
                "the server's certificate is not trusted here: {reason}"
            )),
            _ => None,
        }
    }
}

#[cfg(madsim)]
mod simulated {
    use super::{PeerIdentity, TlsError, TlsPaths, TlsRole};
    use crate::transport::BoxStream;
    use concord::NodeId;

    /// TLS material; madsim builds have none (see [`TlsError::Unavailable`]).
    #[derive(Debug)]
    pub struct TlsConfig {
        never: std::convert::Infallible,
    }

    impl TlsConfig {
        /// Always [`TlsError::Unavailable`] under madsim.
        pub fn load(
            _paths: &TlsPaths,
            _cluster_id: &str,
            _role: TlsRole,
        ) -> Result<TlsConfig, TlsError> {
            Err(TlsError::Unavailable)
        }

        /// The cluster these certificates belong to.
        pub fn cluster_id(&self) -> &str {
            match self.never {}
        }
    }

    /// Never called: no [`TlsConfig`] exists under madsim.
    pub async fn accept(
        tls: &TlsConfig,
        _stream: BoxStream,
    ) -> Result<(BoxStream, PeerIdentity), std::io::Error> {
        match tls.never {}
    }

    /// Never called: no [`TlsConfig`] exists under madsim.
    pub async fn dial(
        tls: &TlsConfig,
        _stream: BoxStream,
        _node: Option<NodeId>,
    ) -> Result<(BoxStream, PeerIdentity), std::io::Error> {
        match tls.never {}
    }

    /// No TLS under madsim, so never a certificate problem.
    pub fn certificate_problem(_e: &std::io::Error) -> Option<String> {
        None
    }
}

/// Loads TLS material for `role` from optional flag values (see
/// [`TlsPaths::from_flags`]): `None` when no flag was given (plaintext).
pub fn load_from_flags(
    ca: Option<PathBuf>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    cluster_id: &str,
    role: TlsRole,
) -> Result<Option<std::sync::Arc<TlsConfig>>, TlsError> {
    match TlsPaths::from_flags(ca, cert, key)? {
        None => Ok(None),
        Some(paths) => Ok(Some(std::sync::Arc::new(TlsConfig::load(
            &paths, cluster_id, role,
        )?))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names_round_trip_and_reject_other_clusters() {
        assert_eq!(node_name(3, "prod"), "node-3.prod");
        assert_eq!(node_id_of("node-3.prod", "prod"), Some(3));
        assert_eq!(node_id_of("node-3.prod", "test"), None);
        assert_eq!(node_id_of("node-x.prod", "prod"), None);
        assert_eq!(node_id_of("client.prod", "prod"), None);
        assert_eq!(node_id_of("node-+3.prod", "prod"), None);
    }

    #[test]
    fn der_walker_never_panics_on_truncations() {
        // A SEQUENCE whose long-form length runs past the end, and empty or
        // one-byte inputs: no names, no panic.
        for input in [&[][..], &[0x30], &[0x30, 0x84, 0xff], &[0x30, 0x02, 0x30]] {
            assert!(certificate_dns_names(input).is_empty());
        }
    }

    #[test]
    fn dns_names_are_read_from_a_real_certificate() {
        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(vec!["node-2.prod".to_string(), "client.prod".into()])
                .unwrap();
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(
            certificate_dns_names(cert.der()),
            vec!["node-2.prod".to_string(), "client.prod".to_string()]
        );
        let identity = PeerIdentity {
            names: certificate_dns_names(cert.der()),
        };
        assert!(identity.check_node(2, "prod").is_ok());
        let refusal = identity.check_node(3, "prod").unwrap_err();
        assert!(
            refusal.contains("names node-2.prod, client.prod"),
            "{refusal}"
        );
        assert!(identity.check_node(2, "test").is_err());
        assert!(identity.check_client("prod").is_ok());
    }

    #[test]
    fn flags_need_all_three_paths() {
        assert_eq!(TlsPaths::from_flags(None, None, None).unwrap(), None);
        let err = TlsPaths::from_flags(Some("ca.pem".into()), None, None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "TLS needs all of --tls-ca, --tls-cert and --tls-key; missing --tls-cert, --tls-key"
        );
    }
}
