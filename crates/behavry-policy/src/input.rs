//! The Rego `input` document and the helpers that derive its request fields
//! from an MCP tool call.

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

/// Everything a policy may look at for one call. Serialised, this is the Rego
/// `input`; every part has a default so callers fill in only what they know.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PolicyInput {
    pub agent: AgentInput,
    pub request: RequestInput,
    pub dlp: DlpInput,
    pub inbound: InboundInput,
    pub session: SessionInput,
    pub context: ContextInput,
    /// The person on whose behalf the agent acts, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requester: Option<RequesterInput>,
}

impl PolicyInput {
    /// The JSON form handed to [`crate::PolicyEngine::decide`].
    pub fn to_json(&self) -> Json {
        // Serialising plain structs of strings, numbers and JSON values cannot
        // fail; Null would only ever mean a bug here, and policies treat a
        // non-object input as an error rather than allowing anything.
        serde_json::to_value(self).unwrap_or(Json::Null)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AgentInput {
    pub id: String,
    pub name: String,
    pub roles: Vec<String>,
    /// `"<mcp server>:<action>"`, with `*` for any server, e.g. `"filesystem:write"`.
    pub permissions: Vec<String>,
    /// low, medium, high or critical.
    pub risk_tier: String,
    /// 0–100, from the agent's recent behaviour.
    pub risk_score: i32,
    /// The agent used a tool outside its established baseline in the last
    /// day.
    pub has_recent_drift: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RequestInput {
    pub tool_name: String,
    pub action: Action,
    /// The main thing the call touches (see [`extract_resource`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// The tool call's arguments, as the agent sent them.
    pub parameters: Json,
    pub mcp_server: String,
    /// How many items the call affects (bulk operations), when known.
    pub resource_count: u64,
}

impl Default for RequestInput {
    fn default() -> Self {
        Self {
            tool_name: String::new(),
            action: Action::default(),
            resource: None,
            parameters: Json::Object(Default::default()),
            mcp_server: String::new(),
            resource_count: 0,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DlpInput {
    pub has_findings: bool,
    pub findings: Vec<DlpFinding>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DlpFinding {
    pub pattern: String,
    pub severity: String,
    /// Where in the arguments the finding is (a JSON path).
    pub field: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct InboundInput {
    pub has_findings: bool,
    pub findings: Vec<InboundFinding>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct InboundFinding {
    pub pattern_class: String,
    pub severity: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SessionInput {
    pub id: String,
    /// The session has seen content flagged as a likely injection.
    pub tainted: bool,
    pub call_count: u64,
    /// The session has read content from a tool tagged untrusted.
    pub read_untrusted: bool,
    /// The session has read data from a tool tagged private (or a result
    /// with a data-protection finding).
    pub read_private: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ContextInput {
    /// RFC 3339 timestamp of the call.
    pub time: String,
    /// Which entry point the call came through (e.g. "mcp", "llm").
    pub source: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RequesterInput {
    pub id: String,
    pub channel: String,
    pub verified: bool,
}

/// What a tool call does, as far as policy is concerned.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Read,
    Write,
    Delete,
    /// Also the classification of tools nobody recognises: assuming an
    /// unknown tool can do anything is the cautious default.
    #[default]
    Execute,
    Send,
}

// Name words per action. Multi-word entries match consecutive words, so
// "post_message" and "postMessage" match but "post" alone does not.
const DELETE_WORDS: &[&str] = &[
    "delete", "remove", "drop", "destroy", "purge", "truncate", "rm", "rmdir", "unlink", "erase",
    "wipe",
];
const EXECUTE_WORDS: &[&str] = &[
    "exec", "execute", "run", "shell", "command", "eval", "spawn", "bash", "script", "invoke",
];
const SEND_WORDS: &[&str] = &[
    "send",
    "email",
    "mail",
    "post message",
    "notify",
    "publish",
    "slack",
    "tweet",
    "reply",
    "sms",
];
const WRITE_WORDS: &[&str] = &[
    "create", "write", "update", "edit", "put", "set", "upload", "move", "rename", "insert",
    "patch", "replace", "append", "modify", "save", "mkdir", "copy",
];
const READ_WORDS: &[&str] = &[
    "get", "list", "read", "search", "fetch", "query", "describe", "show", "view", "find",
    "lookup", "stat", "cat", "head", "tail", "grep", "ls",
];

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Read => "read",
            Action::Write => "write",
            Action::Delete => "delete",
            Action::Execute => "execute",
            Action::Send => "send",
        }
    }

    /// Classifies a tool from its MCP annotations and its name.
    ///
    /// Annotations come first because the server describing its own tool
    /// knows better than a guess from the name: `readOnlyHint: true` → read,
    /// `destructiveHint: true` → delete. Otherwise the words of the name
    /// decide (`read_file`, `deleteRepo`, `slack.post_message`); when words of
    /// several actions appear, the most dangerous wins (delete > execute >
    /// send > write > read), and a name with no known word is execute.
    pub fn classify(tool_name: &str, annotations: Option<&Json>) -> Action {
        let hint = |name: &str| {
            annotations
                .and_then(|a| a.get(name))
                .and_then(Json::as_bool)
        };
        if hint("readOnlyHint") == Some(true) {
            return Action::Read;
        }
        if hint("destructiveHint") == Some(true) {
            return Action::Delete;
        }
        let by_name = classify_name(tool_name);
        // A server that says its tool is not read-only has told us the name
        // is misleading if the name sounds like a read.
        if by_name == Action::Read && hint("readOnlyHint") == Some(false) {
            return Action::Write;
        }
        by_name
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

fn classify_name(tool_name: &str) -> Action {
    let words = split_words(tool_name);
    let has = |list: &[&str]| {
        list.iter().any(|entry| {
            let phrase: Vec<&str> = entry.split(' ').collect();
            words
                .windows(phrase.len())
                .any(|w| w.iter().zip(&phrase).all(|(a, b)| a == b))
        })
    };
    if has(DELETE_WORDS) {
        Action::Delete
    } else if has(EXECUTE_WORDS) {
        Action::Execute
    } else if has(SEND_WORDS) {
        Action::Send
    } else if has(WRITE_WORDS) {
        Action::Write
    } else if has(READ_WORDS) {
        Action::Read
    } else {
        Action::Execute
    }
}

/// Lower-case words of a tool name, split on `_ - . /`, whitespace and
/// camelCase boundaries ("getHTTPResponse" → get, http, response).
pub(crate) fn split_words(name: &str) -> Vec<String> {
    let mut words = Vec::new();
    for part in name.split(|c: char| matches!(c, '_' | '-' | '.' | '/' | ':') || c.is_whitespace())
    {
        let chars: Vec<char> = part.chars().collect();
        let mut current = String::new();
        for (i, &c) in chars.iter().enumerate() {
            let prev = i.checked_sub(1).map(|p| chars[p]);
            let next = chars.get(i + 1).copied();
            let boundary = c.is_uppercase()
                && prev.is_some_and(|p| {
                    p.is_lowercase()
                        || p.is_ascii_digit()
                        || (p.is_uppercase() && next.is_some_and(char::is_lowercase))
                });
            if boundary && !current.is_empty() {
                words.push(std::mem::take(&mut current));
            }
            current.extend(c.to_lowercase());
        }
        if !current.is_empty() {
            words.push(current);
        }
    }
    words
}

/// Argument names that conventionally carry a tool call's target, in the
/// order they are tried.
pub const RESOURCE_PARAMETERS: &[&str] = &[
    "path", "file", "filename", "uri", "url", "resource", "target", "query",
];

/// The main resource a tool call touches: the first of
/// [`RESOURCE_PARAMETERS`] whose value is a string.
pub fn extract_resource(parameters: &Json) -> Option<String> {
    let object = parameters.as_object()?;
    RESOURCE_PARAMETERS
        .iter()
        .find_map(|key| object.get(*key).and_then(Json::as_str))
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_are_split_into_lowercase_words() {
        assert_eq!(split_words("read_file"), ["read", "file"]);
        assert_eq!(split_words("deleteRepo"), ["delete", "repo"]);
        assert_eq!(split_words("getHTTPResponse"), ["get", "http", "response"]);
        assert_eq!(
            split_words("slack.post-message/v2"),
            ["slack", "post", "message", "v2"]
        );
        assert_eq!(split_words(""), Vec::<String>::new());
    }

    #[test]
    fn classifies_by_name() {
        let cases = [
            ("read_file", Action::Read),
            ("list_directory", Action::Read),
            ("searchIssues", Action::Read),
            ("describe-instances", Action::Read),
            ("write_file", Action::Write),
            ("createPullRequest", Action::Write),
            ("update.record", Action::Write),
            ("move_file", Action::Write),
            ("delete_file", Action::Delete),
            ("rm", Action::Delete),
            ("dropTable", Action::Delete),
            ("purge-cache", Action::Delete),
            ("run_shell_command", Action::Execute),
            ("exec", Action::Execute),
            ("evaluate_expression", Action::Execute),
            ("send_email", Action::Send),
            ("slack.post_message", Action::Send),
            ("postMessage", Action::Send),
            ("notify_user", Action::Send),
            // The most dangerous word wins.
            ("list_and_delete", Action::Delete),
            ("run_query", Action::Execute),
            ("read_and_send", Action::Send),
            // Unknown means cautious.
            ("frobnicate", Action::Execute),
            ("", Action::Execute),
            // Words, not substrings: "target" is not "get", "spreadsheet" not "read".
            ("target_spreadsheet", Action::Execute),
            ("post", Action::Execute),
        ];
        for (name, expected) in cases {
            assert_eq!(Action::classify(name, None), expected, "{name}");
        }
    }

    #[test]
    fn annotations_win_over_the_name() {
        let read_only = json!({"readOnlyHint": true});
        let destructive = json!({"readOnlyHint": false, "destructiveHint": true});
        let not_read_only = json!({"readOnlyHint": false});
        assert_eq!(
            Action::classify("delete_everything", Some(&read_only)),
            Action::Read
        );
        assert_eq!(
            Action::classify("get_item", Some(&destructive)),
            Action::Delete
        );
        assert_eq!(
            Action::classify("get_item", Some(&not_read_only)),
            Action::Write
        );
        assert_eq!(
            Action::classify("send_email", Some(&not_read_only)),
            Action::Send
        );
        // Hints that are absent or not booleans say nothing.
        assert_eq!(
            Action::classify("read_file", Some(&json!({"readOnlyHint": "yes"}))),
            Action::Read
        );
        assert_eq!(
            Action::classify("read_file", Some(&json!(null))),
            Action::Read
        );
    }

    #[test]
    fn actions_serialise_lowercase() {
        assert_eq!(json!(Action::Execute), json!("execute"));
        let parsed: Action = serde_json::from_value(json!("send")).unwrap();
        assert_eq!(parsed, Action::Send);
    }

    #[test]
    fn resource_is_the_first_string_parameter_in_order() {
        assert_eq!(
            extract_resource(&json!({"query": "q", "path": "/tmp/a"})),
            Some("/tmp/a".into())
        );
        assert_eq!(
            extract_resource(&json!({"path": 3, "url": "https://x"})),
            Some("https://x".into())
        );
        assert_eq!(
            extract_resource(&json!({"target": "t", "query": "q"})),
            Some("t".into())
        );
        assert_eq!(extract_resource(&json!({"content": "x"})), None);
        assert_eq!(extract_resource(&json!(["path"])), None);
        assert_eq!(extract_resource(&json!(null)), None);
    }

    #[test]
    fn input_defaults_fill_missing_parts() {
        let input: PolicyInput =
            serde_json::from_value(json!({"request": {"tool_name": "x"}})).unwrap();
        assert_eq!(input.request.action, Action::Execute);
        assert_eq!(input.request.parameters, json!({}));
        let out = input.to_json();
        assert_eq!(out["agent"]["permissions"], json!([]));
        assert_eq!(out["dlp"]["has_findings"], json!(false));
        assert!(out.get("requester").is_none());
        assert!(out["request"].get("resource").is_none());
    }
}
