//! Encryption at rest for credentials the gateway must be able to use
//! (upstream API keys, environment variables): AES-256-GCM under a key
//! derived from SECRET_KEY. Stored as base64(nonce ‖ ciphertext).

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use behavry_core::Secret;
use rand::RngCore;
use sha2::{Digest, Sha256};

pub struct SecretCipher {
    cipher: Aes256Gcm,
}

#[derive(Debug, thiserror::Error)]
#[error("stored secret cannot be decrypted (was SECRET_KEY changed?)")]
pub struct DecryptError;

impl SecretCipher {
    pub fn new(secret_key: &Secret) -> Self {
        // A purpose-specific key: the same SECRET_KEY also derives database
        // role passwords, and the two must not be the same bytes.
        let mut h = Sha256::new();
        h.update(b"behavry-secrets-at-rest-v1\0");
        h.update(secret_key.expose().as_bytes());
        let key = h.finalize();
        Self {
            cipher: Aes256Gcm::new(&key),
        }
    }

    pub fn encrypt(&self, plaintext: &[u8]) -> String {
        let mut nonce = [0u8; 12];
        rand::thread_rng().fill_bytes(&mut nonce);
        // Encryption with a fresh nonce cannot fail for inputs of this size.
        let ciphertext = self
            .cipher
            .encrypt(&Nonce::from(nonce), plaintext)
            .unwrap_or_default();
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ciphertext);
        STANDARD.encode(out)
    }

    pub fn decrypt(&self, stored: &str) -> Result<Vec<u8>, DecryptError> {
        let bytes = STANDARD.decode(stored).map_err(|_| DecryptError)?;
        if bytes.len() < 12 + 16 {
            return Err(DecryptError);
        }
        let (nonce, ciphertext) = bytes.split_at(12);
        let nonce: [u8; 12] = nonce.try_into().map_err(|_| DecryptError)?;
        self.cipher
            .decrypt(&Nonce::from(nonce), ciphertext)
            .map_err(|_| DecryptError)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_tampering_or_another_key() {
        let c = SecretCipher::new(&Secret::new("k1"));
        let stored = c.encrypt(b"api-key-123");
        assert!(!stored.contains("api-key"));
        assert_eq!(c.decrypt(&stored).unwrap(), b"api-key-123");
        assert_ne!(c.encrypt(b"api-key-123"), stored, "fresh nonce each time");
        let mut raw = STANDARD.decode(&stored).unwrap();
        raw[20] ^= 1;
        assert!(c.decrypt(&STANDARD.encode(raw)).is_err());
        assert!(
            SecretCipher::new(&Secret::new("k2"))
                .decrypt(&stored)
                .is_err()
        );
        assert!(c.decrypt("not base64!").is_err());
    }
}
