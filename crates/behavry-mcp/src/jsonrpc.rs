//! JSON-RPC 2.0 messages as MCP uses them.

use serde_json::{Map, Value, json};

/// Standard and MCP-specific error codes.
pub mod codes {
    pub const PARSE_ERROR: i64 = -32700;
    pub const INVALID_REQUEST: i64 = -32600;
    pub const METHOD_NOT_FOUND: i64 = -32601;
    pub const INVALID_PARAMS: i64 = -32602;
    pub const INTERNAL_ERROR: i64 = -32603;
    /// Generic server error (used by MCP SDKs for session problems).
    pub const SERVER_ERROR: i64 = -32000;
    /// The upstream did not answer in time.
    pub const UPSTREAM_TIMEOUT: i64 = -32001;
    /// The upstream is down or failed.
    pub const UPSTREAM_UNAVAILABLE: i64 = -32002;
    /// 2026-07-28: a routing header disagrees with the body.
    pub const HEADER_MISMATCH: i64 = -32020;
    /// 2026-07-28: unsupported protocol version.
    pub const UNSUPPORTED_PROTOCOL_VERSION: i64 = -32022;
    /// Behavry: the call was refused by policy.
    pub const POLICY_DENIED: i64 = -32040;
    /// Behavry: the call needs a human's approval.
    pub const APPROVAL_REQUIRED: i64 = -32041;
    /// Behavry: the caller exceeded its rate limit.
    pub const RATE_LIMITED: i64 = -32042;
    /// Behavry: the agent or its tenant is suspended.
    pub const AGENT_SUSPENDED: i64 = -32043;
    /// Behavry: the audit trail could not record the call, so it was refused.
    pub const AUDIT_UNAVAILABLE: i64 = -32044;
    /// Behavry: the arguments carry data that must not leave (a credential,
    /// a card number...), so the call was refused.
    pub const DLP_BLOCKED: i64 = -32045;
    /// Behavry: what the upstream returned carries instructions aimed at
    /// the agent, so it was withheld (for methods whose result cannot be
    /// replaced by an error result).
    pub const INJECTION_BLOCKED: i64 = -32046;
    /// Behavry: the tool's definition was withheld from agents (poisoned).
    pub const TOOL_WITHHELD: i64 = -32047;
}

/// A request or response id: a number or a string (never null for requests).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Id {
    Number(i64),
    String(String),
}

impl Id {
    pub fn from_value(v: &Value) -> Option<Id> {
        match v {
            Value::Number(n) => n.as_i64().map(Id::Number),
            Value::String(s) => Some(Id::String(s.clone())),
            _ => None,
        }
    }

    pub fn to_value(&self) -> Value {
        match self {
            Id::Number(n) => json!(n),
            Id::String(s) => json!(s),
        }
    }
}

/// One JSON-RPC message.
#[derive(Clone, Debug, PartialEq)]
pub enum Message {
    Request {
        id: Id,
        method: String,
        params: Option<Value>,
    },
    Notification {
        method: String,
        params: Option<Value>,
    },
    Response {
        id: Id,
        outcome: Result<Value, RpcError>,
    },
}

/// A JSON-RPC error object.
#[derive(Clone, Debug, PartialEq)]
pub struct RpcError {
    pub code: i64,
    pub message: String,
    pub data: Option<Value>,
}

impl RpcError {
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            data: None,
        }
    }

    pub fn with_data(mut self, data: Value) -> Self {
        self.data = Some(data);
        self
    }

    pub fn to_value(&self) -> Value {
        let mut obj = Map::new();
        obj.insert("code".into(), json!(self.code));
        obj.insert("message".into(), json!(self.message));
        if let Some(d) = &self.data {
            obj.insert("data".into(), d.clone());
        }
        Value::Object(obj)
    }

    fn from_value(v: &Value) -> Result<Self, String> {
        let code = v
            .get("code")
            .and_then(Value::as_i64)
            .ok_or("error object has no integer `code`")?;
        let message = v
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        Ok(Self {
            code,
            message,
            data: v.get("data").cloned(),
        })
    }
}

impl std::fmt::Display for RpcError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}

