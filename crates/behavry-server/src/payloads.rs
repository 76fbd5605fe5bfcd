//! `encrypted` payload storage: call arguments and results kept in the audit
//! trail sealed with AES-256-GCM under a per-tenant data key.
//!
//! Each tenant's data key is 32 random bytes made on first use and stored
//! in `tenant_configs.payload_data_key` wrapped (AES-256-GCM) by the master
//! key from configuration, so neither a database dump nor a tenant admin
//! with SQL access can read payloads. A sealed payload is bound to its
//! tenant and audit event (associated data), so a ciphertext copied into
//! another event or tenant does not open. Payloads are opened only by the
//! audited `GET /api/v1/audit/events/{id}/payload`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use behavry_core::{Secret, TenantId};
use behavry_store::{StoreError, TenantStore};
use rand::RngCore;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// The algorithm named in every sealed payload.
pub const ALGORITHM: &str = "AES-256-GCM";

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("the payload data key cannot be loaded: {0}")]
    Store(#[from] StoreError),
    #[error(
        "the tenant's payload data key was wrapped by another master key (was BEHAVRY_PAYLOAD_MASTER_KEY or SECRET_KEY changed?)"
    )]
    WrongMasterKey,
    #[error("the sealed payload is damaged or does not belong to this event")]
    Damaged,
}

/// The master key and the tenants' unwrapped data keys.
pub struct PayloadVault {
    master: Aes256Gcm,
    /// Names the master key in each wrapped data key, so a changed master
    /// key is reported as such rather than as damage.
    master_id: String,
    keys: Mutex<HashMap<TenantId, Arc<Aes256Gcm>>>,
}

impl PayloadVault {
    /// From BEHAVRY_PAYLOAD_MASTER_KEY, or else a key derived from
    /// SECRET_KEY for this purpose alone.
    pub fn new(master_key: Option<&Secret>, secret_key: &Secret) -> Self {
        let mut h = Sha256::new();
        match master_key {
            Some(k) => {
                h.update(b"behavry-payload-master-v1\0configured\0");
                h.update(k.expose().as_bytes());
            }
            None => {
                h.update(b"behavry-payload-master-v1\0secret-key\0");
                h.update(secret_key.expose().as_bytes());
            }
        }
        let key = h.finalize();
        let master_id = hex::encode(&Sha256::digest(key)[..8]);
        Self {
            master: Aes256Gcm::new(&key),
            master_id,
            keys: Mutex::new(HashMap::new()),
        }
    }

    /// The tenant's data key: cached, else unwrapped from the store, else
    /// made and stored (the first replica to store one wins).
    async fn data_key(&self, store: &dyn TenantStore) -> Result<Arc<Aes256Gcm>, VaultError> {
        let tenant = store.tenant_id();
        if let Some(k) = self.cached(tenant) {
            return Ok(k);
        }
        let wrapped = match store.payload_data_key().await? {
            Some(w) => w,
            None => {
                let mut fresh = [0u8; 32];
                rand::thread_rng().fill_bytes(&mut fresh);
                let mine = self.wrap(tenant, &fresh);
                store.init_payload_data_key(&mine).await?
            }
        };
        let key = Arc::new(self.unwrap(tenant, &wrapped)?);
        self.keys
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(tenant, key.clone());
        Ok(key)
    }

    fn cached(&self, tenant: TenantId) -> Option<Arc<Aes256Gcm>> {
        self.keys
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&tenant)
            .cloned()
    }

    fn wrap(&self, tenant: TenantId, key: &[u8; 32]) -> String {
        let sealed = seal(&self.master, tenant.0.as_bytes(), key);
        format!("{}:{}", self.master_id, sealed)
    }

    fn unwrap(&self, tenant: TenantId, wrapped: &str) -> Result<Aes256Gcm, VaultError> {
        let (id, sealed) = wrapped.split_once(':').ok_or(VaultError::Damaged)?;
        if id != self.master_id {
            return Err(VaultError::WrongMasterKey);
        }
        let key = open(&self.master, tenant.0.as_bytes(), sealed)?;
        Aes256Gcm::new_from_slice(&key).map_err(|_| VaultError::Damaged)
    }

    /// Seals a payload for one audit event of the store's tenant.
    pub async fn seal(
        &self,
        store: &dyn TenantStore,
        event: Uuid,
        payload: &Value,
    ) -> Result<Value, VaultError> {
        let key = self.data_key(store).await?;
        let aad = associated(store.tenant_id(), event);
        let plaintext = payload.to_string();
        Ok(json!({
            "encrypted": ALGORITHM,
            "ciphertext": seal(&key, &aad, plaintext.as_bytes()),
        }))
    }

    /// Opens what [`Self::seal`] made for this event; `None` when `sealed`
    /// is not a sealed payload (other storage modes keep it as is).
    pub async fn open(
        &self,
        store: &dyn TenantStore,
        event: Uuid,
        sealed: &Value,
    ) -> Option<Result<Value, VaultError>> {
        if sealed.get("encrypted").and_then(Value::as_str) != Some(ALGORITHM) {
            return None;
        }
        let ciphertext = sealed.get("ciphertext").and_then(Value::as_str)?;
        Some(self.open_text(store, event, ciphertext).await)
    }

    async fn open_text(
        &self,
        store: &dyn TenantStore,
        event: Uuid,
        ciphertext: &str,
    ) -> Result<Value, VaultError> {
        let key = self.data_key(store).await?;
        let aad = associated(store.tenant_id(), event);
        let plaintext = open(&key, &aad, ciphertext)?;
        serde_json::from_slice(&plaintext).map_err(|_| VaultError::Damaged)
    }
}

