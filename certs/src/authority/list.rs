//! Listing the certificates in a CA directory with their revocation status.

use std::fs;
use std::path::{Path, PathBuf};

use serde::Serialize;
use time::OffsetDateTime;

use super::Authority;
use crate::crl::CrlContents;
use crate::error::Error;
use crate::name::WorkloadName;
use crate::serial::Serial;
use crate::spiffe::{IdentityKind, SpiffeId, TrustDomain};

/// Everything `aimux certs list` shows.
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct Listing {
    /// The mesh trust domain.
    pub trust_domain: TrustDomain,
    /// The CA.
    pub ca: CaInfo,
    /// The revocation list.
    pub crl: CrlInfo,
    /// The issued certificates, by name.
    pub certificates: Vec<CertInfo>,
    /// `*.crt` files that are not certificates of this CA, and why.
    pub skipped: Vec<Skipped>,
}

/// The CA certificate.
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct CaInfo {
    /// `spiffe://<td>`.
    pub identity: SpiffeId,
    /// Its serial number.
    pub serial: Serial,
    /// When it expires.
    #[serde(serialize_with = "rfc3339")]
    pub not_after: OffsetDateTime,
    /// `ca.crt`.
    pub path: PathBuf,
}

/// The revocation list.
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct CrlInfo {
    /// Its CRL number.
    pub number: u64,
    /// When it was signed.
    #[serde(serialize_with = "rfc3339")]
    pub this_update: OffsetDateTime,
    /// When it should be re-signed (external verifiers reject it afterwards).
    #[serde(serialize_with = "rfc3339_opt")]
    pub next_update: Option<OffsetDateTime>,
    /// How many serials it lists (including certificates since replaced or deleted).
    pub revoked_count: usize,
    /// `crl.pem`.
    pub path: PathBuf,
}

/// One issued certificate.
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct CertInfo {
    /// The file stem: `<name>.crt`.
    pub name: String,
    /// Its SPIFFE ID.
    pub identity: SpiffeId,
    /// Agent or gateway (`null` for another path).
    pub kind: Option<IdentityKind>,
    /// Its serial number, hex.
    pub serial: Serial,
    /// When it starts to be valid.
    #[serde(serialize_with = "rfc3339")]
    pub not_before: OffsetDateTime,
    /// When it expires.
    #[serde(serialize_with = "rfc3339")]
    pub not_after: OffsetDateTime,
    /// Listed in `crl.pem`.
    pub revoked: bool,
    /// Past its `not_after`.
    pub expired: bool,
    /// The certificate file.
    pub path: PathBuf,
}

/// A `*.crt` file that `list` could not account for.
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct Skipped {
    /// The file.
    pub path: PathBuf,
    /// Why it was skipped.
    pub reason: String,
}

impl Authority {
    /// Lists every `<name>.crt` in the CA directory with its identity, serial, expiry and
    /// revocation status (from `crl.pem`) as of `now`.
    pub fn list(&self, now: OffsetDateTime) -> Result<Listing, Error> {
        let crl = self.read_crl()?;
        let dir = self.dir.path();
        let entries = fs::read_dir(dir).map_err(Error::io("read directory", dir))?;
        let mut certificates = Vec::new();
        let mut skipped = Vec::new();
        for entry in entries {
            let path = entry.map_err(Error::io("read directory", dir))?.path();
            let Some(stem) = crt_stem(&path) else {
                continue;
            };
            if stem == "ca" {
                continue;
            }
            match self.describe(stem, &path, &crl, now) {
                Ok(info) => certificates.push(info),
                Err(e) => skipped.push(Skipped {
                    path,
                    reason: e.to_string(),
                }),
            }
        }
        certificates.sort_by(|a, b| a.name.cmp(&b.name));
        skipped.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(Listing {
            trust_domain: self.trust_domain.clone(),
            ca: CaInfo {
                identity: self.ca_id(),
                serial: self.ca_serial.clone(),
                not_after: self.ca_not_after,
                path: self.dir.ca_cert(),
            },
            crl: CrlInfo {
                number: crl.number,
                this_update: crl.this_update,
                next_update: crl.next_update,
                revoked_count: crl.entries.len(),
                path: self.dir.crl(),
            },
            certificates,
            skipped,
        })
    }

