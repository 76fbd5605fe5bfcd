//! Reads configuration layers into [`Settings`]: `.env` file, then the
//! process environment, then command-line flags.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use behavry_core::config::{KNOWN_VARS, Loaded, OTHER_VARS, Settings};

pub fn load(env_file: Option<&Path>, overrides: &[(&str, Option<String>)]) -> Result<Loaded> {
    let mut vars = BTreeMap::new();
    let default_file = Path::new(".env");
    let file = env_file.or(default_file.exists().then_some(default_file));
    if let Some(path) = file {
        let iter = dotenvy::from_path_iter(path)
            .with_context(|| format!("while reading {}", path.display()))?;
        for item in iter {
            let (k, v) = item.with_context(|| format!("while parsing {}", path.display()))?;
            vars.insert(k, v);
        }
    }
    for (k, v) in std::env::vars() {
        if k.starts_with("BEHAVRY_") || OTHER_VARS.contains(&k.as_str()) {
            vars.insert(k, v);
        }
    }
    for (k, v) in overrides {
        debug_assert!(KNOWN_VARS.contains(k) || OTHER_VARS.contains(k));
        if let Some(v) = v {
            vars.insert(k.to_string(), v.clone());
        }
    }
    match Settings::from_vars(&vars) {
        Ok(loaded) => Ok(loaded),
        Err(problems) => bail!(
            "the configuration has {} problem(s):\n  - {}",
            problems.len(),
            problems.join("\n  - ")
        ),
    }
}