/// Binds a sealed payload to its tenant and event.
fn associated(tenant: TenantId, event: Uuid) -> Vec<u8> {
    let mut aad = tenant.0.as_bytes().to_vec();
    aad.extend_from_slice(event.as_bytes());
    aad
}

/// base64(nonce ‖ ciphertext ‖ tag), with a fresh random nonce.
fn seal(cipher: &Aes256Gcm, aad: &[u8], plaintext: &[u8]) -> String {
    let mut nonce = [0u8; 12];
    rand::thread_rng().fill_bytes(&mut nonce);
    // Encryption with a fresh nonce cannot fail below 64 GiB.
    let ciphertext = cipher
        .encrypt(
            &Nonce::from(nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .unwrap_or_default();
    let mut out = nonce.to_vec();
    out.extend_from_slice(&ciphertext);
    STANDARD.encode(out)
}

fn open(cipher: &Aes256Gcm, aad: &[u8], sealed: &str) -> Result<Vec<u8>, VaultError> {
    let bytes = STANDARD.decode(sealed).map_err(|_| VaultError::Damaged)?;
    if bytes.len() < 12 + 16 {
        return Err(VaultError::Damaged);
    }
    let (nonce, ciphertext) = bytes.split_at(12);
    let nonce: [u8; 12] = nonce.try_into().map_err(|_| VaultError::Damaged)?;
    cipher
        .decrypt(
            &Nonce::from(nonce),
            Payload {
                msg: ciphertext,
                aad,
            },
        )
        .map_err(|_| VaultError::Damaged)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vault(master: &str) -> PayloadVault {
        PayloadVault::new(Some(&Secret::new(master)), &Secret::new("unused"))
    }

    #[test]
    fn data_keys_unwrap_only_for_their_tenant_and_master_key() {
        let v = vault("master-one-0123456789abcdef0123456789");
        let (a, b) = (TenantId::new(), TenantId::new());
        let wrapped = v.wrap(a, &[7u8; 32]);
        assert!(v.unwrap(a, &wrapped).is_ok());
        assert!(matches!(v.unwrap(b, &wrapped), Err(VaultError::Damaged)));
        let other = vault("master-two-0123456789abcdef0123456789");
        assert!(matches!(
            other.unwrap(a, &wrapped),
            Err(VaultError::WrongMasterKey)
        ));
        assert!(matches!(v.unwrap(a, "no-colon"), Err(VaultError::Damaged)));
    }

    #[test]
    fn sealed_text_opens_only_with_its_key_and_associated_data() {
        let key = Aes256Gcm::new(&[3u8; 32].into());
        let (t, e) = (TenantId::new(), Uuid::now_v7());
        let sealed = seal(&key, &associated(t, e), b"{\"token\":\"abc\"}");
        assert!(!sealed.contains("abc"));
        assert_eq!(
            open(&key, &associated(t, e), &sealed).unwrap(),
            b"{\"token\":\"abc\"}"
        );
        assert!(open(&key, &associated(t, Uuid::now_v7()), &sealed).is_err());
        assert!(open(&key, &associated(TenantId::new(), e), &sealed).is_err());
        let mut raw = STANDARD.decode(&sealed).unwrap();
        raw[14] ^= 1;
        assert!(open(&key, &associated(t, e), &STANDARD.encode(raw)).is_err());
        assert!(open(&key, &associated(t, e), "short").is_err());
    }

    #[test]
    fn the_master_key_defaults_to_one_derived_from_secret_key() {
        let s = Secret::new("a-secret-key-of-at-least-32-bytes-long");
        let derived = PayloadVault::new(None, &s);
        let configured = PayloadVault::new(Some(&s), &s);
        // Same input bytes, different purpose labels: different keys.
        assert_ne!(derived.master_id, configured.master_id);
        assert_eq!(derived.master_id, PayloadVault::new(None, &s).master_id);
    }
}
