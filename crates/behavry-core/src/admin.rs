//! Administrator roles and account states.

use serde::{Deserialize, Serialize};
use std::str::FromStr;

/// Admin roles, ordered by privilege: a role may do everything the roles
/// below it may do.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum AdminRole {
    Viewer = 1,
    Analyst = 2,
    PolicyAuthor = 3,
    Admin = 4,
}

impl AdminRole {
    pub fn as_str(&self) -> &'static str {
        match self {
            AdminRole::Viewer => "viewer",
            AdminRole::Analyst => "analyst",
            AdminRole::PolicyAuthor => "policy_author",
            AdminRole::Admin => "admin",
        }
    }

    pub fn level(&self) -> u8 {
        *self as u8
    }
}

impl FromStr for AdminRole {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "viewer" => Ok(Self::Viewer),
            "analyst" => Ok(Self::Analyst),
            "policy_author" => Ok(Self::PolicyAuthor),
            "admin" => Ok(Self::Admin),
            other => Err(format!(
                "unknown admin role `{other}` (expected viewer, analyst, policy_author or admin)"
            )),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AdminStatus {
    Invited,
    Active,
    Deactivated,
}

impl AdminStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            AdminStatus::Invited => "invited",
            AdminStatus::Active => "active",
            AdminStatus::Deactivated => "deactivated",
        }
    }
}

impl FromStr for AdminStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "invited" => Ok(Self::Invited),
            "active" => Ok(Self::Active),
            "deactivated" => Ok(Self::Deactivated),
            other => Err(format!("unknown admin status `{other}`")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered_by_privilege() {
        assert!(AdminRole::Viewer < AdminRole::Analyst);
        assert!(AdminRole::Analyst < AdminRole::PolicyAuthor);
        assert!(AdminRole::PolicyAuthor < AdminRole::Admin);
        for r in [
            AdminRole::Viewer,
            AdminRole::Analyst,
            AdminRole::PolicyAuthor,
            AdminRole::Admin,
        ] {
            assert_eq!(r.as_str().parse::<AdminRole>().unwrap(), r);
        }
        assert!("root".parse::<AdminRole>().is_err());
    }
}
