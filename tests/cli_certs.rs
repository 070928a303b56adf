//! `aimux certs` end to end: the real binary in a temporary directory, with the `openssl`
//! command as the independent verifier of everything it writes.
// Test helpers outside `#[test]` functions may unwrap too (clippy.toml allows it in tests).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const AIMUX: &str = env!("CARGO_BIN_EXE_aimux");

/// Runs `aimux certs <args>`.
fn certs(args: &[&str]) -> Output {
    Command::new(AIMUX)
        .arg("certs")
        .args(args)
        .output()
        .expect("run the aimux binary")
}

/// Runs `aimux certs <args>` and fails the test unless it succeeds; returns stdout.
fn certs_ok(args: &[&str]) -> String {
    let out = certs(args);
    assert!(
        out.status.success(),
        "aimux certs {args:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Runs `aimux certs <args>`, expecting failure; returns stderr.
fn certs_err(args: &[&str]) -> String {
    let out = certs(args);
    assert!(
        !out.status.success(),
        "aimux certs {args:?} should have failed:\nstdout: {}",
        text(&out.stdout)
    );
    text(&out.stderr)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The `openssl` binary. It is installed here and in CI; without it these tests cannot say
/// anything, so they fail loudly rather than skip.
fn openssl_bin() -> PathBuf {
    let candidates = [PathBuf::from("/usr/bin/openssl"), PathBuf::from("openssl")];
    for bin in candidates {
        if Command::new(&bin)
            .arg("version")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return bin;
        }
    }
    panic!(
        "the `openssl` command is required by tests/cli_certs.rs (it independently verifies the \
         certificates and CRLs): install it, e.g. `apt-get install openssl`"
    );
}

/// Runs `openssl <args>`; returns (success, stdout + stderr).
fn openssl(args: &[&dyn AsRef<std::ffi::OsStr>]) -> (bool, String) {
    let out = Command::new(openssl_bin())
        .args(args.iter().map(|a| a.as_ref()))
        .output()
        .expect("run openssl");
    let mut all = text(&out.stdout);
    all.push_str(&text(&out.stderr));
    (out.status.success(), all)
}

/// `openssl verify` of `DIR/<name>.crt` against `DIR/ca.crt`, plus `extra` options.
fn verify(dir: &Path, name: &str, extra: &[&str]) -> (bool, String) {
    let ca = dir.join("ca.crt");
    let cert = dir.join(format!("{name}.crt"));
    let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&"verify", &"-CAfile", &ca];
    for e in extra {
        args.push(e);
    }
    args.push(&cert);
    openssl(&args)
}

/// `openssl verify -crl_check` against `DIR/crl.pem`.
fn verify_with_crl(dir: &Path, name: &str) -> (bool, String) {
    let crl = dir.join("crl.pem");
    let crl = crl.to_str().unwrap();
    verify(dir, name, &["-crl_check", "-CRLfile", crl])
}

/// A temporary CA directory, initialised for `example.org`.
fn new_ca() -> (tempfile::TempDir, String) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ca").to_str().unwrap().to_owned();
    certs_ok(&["init", "--dir", &dir, "--trust-domain", "example.org"]);
    (tmp, dir)
}

#[test]
fn openssl_verifies_agents_and_sees_revocation() {
    let (_tmp, dir) = new_ca();
    let d = Path::new(&dir);
    let out = certs_ok(&["issue", "--dir", &dir, "--name", "alice", "--days", "30"]);
    assert!(
        out.contains("issued agent certificate spiffe://example.org/agent/alice → "),
        "{out}"
    );
    assert!(out.contains("alice.key"), "{out}");

    let (ok, msg) = verify(d, "alice", &[]);
    assert!(ok, "openssl verify: {msg}");
    let (ok, msg) = verify_with_crl(d, "alice");
    assert!(ok, "openssl verify -crl_check before revoking: {msg}");

    let out = certs_ok(&["revoke", "--dir", &dir, "--name", "alice"]);
    assert!(
        out.contains("revoked spiffe://example.org/agent/alice"),
        "{out}"
    );
    let (ok, msg) = verify_with_crl(d, "alice");
    assert!(!ok, "openssl accepted a revoked certificate: {msg}");
    assert!(msg.contains("certificate revoked"), "{msg}");
    // Without the CRL the chain itself is still fine: only revocation changed.
    assert!(verify(d, "alice", &[]).0);

    // The CRL is a proper v2 CRL signed by the CA, with CRL number 2 (1 was the empty one).
    let ca = d.join("ca.crt");
    let crl = d.join("crl.pem");
    let (ok, msg) = openssl(&[&"crl", &"-in", &crl, &"-CAfile", &ca, &"-noout", &"-verify"]);
    assert!(ok && msg.contains("verify OK"), "{msg}");
    let (_, msg) = openssl(&[&"crl", &"-in", &crl, &"-noout", &"-crlnumber"]);
    assert!(msg.contains("crlNumber=0x02"), "{msg}");
}

