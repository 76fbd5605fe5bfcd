//! Importing upstream MCP servers from a YAML (or JSON) file, all or
//! nothing: the whole file is checked first, every problem is reported
//! with its position, and nothing is stored unless all of it is valid.
//!
//! The file is either a list of servers or a mapping with a `servers` list;
//! each entry takes the fields of `POST /api/v1/mcp-servers`.

use std::collections::HashMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, StatusCode};
use behavry_core::AdminRole;
use behavry_store::{NewMcpServer, StoreError};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::servers::{CreateServerRequest, ServerView, new_server, view};
use crate::auth::{TenantWriter, require_role};
use crate::error::{ApiError, Problem};
use crate::state::AppState;

/// Servers one file may hold.
const MAX_SERVERS: usize = 500;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ImportMode {
    /// Every server in the file must be new: a name that is already
    /// registered fails the whole import with 409.
    #[default]
    Create,
    /// A server whose name is registered is replaced by the file's
    /// definition: it keeps its id, every field comes from the file.
    Upsert,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ImportQuery {
    /// `create` (default) or `upsert`.
    pub mode: Option<ImportMode>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ImportResult {
    pub mode: ImportMode,
    /// Servers registered by this import, in file order.
    pub created: Vec<ServerView>,
    /// Existing servers replaced by this import (upsert), in file order.
    pub updated: Vec<ServerView>,
    /// Accepted, but possibly not what was meant (e.g. a `${VAR}`
    /// reference, which is stored as written).
    pub warnings: Vec<String>,
}

/// The file as a mapping; a bare list is accepted too.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportFile {
    servers: Vec<serde_saphyr::Spanned<Value>>,
}

/// One entry of the file and where it starts.
struct Entry {
    value: Value,
    line: Option<u64>,
    column: Option<u64>,
}

fn problem(message: impl Into<String>) -> Problem {
    Problem {
        index: None,
        name: None,
        line: None,
        column: None,
        message: message.into(),
    }
}

fn refuse(problems: Vec<Problem>) -> ApiError {
    let n = problems.len();
    ApiError::InvalidDocument {
        message: format!(
            "the file has {n} problem{}; nothing was imported",
            if n == 1 { "" } else { "s" }
        ),
        problems,
    }
}

const SHAPE: &str = "the file must be a list of servers, or a mapping with a `servers` list";

fn yaml_problem(e: &serde_saphyr::Error) -> Problem {
    let location = e.location();
    let mut p = problem(format!(
        "invalid YAML: {}",
        e.without_snippet()
            .to_string()
            .lines()
            .next()
            .unwrap_or_default()
    ));
    if let Some(l) = location.filter(|l| l.line() > 0) {
        p.line = Some(l.line());
        p.column = Some(l.column());
    }
    p
}

/// The file's entries, or what is wrong with its syntax or shape.
fn parse(text: &str, json: bool) -> Result<Vec<Entry>, Problem> {
    if json {
        let doc: Value = serde_json::from_str(text).map_err(|e| Problem {
            line: Some(e.line() as u64),
            column: Some(e.column() as u64),
            ..problem(format!("invalid JSON: {e}"))
        })?;
        let list = match doc {
            Value::Array(list) => list,
            Value::Object(mut map) if map.len() == 1 && map.contains_key("servers") => {
                match map.remove("servers") {
                    Some(Value::Array(list)) => list,
                    _ => return Err(problem(SHAPE)),
                }
            }
            _ => return Err(problem(SHAPE)),
        };
        return Ok(list
            .into_iter()
            .map(|value| Entry {
                value,
                line: None,
                column: None,
            })
            .collect());
    }
    // Once to learn the shape (and find syntax errors), once more with the
    // position of each entry.
    let doc: Value = serde_saphyr::from_str(text).map_err(|e| yaml_problem(&e))?;
    let list: Vec<serde_saphyr::Spanned<Value>> = match doc {
        Value::Array(_) => serde_saphyr::from_str(text).map_err(|e| yaml_problem(&e))?,
        Value::Object(map) if map.contains_key("servers") => {
            serde_saphyr::from_str::<ImportFile>(text)
                .map_err(|e| yaml_problem(&e))?
                .servers
        }
        Value::Null => return Err(problem("the file is empty")),
        _ => return Err(problem(SHAPE)),
    };
    Ok(list
        .into_iter()
        .map(|s| {
            let known = s.referenced.line() > 0;
            Entry {
                value: s.value,
                line: known.then(|| s.referenced.line()),
                column: known.then(|| s.referenced.column()),
            }
        })
        .collect())
}

/// `${NAME}` references in a value (they are not expanded).
fn references(value: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else { break };
        let name = &after[..end];
        if !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            out.push(name);
        }
        rest = &after[end + 1..];
    }
    out
}

