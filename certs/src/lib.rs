//! AIMux certificates: the mesh certificate authority, its revocation list, SPIFFE identities
//! and the rustls configurations of the gateway and the sidecars.
//!
//! - [`Authority`] manages a CA directory (`aimux certs init|issue|revoke|list`): an ECDSA
//!   P-256 CA whose URI SAN `spiffe://<trust domain>` names the mesh, agent and gateway
//!   certificates (X509-SVIDs) with random serials, and an X.509 v2 CRL.
//! - [`SpiffeId`], [`TrustDomain`], [`WorkloadName`] are validated identities and names.
//! - [`tls`] builds the mutual-TLS 1.3 configurations: the gateway's [`tls::server_config`]
//!   with a [`tls::MeshClientVerifier`] whose CRLs can be swapped at runtime, and the
//!   sidecar's [`tls::client_config`] with a [`tls::MeshServerVerifier`] pinned to the
//!   gateway's SPIFFE ID. [`peer_identity`] reads the SPIFFE ID of a verified peer.
//!
//! The library reads no environment variables and keeps no global state; callers pass paths,
//! parameters and the current time.
#![forbid(unsafe_code)]

mod authority;
mod crl;
mod error;
mod fsutil;
mod name;
mod pem;
mod serial;
mod spiffe;
mod svid;
pub mod tls;

pub use authority::{
    Authority, CA_VALIDITY_DAYS, CLOCK_SKEW_ALLOWANCE, CaDir, CaInfo, CertInfo, CrlInfo,
    DEFAULT_CERT_DAYS, InitParams, IssueKind, IssueParams, IssuedCert, Listing, Replaced,
    Revocation, Skipped, Validity,
};
pub use crl::CRL_VALIDITY;
pub use error::Error;
pub use name::{MAX_NAME_LEN, NameError, NameProblem, WorkloadName};
pub use pem::{Identity, load_certs, load_crls, load_private_key};
pub use serial::{Serial, SerialParseError};
pub use spiffe::{IdentityKind, SCHEME_PREFIX, SpiffeId, SpiffeIdError, TrustDomain};
pub use svid::{IdentityError, peer_identity, spiffe_id_of_der};

/// The exact rustls, pki-types and time versions this crate's API uses.
pub use {rustls, rustls_pki_types as pki_types, time};
