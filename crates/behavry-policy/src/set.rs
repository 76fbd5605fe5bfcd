//! A tenant's policies compiled into one regorus engine.

use crate::decision::{Decision, DecisionResult, PolicyMeta, PolicyOutcome, combine};
use crate::error::{CompileError, PolicyError};
use crate::rego_text;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

/// The built-in base pack's Rego source.
pub const BASE_PACK_REGO: &str = include_str!("../rego/base.rego");
/// Package name (last component) of the base pack.
pub const BASE_PACKAGE_NAME: &str = "base";
/// The policy id under which the base pack's rules are reported.
pub const BASE_PACK_ID: &str = "behavry-base";
/// The Rego module computing `data.behavry.authz.decision`, without the
/// `policy_meta` that [`PolicySet::compile`] appends.
pub const AUTHZ_REGO: &str = include_str!("../rego/authz.rego");
pub(crate) const AUTHZ_ID: &str = "behavry-authz";

/// Every policy lives below this package.
pub const POLICIES_PACKAGE: &str = "behavry.policies";
const POLICIES_QUERY: &str = "data.behavry.policies";
const AUTHZ_QUERY: &str = "data.behavry.authz.decision";

/// A runaway policy (a huge comprehension, an accidental cross product) must
/// not hold a request, or a worker thread, for long. Past this, the
/// evaluation fails and the caller's fail-closed handling takes over.
pub const EVALUATION_TIME_LIMIT: Duration = Duration::from_millis(250);

/// Input nesting deeper than this is refused before conversion, which
/// recurses. JSON parsed by serde_json never exceeds 128 levels, so real tool
/// arguments fit with room to spare.
pub const MAX_INPUT_DEPTH: usize = 128;

/// One policy as stored: its Rego text and how it is to be applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicySource {
    /// Stable id (the policy row's id); reported in decisions.
    pub id: String,
    /// Human name, used in decision reasons.
    pub name: String,
    /// Rego v1 source declaring `package behavry.policies.<name>`.
    pub content: String,
    /// Evaluate and report, but never let it change a decision.
    pub monitor: bool,
}

/// A compiled, immutable set of policies. Cheap to share (`Arc`); each
/// decision evaluates on its own clone of the prepared engine, so decisions
/// run in parallel without locks.
pub struct PolicySet {
    engine: regorus::Engine,
    /// Tenant policies in the order given, then the base pack.
    policies: Vec<PolicyMeta>,
    /// Per policy (same order), the decision rules it declares and their
    /// full paths, e.g. `(Deny, "data.behavry.policies.x.deny")`.
    rules: Vec<Vec<(DecisionResult, String)>>,
}

impl std::fmt::Debug for PolicySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicySet")
            .field("policies", &self.policies)
            .finish_non_exhaustive()
    }
}

/// A summary of one compiled policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CompiledPolicy {
    pub id: String,
    pub name: String,
    /// Full package, e.g. `behavry.policies.no_prod_writes`.
    pub package: String,
    pub monitor: bool,
    pub builtin: bool,
}

