//! Real rustls handshakes between a sidecar (`client_config`) and a gateway (`server_config`),
//! in memory: the two connections exchange TLS records through byte buffers, no sockets.
// Test helpers outside `#[test]` functions may unwrap too (clippy.toml allows it in tests).
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::Arc;

use aimux_certs::rustls::{
    self, CertificateError, ClientConfig, ClientConnection, ServerConfig, ServerConnection,
};
use aimux_certs::time::{Duration, OffsetDateTime};
use aimux_certs::tls::{
    ALPN_AIMUX_V1, MeshClientVerifier, MeshServerVerifier, MeshTrust, client_config,
    crypto_provider, server_config,
};
use aimux_certs::{
    Authority, Error, Identity, IdentityError, InitParams, IssueParams, IssuedCert, SpiffeId,
    TrustDomain, Validity, WorkloadName, load_crls, peer_identity,
};
use rcgen::{
    CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};

const DOMAIN: &str = "example.org";

/// A CA directory with a gateway `edge` and an agent `alice`.
struct Mesh {
    dir: tempfile::TempDir,
    ca: Authority,
    gateway: IssuedCert,
    alice: IssuedCert,
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

fn days(n: u32) -> Validity {
    Validity::days_from(now(), n).unwrap()
}

fn name(s: &str) -> WorkloadName {
    WorkloadName::new(s).unwrap()
}

fn new_ca(dir: &Path, domain: &str) -> Authority {
    let params = InitParams::new(TrustDomain::new(domain).unwrap(), now()).unwrap();
    Authority::init(dir, &params, now()).unwrap()
}

fn mesh(domain: &str) -> Mesh {
    let dir = tempfile::tempdir().unwrap();
    let ca = new_ca(dir.path(), domain);
    let gateway = ca
        .issue(&IssueParams::gateway(
            name("edge"),
            vec!["gw.example.org".into()],
            vec![],
            days(30),
        ))
        .unwrap();
    let alice = ca
        .issue(&IssueParams::agent(name("alice"), days(30)))
        .unwrap();
    Mesh {
        dir,
        ca,
        gateway,
        alice,
    }
}

impl Mesh {
    fn trust(&self) -> MeshTrust {
        MeshTrust::load(&self.dir.path().join("ca.crt")).unwrap()
    }

    fn crls(&self) -> Vec<aimux_certs::pki_types::CertificateRevocationListDer<'static>> {
        load_crls(&self.dir.path().join("crl.pem")).unwrap()
    }

    fn gateway_id(&self) -> SpiffeId {
        self.gateway.id.clone()
    }

    /// The gateway's config and a handle on its verifier (to swap CRLs).
    fn server(&self) -> (Arc<ServerConfig>, Arc<MeshClientVerifier>) {
        let verifier = Arc::new(MeshClientVerifier::new(self.trust(), self.crls()).unwrap());
        let identity = Identity::load(&self.gateway.cert_path, &self.gateway.key_path).unwrap();
        let config = server_config(&identity, Arc::clone(&verifier)).unwrap();
        (Arc::new(config), verifier)
    }

    fn server_verifier(&self) -> Arc<MeshServerVerifier> {
        Arc::new(MeshServerVerifier::new(self.trust(), self.gateway_id(), vec![]).unwrap())
    }

    /// A sidecar config presenting `agent`.
    fn client(&self, agent: &IssuedCert) -> Arc<ClientConfig> {
        Arc::new(client_config(&agent.identity().unwrap(), self.server_verifier()).unwrap())
    }
}

#[derive(Debug)]
enum Failure {
    /// The client rejected the handshake.
    Client(rustls::Error),
    /// The server rejected the handshake.
    Server(rustls::Error),
}