#[test]
fn revocations_accumulate_and_repeat_is_a_noop() {
    let (_tmp, dir) = new_ca();
    let d = Path::new(&dir);
    for name in ["a", "b", "c"] {
        certs_ok(&["issue", "--dir", &dir, "--name", name]);
    }
    certs_ok(&["revoke", "--dir", &dir, "--name", "a"]);
    certs_ok(&["revoke", "--dir", &dir, "--name", "b"]);
    let before = fs::read(d.join("crl.pem")).unwrap();
    let out = certs_ok(&["revoke", "--dir", &dir, "--name", "a"]);
    assert!(out.contains("was already revoked"), "{out}");
    assert_eq!(
        fs::read(d.join("crl.pem")).unwrap(),
        before,
        "crl.pem changed"
    );

    assert!(verify_with_crl(d, "a").1.contains("certificate revoked"));
    assert!(verify_with_crl(d, "b").1.contains("certificate revoked"));
    let (ok, msg) = verify_with_crl(d, "c");
    assert!(ok, "{msg}");
    let (_, msg) = openssl(&[&"crl", &"-in", &d.join("crl.pem"), &"-noout", &"-crlnumber"]);
    assert!(msg.contains("crlNumber=0x03"), "{msg}");
}

#[test]
fn agent_and_gateway_purposes() {
    let (_tmp, dir) = new_ca();
    let d = Path::new(&dir);
    certs_ok(&["issue", "--dir", &dir, "--name", "alice"]);
    let out = certs_ok(&[
        "issue",
        "--dir",
        &dir,
        "--gateway",
        "--name",
        "edge",
        "--dns",
        "gw.example.org",
        "--ip",
        "10.0.0.7",
    ]);
    assert!(
        out.contains("issued gateway certificate spiffe://example.org/gateway/edge"),
        "{out}"
    );

    let (ok, msg) = verify(d, "alice", &["-purpose", "sslclient"]);
    assert!(ok, "agent as TLS client: {msg}");
    let (ok, msg) = verify(d, "alice", &["-purpose", "sslserver"]);
    assert!(!ok, "agent accepted as TLS server: {msg}");

    let (ok, msg) = verify(d, "edge", &["-purpose", "sslserver"]);
    assert!(ok, "gateway as TLS server: {msg}");
    let (ok, msg) = verify(d, "edge", &["-purpose", "sslclient"]);
    assert!(!ok, "gateway accepted as TLS client: {msg}");
    let (ok, msg) = verify(d, "edge", &["-verify_hostname", "gw.example.org"]);
    assert!(ok, "{msg}");
    let (ok, msg) = verify(d, "edge", &["-verify_ip", "10.0.0.7"]);
    assert!(ok, "{msg}");
    let (ok, _) = verify(d, "edge", &["-verify_hostname", "other.example.org"]);
    assert!(!ok);

    let (_, sans) = openssl(&[
        &"x509",
        &"-in",
        &d.join("edge.crt"),
        &"-noout",
        &"-ext",
        &"subjectAltName",
    ]);
    assert!(
        sans.contains("URI:spiffe://example.org/gateway/edge"),
        "{sans}"
    );
    let (_, ca) = openssl(&[&"x509", &"-in", &d.join("ca.crt"), &"-noout", &"-text"]);
    assert!(ca.contains("CA:TRUE"), "{ca}");
    assert!(ca.contains("Certificate Sign, CRL Sign"), "{ca}");
    assert!(ca.contains("URI:spiffe://example.org"), "{ca}");
    assert!(ca.contains("prime256v1") || ca.contains("P-256"), "{ca}");
    let (_, leaf) = openssl(&[&"x509", &"-in", &d.join("alice.crt"), &"-noout", &"-text"]);
    assert!(leaf.contains("CA:FALSE"), "{leaf}");
    assert!(leaf.contains("TLS Web Client Authentication"), "{leaf}");
    assert!(leaf.contains("Digital Signature"), "{leaf}");
}