impl Message {
    /// Interprets one JSON value as a JSON-RPC message. The error says what
    /// was wrong, for the -32600 reply.
    pub fn from_value(v: Value) -> Result<Message, String> {
        let Value::Object(mut obj) = v else {
            return Err("a JSON-RPC message must be a JSON object".into());
        };
        match obj.get("jsonrpc") {
            Some(Value::String(s)) if s == "2.0" => {}
            _ => return Err("`jsonrpc` must be \"2.0\"".into()),
        }
        let id = match obj.get("id") {
            None => None,
            Some(v) => {
                Some(Id::from_value(v).ok_or("`id` must be a string or an integer".to_string())?)
            }
        };
        if let Some(method) = obj.remove("method") {
            let Value::String(method) = method else {
                return Err("`method` must be a string".into());
            };
            if method.is_empty() || method.len() > 256 {
                return Err("`method` must be 1 to 256 characters".into());
            }
            let params = obj.remove("params");
            if let Some(p) = &params
                && !(p.is_object() || p.is_array())
            {
                return Err("`params` must be an object or an array".into());
            }
            return Ok(match id {
                Some(id) => Message::Request { id, method, params },
                None => Message::Notification { method, params },
            });
        }
        let id = id.ok_or("a response must have an `id`")?;
        match (obj.remove("result"), obj.remove("error")) {
            (Some(result), None) => Ok(Message::Response {
                id,
                outcome: Ok(result),
            }),
            (None, Some(error)) => Ok(Message::Response {
                id,
                outcome: Err(RpcError::from_value(&error)?),
            }),
            _ => Err("a message needs `method`, or exactly one of `result` and `error`".into()),
        }
    }

    pub fn to_value(&self) -> Value {
        match self {
            Message::Request { id, method, params } => {
                let mut obj = Map::new();
                obj.insert("jsonrpc".into(), json!("2.0"));
                obj.insert("id".into(), id.to_value());
                obj.insert("method".into(), json!(method));
                if let Some(p) = params {
                    obj.insert("params".into(), p.clone());
                }
                Value::Object(obj)
            }
            Message::Notification { method, params } => {
                let mut obj = Map::new();
                obj.insert("jsonrpc".into(), json!("2.0"));
                obj.insert("method".into(), json!(method));
                if let Some(p) = params {
                    obj.insert("params".into(), p.clone());
                }
                Value::Object(obj)
            }
            Message::Response { id, outcome } => match outcome {
                Ok(result) => json!({"jsonrpc": "2.0", "id": id.to_value(), "result": result}),
                Err(e) => json!({"jsonrpc": "2.0", "id": id.to_value(), "error": e.to_value()}),
            },
        }
    }

    pub fn error(id: Id, error: RpcError) -> Message {
        Message::Response {
            id,
            outcome: Err(error),
        }
    }

    pub fn result(id: Id, result: Value) -> Message {
        Message::Response {
            id,
            outcome: Ok(result),
        }
    }

    pub fn method(&self) -> Option<&str> {
        match self {
            Message::Request { method, .. } | Message::Notification { method, .. } => Some(method),
            Message::Response { .. } => None,
        }
    }
}

/// An error reply for a message that could not be parsed at all (no id).
pub fn error_without_id(error: RpcError) -> Value {
    json!({"jsonrpc": "2.0", "id": Value::Null, "error": error.to_value()})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_kinds() {
        let req =
            Message::from_value(json!({"jsonrpc":"2.0","id":1,"method":"tools/list"})).unwrap();
        assert!(matches!(
            req,
            Message::Request {
                id: Id::Number(1),
                ..
            }
        ));
        let note =
            Message::from_value(json!({"jsonrpc":"2.0","method":"notifications/initialized"}))
                .unwrap();
        assert!(matches!(note, Message::Notification { .. }));
        let resp = Message::from_value(json!({"jsonrpc":"2.0","id":"a","result":{}})).unwrap();
        assert!(matches!(resp, Message::Response { outcome: Ok(_), .. }));
        let err = Message::from_value(
            json!({"jsonrpc":"2.0","id":"a","error":{"code":-1,"message":"x"}}),
        )
        .unwrap();
        assert!(matches!(
            err,
            Message::Response {
                outcome: Err(RpcError { code: -1, .. }),
                ..
            }
        ));
        for m in [req, note, resp, err] {
            assert_eq!(Message::from_value(m.to_value()).unwrap(), m);
        }
    }

    #[test]
    fn explains_what_is_wrong() {
        let cases = [
            (json!([1]), "object"),
            (json!({"id":1,"method":"x"}), "jsonrpc"),
            (json!({"jsonrpc":"2.0","id":{},"method":"x"}), "`id`"),
            (json!({"jsonrpc":"2.0","id":1,"method":7}), "`method`"),
            (
                json!({"jsonrpc":"2.0","id":1,"method":"x","params":3}),
                "`params`",
            ),
            (json!({"jsonrpc":"2.0","result":{}}), "`id`"),
            (json!({"jsonrpc":"2.0","id":1}), "exactly one"),
            (
                json!({"jsonrpc":"2.0","id":1,"error":{"message":"no code"}}),
                "code",
            ),
        ];
        for (v, needle) in cases {
            let e = Message::from_value(v.clone()).unwrap_err();
            assert!(e.contains(needle), "{v}: {e}");
        }
    }
}

