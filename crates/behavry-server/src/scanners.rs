//! Data-protection scanners per tenant: the built-in detectors plus the
//! tenant's own patterns. A tenant's scanner is built when its patterns
//! are first seen and rebuilt only when they change; tenants without
//! patterns share the built-in scanner.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use behavry_core::{DlpPattern, TenantId};
use behavry_dlp::{CustomPattern, Scanner};

/// A tenant's scanner and the patterns it was built from.
type Built = (Vec<DlpPattern>, Arc<Scanner>);

pub struct Scanners {
    key: Vec<u8>,
    base: Arc<Scanner>,
    tenants: Mutex<HashMap<TenantId, Built>>,
}

/// A stored pattern as the scanner takes it, compiled once to check it.
pub fn compile(p: &DlpPattern) -> Result<CustomPattern, String> {
    let pattern = CustomPattern {
        name: p.name.clone(),
        regex: p.regex.clone(),
        severity: p.severity.parse()?,
        category: p.category.clone(),
    };
    pattern
        .compile()
        .map_err(|e| format!("custom pattern `{}`: {e}", p.name))?;
    Ok(pattern)
}

impl Scanners {
    pub fn new(fingerprint_key: &[u8]) -> Self {
        Scanners {
            key: fingerprint_key.to_vec(),
            base: Arc::new(Scanner::builder(fingerprint_key).build()),
            tenants: Mutex::default(),
        }
    }

    /// The scanner for a tenant whose patterns are `patterns`.
    pub fn for_tenant(&self, tenant: TenantId, patterns: &[DlpPattern]) -> Arc<Scanner> {
        if patterns.is_empty() {
            return self.base.clone();
        }
        let mut tenants = self.tenants.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((known, scanner)) = tenants.get(&tenant)
            && known.as_slice() == patterns
        {
            return scanner.clone();
        }
        // Patterns are validated when saved; one that no longer compiles
        // (saved by another version) is left out, loudly.
        let valid: Vec<CustomPattern> = patterns
            .iter()
            .filter_map(|p| {
                compile(p)
                    .map_err(
                        |e| tracing::error!(tenant = %tenant, error = %e, "custom pattern skipped"),
                    )
                    .ok()
            })
            .collect();
        let built = valid
            .into_iter()
            .try_fold(Scanner::builder(&self.key), |b, p| b.custom(p))
            .map(|b| b.build());
        let scanner = match built {
            Ok(s) => Arc::new(s),
            Err(e) => {
                tracing::error!(tenant = %tenant, error = %e, "custom patterns skipped");
                self.base.clone()
            }
        };
        tenants.insert(tenant, (patterns.to_vec(), scanner.clone()));
        scanner
    }
}
