//! The crate's error type. Every message says what happened and what the operator can do.

use std::io;
use std::path::PathBuf;

use crate::name::NameError;
use crate::spiffe::{IdentityKind, SpiffeIdError};
use crate::svid::IdentityError;

/// Everything that can go wrong in `aimux-certs`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading, writing or renaming a file failed.
    #[error("could not {op} {}: {source}", path.display())]
    Io {
        /// What was being done: "read", "write", "create directory"...
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },

    /// Another command kept the CA directory locked for too long.
    #[error(
        "another `aimux certs` command has held {} for {waited:?}; wait for it to finish and run this again",
        path.display()
    )]
    Locked {
        /// The lock file.
        path: PathBuf,
        /// How long this command waited.
        waited: std::time::Duration,
    },

    /// There is no CA in the directory.
    #[error(
        "no CA in {dir}: run `aimux certs init --dir {dir} --trust-domain example.org` first",
        dir = dir.display()
    )]
    NoCa {
        /// The CA directory.
        dir: PathBuf,
    },

    /// `init` found an existing CA and was not told to replace it.
    #[error(
        "a CA already exists in {dir}: pass --force to replace it (every certificate it issued \
         stops being trusted), or choose another --dir",
        dir = dir.display()
    )]
    CaExists {
        /// The CA directory.
        dir: PathBuf,
    },

    /// `ca.crt` exists but `ca.key` does not.
    #[error(
        "{} exists but the CA private key {} is missing: restore it from a backup; without it no \
         certificate can be issued or revoked",
        cert.display(), key.display()
    )]
    CaKeyMissing {
        /// Path of `ca.crt`.
        cert: PathBuf,
        /// Path of the missing `ca.key`.
        key: PathBuf,
    },

    /// `ca.crt` is not a usable mesh CA certificate.
    #[error("{} is not a usable mesh CA certificate: {reason}", path.display())]
    NotACa {
        /// Path of the certificate.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// A private key does not match its certificate.
    #[error(
        "the private key {} does not belong to the certificate {}: they were not created \
         together; restore the matching pair, or issue a new one with \
         `aimux certs issue --force`",
        key.display(), cert.display()
    )]
    KeyMismatch {
        /// The certificate.
        cert: PathBuf,
        /// The key.
        key: PathBuf,
    },

    /// `issue` found an existing certificate of that name and was not told to replace it.
    #[error(
        "a certificate named `{name}` already exists ({}): pass --force to replace it; the old \
         certificate stays valid until it expires unless you revoke it first with \
         `aimux certs revoke --dir {} --name {name}`",
        path.display(), path.parent().unwrap_or(path).display()
    )]
    AlreadyIssued {
        /// The name.
        name: String,
        /// The existing file.
        path: PathBuf,
    },

    /// `revoke` was asked for a name that has no certificate.
    #[error(
        "no certificate named `{name}`: {} does not exist (`aimux certs list` shows what was \
         issued)",
        path.display()
    )]
    NotIssued {
        /// The name.
        name: String,
        /// The missing file.
        path: PathBuf,
    },

    /// A certificate in the CA directory was not signed by its CA.
    #[error(
        "{} was not issued by the CA in {}: it was probably copied from another CA directory",
        path.display(), dir.display()
    )]
    NotIssuedByCa {
        /// The certificate.
        path: PathBuf,
        /// The CA directory.
        dir: PathBuf,
    },

    /// An invalid agent or gateway name.
    #[error(transparent)]
    InvalidName(#[from] NameError),

    /// An invalid SPIFFE ID or trust domain.
    #[error(transparent)]
    InvalidSpiffeId(#[from] SpiffeIdError),

    /// A certificate does not carry a usable SPIFFE identity.
    #[error("{}: {source}", path.display())]
    Identity {
        /// The certificate file (or a description of where it came from).
        path: PathBuf,
        /// What is wrong.
        #[source]
        source: IdentityError,
    },

    /// An identity of the wrong kind was given (an agent certificate to the gateway, or the
    /// reverse).
    #[error("{id} is not a {expected} identity: {hint}")]
    WrongKind {
        /// The identity found.
        id: String,
        /// The kind needed.
        expected: IdentityKind,
        /// How to get the right certificate.
        hint: &'static str,
    },

    /// A SPIFFE ID from configuration is outside the mesh's trust domain.
    #[error(
        "{id} is not in this mesh's trust domain `{trust_domain}`: use an ID of the form \
         spiffe://{trust_domain}/gateway/NAME"
    )]
    OutsideTrustDomain {
        /// The ID.
        id: String,
        /// The mesh trust domain.
        trust_domain: String,
    },

    /// Several CA certificates name different trust domains.
    #[error(
        "the CA certificates disagree on the trust domain (`{first}` and `{other}`): a mesh has \
         one trust domain; keep only this mesh's ca.crt"
    )]
    TrustDomainMismatch {
        /// The first CA's trust domain.
        first: String,
        /// A different one.
        other: String,
    },

    /// A `--dns` value is not a DNS name.
    #[error("`{0}` is not a valid DNS name (e.g. gateway.example.org)")]
    InvalidDnsName(String),

    /// A PEM file could not be decoded.
    #[error("{} is not valid PEM: {detail}", path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// The decoder's complaint.
        detail: String,
    },

    /// A PEM file holds none of the expected items.
    #[error("{} holds no {what} (expected a `-----BEGIN {label}-----` block)", path.display())]
    NoPemItems {
        /// The file.
        path: PathBuf,
        /// What was expected, in words.
        what: &'static str,
        /// The PEM label expected.
        label: &'static str,
    },

    /// A certificate could not be parsed.
    #[error("{} is not a valid X.509 certificate: {reason}", path.display())]
    BadCertificate {
        /// The file.
        path: PathBuf,
        /// The parser's complaint.
        reason: String,
    },

    /// A private key could not be used.
    #[error(
        "{} is not a usable private key ({reason}): it must be the PKCS#8 key written by \
         `aimux certs`",
        path.display()
    )]
    BadKey {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },

    /// The CRL file is missing.
    #[error(
        "the revocation list {} is missing: restore it from a backup (it lists every revoked \
         certificate; without it revoked certificates would be trusted again)",
        path.display()
    )]
    CrlMissing {
        /// Where it should be.
        path: PathBuf,
    },

    /// The CRL file is not a valid CRL from this CA.
    #[error(
        "the revocation list {} is not a valid CRL from this CA ({reason}): restore it from a \
         backup of this CA directory",
        path.display()
    )]
    CrlInvalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },

    /// A CRL handed to a TLS verifier was rejected; the verifier keeps its previous CRLs.
    #[error(
        "revocation list rejected ({reason}): the previous list stays in force; give the \
         crl.pem of this mesh's CA directory"
    )]
    CrlRejected {
        /// What is wrong.
        reason: String,
    },

    /// A server-side verifier was built without any CRL.
    #[error(
        "no revocation list given: the gateway needs the mesh CRL (crl.pem, written by \
         `aimux certs init`) so that it can refuse revoked agents"
    )]
    NoCrl,

    /// The requested validity period is unusable.
    #[error("invalid validity period: {0}")]
    Validity(String),

    /// Certificate or CRL generation failed.
    #[error("could not generate the certificate or CRL: {0}")]
    Generate(#[from] rcgen::Error),

    /// The system random number generator failed.
    #[error("the system random number generator failed; check that /dev/urandom is available")]
    Random,

    /// rustls refused a configuration.
    #[error("TLS configuration failed: {0}")]
    Tls(#[from] rustls::Error),

    /// rustls could not build a certificate verifier.
    #[error("could not build the certificate verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
}

impl Error {
    /// An [`Error::Io`] for `op` on `path`.
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { op, path, source }
    }
}