/// Runs a handshake; on success returns the SPIFFE ID the server sees.
fn handshake(client: Arc<ClientConfig>, server: Arc<ServerConfig>) -> Result<SpiffeId, Failure> {
    let server_name = "gw.example.org".try_into().unwrap();
    let mut client = ClientConnection::new(client, server_name).unwrap();
    let mut server = ServerConnection::new(server).unwrap();
    for _ in 0..20 {
        let to_server = drain(&mut client);
        feed(&mut server, &to_server);
        server.process_new_packets().map_err(Failure::Server)?;
        let to_client = drain(&mut server);
        feed(&mut client, &to_client);
        client.process_new_packets().map_err(Failure::Client)?;
        if !client.is_handshaking() && !server.is_handshaking() && !client.wants_write() {
            assert_eq!(server.alpn_protocol(), Some(ALPN_AIMUX_V1));
            assert_eq!(client.alpn_protocol(), Some(ALPN_AIMUX_V1));
            assert_eq!(
                server.protocol_version(),
                Some(rustls::ProtocolVersion::TLSv1_3)
            );
            let certs = server
                .peer_certificates()
                .expect("verified client certificates");
            return Ok(peer_identity(certs).unwrap());
        }
    }
    panic!("handshake did not finish");
}

fn drain<D>(conn: &mut rustls::ConnectionCommon<D>) -> Vec<u8> {
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out).unwrap();
    }
    out
}

fn feed<D>(conn: &mut rustls::ConnectionCommon<D>, mut bytes: &[u8]) {
    while !bytes.is_empty() {
        conn.read_tls(&mut bytes).unwrap();
    }
}

fn identity_error(err: &rustls::Error) -> &IdentityError {
    match err {
        rustls::Error::InvalidCertificate(CertificateError::Other(other)) => other
            .0
            .downcast_ref::<IdentityError>()
            .unwrap_or_else(|| panic!("not an identity error: {err:?}")),
        _ => panic!("not an identity error: {err:?}"),
    }
}

#[test]
fn valid_agent_is_accepted_and_identified() {
    let mesh = mesh(DOMAIN);
    let (server, _) = mesh.server();
    let id = handshake(mesh.client(&mesh.alice), server).unwrap();
    assert_eq!(id.to_string(), "spiffe://example.org/agent/alice");
    assert_eq!(id.workload_name(), Some("alice"));
}

