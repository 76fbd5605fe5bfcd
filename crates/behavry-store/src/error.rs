use thiserror::Error;

/// Everything a storage call can fail with. Backends map their driver errors
/// onto these variants so callers never match on driver types.
#[derive(Debug, Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    /// A uniqueness rule was violated; the string names what collided.
    #[error("already exists: {0}")]
    Conflict(String),
    /// A business rule refused the operation; the message is fit to show
    /// the caller (e.g. "the tenant's agent limit of 5 is reached").
    #[error("{0}")]
    Refused(String),
    /// The database refused the operation for a row-level security or
    /// permission reason.
    #[error("denied by the database: {0}")]
    Denied(String),
    /// The database could not be reached or timed out.
    #[error("storage unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Schema migrations have not been applied.
    #[error("database schema is not up to date: {0}")]
    SchemaOutdated(String),
    #[error("storage error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl StoreError {
    pub fn internal(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        StoreError::Internal(Box::new(e))
    }

    pub fn corrupt(what: impl Into<String>) -> Self {
        StoreError::Internal(what.into().into())
    }
}
