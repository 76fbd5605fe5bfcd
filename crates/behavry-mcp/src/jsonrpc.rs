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