    fn describe(
        &self,
        stem: &str,
        path: &Path,
        crl: &CrlContents,
        now: OffsetDateTime,
    ) -> Result<CertInfo, Error> {
        WorkloadName::new(stem)?;
        let leaf = self
            .read_leaf(path)?
            .ok_or_else(|| Error::io("read", path)(std::io::ErrorKind::NotFound.into()))?;
        Ok(CertInfo {
            name: stem.to_owned(),
            kind: leaf.id.kind(),
            identity: leaf.id,
            revoked: crl.is_revoked(&leaf.serial),
            serial: leaf.serial,
            not_before: leaf.not_before,
            not_after: leaf.not_after,
            expired: leaf.not_after < now,
            path: path.to_owned(),
        })
    }
}

/// `alice` for `.../alice.crt`.
fn crt_stem(path: &Path) -> Option<&str> {
    if path.extension()? != "crt" {
        return None;
    }
    path.file_stem()?.to_str()
}

fn rfc3339<S: serde::Serializer>(t: &OffsetDateTime, s: S) -> Result<S::Ok, S::Error> {
    let text = t
        .format(&time::format_description::well_known::Rfc3339)
        .map_err(serde::ser::Error::custom)?;
    s.serialize_str(&text)
}

fn rfc3339_opt<S: serde::Serializer>(t: &Option<OffsetDateTime>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => rfc3339(t, s),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authority::{InitParams, IssueParams, Validity};

    #[test]
    fn lists_kinds_revocation_expiry_and_strays() {
        let tmp = tempfile::tempdir().unwrap();
        let now = OffsetDateTime::now_utc();
        let td = TrustDomain::new("example.org").unwrap();
        let ca = Authority::init(tmp.path(), &InitParams::new(td, now).unwrap(), now).unwrap();
        let v = Validity::days_from(now, 10).unwrap();
        let expired =
            Validity::new(now - time::Duration::days(3), now - time::Duration::days(1)).unwrap();
        let name = |s| WorkloadName::new(s).unwrap();
        ca.issue(&IssueParams::agent(name("bob"), v)).unwrap();
        ca.issue(&IssueParams::agent(name("old"), expired)).unwrap();
        ca.issue(&IssueParams::gateway(name("edge"), vec![], vec![], v))
            .unwrap();
        ca.revoke(&name("bob"), now).unwrap();
        fs::write(tmp.path().join("junk.crt"), "not pem").unwrap();
        fs::write(tmp.path().join("notes.txt"), "ignored").unwrap();

        let listing = ca.list(now).unwrap();
        let names: Vec<_> = listing
            .certificates
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(names, ["bob", "edge", "old"]);
        let bob = &listing.certificates[0];
        assert!(bob.revoked && !bob.expired);
        assert_eq!(bob.kind, Some(IdentityKind::Agent));
        assert_eq!(listing.certificates[1].kind, Some(IdentityKind::Gateway));
        assert!(listing.certificates[2].expired);
        assert_eq!(listing.skipped.len(), 1);
        assert_eq!(listing.crl.revoked_count, 1);

        let json = serde_json::to_value(&listing).unwrap();
        assert_eq!(json["trust_domain"], "example.org");
        assert_eq!(
            json["certificates"][0]["identity"],
            "spiffe://example.org/agent/bob"
        );
        assert_eq!(json["certificates"][0]["kind"], "agent");
        assert_eq!(json["certificates"][0]["revoked"], true);
        assert!(
            json["certificates"][0]["not_after"]
                .as_str()
                .unwrap()
                .ends_with('Z')
        );
        assert_eq!(
            json["certificates"][0]["serial"].as_str().unwrap().len(),
            32
        );
    }
}
