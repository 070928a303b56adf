//! Who may connect, and who a request is from: certificates from another CA, expired or
//! missing are refused at the handshake; a claimed identity must match the certificate;
//! a revoked certificate loses its live connection within a second. Every test runs once
//! per transport: the same verifier and CRL guard QUIC and HTTP/2.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use std::time::{Duration, Instant};

use aimux_certs::rustls;
use aimux_certs::tls::crypto_provider;
use aimux_certs::{IssueParams, Validity};
use aimux_wire::{Outcome, codes};
use bytes::Bytes;
use quinn::ConnectionError;
use support::upstream;
use support::{
    Closed, Conn, ConnectError, Mesh, Running, STEP, Transport, config, connect, exchange, name,
    over_both, request, try_connect,
};

over_both!(
    refuses_certificates_from_another_ca_expired_or_absent,
    a_claimed_identity_must_match_the_certificate,
    revocation_closes_the_live_connection_within_a_second,
    an_unparseable_crl_is_ignored_and_later_changes_still_apply,
);

/// TLS alerts (RFC 8446 §6.2).
const CERTIFICATE_REVOKED: u8 = 44;

/// The refusal must come from the TLS layer (QUIC: a CRYPTO_ERROR close, RFC 9001 §4.8;
/// TCP: a TLS alert record), not from anything later. Returns the alert.
fn assert_tls_refusal(result: Result<Conn, ConnectError>, what: &str) -> u8 {
    let code = match result {
        Ok(_) => panic!("{what}: the gateway accepted the connection"),
        Err(ConnectError::Quic(ConnectionError::ConnectionClosed(close))) => {
            u64::from(close.error_code)
        }
        Err(ConnectError::Quic(ConnectionError::TransportError(e))) => u64::from(e.code),
        Err(ConnectError::Alert(alert)) => 0x100 + u64::from(alert),
        Err(other) => panic!("{what}: unexpected failure {other:?}"),
    };
    assert!(
        (0x100..0x200).contains(&code),
        "{what}: expected a TLS alert, got {code:#x}"
    );
    u8::try_from(code - 0x100).unwrap()
}

