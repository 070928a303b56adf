//! Revoking a certificate: adding its serial to `crl.pem`.

use std::path::PathBuf;

use time::OffsetDateTime;

use super::Authority;
use crate::crl::{self, RevokedEntry};
use crate::error::Error;
use crate::fsutil::{self, Mode, Overwrite};
use crate::name::WorkloadName;
use crate::serial::Serial;
use crate::spiffe::SpiffeId;

/// The outcome of a revocation.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Revocation {
    /// The certificate's name (`None` when revoked by serial).
    pub name: Option<WorkloadName>,
    /// Its SPIFFE ID (`None` when revoked by serial).
    pub id: Option<SpiffeId>,
    /// Its serial number, now listed in the CRL.
    pub serial: Serial,
    /// It was already listed; the CRL was left untouched.
    pub already_revoked: bool,
    /// The CRL number of `crl.pem` now.
    pub crl_number: u64,
    /// How many serials `crl.pem` lists now.
    pub revoked_count: usize,
    /// The CRL file.
    pub crl_path: PathBuf,
}

impl Authority {
    /// Revokes the certificate `<name>.crt` (which this CA must have issued): re-signs
    /// `crl.pem` with its serial added (earlier entries kept), the CRL number incremented and a
    /// fresh thisUpdate/nextUpdate, replacing the file atomically. Revoking an already revoked
    /// certificate changes nothing.
    pub fn revoke(&self, name: &WorkloadName, now: OffsetDateTime) -> Result<Revocation, Error> {
        let cert_path = self.dir.cert(name);
        let Some(leaf) = self.read_leaf(&cert_path)? else {
            return Err(Error::NotIssued {
                name: name.to_string(),
                path: cert_path,
            });
        };
        let mut revocation = self.revoke_serial(&leaf.serial, now)?;
        revocation.name = Some(name.clone());
        revocation.id = Some(leaf.id);
        Ok(revocation)
    }