fn warn_references(index: usize, req: &CreateServerRequest, warnings: &mut Vec<String>) {
    let mut places: Vec<(String, &str)> = Vec::new();
    for (k, v) in &req.env {
        places.push((format!("env `{k}`"), v));
    }
    for (k, v) in &req.headers {
        places.push((format!("header `{k}`"), v));
    }
    if let Some(u) = &req.url {
        places.push(("url".into(), u));
    }
    for a in &req.args {
        places.push(("args".into(), a));
    }
    places.sort();
    for (place, value) in places {
        for name in references(value) {
            warnings.push(format!(
                "entry {index} (`{}`): {place} contains `${{{name}}}`, stored as written: \
                 the gateway does not expand environment variables in imported files",
                req.name.trim()
            ));
        }
    }
}

/// Accepted media types: YAML, and JSON (which is YAML too).
fn media_type(headers: &HeaderMap) -> Result<bool, ApiError> {
    let ct = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        });
    match ct.as_deref() {
        Some("application/yaml" | "application/x-yaml" | "text/yaml" | "text/x-yaml") => {
            Ok(false)
        }
        Some("application/json") => Ok(true),
        _ => Err(ApiError::UnsupportedMediaType(
            "send the file with `Content-Type: application/yaml` (or text/yaml, or application/json)"
                .into(),
        )),
    }
}

/// Imports upstream servers from a YAML (or JSON) file.
///
/// The whole file is checked before anything is stored; if any entry is
/// invalid, the answer is 422 listing every problem with its position
/// (entry index, name, line and column) and nothing is imported.
#[utoipa::path(post, path = "/api/v1/mcp-servers/import", tag = "mcp",
    security(("bearer" = [])),
    params(ImportQuery),
    request_body(content = String, content_type = "application/yaml",
        description = "A list of servers, or a mapping with a `servers` list; each entry takes the fields of POST /api/v1/mcp-servers. JSON is accepted too (`application/json`)."),
    responses(
        (status = 200, description = "Imported", body = ImportResult),
        (status = 409, description = "A name is taken (mode `create`); nothing was imported", body = crate::error::ErrorBody),
        (status = 415, description = "Not YAML or JSON", body = crate::error::ErrorBody),
        (status = 422, description = "Problems in the file, each with its position; nothing was imported", body = crate::error::ErrorBody)))]