#[test]
fn agent_from_another_ca_is_refused() {
    let mesh = mesh(DOMAIN);
    // Same trust domain, different CA: only the chain check can tell.
    let other = self::mesh(DOMAIN);
    let (server, _) = mesh.server();
    let client =
        Arc::new(client_config(&other.alice.identity().unwrap(), mesh.server_verifier()).unwrap());
    match handshake(client, server) {
        Err(Failure::Server(rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer,
        ))) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn expired_agent_is_refused() {
    let mesh = mesh(DOMAIN);
    let validity = Validity::new(now() - Duration::days(10), now() - Duration::days(1)).unwrap();
    let stale = mesh
        .ca
        .issue(&IssueParams::agent(name("stale"), validity))
        .unwrap();
    let (server, _) = mesh.server();
    match handshake(mesh.client(&stale), server) {
        Err(Failure::Server(rustls::Error::InvalidCertificate(
            CertificateError::ExpiredContext { .. } | CertificateError::Expired,
        ))) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn client_without_certificate_is_refused() {
    let mesh = mesh(DOMAIN);
    let (server, _) = mesh.server();
    let client = ClientConfig::builder_with_provider(crypto_provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(mesh.server_verifier())
        .with_no_client_auth();
    match handshake(Arc::new(client), server) {
        Err(Failure::Server(rustls::Error::NoCertificatesPresented)) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn revoked_agent_is_refused_after_update_crls() {
    let mesh = mesh(DOMAIN);
    let (server, verifier) = mesh.server();
    let client = mesh.client(&mesh.alice);
    handshake(Arc::clone(&client), Arc::clone(&server)).unwrap();

    let alice_certs = mesh.alice.identity().unwrap().cert_chain().to_vec();
    let unix_now = aimux_certs::pki_types::UnixTime::now();
    assert_eq!(
        verifier.recheck_peer(&alice_certs, unix_now).unwrap(),
        mesh.alice.id
    );

    mesh.ca.revoke(&name("alice"), now()).unwrap();
    // Same ServerConfig, same verifier: only the CRL changes.
    verifier.update_crls(mesh.crls()).unwrap();
    // A live connection of alice's fails the recheck the gateway runs after a CRL update...
    assert_eq!(
        verifier.recheck_peer(&alice_certs, unix_now),
        Err(rustls::Error::InvalidCertificate(CertificateError::Revoked))
    );
    // ...and new connections are refused (resumption is off, so no old session gets around it).
    match handshake(Arc::clone(&client), Arc::clone(&server)) {
        Err(Failure::Server(rustls::Error::InvalidCertificate(CertificateError::Revoked))) => {}
        other => panic!("{other:?}"),
    }
    // Other agents still get in.
    let bob = mesh
        .ca
        .issue(&IssueParams::agent(name("bob"), days(1)))
        .unwrap();
    assert_eq!(
        handshake(mesh.client(&bob), server).unwrap().to_string(),
        "spiffe://example.org/agent/bob"
    );
}

#[test]
fn foreign_crl_is_rejected_and_previous_one_kept() {
    let mesh = mesh(DOMAIN);
    let other = self::mesh(DOMAIN);
    let (server, verifier) = mesh.server();
    other.ca.revoke(&name("alice"), now()).unwrap();
    let err = verifier.update_crls(other.crls()).unwrap_err();
    assert!(matches!(err, Error::CrlRejected { .. }), "{err}");
    assert!(matches!(verifier.update_crls(vec![]), Err(Error::NoCrl)));
    handshake(mesh.client(&mesh.alice), server).unwrap();
    assert!(matches!(
        MeshClientVerifier::new(mesh.trust(), vec![]),
        Err(Error::NoCrl)
    ));
}

#[test]
fn wrong_trust_domain_is_refused() {
    let mesh = mesh(DOMAIN);
    // A certificate signed by the mesh CA itself but naming another trust domain: the chain is
    // fine, the SPIFFE check is what refuses it.
    let ca_pem = std::fs::read_to_string(mesh.dir.path().join("ca.crt")).unwrap();
    let ca_key = std::fs::read_to_string(mesh.dir.path().join("ca.key")).unwrap();
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, KeyPair::from_pem(&ca_key).unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::default();
    params.not_before = now() - Duration::minutes(1);
    params.not_after = now() + Duration::days(1);
    params.subject_alt_names = vec![SanType::URI(
        "spiffe://other.org/agent/mallory".try_into().unwrap(),
    )];
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.use_authority_key_identifier_extension = true;
    let cert = params.signed_by(&key, &issuer).unwrap();
    let identity = Identity::from_der(
        vec![cert.der().clone()],
        rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
    )
    .unwrap();
    let client = Arc::new(
        client_config(&identity, mesh.server_verifier()).unwrap_or_else(
            // client_config accepts any agent/... identity; the server must do the refusing.
            |e| panic!("{e}"),
        ),
    );
    let (server, _) = mesh.server();
    match handshake(client, server) {
        Err(Failure::Server(err)) => assert!(
            matches!(identity_error(&err), IdentityError::WrongTrustDomain { .. }),
            "{err}"
        ),
        other => panic!("{other:?}"),
    }

    // The same check applies when the mesh is configured for another trust domain than the
    // one its CA names.
    let other_domain = MeshTrust::with_trust_domain(
        mesh.trust().ca_certs().to_vec(),
        TrustDomain::new("other.org").unwrap(),
    )
    .unwrap();
    let verifier = Arc::new(MeshClientVerifier::new(other_domain, mesh.crls()).unwrap());
    let identity = Identity::load(&mesh.gateway.cert_path, &mesh.gateway.key_path).unwrap();
    let server = Arc::new(server_config(&identity, verifier).unwrap());
    match handshake(mesh.client(&mesh.alice), server) {
        Err(Failure::Server(err)) => {
            let msg = identity_error(&err).to_string();
            assert!(
                msg.contains("belongs to trust domain `example.org`"),
                "{msg}"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn gateway_certificate_cannot_act_as_agent() {
    let mesh = mesh(DOMAIN);
    let (server, _) = mesh.server();
    // Build the client by hand: client_config refuses a gateway identity outright.
    let gateway = Identity::load(&mesh.gateway.cert_path, &mesh.gateway.key_path).unwrap();
    assert!(matches!(
        client_config(&gateway, mesh.server_verifier()),
        Err(Error::WrongKind { .. })
    ));
    let client = ClientConfig::builder_with_provider(crypto_provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(mesh.server_verifier())
        .with_client_auth_cert(gateway.cert_chain().to_vec(), gateway.clone_key())
        .unwrap();
    match handshake(Arc::new(client), server) {
        // serverAuth-only certificate: the clientAuth EKU check fails before the SPIFFE check.
        Err(Failure::Server(rustls::Error::InvalidCertificate(
            CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. },
        ))) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn client_refuses_a_different_gateway() {
    let mesh = mesh(DOMAIN);
    let (server, _) = mesh.server();
    let expected = SpiffeId::gateway(mesh.ca.trust_domain(), &name("central"));
    let verifier = Arc::new(MeshServerVerifier::new(mesh.trust(), expected, vec![]).unwrap());
    let client = Arc::new(client_config(&mesh.alice.identity().unwrap(), verifier).unwrap());
    match handshake(client, server) {
        Err(Failure::Client(err)) => {
            let IdentityError::UnexpectedPeer {
                presented,
                expected,
            } = identity_error(&err)
            else {
                panic!("{err:?}")
            };
            assert_eq!(presented.to_string(), "spiffe://example.org/gateway/edge");
            assert_eq!(expected.to_string(), "spiffe://example.org/gateway/central");
        }
        other => panic!("{other:?}"),
    }
    let foreign = SpiffeId::parse("spiffe://other.org/gateway/edge").unwrap();
    assert!(matches!(
        MeshServerVerifier::new(mesh.trust(), foreign, vec![]),
        Err(Error::OutsideTrustDomain { .. })
    ));
}

#[test]
fn client_refuses_an_agent_posing_as_server() {
    let mesh = mesh(DOMAIN);
    let agent = mesh.alice.identity().unwrap();
    let verifier = Arc::new(MeshClientVerifier::new(mesh.trust(), mesh.crls()).unwrap());
    assert!(matches!(
        server_config(&agent, Arc::clone(&verifier)),
        Err(Error::WrongKind { .. })
    ));
    // Hand-built server presenting the agent certificate. Even if the sidecar expected that
    // very ID, the missing serverAuth EKU stops it.
    let server = ServerConfig::builder_with_provider(crypto_provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(agent.cert_chain().to_vec(), agent.clone_key())
        .unwrap();
    let pinned =
        Arc::new(MeshServerVerifier::new(mesh.trust(), mesh.alice.id.clone(), vec![]).unwrap());
    let client = Arc::new(client_config(&agent, pinned).unwrap());
    match handshake(client, Arc::new(server)) {
        Err(Failure::Client(rustls::Error::InvalidCertificate(
            CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. },
        ))) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn client_refuses_a_revoked_gateway_when_given_the_crl() {
    let mesh = mesh(DOMAIN);
    let (server, _) = mesh.server();
    let verifier =
        Arc::new(MeshServerVerifier::new(mesh.trust(), mesh.gateway_id(), mesh.crls()).unwrap());
    let client =
        Arc::new(client_config(&mesh.alice.identity().unwrap(), Arc::clone(&verifier)).unwrap());
    handshake(Arc::clone(&client), Arc::clone(&server)).unwrap();
    mesh.ca.revoke(&name("edge"), now()).unwrap();
    verifier.update_crls(mesh.crls()).unwrap();
    match handshake(client, server) {
        Err(Failure::Client(rustls::Error::InvalidCertificate(CertificateError::Revoked))) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn client_refuses_a_gateway_from_another_ca() {
    let mesh = mesh(DOMAIN);
    let other = self::mesh(DOMAIN);
    // Same trust domain and the very same gateway ID, but signed by another CA.
    let (server, _) = other.server();
    match handshake(mesh.client(&mesh.alice), server) {
        Err(Failure::Client(rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer,
        ))) => {}
        other => panic!("{other:?}"),
    }
}