#[cfg(unix)]
#[test]
fn key_files_are_private() {
    use std::os::unix::fs::PermissionsExt as _;
    let (_tmp, dir) = new_ca();
    let d = Path::new(&dir);
    certs_ok(&["issue", "--dir", &dir, "--name", "alice"]);
    let mode = |f: &str| fs::metadata(d.join(f)).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode("ca.key"), 0o600);
    assert_eq!(mode("alice.key"), 0o600);
    assert_eq!(mode("ca.crt"), 0o644);
    assert_eq!(mode("alice.crt"), 0o644);
    assert_eq!(mode("crl.pem"), 0o644);
    assert_eq!(fs::metadata(d).unwrap().permissions().mode() & 0o777, 0o700);
}

#[test]
fn refuses_overwrites_without_force() {
    let (_tmp, dir) = new_ca();
    let d = Path::new(&dir);
    let ca_before = fs::read(d.join("ca.crt")).unwrap();
    let err = certs_err(&["init", "--dir", &dir, "--trust-domain", "example.org"]);
    assert!(err.contains("a CA already exists"), "{err}");
    assert!(err.contains("--force"), "{err}");
    assert_eq!(fs::read(d.join("ca.crt")).unwrap(), ca_before);

    certs_ok(&["issue", "--dir", &dir, "--name", "alice"]);
    let cert_before = fs::read(d.join("alice.crt")).unwrap();
    let err = certs_err(&["issue", "--dir", &dir, "--name", "alice"]);
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(fs::read(d.join("alice.crt")).unwrap(), cert_before);

    // Replacing says what happened to the old certificate, which can still be revoked.
    fs::copy(d.join("alice.crt"), d.join("old-alice.pem")).unwrap();
    let out = certs_ok(&["issue", "--dir", &dir, "--name", "alice", "--force"]);
    assert!(out.contains("was not revoked"), "{out}");
    let serial = out
        .split("--serial ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap()
        .to_owned();
    certs_ok(&["revoke", "--dir", &dir, "--serial", &serial]);
    let crl = d.join("crl.pem");
    let (ok, msg) = openssl(&[
        &"verify",
        &"-crl_check",
        &"-CRLfile",
        &crl,
        &"-CAfile",
        &d.join("ca.crt"),
        &d.join("old-alice.pem"),
    ]);
    assert!(!ok && msg.contains("certificate revoked"), "{msg}");
    assert!(verify_with_crl(d, "alice").0);

    let out = certs_ok(&[
        "init",
        "--dir",
        &dir,
        "--trust-domain",
        "example.org",
        "--force",
    ]);
    assert!(out.contains("replaced the CA"), "{out}");
    assert_ne!(fs::read(d.join("ca.crt")).unwrap(), ca_before);
    // The old agent certificate is no longer trusted.
    assert!(!verify(d, "alice", &[]).0);
}

#[test]
fn rejects_bad_names_and_domains() {
    let (tmp, dir) = new_ca();
    for bad in ["../x", "ca", "crl", "Alice", "a/b", "", ".hidden", "-x"] {
        // `--name=VALUE` so that clap takes `-x` as a value, not a flag.
        let err = certs_err(&["issue", "--dir", &dir, &format!("--name={bad}")]);
        assert!(err.contains("not a valid name"), "{bad}: {err}");
    }
    // Nothing escaped the CA directory.
    let mut outside: Vec<_> = fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    outside.sort();
    assert_eq!(outside, ["ca"]);
    assert!(!Path::new(&dir).join("ca.key.crt").exists());

    let other = tmp.path().join("other");
    let other = other.to_str().unwrap();
    for bad in ["Example.org", "example.org:443", "spiffe://example.org", ""] {
        let err = certs_err(&["init", "--dir", other, "--trust-domain", bad]);
        assert!(err.contains("trust domain"), "{bad}: {err}");
    }
    assert!(!Path::new(other).exists());

    let err = certs_err(&["issue", "--dir", &dir, "--name", "x", "--dns", "a.example"]);
    assert!(err.contains("--gateway"), "{err}");
}

#[test]
fn issue_and_revoke_before_init_explain_what_to_do() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("nothing");
    let dir = dir.to_str().unwrap();
    let err = certs_err(&["issue", "--dir", dir, "--name", "alice"]);
    assert!(err.contains(&format!("no CA in {dir}")), "{err}");
    assert!(err.contains("aimux certs init --dir"), "{err}");
    let err = certs_err(&["revoke", "--dir", dir, "--name", "alice"]);
    assert!(err.contains("no CA in"), "{err}");
    let err = certs_err(&["list", "--dir", dir]);
    assert!(err.contains("no CA in"), "{err}");

    let (_tmp, dir) = new_ca();
    let err = certs_err(&["revoke", "--dir", &dir, "--name", "ghost"]);
    assert!(err.contains("no certificate named `ghost`"), "{err}");
}

