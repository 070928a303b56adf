//! The mesh certificate revocation list: an X.509 v2 CRL (RFC 5280 §5) signed by the mesh CA,
//! rewritten whole on every revocation.

use rcgen::{
    CertificateRevocationList, CertificateRevocationListParams, Issuer, KeyIdMethod, KeyPair,
    RevocationReason, RevokedCertParams, SerialNumber,
};
use rustls_pki_types::CertificateDer;
use time::{Duration, OffsetDateTime};
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;
use x509_parser::revocation_list::CertificateRevocationList as ParsedCrl;
use x509_parser::x509::X509Version;

use crate::error::Error;
use crate::serial::Serial;

/// How long a CRL is current: its nextUpdate is this long after its thisUpdate.
///
/// The mesh verifiers do not reject a CRL past its nextUpdate (the gateway reloads `crl.pem`
/// when it changes, and failing every handshake a week after the last revocation would be an
/// outage, not a safety measure); external verifiers such as `openssl verify -crl_check` do.
//= RFC 5280 §5.1.2.5: "Conforming CRL issuers MUST include the nextUpdate field in all CRLs."
pub const CRL_VALIDITY: Duration = Duration::days(7);

/// One revoked certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RevokedEntry {
    pub(crate) serial: Serial,
    pub(crate) revoked_at: OffsetDateTime,
    /// Kept from earlier CRLs. `aimux certs revoke` itself writes none:
    //= RFC 5280 §5.3.1: "The reason code CRL entry extension SHOULD be absent instead of using
    //= the unspecified (0) reasonCode value."
    pub(crate) reason: Option<RevocationReason>,
    pub(crate) invalidity_date: Option<OffsetDateTime>,
}

/// What a verified CRL says.
#[derive(Clone, Debug)]
pub(crate) struct CrlContents {
    pub(crate) number: u64,
    pub(crate) this_update: OffsetDateTime,
    pub(crate) next_update: Option<OffsetDateTime>,
    pub(crate) entries: Vec<RevokedEntry>,
}

impl CrlContents {
    pub(crate) fn is_revoked(&self, serial: &Serial) -> bool {
        self.entries.iter().any(|e| &e.serial == serial)
    }
}

/// Signs a CRL listing `entries`, current from `now` for [`CRL_VALIDITY`].
///
/// `ca_key_id` is the CA certificate's subject key identifier, repeated in the CRL's authority
/// key identifier so verifiers can match the two.
//= RFC 5280 §5.2: "Conforming CRL issuers are REQUIRED to include the authority key identifier
//= (Section 5.2.1) and the CRL number (Section 5.2.3) extensions in all CRLs issued."
pub(crate) fn sign(
    number: u64,
    entries: &[RevokedEntry],
    now: OffsetDateTime,
    issuer: &Issuer<'_, KeyPair>,
    ca_key_id: &[u8],
) -> Result<CertificateRevocationList, Error> {
    let params = CertificateRevocationListParams {
        this_update: now,
        next_update: now + CRL_VALIDITY,
        //= RFC 5280 §5.2.3: "The CRL number is a non-critical CRL extension that conveys a
        //= monotonically increasing sequence number for a given CRL scope and CRL issuer."
        crl_number: SerialNumber::from(number),
        issuing_distribution_point: None,
        revoked_certs: entries
            .iter()
            .map(|e| RevokedCertParams {
                serial_number: SerialNumber::from_slice(e.serial.as_bytes()),
                revocation_time: e.revoked_at,
                reason_code: e.reason,
                invalidity_date: e.invalidity_date,
            })
            .collect(),
        key_identifier_method: KeyIdMethod::PreSpecified(ca_key_id.to_vec()),
    };
    Ok(params.signed_by(issuer)?)
}

/// Parses a DER CRL and checks that `ca` issued it: same issuer name, valid signature by the
/// CA's key, version 2 with a CRL number. The error is a reason for an operator.
pub(crate) fn parse_verified(der: &[u8], ca: &X509Certificate<'_>) -> Result<CrlContents, String> {
    let (rest, crl) = ParsedCrl::from_der(der).map_err(|e| format!("cannot parse it: {e}"))?;
    if !rest.is_empty() {
        return Err(format!("{} bytes of trailing data", rest.len()));
    }
    check_issued_by(&crl, ca)?;
    if crl.version() != Some(X509Version::V2) {
        return Err("it is not a version 2 CRL".to_owned());
    }
    let number = crl
        .crl_number()
        .ok_or("it has no CRL number")?
        .to_u64_digits();
    let number = match number.as_slice() {
        [] => 0,
        [n] => *n,
        _ => return Err("its CRL number does not fit in 64 bits".to_owned()),
    };
    let entries = crl
        .iter_revoked_certificates()
        .map(|r| RevokedEntry {
            serial: Serial::from_be_bytes(r.raw_serial()),
            revoked_at: r.revocation_date.to_datetime(),
            reason: r
                .reason_code()
                .and_then(|(_, code)| reason_from_code(code.0)),
            invalidity_date: r.invalidity_date().map(|(_, t)| t.to_datetime()),
        })
        .collect();
    Ok(CrlContents {
        number,
        this_update: crl.last_update().to_datetime(),
        next_update: crl.next_update().map(|t| t.to_datetime()),
        entries,
    })
}

