//! Versioned schema migrations, embedded in the binary.
//!
//! Each backend keeps its own numbered SQL files. A landed migration is
//! never edited: its checksum is recorded when applied and checked later, so
//! an edited file is reported instead of silently diverging.

use sha2::{Digest, Sha256};

#[derive(Clone, Copy, Debug)]
pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

impl Migration {
    pub fn checksum(&self) -> String {
        hex::encode(Sha256::digest(self.sql.as_bytes()))
    }
}

/// State of one migration in a database.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MigrationState {
    Applied,
    Pending,
    /// Applied, but the embedded file no longer matches what was applied.
    Modified,
}

#[derive(Clone, Debug)]
pub struct MigrationStatus {
    pub version: i64,
    pub name: &'static str,
    pub state: MigrationState,
}

pub fn pending(status: &[MigrationStatus]) -> Vec<&MigrationStatus> {
    status
        .iter()
        .filter(|s| s.state != MigrationState::Applied)
        .collect()
}

#[macro_export]
macro_rules! migration {
    ($version:literal, $name:literal, $path:literal) => {
        $crate::migrations::Migration {
            version: $version,
            name: $name,
            sql: include_str!($path),
        }
    };
}
