//! RS256 signing keys, their key id and the published JWKS.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rsa::pkcs1::{DecodeRsaPrivateKey, DecodeRsaPublicKey, EncodeRsaPrivateKey};
use rsa::pkcs8::{
    DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding,
};
use rsa::traits::PublicKeyParts;
use rsa::{RsaPrivateKey, RsaPublicKey};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

/// Why a bearer token was refused. Kept apart from [`crate::error::ApiError`]
/// so the reason can be logged while the client sees a uniform 401.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("token is malformed")]
    Malformed,
    #[error("token is signed with an unknown key")]
    UnknownKey,
    #[error("token uses a disallowed algorithm")]
    Algorithm,
    #[error("token has expired")]
    Expired,
    #[error("token was issued by someone else")]
    Issuer,
    #[error("token signature is invalid")]
    Signature,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct KeyError(pub String);

/// The gateway's signing key pair.
pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    kid: String,
    jwks: serde_json::Value,
    issuer: String,
}

impl std::fmt::Debug for JwtKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtKeys")
            .field("kid", &self.kid)
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

/// Generates a 2048-bit RSA key pair as (PKCS#8 private PEM, SPKI public PEM).
pub fn generate_pem() -> Result<(String, String), KeyError> {
    let mut rng = rand::thread_rng();
    let private = RsaPrivateKey::new(&mut rng, 2048).map_err(|e| KeyError(e.to_string()))?;
    let public = RsaPublicKey::from(&private);
    let private_pem = private
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| KeyError(e.to_string()))?
        .to_string();
    let public_pem = public
        .to_public_key_pem(LineEnding::LF)
        .map_err(|e| KeyError(e.to_string()))?;
    Ok((private_pem, public_pem))
}

impl JwtKeys {
    /// Loads a key pair from PEM (PKCS#8 or PKCS#1 private key; SPKI or
    /// PKCS#1 public key) and checks that the two belong together.
    pub fn from_pem(private_pem: &str, public_pem: &str, issuer: &str) -> Result<Self, KeyError> {
        let private = RsaPrivateKey::from_pkcs8_pem(private_pem)
            .or_else(|_| RsaPrivateKey::from_pkcs1_pem(private_pem))
            .map_err(|_| {
                KeyError("BEHAVRY_JWT_PRIVATE_KEY is not an RSA private key in PEM format".into())
            })?;
        let public = RsaPublicKey::from_public_key_pem(public_pem)
            .or_else(|_| RsaPublicKey::from_pkcs1_pem(public_pem))
            .map_err(|_| {
                KeyError("BEHAVRY_JWT_PUBLIC_KEY is not an RSA public key in PEM format".into())
            })?;
        if RsaPublicKey::from(&private) != public {
            return Err(KeyError(
                "BEHAVRY_JWT_PUBLIC_KEY does not belong to BEHAVRY_JWT_PRIVATE_KEY".into(),
            ));
        }
        if public.size() < 256 {
            return Err(KeyError(
                "JWT keys must be RSA keys of at least 2048 bits".into(),
            ));
        }
        let der = private
            .to_pkcs1_der()
            .map_err(|e| KeyError(e.to_string()))?;
        let spki = public
            .to_public_key_der()
            .map_err(|e| KeyError(e.to_string()))?;
        // A stable id derived from the public key: rotating keys changes it,
        // so tokens signed by an old key are refused as "unknown key".
        let kid = hex::encode(&Sha256::digest(spki.as_bytes())[..8]);
        let n = URL_SAFE_NO_PAD.encode(public.n().to_bytes_be());
        let e = URL_SAFE_NO_PAD.encode(public.e().to_bytes_be());
        let decoding =
            DecodingKey::from_rsa_components(&n, &e).map_err(|e| KeyError(e.to_string()))?;
        let jwks = serde_json::json!({
            "keys": [{ "kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid, "n": n, "e": e }]
        });
        Ok(Self {
            encoding: EncodingKey::from_rsa_der(der.as_bytes()),
            decoding,
            kid,
            jwks,
            issuer: issuer.to_string(),
        })
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn jwks(&self) -> &serde_json::Value {
        &self.jwks
    }

    pub fn sign<C: Serialize>(&self, claims: &C) -> Result<String, KeyError> {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).map_err(|e| KeyError(e.to_string()))
    }

    /// Verifies signature, algorithm (RS256 only), key id, issuer and expiry.
    pub fn verify<C: DeserializeOwned>(&self, token: &str) -> Result<C, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
        if header.alg != Algorithm::RS256 {
            return Err(TokenError::Algorithm);
        }
        if header.kid.as_deref() != Some(self.kid.as_str()) {
            return Err(TokenError::UnknownKey);
        }
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_issuer(&[&self.issuer]);
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        validation.leeway = 30;
        jsonwebtoken::decode::<C>(token, &self.decoding, &validation)
            .map(|data| data.claims)
            .map_err(|e| {
                use jsonwebtoken::errors::ErrorKind;
                match e.kind() {
                    ErrorKind::ExpiredSignature => TokenError::Expired,
                    ErrorKind::InvalidIssuer => TokenError::Issuer,
                    ErrorKind::InvalidSignature => TokenError::Signature,
                    ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
                        TokenError::Algorithm
                    }
                    _ => TokenError::Malformed,
                }
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mismatched_pairs_are_refused() {
        let (private_a, _) = generate_pem().unwrap();
        let (_, public_b) = generate_pem().unwrap();
        let err = JwtKeys::from_pem(&private_a, &public_b, "behavry").unwrap_err();
        assert!(err.0.contains("does not belong"), "{err}");
        assert!(JwtKeys::from_pem("garbage", &public_b, "behavry").is_err());
    }
}