    /// Revokes a certificate by serial number: for one whose file is gone, e.g. replaced by
    /// `issue --force`. The serial is listed as given (a CRL may list serials the CA never
    /// issued; they match nothing).
    ///
    /// Concurrent revocations (two terminals, or a script) are serialised by a lock on the CA
    /// directory, so none is lost.
    pub fn revoke_serial(&self, serial: &Serial, now: OffsetDateTime) -> Result<Revocation, Error> {
        let _lock = fsutil::lock_dir(self.dir.path())?;
        let mut crl = self.read_crl()?;
        let crl_path = self.dir.crl();
        let mut revocation = Revocation {
            name: None,
            id: None,
            serial: serial.clone(),
            already_revoked: true,
            crl_number: crl.number,
            revoked_count: crl.entries.len(),
            crl_path,
        };
        if crl.is_revoked(serial) {
            return Ok(revocation);
        }
        crl.entries.push(RevokedEntry {
            serial: serial.clone(),
            revoked_at: now,
            reason: None,
            invalidity_date: None,
        });
        let number = crl.number.checked_add(1).ok_or_else(|| Error::CrlInvalid {
            path: revocation.crl_path.clone(),
            reason: "its CRL number cannot be incremented".to_owned(),
        })?;
        // A CRL is current from its thisUpdate; never go back in time if the clock did.
        let this_update = now.max(crl.this_update);
        let signed = crl::sign(
            number,
            &crl.entries,
            this_update,
            &self.issuer,
            &self.ca_key_id,
        )?;
        fsutil::write_atomic(
            &revocation.crl_path,
            signed.pem()?.as_bytes(),
            Mode::Public,
            Overwrite::Replace,
        )?;
        revocation.already_revoked = false;
        revocation.crl_number = number;
        revocation.revoked_count = crl.entries.len();
        Ok(revocation)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authority::{InitParams, IssueParams, Validity};
    use crate::spiffe::TrustDomain;

    #[test]
    fn revoke_accumulates_and_is_idempotent() {
        let tmp = tempfile::tempdir().unwrap();
        let now = OffsetDateTime::now_utc();
        let td = TrustDomain::new("example.org").unwrap();
        let ca = Authority::init(tmp.path(), &InitParams::new(td, now).unwrap(), now).unwrap();
        let validity = Validity::days_from(now, 10).unwrap();
        let a = WorkloadName::new("a").unwrap();
        let b = WorkloadName::new("b").unwrap();
        let issued_a = ca.issue(&IssueParams::agent(a.clone(), validity)).unwrap();
        let issued_b = ca.issue(&IssueParams::agent(b.clone(), validity)).unwrap();

        let first = ca.revoke(&a, now).unwrap();
        assert!(!first.already_revoked);
        assert_eq!((first.crl_number, first.revoked_count), (2, 1));
        assert_eq!(first.serial, issued_a.serial);

        let again = ca.revoke(&a, now).unwrap();
        assert!(again.already_revoked);
        assert_eq!((again.crl_number, again.revoked_count), (2, 1));

        let second = ca.revoke(&b, now).unwrap();
        assert_eq!((second.crl_number, second.revoked_count), (3, 2));
        assert_eq!(second.id, Some(issued_b.id));
        let crl = ca.read_crl().unwrap();
        assert!(crl.is_revoked(&issued_a.serial) && crl.is_revoked(&issued_b.serial));

        let stray = Serial::from_be_bytes(&[0x42]);
        let by_serial = ca.revoke_serial(&stray, now).unwrap();
        assert!(!by_serial.already_revoked && by_serial.name.is_none());
        assert_eq!((by_serial.crl_number, by_serial.revoked_count), (4, 3));
        assert!(ca.revoke_serial(&stray, now).unwrap().already_revoked);
    }

    #[test]
    fn concurrent_revocations_are_all_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let now = OffsetDateTime::now_utc();
        let td = TrustDomain::new("example.org").unwrap();
        Authority::init(tmp.path(), &InitParams::new(td, now).unwrap(), now).unwrap();
        // Each thread opens the CA on its own, as separate `aimux certs revoke` runs would.
        let serials: Vec<Serial> = (0..8u8)
            .map(|i| Serial::from_be_bytes(&[0x10, i]))
            .collect();
        std::thread::scope(|scope| {
            for serial in &serials {
                let dir = tmp.path();
                scope.spawn(move || {
                    let ca = Authority::open(dir).unwrap();
                    ca.revoke_serial(serial, now).unwrap();
                });
            }
        });
        let crl = Authority::open(tmp.path()).unwrap().read_crl().unwrap();
        let lost: Vec<_> = serials.iter().filter(|s| !crl.is_revoked(s)).collect();
        assert!(lost.is_empty(), "revocations lost: {lost:?}");
        assert_eq!(crl.entries.len(), serials.len());
        assert_eq!(crl.number, 1 + serials.len() as u64);
    }

    #[test]
    fn refuses_unknown_names_foreign_certs_and_foreign_crls() {
        let tmp = tempfile::tempdir().unwrap();
        let other = tempfile::tempdir().unwrap();
        let now = OffsetDateTime::now_utc();
        let td = TrustDomain::new("example.org").unwrap();
        let params = InitParams::new(td, now).unwrap();
        let ca = Authority::init(tmp.path(), &params, now).unwrap();
        let other_ca = Authority::init(other.path(), &params, now).unwrap();
        let name = WorkloadName::new("x").unwrap();

        let err = ca.revoke(&name, now).unwrap_err();
        assert!(matches!(err, Error::NotIssued { .. }), "{err}");

        let validity = Validity::days_from(now, 10).unwrap();
        other_ca
            .issue(&IssueParams::agent(name.clone(), validity))
            .unwrap();
        std::fs::copy(other.path().join("x.crt"), tmp.path().join("x.crt")).unwrap();
        let err = ca.revoke(&name, now).unwrap_err();
        assert!(matches!(err, Error::NotIssuedByCa { .. }), "{err}");

        let mut p = IssueParams::agent(name.clone(), validity);
        p.force = true;
        ca.issue(&p).unwrap();
        std::fs::copy(other.path().join("crl.pem"), tmp.path().join("crl.pem")).unwrap();
        let err = ca.revoke(&name, now).unwrap_err();
        assert!(matches!(err, Error::CrlInvalid { .. }), "{err}");

        std::fs::remove_file(tmp.path().join("crl.pem")).unwrap();
        let err = ca.revoke(&name, now).unwrap_err();
        assert!(matches!(err, Error::CrlMissing { .. }), "{err}");
    }
}