impl PolicySet {
    /// Compiles `sources`, plus the base pack when `base_pack` is set, into
    /// one engine, and runs a dry evaluation so that errors regorus only
    /// finds at evaluation time (unsafe variables, unknown functions) are
    /// compile errors here rather than failed decisions later.
    pub fn compile(sources: Vec<PolicySource>, base_pack: bool) -> Result<PolicySet, PolicyError> {
        let mut all = sources;
        if base_pack {
            all.push(base_pack_source());
        }

        let mut engine = new_engine();
        let mut errors = Vec::new();
        let mut policies: Vec<PolicyMeta> = Vec::with_capacity(all.len());
        let mut by_package: HashMap<String, usize> = HashMap::new();
        let mut ids: HashMap<&str, &PolicySource> = HashMap::new();
        for source in &all {
            // Module paths are the ids; regorus needs them unique to tell
            // which module declares what, and so do decision traces.
            if source.id == AUTHZ_ID {
                errors.push(CompileError::new(
                    Some(&source.id),
                    format!("the policy id `{AUTHZ_ID}` is reserved"),
                ));
                continue;
            }
            if let Some(first) = ids.insert(&source.id, source) {
                errors.push(CompileError::new(
                    Some(&source.id),
                    format!(
                        "policies `{}` and `{}` share the id `{}`",
                        first.name, source.name, source.id
                    ),
                ));
                continue;
            }
            let package_name = match add_module(&mut engine, source) {
                Ok(name) => name,
                Err(mut e) => {
                    errors.append(&mut e);
                    continue;
                }
            };
            if let Some(&earlier) = by_package.get(&package_name) {
                let first: &PolicyMeta = &policies[earlier];
                return Err(PolicyError::DuplicatePackage {
                    package: format!("{POLICIES_PACKAGE}.{package_name}"),
                    first: describe(&first.name, &first.id),
                    second: describe(&source.name, &source.id),
                });
            }
            by_package.insert(package_name.clone(), policies.len());
            policies.push(PolicyMeta {
                builtin: base_pack && source.id == BASE_PACK_ID,
                package_name,
                id: source.id.clone(),
                name: source.name.clone(),
                monitor: source.monitor,
            });
        }
        if !errors.is_empty() {
            return Err(PolicyError::Compile(errors));
        }

        let mut rules = Vec::with_capacity(policies.len());
        for meta in &policies {
            let mut declared = Vec::new();
            for effect in [
                DecisionResult::Deny,
                DecisionResult::Escalate,
                DecisionResult::Allow,
            ] {
                let rule = effect.as_str();
                let is_declared =
                    engine
                        .has_declared_rule_rooted_at(&meta.id, rule)
                        .map_err(|e| {
                            PolicyError::Compile(vec![CompileError::from_regorus(
                                &e,
                                Some(&meta.id),
                            )])
                        })?;
                if is_declared {
                    declared.push((
                        effect,
                        format!("{POLICIES_QUERY}.{}.{rule}", meta.package_name),
                    ));
                }
            }
            rules.push(declared);
        }

        engine
            .add_policy(AUTHZ_ID.to_owned(), authz_module(&policies))
            .map_err(|e| {
                PolicyError::Compile(vec![CompileError::from_regorus(&e, Some(AUTHZ_ID))])
            })?;

        // Preparing the engine happens on first evaluation; doing it here,
        // on the engine every decision clones, means it happens once. The
        // whole document is evaluated, not only the decision rules, so that
        // errors in helper rules surface now.
        engine.set_input(regorus::Value::new_object());
        if !policies.is_empty() {
            engine
                .eval_query(POLICIES_QUERY.to_owned(), false)
                .map_err(|e| PolicyError::Compile(vec![CompileError::from_regorus(&e, None)]))?;
        }
        engine
            .eval_query(AUTHZ_QUERY.to_owned(), false)
            .map_err(|e| PolicyError::Compile(vec![CompileError::from_regorus(&e, None)]))?;

        Ok(PolicySet {
            engine,
            policies,
            rules,
        })
    }

    /// The base pack alone: what a tenant without policies of its own gets.
    pub fn base_only() -> Result<PolicySet, PolicyError> {
        Self::compile(Vec::new(), true)
    }

    /// The policies in this set, tenant policies first.
    pub fn policies(&self) -> Vec<CompiledPolicy> {
        self.policies
            .iter()
            .map(|m| CompiledPolicy {
                id: m.id.clone(),
                name: m.name.clone(),
                package: format!("{POLICIES_PACKAGE}.{}", m.package_name),
                monitor: m.monitor,
                builtin: m.builtin,
            })
            .collect()
    }

    /// Decides one request. `input` is the Rego input document (see
    /// [`crate::PolicyInput`]) and must be a JSON object.
    ///
    /// Each declared `deny`/`escalate`/`allow` rule is evaluated on its own
    /// rather than the whole `data.behavry.policies` document: the result
    /// is the same, and it skips helper rules and regorus's query parsing,
    /// which makes a decision several times faster.
    pub fn decide(&self, input: &Json) -> Result<Decision, PolicyError> {
        let input = to_regorus_input(input)?;
        let started = Instant::now();
        let mut engine = self.engine.clone();
        engine.set_input(input);
        let mut outcomes = Vec::with_capacity(self.policies.len());
        for (meta, rules) in self.policies.iter().zip(&self.rules) {
            let mut outcome = PolicyOutcome::default();
            for (effect, path) in rules {
                // The engine's own limit applies per evaluation; this one
                // bounds the decision as a whole.
                if started.elapsed() > EVALUATION_TIME_LIMIT {
                    return Err(PolicyError::Evaluation(format!(
                        "the decision exceeded the time limit of {EVALUATION_TIME_LIMIT:?}"
                    )));
                }
                let value = engine
                    .eval_rule(path.clone())
                    .map_err(|e| evaluation_error(&e))?;
                if value != regorus::Value::Undefined {
                    outcome.set(*effect, to_json(&value)?);
                }
            }
            outcomes.push((meta, outcome));
        }
        combine(&outcomes)
    }

