//! Validation tests of services' upstream settings (protocol against URL scheme, `tls`,
//! `max_requests`) and of listeners against the kind of service they address.

use std::path::Path;

use super::tests::{MINIMAL, assert_mistake, line_of, mistakes, mistakes_in};
use super::validate;
use super::*;

/// A CA certificate made in `dir` (never a file of the repository): `dir/ca.crt`.
fn make_ca(dir: &Path) -> std::path::PathBuf {
    use aimux_certs::{Authority, InitParams, TrustDomain};
    let now = aimux_certs::time::OffsetDateTime::now_utc();
    let params = InitParams::new(TrustDomain::new("upstream.test").unwrap(), now).unwrap();
    Authority::init(dir, &params, now).unwrap();
    dir.join("ca.crt")
}

#[test]
fn https_services_take_tls_max_requests_and_auto() {
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    std::fs::create_dir(&pki).unwrap();
    std::fs::copy(make_ca(&pki), pki.join("upstream-ca.pem")).unwrap();
    let src = MINIMAL.replace(
        "upstreams = [\"http://127.0.0.1:9000\"]",
        "upstreams = [\"https://127.0.0.1:9443/v1\"]\nprotocol = \"auto\"\n\
         tls = { ca = \"pki/upstream-ca.pem\", server_name = \"api.test\" }\nmax_requests = 64",
    );
    let mesh = validate::parse(&src, dir.path()).unwrap();
    let svc = &mesh.services[0];
    assert_eq!(svc.protocol, UpstreamProtocol::Auto);
    assert_eq!(svc.max_requests, 64);
    assert_eq!(
        svc.tls,
        Some(ServiceTls {
            ca: Some(dir.path().join("pki/upstream-ca.pem")),
            server_name: Some("api.test".into()),
        })
    );
    // Without the keys: system roots, the default limit.
    let plain = validate::parse(MINIMAL, Path::new(".")).unwrap();
    assert_eq!(plain.services[0].tls, None);
    assert_eq!(plain.services[0].max_requests, 1024);
}

#[test]
fn tls_settings_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("empty.pem"), "").unwrap();
    let src = MINIMAL.replace(
        "upstreams = [\"http://127.0.0.1:9000\"]",
        "upstreams = [\"https://127.0.0.1:9443\"]\n\
         tls = { ca = \"missing.pem\", server_name = \"not a name\" }\n\n\
         [[service]]\nname = \"empty-ca\"\nupstreams = [\"https://127.0.0.1:9444\"]\n\
         tls = { ca = \"empty.pem\", sni = \"x\" }\n\n\
         [[service]]\nname = \"cleartext\"\nupstreams = [\"http://127.0.0.1:9000\"]\n\
         tls = { server_name = \"api.test\" }",
    );
    let found = mistakes_in(&src, dir.path());
    assert_mistake(
        &found,
        line_of(&src, "missing.pem"),
        "tls.ca of service `echo` cannot be used",
        "PEM file",
    );
    assert_mistake(
        &found,
        line_of(&src, "not a name"),
        "tls.server_name `not a name` is neither a DNS name nor an IP address",
        "",
    );
    assert_mistake(
        &found,
        line_of(&src, "empty.pem"),
        "tls.ca of service `empty-ca` cannot be used",
        "",
    );
    assert_mistake(
        &found,
        line_of(&src, "sni ="),
        "unknown key `sni`",
        "`ca`, `server_name`",
    );
    assert_mistake(
        &found,
        line_of(&src, "server_name = \"api.test\""),
        "service `cleartext` has `tls` settings but no https:// upstream",
        "remove `tls`",
    );
    assert_eq!(found.len(), 5, "{found:#?}");
}

#[test]
fn protocols_must_fit_the_url_scheme_and_limits_their_range() {
    let src = MINIMAL.replace(
        "upstreams = [\"http://127.0.0.1:9000\"]",
        "upstreams = [\"http://127.0.0.1:9000\"]\nprotocol = \"http2\"\n\n\
         [[service]]\nname = \"tls-h2c\"\nupstreams = [\"https://127.0.0.1:9443\"]\n\
         protocol = \"h2c\"\nmax_requests = 0\n\n\
         [[service]]\nname = \"mixed\"\nupstreams = [\"tcp://127.0.0.1:5432\", \"builtin:echo\"]",
    );
    let found = mistakes(&src);
    assert_mistake(
        &found,
        line_of(&src, "\"http2\""),
        "protocol http2 is HTTP/2 over TLS, but upstream `http://127.0.0.1:9000` is not an https:// URL",
        "protocol = \"h2c\"",
    );
    assert_mistake(
        &found,
        line_of(&src, "\"h2c\""),
        "protocol h2c is HTTP/2 without TLS, but upstream `https://127.0.0.1:9443` is an https:// URL",
        "protocol = \"http2\"",
    );
    assert_mistake(
        &found,
        line_of(&src, "max_requests"),
        "max_requests = 0 is out of range",
        "1 to 1000000",
    );
    assert_mistake(
        &found,
        line_of(&src, "tcp://127.0.0.1:5432"),
        "service `mixed` mixes tcp:// upstreams with HTTP ones",
        "split it in two",
    );
    assert_eq!(found.len(), 4, "{found:#?}");

    // Built-in upstreams are HTTP without TLS: http2 does not fit them either.
    let builtin = MINIMAL.replace(
        "upstreams = [\"http://127.0.0.1:9000\"]",
        "upstreams = [\"builtin:echo\"]\nprotocol = \"http2\"",
    );
    assert_mistake(
        &mistakes(&builtin),
        line_of(&builtin, "\"http2\""),
        "upstream `builtin:echo` is not an https:// URL",
        "",
    );
    let good = MINIMAL.replace(
        "upstreams = [\"http://127.0.0.1:9000\"]",
        "upstreams = [\"https://api.example.org\"]\nprotocol = \"http2\"",
    );
    assert_eq!(mistakes(&good), Vec::new());
}

#[test]
fn listeners_must_carry_what_their_service_takes() {
    let src = MINIMAL
        .replace(
            "listeners = [{ listen = \"127.0.0.1:15001\", service = \"echo\" }]",
            "listeners = [\n  { listen = \"127.0.0.1:15001\", service = \"echo\", protocol = \"tcp\" },\n  \
             { listen = \"127.0.0.1:15002\", service = \"db\" },\n  \
             { listen = \"127.0.0.1:15003\", service = \"db\", protocol = \"tcp\" },\n]",
        )
        .replace(
            "upstreams = [\"http://127.0.0.1:9000\"]",
            "upstreams = [\"http://127.0.0.1:9000\"]\n\n\
             [[service]]\nname = \"db\"\nupstreams = [\"tcp://127.0.0.1:5432\"]",
        );
    let found = mistakes(&src);
    assert_mistake(
        &found,
        line_of(&src, "15001"),
        "listener 127.0.0.1:15001 of agent `alice` is raw TCP (protocol = \"tcp\"), but service `echo` takes HTTP requests (http://127.0.0.1:9000)",
        "remove protocol = \"tcp\"",
    );
    assert_mistake(
        &found,
        line_of(&src, "15002"),
        "listener 127.0.0.1:15002 of agent `alice` carries HTTP, but service `db` takes raw TCP streams (tcp://127.0.0.1:5432)",
        "add protocol = \"tcp\"",
    );
    assert_eq!(found.len(), 2, "{found:#?}");
}
