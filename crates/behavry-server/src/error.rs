//! The one place where failures become HTTP responses.
//!
//! Every handler returns [`ApiError`]; [`IntoResponse`] maps each variant to
//! a status in one exhaustive match (no `_` arm: a new variant does not
//! compile until someone decides its status). Client errors say what was
//! wrong; server errors carry only a correlation id, and the cause chain
//! goes to the log under the same id.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use behavry_store::StoreError;
use serde::Serialize;
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Malformed request: bad JSON syntax, bad path or query parameter.
    #[error("{0}")]
    BadRequest(String),
    /// Well-formed but unacceptable content.
    #[error("{0}")]
    Validation(String),
    /// An uploaded document with problems, each with its position.
    #[error("{message}")]
    InvalidDocument {
        message: String,
        problems: Vec<Problem>,
    },
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("method not allowed on this endpoint")]
    MethodNotAllowed,
    #[error("request body is too large (limit {limit} bytes)")]
    PayloadTooLarge { limit: usize },
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("too many requests; retry after {retry_after_secs} seconds")]
    RateLimited { retry_after_secs: u64 },
    /// A dependency (database, policy engine) is down. The gateway fails
    /// closed and says so, without internals.
    #[error("service temporarily unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl ApiError {
    pub fn internal(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        ApiError::Internal(e.into())
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable, machine-readable code (e.g. `validation_failed`).
    pub code: &'static str,
    /// What was wrong and, where possible, how to fix it.
    pub message: String,
    /// Present on server errors: quote it when reporting a problem.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// Present when an uploaded document was refused: every problem found.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problems: Option<Vec<Problem>>,
}

/// One problem in an uploaded document, and where it is.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// The entry's position in the document's list (0-based), when the
    /// problem is in one entry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
    /// The entry's `name`, when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Line in the document (1-based), when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    /// Column in the document (1-based), when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<u64>,
    pub message: String,
}

fn cause_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        // Many errors already include their source in their own message.
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = match &self {
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ApiError::Validation(_) | ApiError::InvalidDocument { .. } => {
                (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed")
            }
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            ApiError::PayloadTooLarge { .. } => {
                (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
            }
            ApiError::UnsupportedMediaType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            ApiError::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        let correlation_id = match &self {
            ApiError::Unavailable(e) | ApiError::Internal(e) => {
                let id = Uuid::new_v4().to_string();
                tracing::error!(correlation_id = %id, status = status.as_u16(), error = %cause_chain(e.as_ref()), "request failed");
                Some(id)
            }
            _ => None,
        };
        let message = self.to_string();
        let mut extra_header = None;
        let problems = match self {
            ApiError::RateLimited { retry_after_secs } => {
                extra_header = Some((header::RETRY_AFTER, HeaderValue::from(retry_after_secs)));
                None
            }
            ApiError::Unauthorized(_) => {
                extra_header = Some((header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")));
                None
            }
            ApiError::InvalidDocument { problems, .. } => Some(problems),
            _ => None,
        };
        let body = ErrorBody {
            error: ErrorDetail {
                code,
                message,
                correlation_id,
                problems,
            },
        };
        let mut response = (status, Json(body)).into_response();
        if let Some((name, value)) = extra_header {
            response.headers_mut().insert(name, value);
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => ApiError::NotFound("not found".into()),
            StoreError::Conflict(what) => ApiError::Conflict(format!("{what} already exists")),
            StoreError::Refused(why) => ApiError::Forbidden(why),
            // Row-level security refusing a statement means the application
            // asked for another tenant's data: refuse, and log it loudly.
            StoreError::Denied(msg) => {
                tracing::warn!(reason = %msg, "database denied a statement");
                ApiError::Forbidden("not permitted".into())
            }
            e @ (StoreError::Unavailable(_) | StoreError::SchemaOutdated(_)) => {
                ApiError::Unavailable(Box::new(e))
            }
            e @ StoreError::Internal(_) => ApiError::Internal(Box::new(e)),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::JsonDataError(e) => ApiError::Validation(format!(
                "invalid request body: {}",
                cause_chain(&e).trim_start_matches(
                    "Failed to deserialize the JSON body into the target type: "
                )
            )),
            JsonRejection::JsonSyntaxError(e) => ApiError::BadRequest(format!(
                "request body is not valid JSON: {}",
                cause_chain(&e).trim_start_matches("Failed to parse the request body as JSON: ")
            )),
            JsonRejection::MissingJsonContentType(_) => ApiError::UnsupportedMediaType(
                "expected a JSON body with `Content-Type: application/json`".into(),
            ),
            JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                ApiError::PayloadTooLarge {
                    limit: crate::routes::BODY_LIMIT,
                }
            }
            other => ApiError::BadRequest(other.body_text()),
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        ApiError::BadRequest(format!("invalid path parameter: {}", rejection.body_text()))
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::BadRequest(format!(
            "invalid query parameter: {}",
            rejection.body_text()
        ))
    }
}

/// `Json` whose rejections are [`ApiError`]s.
#[derive(axum::extract::FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct ApiJson<T>(pub T);

impl<T: Serialize> IntoResponse for ApiJson<T> {
    fn into_response(self) -> Response {
        Json(self.0).into_response()
    }
}

/// `Path` whose rejections are [`ApiError`]s.
#[derive(axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct ApiPath<T>(pub T);

/// For `#[serde(default, deserialize_with = "nullable")]` on PATCH fields:
/// tells an absent field (`None`) from an explicit `null` (`Some(None)`).
pub fn nullable<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    use serde::Deserialize;
    Option::<T>::deserialize(d).map(Some)
}