/// Parses a message the way a security gateway must: a member name that
/// appears twice in one object is refused, not resolved (parsers disagree
/// on which one wins, and that disagreement is how filters are bypassed).
pub fn parse_strict(bytes: &[u8]) -> Result<Value, IntakeError> {
    serde_json::from_slice::<Strict>(bytes)
        .map(|s| s.0)
        .map_err(|e| {
            let text = e.to_string();
            if text.starts_with(DUPLICATE) {
                IntakeError::DuplicateKey(text)
            } else {
                IntakeError::Syntax(text)
            }
        })
}

/// Why a body was not taken as a message.
#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    #[error("body is not valid JSON: {0}")]
    Syntax(String),
    #[error("{0}; each member name may appear once")]
    DuplicateKey(String),
}

impl IntakeError {
    pub fn code(&self) -> i64 {
        match self {
            IntakeError::Syntax(_) => codes::PARSE_ERROR,
            IntakeError::DuplicateKey(_) => codes::INVALID_REQUEST,
        }
    }
}

const DUPLICATE: &str = "duplicate member";

struct Strict(Value);

impl<'de> serde::Deserialize<'de> for Strict {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> serde::de::Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Strict(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut obj = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if obj.contains_key(&key) {
                let shown: String = key.chars().take(64).collect();
                return Err(serde::de::Error::custom(format!("{DUPLICATE} `{shown}`")));
            }
            let Strict(v) = map.next_value()?;
            obj.insert(key, v);
        }
        Ok(Value::Object(obj))
    }
}

/// Refuses requests whose MCP fields have the wrong types, before anything
/// is forwarded: policies see the fields they expect, and an upstream never
/// gets a message it would reject on the sender's behalf in a way that
/// could look like a broken connection to everyone else.
pub fn check_shape(message: &Message) -> Result<(), RpcError> {
    let (method, params) = match message {
        Message::Request { method, params, .. } | Message::Notification { method, params } => {
            (method.as_str(), params)
        }
        Message::Response { .. } => return Ok(()),
    };
    let Some(params) = params else {
        return Ok(());
    };
    let invalid = |what: &str| RpcError::new(codes::INVALID_PARAMS, what.to_string());
    let obj = params
        .as_object()
        .ok_or_else(|| invalid("`params` must be an object"))?;
    let typed = |name: &str, ok: fn(&Value) -> bool, kind: &str| match obj.get(name) {
        Some(v) if !ok(v) => Err(invalid(&format!("`params.{name}` must be {kind}"))),
        _ => Ok(()),
    };
    typed("_meta", Value::is_object, "an object")?;
    match method {
        "initialize" => {
            typed("protocolVersion", Value::is_string, "a string")?;
            typed("capabilities", Value::is_object, "an object")?;
            typed("clientInfo", Value::is_object, "an object")?;
            if obj
                .get("clientInfo")
                .and_then(|c| c.get("name"))
                .is_some_and(|n| !n.is_string())
            {
                return Err(invalid("`params.clientInfo.name` must be a string"));
            }
        }
        "tools/call" => {
            typed("name", Value::is_string, "a string")?;
            typed("arguments", Value::is_object, "an object")?;
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod strict_tests {
    use super::*;

    #[test]
    fn duplicate_members_are_refused_at_any_depth() {
        for body in [
            r#"{"jsonrpc":"2.0","id":1,"id":2,"method":"ping"}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","arguments":{"x":1,"x":2}}}"#,
            r#"[{"a":1},{"b":[{"c":1,"c":1}]}]"#,
        ] {
            let err = parse_strict(body.as_bytes()).unwrap_err();
            assert!(matches!(err, IntakeError::DuplicateKey(_)), "{body}: {err}");
            assert_eq!(err.code(), codes::INVALID_REQUEST);
        }
        let ok = parse_strict(br#"{"a":{"b":1},"c":{"b":2},"n":-1.5e3}"#).unwrap();
        assert_eq!(ok["n"], serde_json::json!(-1500.0));
        assert!(matches!(
            parse_strict(b"{\"a\":").unwrap_err(),
            IntakeError::Syntax(_)
        ));
    }

    #[test]
    fn mistyped_fields_are_refused() {
        let msg = |v: Value| Message::from_value(v).unwrap();
        for bad in [
            serde_json::json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":2025}}),
            serde_json::json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"capabilities":"all"}}),
            serde_json::json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"clientInfo":["x"]}}),
            serde_json::json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","_meta":"x"}}),
            serde_json::json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","arguments":[1]}}),
            serde_json::json!({"jsonrpc":"2.0","id":1,"method":"tools/list","params":[1]}),
        ] {
            let err = check_shape(&msg(bad.clone())).unwrap_err();
            assert_eq!(err.code, codes::INVALID_PARAMS, "{bad}");
        }
        check_shape(&msg(serde_json::json!({"jsonrpc":"2.0","id":1,"method":"initialize",
            "params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"c","version":"1"}}})))
        .unwrap();
    }
}
