//! Certificate serial numbers.

use std::fmt;
use std::str::FromStr;

use rustls::crypto::SecureRandom;

use crate::error::Error;

/// Random bytes in each new serial: 16 bytes with the top bit cleared leave 127 bits of entropy,
/// above the 64 bits the CA/Browser Forum baseline requires, and below RFC 5280's 20-octet cap.
//= RFC 5280 §4.1.2.2: "The serial number MUST be a positive integer ... Conforming CAs MUST
//= NOT use serialNumber values longer than 20 octets."
const RANDOM_SERIAL_LEN: usize = 16;

/// A certificate serial number: a positive big-endian integer without leading zero bytes,
/// shown as lowercase hex (`3f9a…`).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Serial(Vec<u8>);

impl Serial {
    /// A serial from big-endian bytes, as found in a certificate or CRL (a leading `00` sign
    /// byte is dropped, so equal numbers compare equal however they were encoded).
    pub fn from_be_bytes(bytes: &[u8]) -> Self {
        let start = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
        match &bytes[start..] {
            [] => Self(vec![0]),
            digits => Self(digits.to_vec()),
        }
    }

    /// A fresh random serial from the crypto provider's CSPRNG.
    pub(crate) fn random(rng: &dyn SecureRandom) -> Result<Self, Error> {
        let mut bytes = [0u8; RANDOM_SERIAL_LEN];
        rng.fill(&mut bytes).map_err(|_| Error::Random)?;
        // Positive (top bit clear) and exactly 16 octets long (first byte non-zero), so the
        // hex form has a fixed width.
        bytes[0] &= 0x7f;
        if bytes[0] == 0 {
            bytes[0] = 0x01;
        }
        Ok(Self(bytes.to_vec()))
    }

    /// The big-endian bytes, without leading zeros.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Lowercase hex, e.g. `3f9ac0…`.
    pub fn to_hex(&self) -> String {
        use fmt::Write as _;
        self.0.iter().fold(String::new(), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
    }
}

impl FromStr for Serial {
    type Err = SerialParseError;

    /// Parses hex as `aimux certs list` prints it (`3f9a…`), or as `openssl x509 -serial`
    /// (`3F9A…`) and `openssl x509 -text` (`3f:9a:…`) do.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || SerialParseError(s.to_owned());
        let digits: Vec<u8> = s
            .trim()
            .chars()
            .filter(|&c| c != ':')
            .map(|c| c.to_digit(16).and_then(|d| u8::try_from(d).ok()))
            .collect::<Option<_>>()
            .ok_or_else(invalid)?;
        // RFC 5280 caps serials at 20 octets: 40 hex digits.
        if digits.is_empty() || digits.len() > 40 {
            return Err(invalid());
        }
        // Left-pad to whole bytes, then pack two digits per byte.
        let padded: Vec<u8> = std::iter::repeat_n(0, digits.len() % 2)
            .chain(digits)
            .collect();
        let bytes: Vec<u8> = padded.chunks_exact(2).map(|p| (p[0] << 4) | p[1]).collect();
        Ok(Self::from_be_bytes(&bytes))
    }
}

/// A string that is not a hex serial number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{0}` is not a serial number: give it in hex as `aimux certs list` shows it \
     (up to 40 digits, colons allowed)"
)]
pub struct SerialParseError(pub String);

impl fmt::Display for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Serial({self})")
    }
}

impl serde::Serialize for Serial {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_leading_zeros() {
        assert_eq!(Serial::from_be_bytes(&[0, 0x80, 1]).as_bytes(), &[0x80, 1]);
        assert_eq!(Serial::from_be_bytes(&[0x80, 1]).to_hex(), "8001");
        assert_eq!(Serial::from_be_bytes(&[]).to_hex(), "00");
        assert_eq!(Serial::from_be_bytes(&[0, 0]).to_hex(), "00");
    }

    #[test]
    fn parses_hex_in_our_and_openssl_forms() {
        let want = Serial::from_be_bytes(&[0x3f, 0x9a, 0x01]);
        for text in ["3f9a01", "3F9A01", "3f:9a:01", "003f9a01", " 3f9a01\n"] {
            assert_eq!(text.parse::<Serial>().unwrap(), want, "{text}");
        }
        assert_eq!("f".parse::<Serial>().unwrap().to_hex(), "0f");
        for bad in ["", "xyz", "3f 9a", &"1".repeat(41)] {
            assert!(bad.parse::<Serial>().is_err(), "{bad}");
        }
        let s = Serial::from_be_bytes(&[0x7f; 16]);
        assert_eq!(s.to_hex().parse::<Serial>().unwrap(), s);
    }

    #[test]
    fn random_serials_are_positive_and_distinct() {
        let rng = rustls::crypto::ring::default_provider().secure_random;
        let a = Serial::random(rng).unwrap();
        let b = Serial::random(rng).unwrap();
        assert_ne!(a, b);
        for s in [&a, &b] {
            assert_eq!(s.as_bytes().len(), RANDOM_SERIAL_LEN);
            assert!(s.as_bytes()[0] & 0x80 == 0 && s.as_bytes()[0] != 0);
            assert_eq!(s.to_hex().len(), 32);
        }
    }
}