    /// Evaluates `data.behavry.authz.decision`, the conventional
    /// `{result, reason, policy}` computed in Rego, for tools that want to
    /// see exactly what an OPA serving these policies would answer.
    pub fn authz_decision(&self, input: &Json) -> Result<Json, PolicyError> {
        let value = self.evaluate(input, AUTHZ_QUERY)?;
        to_json(&value)
    }

    fn evaluate(&self, input: &Json, query: &str) -> Result<regorus::Value, PolicyError> {
        let input = to_regorus_input(input)?;
        let mut engine = self.engine.clone();
        engine.set_input(input);
        let results = engine
            .eval_query(query.to_owned(), false)
            .map_err(|e| evaluation_error(&e))?;
        Ok(results
            .result
            .into_iter()
            .next()
            .and_then(|r| r.expressions.into_iter().next())
            .map_or(regorus::Value::Undefined, |e| e.value))
    }
}

/// Checks one policy on its own: package naming, syntax, and the checks
/// regorus makes when it prepares and evaluates (against an empty input).
/// Returns the package (`behavry.policies.<name>`).
pub fn validate(content: &str) -> Result<String, Vec<CompileError>> {
    let source = PolicySource {
        id: "policy.rego".to_owned(),
        name: "policy".to_owned(),
        content: content.to_owned(),
        monitor: false,
    };
    // Validation is about one text; the placeholder file name is noise.
    let strip = |errors: Vec<CompileError>| {
        errors
            .into_iter()
            .map(|e| CompileError {
                policy_id: None,
                ..e
            })
            .collect::<Vec<_>>()
    };
    let mut engine = new_engine();
    let package_name = add_module(&mut engine, &source).map_err(strip)?;
    engine.set_input(regorus::Value::new_object());
    let results = engine
        .eval_query(format!("{POLICIES_QUERY}.{package_name}"), false)
        .map_err(|e| strip(vec![CompileError::from_regorus(&e, None)]))?;
    // The shape of deny/escalate/allow depends on the input, but a shape that
    // is wrong even for an empty input can be reported now.
    if let Some(value) = results
        .result
        .into_iter()
        .next()
        .and_then(|r| r.expressions.into_iter().next())
        .map(|e| e.value)
    {
        let meta = PolicyMeta::unknown(&package_name);
        let outcome =
            outcome_of(&value).map_err(|e| vec![CompileError::new(None, e.to_string())])?;
        combine(&[(&meta, outcome)]).map_err(|e| vec![CompileError::new(None, e.to_string())])?;
    }
    Ok(format!("{POLICIES_PACKAGE}.{package_name}"))
}

fn new_engine() -> regorus::Engine {
    let mut engine = regorus::Engine::new();
    engine.set_execution_timer_config(regorus::utils::limits::ExecutionTimerConfig {
        limit: EVALUATION_TIME_LIMIT,
        check_interval: NonZeroU32::new(256).unwrap_or(NonZeroU32::MIN),
    });
    engine
}

fn base_pack_source() -> PolicySource {
    PolicySource {
        id: BASE_PACK_ID.to_owned(),
        name: "Behavry base pack".to_owned(),
        content: BASE_PACK_REGO.to_owned(),
        monitor: false,
    }
}

fn describe(name: &str, id: &str) -> String {
    format!("{name} ({id})")
}

/// Adds one policy module, checking the package convention. Returns the
/// package name (the part after `behavry.policies.`).
fn add_module(
    engine: &mut regorus::Engine,
    source: &PolicySource,
) -> Result<String, Vec<CompileError>> {
    let id = Some(source.id.as_str());
    let package = engine
        .add_policy(source.id.clone(), source.content.clone())
        .map_err(|e| vec![CompileError::from_regorus(&e, id)])?;
    let decl = rego_text::find_package(&source.content);
    let wrong = |message: String| {
        let error = CompileError::new(id, message);
        vec![match &decl {
            Some(d) => error.at(d.line, d.col),
            None => error,
        }]
    };
    // regorus renders `package a["b"]` as `data.a.b` too, so the text is
    // checked as well: the OPA engine rewrites it and needs the plain form.
    let name = package
        .strip_prefix("data.behavry.policies.")
        .filter(|name| is_policy_name(name));
    match (name, &decl) {
        (Some(name), Some(d)) if d.path == format!("{POLICIES_PACKAGE}.{name}") => {
            Ok(name.to_owned())
        }
        _ => Err(wrong(format!(
            "the package must be `{POLICIES_PACKAGE}.<name>` with a name of lowercase letters, \
             digits and underscores; found `{}`",
            decl.as_ref().map_or_else(
                || package.trim_start_matches("data.").to_owned(),
                |d| d.path.clone()
            )
        ))),
    }
}