async fn refuses_certificates_from_another_ca_expired_or_absent(t: Transport) {
    let mesh = Mesh::new();
    let up = upstream::start().await;
    let gw = Running::start(config(&mesh, up.addr)).await;
    let addr = gw.addr(t);

    // Another CA of the same trust domain issued this "alice".
    let other_dir = tempfile::tempdir().unwrap();
    let other_ca = support::new_ca(other_dir.path());
    let days = Validity::days_from(support::now(), 30).unwrap();
    let impostor = other_ca
        .issue(&IssueParams::agent(name("alice"), days))
        .unwrap();
    let result = try_connect(mesh.client_config(&impostor.identity().unwrap()), addr, t).await;
    assert_tls_refusal(result, "certificate from another CA");

    let expired = mesh.expired_agent("carol");
    let result = try_connect(mesh.client_config(&expired.identity().unwrap()), addr, t).await;
    assert_tls_refusal(result, "expired certificate");

    // No client certificate at all.
    let tls = rustls::ClientConfig::builder_with_provider(crypto_provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(mesh.server_verifier())
        .with_no_client_auth();
    assert_tls_refusal(try_connect(tls, addr, t).await, "no certificate");

    // The real alice still gets in.
    let conn = connect(&mesh, &mesh.alice, &gw, t).await;
    let reply = exchange(
        &conn,
        &request(&mesh.alice, "echo", "GET", "/"),
        Bytes::new(),
    )
    .await
    .unwrap();
    assert_eq!(reply.envelope.outcome, Outcome::Forwarded);
    gw.stop().await.unwrap();
}

async fn a_claimed_identity_must_match_the_certificate(t: Transport) {
    let mesh = Mesh::new();
    let up = upstream::start().await;
    let gw = Running::start(config(&mesh, up.addr)).await;
    let conn = connect(&mesh, &mesh.alice, &gw, t).await;

    // Alice's connection claims to speak for bob.
    let env = request(&mesh.bob, "echo", "POST", "/");
    let reply = exchange(&conn, &env, Bytes::from_static(b"body"))
        .await
        .unwrap();
    assert_eq!(reply.envelope.outcome, Outcome::IdentityMismatch);
    let reason = &reply.envelope.reason;
    assert!(
        reason.contains(&mesh.bob.id.to_string()) && reason.contains(&mesh.alice.id.to_string()),
        "{reason}"
    );
    assert!(reply.envelope.http.is_none());
    gw.stop().await.unwrap();
}

async fn revocation_closes_the_live_connection_within_a_second(t: Transport) {
    let mesh = Mesh::new();
    let up = upstream::start().await;
    let gw = Running::start(config(&mesh, up.addr)).await;
    let alice = connect(&mesh, &mesh.alice, &gw, t).await;
    let bob = connect(&mesh, &mesh.bob, &gw, t).await;
    // A request proves the connection is registered and being served.
    let reply = exchange(
        &alice,
        &request(&mesh.alice, "echo", "GET", "/"),
        Bytes::new(),
    )
    .await
    .unwrap();
    assert_eq!(reply.envelope.outcome, Outcome::Forwarded);

    let revocation = mesh.ca.revoke(&name("alice"), support::now()).unwrap();
    assert!(!revocation.already_revoked);
    let revoked_at = Instant::now();
    let closed = tokio::time::timeout(Duration::from_secs(1), alice.closed())
        .await
        .expect("the live connection is closed within 1 s of the revocation");
    let elapsed = revoked_at.elapsed();
    match closed {
        Closed::Quic(ConnectionError::ApplicationClosed(close)) => {
            assert_eq!(close.error_code, codes::CLOSE_REVOKED.into());
            assert_eq!(&close.reason[..], b"revoked");
        }
        // HTTP/2 cannot carry the code: the connection just ends.
        Closed::H2(_) => {}
        other => panic!("expected CLOSE_REVOKED, got {other:?}"),
    }
    assert!(elapsed < Duration::from_secs(1), "{elapsed:?}");

    // A new handshake with the revoked certificate fails, with certificate_revoked: that is
    // how a sidecar on either transport learns why.
    let tls = mesh.client_config(&mesh.alice.identity().unwrap());
    let result = try_connect(tls, gw.addr(t), t).await;
    let alert = assert_tls_refusal(result, "revoked certificate");
    assert_eq!(alert, CERTIFICATE_REVOKED);
    // ...while bob's connection was left alone.
    let reply = tokio::time::timeout(
        STEP,
        exchange(&bob, &request(&mesh.bob, "echo", "GET", "/"), Bytes::new()),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(reply.envelope.outcome, Outcome::Forwarded);

    let (_, _, metrics) = support::http_get(gw.admin.unwrap(), "/metrics", &[], None).await;
    let metrics = String::from_utf8(metrics.to_vec()).unwrap();
    assert!(
        metrics.contains("aimux_gateway_revocations_total 1"),
        "{metrics}"
    );
    gw.stop().await.unwrap();
}

async fn an_unparseable_crl_is_ignored_and_later_changes_still_apply(t: Transport) {
    let mesh = Mesh::new();
    let up = upstream::start().await;
    let gw = Running::start(config(&mesh, up.addr)).await;
    let alice = connect(&mesh, &mesh.alice, &gw, t).await;
    let reply = exchange(
        &alice,
        &request(&mesh.alice, "echo", "GET", "/"),
        Bytes::new(),
    )
    .await
    .unwrap();
    assert_eq!(reply.envelope.outcome, Outcome::Forwarded);

    // Garbage replaces the CRL (atomically, as an editor might): the gateway keeps the
    // CRL it has, so agents still connect and are still checked.
    let original = std::fs::read(mesh.crl_path()).unwrap();
    let tmp = mesh.dir.path().join("crl.tmp");
    std::fs::write(&tmp, b"not a CRL").unwrap();
    std::fs::rename(&tmp, mesh.crl_path()).unwrap();
    let bob = connect(&mesh, &mesh.bob, &gw, t).await;
    let reply = exchange(&bob, &request(&mesh.bob, "echo", "GET", "/"), Bytes::new())
        .await
        .unwrap();
    assert_eq!(reply.envelope.outcome, Outcome::Forwarded);

    // The operator restores the file and revokes alice: that change is applied.
    std::fs::write(&tmp, original).unwrap();
    std::fs::rename(&tmp, mesh.crl_path()).unwrap();
    mesh.ca.revoke(&name("alice"), support::now()).unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(1), alice.closed())
        .await
        .expect("closed within 1 s");
    match &closed {
        Closed::Quic(ConnectionError::ApplicationClosed(c)) => {
            assert_eq!(c.error_code, codes::CLOSE_REVOKED.into());
        }
        Closed::H2(_) => {}
        other => panic!("{other:?}"),
    }
    gw.stop().await.unwrap();
}