/// Checks that a DER CRL was issued by one of `cas` (name and signature).
pub(crate) fn check_signed_by_any(der: &[u8], cas: &[CertificateDer<'_>]) -> Result<(), String> {
    let (_, crl) = ParsedCrl::from_der(der).map_err(|e| format!("cannot parse it: {e}"))?;
    let mut last_reason = "no CA certificate given".to_owned();
    for ca in cas {
        let (_, ca) = X509Certificate::from_der(ca)
            .map_err(|e| format!("cannot parse a CA certificate: {e}"))?;
        match check_issued_by(&crl, &ca) {
            Ok(()) => return Ok(()),
            Err(reason) => last_reason = reason,
        }
    }
    Err(last_reason)
}

fn check_issued_by(crl: &ParsedCrl<'_>, ca: &X509Certificate<'_>) -> Result<(), String> {
    if crl.issuer().as_raw() != ca.subject().as_raw() {
        return Err(format!(
            "it was issued by `{}`, not by this CA `{}`",
            crl.issuer(),
            ca.subject()
        ));
    }
    crl.verify_signature(ca.public_key())
        .map_err(|e| format!("its signature does not verify with the CA key: {e}"))
}

fn reason_from_code(code: u8) -> Option<RevocationReason> {
    Some(match code {
        0 => RevocationReason::Unspecified,
        1 => RevocationReason::KeyCompromise,
        2 => RevocationReason::CaCompromise,
        3 => RevocationReason::AffiliationChanged,
        4 => RevocationReason::Superseded,
        5 => RevocationReason::CessationOfOperation,
        6 => RevocationReason::CertificateHold,
        8 => RevocationReason::RemoveFromCrl,
        9 => RevocationReason::PrivilegeWithdrawn,
        10 => RevocationReason::AaCompromise,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyUsagePurpose};

    use super::*;

    struct TestCa {
        der: CertificateDer<'static>,
        issuer: Issuer<'static, KeyPair>,
        key_id: Vec<u8>,
    }

    fn test_ca(cn: &str) -> TestCa {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key_id = params.key_identifier(&key);
        let der = params.self_signed(&key).unwrap().der().clone();
        TestCa {
            der,
            issuer: Issuer::new(params, key),
            key_id,
        }
    }

    fn entry(serial: &[u8], reason: Option<RevocationReason>) -> RevokedEntry {
        RevokedEntry {
            serial: Serial::from_be_bytes(serial),
            revoked_at: OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap(),
            reason,
            invalidity_date: None,
        }
    }

    #[test]
    fn round_trips_entries_and_number() {
        let ca = test_ca("CA one");
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let entries = vec![
            entry(&[0x80, 1, 2], None),
            entry(&[5], Some(RevocationReason::KeyCompromise)),
        ];
        let crl = sign(41, &entries, now, &ca.issuer, &ca.key_id).unwrap();
        let (_, parsed_ca) = X509Certificate::from_der(&ca.der).unwrap();
        let contents = parse_verified(crl.der(), &parsed_ca).unwrap();
        assert_eq!(contents.number, 41);
        assert_eq!(contents.entries, entries);
        assert_eq!(contents.this_update, now);
        assert_eq!(contents.next_update, Some(now + CRL_VALIDITY));
        assert!(contents.is_revoked(&Serial::from_be_bytes(&[0, 0x80, 1, 2])));
        assert!(!contents.is_revoked(&Serial::from_be_bytes(&[6])));
    }

    #[test]
    fn rejects_a_crl_from_another_ca() {
        let ours = test_ca("CA one");
        let theirs = test_ca("CA two");
        let same_name = test_ca("CA one");
        let now = OffsetDateTime::now_utc();
        let (_, parsed_ours) = X509Certificate::from_der(&ours.der).unwrap();

        let foreign = sign(1, &[], now, &theirs.issuer, &theirs.key_id).unwrap();
        let err = parse_verified(foreign.der(), &parsed_ours).unwrap_err();
        assert!(err.contains("issued by `CN=CA two`"), "{err}");

        // Same subject name, different key: only the signature tells them apart.
        let forged = sign(1, &[], now, &same_name.issuer, &same_name.key_id).unwrap();
        let err = parse_verified(forged.der(), &parsed_ours).unwrap_err();
        assert!(err.contains("signature does not verify"), "{err}");

        assert!(check_signed_by_any(forged.der(), std::slice::from_ref(&theirs.der)).is_err());
        assert!(check_signed_by_any(forged.der(), &[ours.der.clone(), same_name.der]).is_ok());
        assert!(parse_verified(b"garbage", &parsed_ours).is_err());
    }
}
