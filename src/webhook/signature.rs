//! `X-Hub-Signature-256` verification over the raw body bytes.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::config::Secret;

type HmacSha256 = Hmac<Sha256>;

/// Why a signature did not verify. Messages are safe to return to the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing X-Hub-Signature-256 header")]
    Missing,
    #[error("X-Hub-Signature-256 must be `sha256=` followed by 64 hex digits")]
    Malformed,
    #[error("X-Hub-Signature-256 does not match the body for any configured secret")]
    Mismatch,
}

/// Checks `header` (`sha256=<hex>`) against HMAC-SHA256 of `body` under each secret.
/// The comparison is constant-time (`Mac::verify_slice`), so timing reveals nothing.
pub fn verify(secrets: &[Secret], body: &[u8], header: Option<&str>) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let hex_digest = header
        .strip_prefix("sha256=")
        .ok_or(SignatureError::Malformed)?;
    let expected = hex::decode(hex_digest).map_err(|_| SignatureError::Malformed)?;
    if expected.len() != 32 {
        return Err(SignatureError::Malformed);
    }
    let matched = secrets.iter().any(|secret| {
        let mut mac = HmacSha256::new_from_slice(secret.expose().as_bytes())
            .expect("HMAC takes keys of any length");
        mac.update(body);
        mac.verify_slice(&expected).is_ok()
    });
    if matched {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// `sha256=<hex>` for `body` under `secret`: what GitHub sends (used by tests and the simulator).
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifies_against_any_secret_for_rotation() {
        let body = br#"{"zen":"Design for failure."}"#;
        let header = sign("new", body);
        let secrets = [Secret::new("old"), Secret::new("new")];
        assert_eq!(verify(&secrets, body, Some(&header)), Ok(()));
        assert_eq!(
            verify(&secrets[..1], body, Some(&header)),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn rejects_missing_malformed_and_tampered() {
        let secrets = [Secret::new("s")];
        let body = b"{}";
        assert_eq!(verify(&secrets, body, None), Err(SignatureError::Missing));
        assert_eq!(
            verify(&secrets, body, Some("sha1=00")),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify(&secrets, body, Some("sha256=zz")),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify(&secrets, body, Some("sha256=00")),
            Err(SignatureError::Malformed)
        );
        let header = sign("s", b"{ }");
        assert_eq!(
            verify(&secrets, body, Some(&header)),
            Err(SignatureError::Mismatch)
        );
    }
}
