//! GitHub App JWT check, as `POST /app/installations/{id}/access_tokens` does it: RS256 signed by
//! the app's key, `iss` = app id (or client id), `iat` not in the future (60 s skew), `exp` in the
//! future and at most 10 minutes after `iat`.

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

/// Clock skew GitHub tolerates on `iat`.
const IAT_SKEW_SECS: i64 = 60;
/// Longest lifetime GitHub accepts (`exp - iat`).
const MAX_JWT_LIFETIME_SECS: i64 = 600;

/// A rejected JWT; the message is GitHub's.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum JwtError {
    #[error("A JSON web token could not be decoded")]
    Undecodable,
    #[error("'Issued at' claim ('iat') must be an Integer representing a time in the past")]
    IatInFuture,
    #[error(
        "'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires"
    )]
    Expired,
    #[error("'Expiration time' claim ('exp') is too far in the future")]
    TooLong,
    #[error("Integration not found")]
    WrongIssuer,
}

/// The app whose JWTs are accepted.
#[derive(Clone)]
pub struct AppVerifier {
    app_id: u64,
    client_id: Option<String>,
    key: DecodingKey,
}

impl std::fmt::Debug for AppVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppVerifier")
            .field("app_id", &self.app_id)
            .finish_non_exhaustive()
    }
}

impl AppVerifier {
    pub fn new(
        app_id: u64,
        client_id: Option<String>,
        public_key_pem: &str,
    ) -> anyhow::Result<Self> {
        let key = DecodingKey::from_rsa_pem(public_key_pem.as_bytes())
            .map_err(|e| anyhow::anyhow!("GitHub App public key is not an RSA PEM key: {e}"))?;
        Ok(Self {
            app_id,
            client_id,
            key,
        })
    }

    /// Checks `token` at unix time `now`.
    pub fn verify(&self, token: &str, now: i64) -> Result<(), JwtError> {
        let mut validation = Validation::new(Algorithm::RS256);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_nbf = false;
        let claims = jsonwebtoken::decode::<Value>(token, &self.key, &validation)
            .map_err(|_| JwtError::Undecodable)?
            .claims;
        let iat = claims
            .get("iat")
            .and_then(Value::as_i64)
            .ok_or(JwtError::IatInFuture)?;
        let exp = claims
            .get("exp")
            .and_then(Value::as_i64)
            .ok_or(JwtError::Expired)?;
        if iat > now + IAT_SKEW_SECS {
            return Err(JwtError::IatInFuture);
        }
        if exp <= now {
            return Err(JwtError::Expired);
        }
        if exp - iat > MAX_JWT_LIFETIME_SECS {
            return Err(JwtError::TooLong);
        }
        let issuer_ok = match claims.get("iss") {
            Some(Value::Number(n)) => n.as_u64() == Some(self.app_id),
            Some(Value::String(s)) => {
                s == &self.app_id.to_string() || self.client_id.as_deref() == Some(s)
            }
            _ => false,
        };
        if !issuer_ok {
            return Err(JwtError::WrongIssuer);
        }
        Ok(())
    }
}
