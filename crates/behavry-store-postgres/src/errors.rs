use behavry_store::StoreError;

/// Maps driver errors onto storage errors by SQLSTATE, never by message text.
pub(crate) fn map_err(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::RowNotFound => StoreError::NotFound,
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
            StoreError::Unavailable(Box::new(e))
        }
        sqlx::Error::Database(db) => match db.code().as_deref() {
            // unique_violation
            Some("23505") => StoreError::Conflict(
                db.constraint()
                    .map(describe_constraint)
                    .unwrap_or("a unique value")
                    .to_string(),
            ),
            // insufficient_privilege (also raised for row-level security)
            Some("42501") => StoreError::Denied(db.message().to_string()),
            // undefined_table / undefined_function: schema not migrated
            Some("42P01") | Some("42883") => StoreError::SchemaOutdated(db.message().to_string()),
            // admin_shutdown, cannot_connect_now, too_many_connections
            Some("57P01") | Some("57P03") | Some("53300") => StoreError::Unavailable(Box::new(e)),
            _ => StoreError::internal(e),
        },
        _ => StoreError::internal(e),
    }
}

fn describe_constraint(name: &str) -> &'static str {
    match name {
        "tenants_name_key_key" => "organization name",
        "tenants_slug_key" => "tenant slug",
        "admin_users_username_lower" => "admin username",
        "admin_users_email_lower" => "admin email",
        "policies_tenant_name" => "policy name",
        "policies_active_package" => "active policy package",
        _ => "a unique value",
    }
}