pub async fn import(
    State(state): State<AppState>,
    admin: TenantWriter,
    query: Result<Query<ImportQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<ImportResult>, ApiError> {
    require_role(&admin.claims, AdminRole::Admin)?;
    let Query(query) = query?;
    let mode = query.mode.unwrap_or_default();
    let json = media_type(&headers)?;
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge {
                limit: super::BODY_LIMIT,
            }
        } else {
            ApiError::BadRequest(e.body_text())
        }
    })?;
    let text = std::str::from_utf8(&body)
        .map_err(|_| refuse(vec![problem("the file is not UTF-8 text")]))?;
    let entries = parse(text, json).map_err(|p| refuse(vec![p]))?;
    if entries.is_empty() {
        return Err(refuse(vec![problem("the file lists no servers")]));
    }
    if entries.len() > MAX_SERVERS {
        return Err(refuse(vec![problem(format!(
            "the file lists {} servers; import at most {MAX_SERVERS} at a time",
            entries.len()
        ))]));
    }

    let by = super::servers::Registrar {
        tenant: admin.tenant,
        requester: &admin.claims,
        operator: false,
    };
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    let mut servers: Vec<NewMcpServer> = Vec::with_capacity(entries.len());
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (index, entry) in entries.into_iter().enumerate() {
        let name = entry
            .value
            .get("name")
            .and_then(Value::as_str)
            .map(|n| n.trim().to_string());
        let at = |message: String| Problem {
            index: Some(index),
            name: name.clone(),
            line: entry.line,
            column: entry.column,
            message,
        };
        if let Some(n) = &name {
            if let Some(first) = seen.get(n) {
                problems.push(at(format!(
                    "the name `{n}` is already used by entry {first}"
                )));
            } else {
                seen.insert(n.clone(), index);
            }
        }
        let req: CreateServerRequest = match serde_json::from_value(entry.value.clone()) {
            Ok(r) => r,
            Err(e) => {
                problems.push(at(format!("invalid entry: {e}")));
                continue;
            }
        };
        warn_references(index, &req, &mut warnings);
        match new_server(&state, &by, req).await {
            Ok(new) => servers.push(new),
            Err(e) => problems.push(at(e.to_string())),
        }
    }
    if !problems.is_empty() {
        return Err(refuse(problems));
    }

    let store = state.store.tenant(admin.tenant);
    if mode == ImportMode::Create {
        let existing: Vec<String> = store
            .list_mcp_servers()
            .await?
            .into_iter()
            .map(|r| r.name)
            .collect();
        let taken: Vec<String> = servers
            .iter()
            .enumerate()
            .filter(|(_, s)| existing.contains(&s.name))
            .map(|(i, s)| format!("`{}` (entry {i})", s.name))
            .collect();
        if !taken.is_empty() {
            return Err(ApiError::Conflict(format!(
                "already registered: {}; nothing was imported (use ?mode=upsert to replace them)",
                taken.join(", ")
            )));
        }
    }
    let imported = store
        .import_mcp_servers(servers, mode == ImportMode::Upsert)
        .await
        .map_err(|e| match e {
            StoreError::Conflict(_) => ApiError::Conflict(
                "a server of the file was registered meanwhile; nothing was imported".into(),
            ),
            other => other.into(),
        })?;
    let mut created = Vec::new();
    let mut updated = Vec::new();
    for (record, is_new) in imported {
        if is_new {
            created.push(view(&state, record));
        } else {
            // Calls on this replica use the new definition at once.
            state.upstreams.forget_record(admin.tenant, record.id);
            if !record.enabled {
                state.upstreams.stop(admin.tenant, record.id);
            }
            updated.push(view(&state, record));
        }
    }
    tracing::info!(
        tenant = %admin.tenant,
        by = %admin.claims.sub,
        created = created.len(),
        updated = updated.len(),
        "MCP servers imported"
    );
    Ok(Json(ImportResult {
        mode,
        created,
        updated,
        warnings,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_references() {
        assert_eq!(references("Bearer ${TOKEN}"), vec!["TOKEN"]);
        assert_eq!(references("${A}-${B_2}"), vec!["A", "B_2"]);
        assert!(references("$HOME ${} ${not valid} ${open").is_empty());
    }

    #[test]
    fn reads_both_shapes_with_positions() {
        let list = parse("- name: a\n  transport: stdio\n- name: b\n", false).unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[1].value["name"], "b");
        assert_eq!(list[1].line, Some(3));
        let map = parse("servers:\n  - name: a\n    timeout_ms: 5\n", false).unwrap();
        assert_eq!(map[0].value["timeout_ms"], 5);
        assert_eq!(map[0].line, Some(2));
        let json = parse(r#"{"servers": [{"name": "a"}]}"#, true).unwrap();
        assert_eq!(json[0].value["name"], "a");
    }

    #[test]
    fn reports_syntax_errors_with_their_position() {
        let p = parse("servers:\n  - name: a\n   bad: [1\n", false)
            .err()
            .unwrap();
        assert!(p.message.starts_with("invalid YAML"), "{}", p.message);
        assert!(p.line.is_some_and(|l| l >= 2), "{:?}", p.line);
        assert!(!p.message.contains('\n'));
        let p = parse("{\"servers\": [", true).err().unwrap();
        assert_eq!(p.line, Some(1));
        for shape in ["42\n", "other: 1\n", "servers: 3\n"] {
            assert!(parse(shape, false).is_err(), "{shape}");
        }
        assert_eq!(parse("", false).err().unwrap().message, "the file is empty");
    }
}