pub(crate) fn is_policy_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// The authz module with the policy metadata it needs appended. JSON is valid
/// Rego term syntax, so the metadata is written as JSON.
pub(crate) fn authz_module(policies: &[PolicyMeta]) -> String {
    let meta: serde_json::Map<String, Json> = policies
        .iter()
        .map(|m| {
            (
                m.package_name.clone(),
                serde_json::json!({
                    "id": m.id,
                    "name": m.name,
                    "monitor": m.monitor,
                    "builtin": m.builtin,
                }),
            )
        })
        .collect();
    format!("{AUTHZ_REGO}\npolicy_meta := {}\n", Json::Object(meta))
}

/// Reads deny/escalate/allow from one policy's document. A policy whose
/// document is undefined (no rule produced anything) has no outcome.
fn outcome_of(doc: &regorus::Value) -> Result<PolicyOutcome, PolicyError> {
    let rule = |name: &str| -> Result<Option<Json>, PolicyError> {
        match doc {
            regorus::Value::Object(_) => match &doc[&regorus::Value::from(name)] {
                regorus::Value::Undefined => Ok(None),
                value => to_json(value).map(Some),
            },
            _ => Ok(None),
        }
    };
    Ok(PolicyOutcome {
        deny: rule("deny")?,
        escalate: rule("escalate")?,
        allow: rule("allow")?,
    })
}

fn to_json(value: &regorus::Value) -> Result<Json, PolicyError> {
    if *value == regorus::Value::Undefined {
        return Err(PolicyError::Evaluation(
            "the result is undefined".to_owned(),
        ));
    }
    serde_json::to_value(value).map_err(|e| PolicyError::Evaluation(e.to_string()))
}

/// Converts the input for regorus after checking what conversion relies on.
pub(crate) fn to_regorus_input(input: &Json) -> Result<regorus::Value, PolicyError> {
    if !input.is_object() {
        return Err(PolicyError::InvalidInput(
            "the input must be a JSON object".to_owned(),
        ));
    }
    check_depth(input)?;
    Ok(json_to_regorus(input))
}

/// Direct conversion: about a quarter faster than going through serde's
/// deserializer, which matters on every decision. Recursion is bounded by
/// [`check_depth`].
fn json_to_regorus(value: &Json) -> regorus::Value {
    match value {
        Json::Null => regorus::Value::Null,
        Json::Bool(b) => regorus::Value::from(*b),
        Json::Number(n) => {
            if let Some(u) = n.as_u64() {
                regorus::Value::from(u)
            } else if let Some(i) = n.as_i64() {
                regorus::Value::from(i)
            } else {
                regorus::Value::from(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        Json::String(s) => regorus::Value::from(s.as_str()),
        Json::Array(items) => {
            regorus::Value::from(items.iter().map(json_to_regorus).collect::<Vec<_>>())
        }
        Json::Object(map) => regorus::Value::from(
            map.iter()
                .map(|(k, v)| (regorus::Value::from(k.as_str()), json_to_regorus(v)))
                .collect::<std::collections::BTreeMap<_, _>>(),
        ),
    }
}

fn evaluation_error(err: &dyn std::fmt::Display) -> PolicyError {
    PolicyError::Evaluation(CompileError::from_regorus(err, None).to_string())
}

/// Depth check without recursion, so that the check itself cannot be the
/// thing that overflows the stack.
fn check_depth(input: &Json) -> Result<(), PolicyError> {
    let mut stack = vec![(input, 1usize)];
    while let Some((value, depth)) = stack.pop() {
        if depth > MAX_INPUT_DEPTH {
            return Err(PolicyError::InvalidInput(format!(
                "the input is nested deeper than {MAX_INPUT_DEPTH} levels"
            )));
        }
        match value {
            Json::Array(items) => stack.extend(items.iter().map(|v| (v, depth + 1))),
            Json::Object(map) => stack.extend(map.values().map(|v| (v, depth + 1))),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