#[test]
fn list_shows_table_and_json() {
    let (_tmp, dir) = new_ca();
    let out = certs_ok(&["list", "--dir", &dir]);
    assert!(out.contains("no certificates issued yet"), "{out}");

    certs_ok(&["issue", "--dir", &dir, "--name", "alice"]);
    certs_ok(&["issue", "--dir", &dir, "--name", "bob", "--days", "10"]);
    certs_ok(&["issue", "--dir", &dir, "--gateway", "--name", "edge"]);
    certs_ok(&["revoke", "--dir", &dir, "--name", "bob"]);

    let table = certs_ok(&["list", "--dir", &dir]);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("CA spiffe://example.org "), "{table}");
    assert!(lines[1].starts_with("NAME"), "{table}");
    assert!(
        lines[2].starts_with("alice") && lines[2].ends_with("valid"),
        "{table}"
    );
    assert!(
        lines[3].starts_with("bob") && lines[3].ends_with("revoked"),
        "{table}"
    );
    assert!(
        lines[4].contains("gateway") && lines[4].contains("/gateway/edge"),
        "{table}"
    );

    let json: serde_json::Value =
        serde_json::from_str(&certs_ok(&["list", "--dir", &dir, "--json"])).unwrap();
    assert_eq!(json["trust_domain"], "example.org");
    assert_eq!(json["crl"]["revoked_count"], 1);
    let certs = json["certificates"].as_array().unwrap();
    let names: Vec<&str> = certs.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["alice", "bob", "edge"]);
    let bob = &certs[1];
    assert_eq!(bob["identity"], "spiffe://example.org/agent/bob");
    assert_eq!(bob["kind"], "agent");
    assert_eq!(bob["revoked"], true);
    assert_eq!(bob["expired"], false);
    assert_eq!(certs[2]["kind"], "gateway");
    assert_eq!(certs[0]["revoked"], false);

    // The serial is the one openssl reads from the certificate.
    let (_, serial) = openssl(&[
        &"x509",
        &"-in",
        &Path::new(&dir).join("bob.crt"),
        &"-noout",
        &"-serial",
    ]);
    let serial = serial.trim().trim_start_matches("serial=").to_lowercase();
    assert_eq!(bob["serial"].as_str().unwrap(), serial);
    // not_after is RFC 3339, about 10 days ahead.
    let not_after = bob["not_after"].as_str().unwrap();
    assert!(
        not_after.ends_with('Z') && not_after.len() == 20,
        "{not_after}"
    );
}
