use super::*;
use crate::decision::{DEFAULT_DENY_REASON, DecisionResult};
use crate::input::{Action, PolicyInput, extract_resource};
use serde_json::json;

fn source(id: &str, content: &str) -> PolicySource {
    PolicySource {
        id: id.to_owned(),
        name: format!("{id} policy"),
        content: content.to_owned(),
        monitor: false,
    }
}

/// A tools/call input the way the gateway builds it.
fn call(tool: &str, server: &str, parameters: Json, permissions: &[&str]) -> Json {
    let mut input = PolicyInput::default();
    input.agent.id = "agent-1".into();
    input.agent.permissions = permissions.iter().map(|p| (*p).to_owned()).collect();
    input.request.tool_name = tool.into();
    input.request.action = Action::classify(tool, None);
    input.request.resource = extract_resource(&parameters);
    input.request.parameters = parameters;
    input.request.mcp_server = server.into();
    input.to_json()
}

fn base() -> PolicySet {
    PolicySet::base_only().expect("the base pack compiles")
}

#[test]
fn base_pack_allows_reads() {
    let d = base()
        .decide(&call(
            "read_file",
            "filesystem",
            json!({"path": "/etc/passwd"}),
            &[],
        ))
        .unwrap();
    assert_eq!(d.result, DecisionResult::Allow, "{d:?}");
    assert_eq!(d.policy_id.as_deref(), Some(BASE_PACK_ID));
    assert!(d.reason.contains("read-only tool"), "{}", d.reason);
    assert!(d.reason.contains("Behavry base pack"), "{}", d.reason);
}

#[test]
fn base_pack_escalates_deletes_and_execution() {
    for tool in ["delete_file", "run_shell_command", "mystery_tool"] {
        let d = base()
            .decide(&call(
                tool,
                "filesystem",
                json!({"path": "/tmp/x"}),
                &["*:write"],
            ))
            .unwrap();
        assert_eq!(d.result, DecisionResult::Escalate, "{tool}: {d:?}");
        assert!(d.reason.contains("need a human's approval"), "{}", d.reason);
    }
}

#[test]
fn base_pack_denies_sensitive_paths_even_with_permission() {
    let cases = [
        json!({"path": "/etc/passwd", "content": "x"}),
        json!({"path": "~/.ssh/id_rsa"}),
        json!({"path": "/home/alice/.ssh/authorized_keys"}),
        json!({"path": "/srv/app/.env"}),
        json!({"path": "/srv/app/.env.production"}),
        json!({"uri": "file:///root/.bashrc"}),
        json!({"path": "/etc"}),
        json!({"file": ".aws/credentials"}),
        json!({"target": "/home/bob/.ssh/id_ed25519.pub"}),
        // Not the main resource, but still something the call writes.
        json!({"path": "/tmp/ok", "backup": {"copies": ["/tmp/b", "~/.aws/credentials"]}}),
    ];
    for parameters in cases {
        let d = base()
            .decide(&call(
                "write_file",
                "filesystem",
                parameters.clone(),
                &["filesystem:write", "*:write"],
            ))
            .unwrap();
        assert_eq!(d.result, DecisionResult::Deny, "{parameters}: {d:?}");
        assert!(d.reason.contains("sensitive path"), "{}", d.reason);
        // The trace shows both sides: the allow that lost and the deny.
        assert!(d.rules.iter().any(|r| r.effect == DecisionResult::Allow));
    }
    let d = base()
        .decide(&call(
            "delete_file",
            "filesystem",
            json!({"path": "~/.config/gh/hosts.yml"}),
            &[],
        ))
        .unwrap();
    assert_eq!(d.result, DecisionResult::Deny, "{d:?}");
}

#[test]
fn base_pack_allows_writes_only_with_a_matching_permission() {
    let write = |permissions: &[&str]| {
        base()
            .decide(&call(
                "write_file",
                "filesystem",
                json!({"path": "/tmp/notes.txt", "content": "hi"}),
                permissions,
            ))
            .unwrap()
    };
    let d = write(&["filesystem:write"]);
    assert_eq!(d.result, DecisionResult::Allow, "{d:?}");
    assert!(d.reason.contains("filesystem:write"), "{}", d.reason);
    assert_eq!(write(&["*:write"]).result, DecisionResult::Allow);

    for permissions in [
        &[][..],
        &["filesystem:read"],
        &["github:write"],
        &["*:send"],
    ] {
        let d = write(permissions);
        assert_eq!(d.result, DecisionResult::Deny, "{permissions:?}");
        assert_eq!(d.reason, DEFAULT_DENY_REASON);
        assert_eq!(d.policy_id, None);
    }

    // Not sensitive: similar-looking names are fine.
    let d = base()
        .decide(&call(
            "write_file",
            "fs",
            json!({"path": "/etcetera/x", "name": "my.environment"}),
            &["fs:write"],
        ))
        .unwrap();
    assert_eq!(d.result, DecisionResult::Allow, "{d:?}");

    let d = base()
        .decide(&call(
            "send_email",
            "mail",
            json!({"to": "a@b.c"}),
            &["mail:send"],
        ))
        .unwrap();
    assert_eq!(d.result, DecisionResult::Allow, "{d:?}");
}

#[test]
fn tenant_policies_override_the_base_pack() {
    let no_reports = source(
        "p-reports",
        r#"package behavry.policies.no_reports
deny contains "reports are confidential" if startswith(input.request.resource, "/reports/")
"#,
    );
    let set = PolicySet::compile(vec![no_reports], true).unwrap();
    let d = set
        .decide(&call(
            "read_file",
            "fs",
            json!({"path": "/reports/q3.pdf"}),
            &[],
        ))
        .unwrap();
    assert_eq!(d.result, DecisionResult::Deny, "{d:?}");
    assert_eq!(d.policy_id.as_deref(), Some("p-reports"));
    assert_eq!(
        d.reason,
        "reports are confidential (policy: p-reports policy)"
    );
    assert_eq!(d.rules.len(), 2, "{:?}", d.rules);
    // Other reads still pass through the base pack's allow.
    let d = set
        .decide(&call("read_file", "fs", json!({"path": "/tmp/a"}), &[]))
        .unwrap();
    assert_eq!(d.result, DecisionResult::Allow);

    // A tenant allow loosens the base pack's default deny...
    let allow_tmp = source(
        "p-tmp",
        r#"package behavry.policies.tmp_writes
allow contains "scratch space" if {
    input.request.action == "write"
    startswith(input.request.resource, "/tmp/")
}
"#,
    );
    let set = PolicySet::compile(vec![allow_tmp], true).unwrap();
    let d = set
        .decide(&call("write_file", "fs", json!({"path": "/tmp/a"}), &[]))
        .unwrap();
    assert_eq!(d.result, DecisionResult::Allow, "{d:?}");
    assert_eq!(d.policy_id.as_deref(), Some("p-tmp"));
    // ...but cannot beat a base-pack deny.
    let d = set
        .decide(&call(
            "write_file",
            "fs",
            json!({"path": "/tmp/x", "also": "/etc/hosts"}),
            &[],
        ))
        .unwrap();
    assert_eq!(d.result, DecisionResult::Deny, "{d:?}");
    assert_eq!(d.policy_id.as_deref(), Some(BASE_PACK_ID));
}

#[test]
fn the_base_pack_can_be_switched_off() {
    let set = PolicySet::compile(Vec::new(), false).unwrap();
    assert!(set.policies().is_empty());
    let d = set
        .decide(&call("read_file", "fs", json!({}), &[]))
        .unwrap();
    assert_eq!(d.result, DecisionResult::Deny);
    assert_eq!(d.reason, DEFAULT_DENY_REASON);

    // With it off, a tenant may even use the name "base".
    let own_base = source("mine", "package behavry.policies.base\nallow := true\n");
    let set = PolicySet::compile(vec![own_base.clone()], false).unwrap();
    let d = set
        .decide(&call("delete_file", "fs", json!({}), &[]))
        .unwrap();
    assert_eq!(d.result, DecisionResult::Allow);
    assert_eq!(d.policy_id.as_deref(), Some("mine"));
    assert!(!set.policies()[0].builtin);

    // With it on, that is a clash naming both.
    let err = PolicySet::compile(vec![own_base], true).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, PolicyError::DuplicatePackage { .. }), "{err}");
    assert!(
        text.contains("mine") && text.contains(BASE_PACK_ID),
        "{text}"
    );
}

#[test]
fn duplicate_packages_are_refused_naming_both() {
    let a = source("id-a", "package behavry.policies.same\nallow := true\n");
    let b = source("id-b", "package behavry.policies.same\ndeny := true\n");
    let err = PolicySet::compile(vec![a, b], false).unwrap_err();
    match &err {
        PolicyError::DuplicatePackage {
            package,
            first,
            second,
        } => {
            assert_eq!(package, "behavry.policies.same");
            assert!(first.contains("id-a"), "{first}");
            assert!(second.contains("id-b"), "{second}");
        }
        other => panic!("unexpected {other}"),
    }
}

#[test]
fn compile_errors_name_the_policy_and_line() {
    let good = source("good", "package behavry.policies.good\nallow := true\n");
    let bad = source(
        "bad-one",
        "package behavry.policies.bad\n\ndeny if {\n  input.x ==\n}\n",
    );
    let err = PolicySet::compile(vec![good, bad], true).unwrap_err();
    let PolicyError::Compile(errors) = err else {
        panic!("{err}")
    };
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].policy_id.as_deref(), Some("bad-one"));
    assert_eq!(errors[0].line, Some(5));

    // Semantic errors surface at compile time too, attributed by file.
    let unsafe_var = source(
        "uv",
        "package behavry.policies.uv\n\ndeny if {\n  x == 1\n}\n",
    );
    let err = PolicySet::compile(vec![unsafe_var], true).unwrap_err();
    let PolicyError::Compile(errors) = err else {
        panic!("{err}")
    };
    assert_eq!(errors[0].policy_id.as_deref(), Some("uv"));
    assert_eq!(errors[0].line, Some(4));
    assert!(
        errors[0].message.contains("unsafe"),
        "{}",
        errors[0].message
    );
}

#[test]
fn monitor_mode_policies_are_reported_not_enforced() {
    let mut watch = source(
        "watch",
        r#"package behavry.policies.watch_reads
deny contains "would block reads of secrets" if contains(input.request.resource, "secret")
"#,
    );
    watch.monitor = true;
    let set = PolicySet::compile(vec![watch], true).unwrap();
    let d = set
        .decide(&call(
            "read_file",
            "fs",
            json!({"path": "/srv/secret.txt"}),
            &[],
        ))
        .unwrap();
    assert_eq!(d.result, DecisionResult::Allow, "{d:?}");
    assert_eq!(d.monitor_result, Some(DecisionResult::Deny));
    assert_eq!(d.monitored.len(), 1);
    assert_eq!(d.monitored[0].policy_id, "watch");
    assert!(d.rules.iter().all(|r| r.policy_id != "watch"));

    let d = set
        .decide(&call(
            "read_file",
            "fs",
            json!({"path": "/srv/public.txt"}),
            &[],
        ))
        .unwrap();
    assert_eq!(d.result, DecisionResult::Allow);
    assert_eq!(d.monitor_result, Some(DecisionResult::Allow));
    assert!(d.monitored.is_empty());
}

#[test]
fn object_reasons_carry_rule_names() {
    let p = source(
        "obj",
        r#"package behavry.policies.obj
escalate contains {"rule": "bulk_change", "reason": sprintf("%d items at once", [input.request.resource_count])} if {
    input.request.resource_count > 50
}
"#,
    );
    let set = PolicySet::compile(vec![p], true).unwrap();
    let mut input = call("read_file", "fs", json!({}), &[]);
    input["request"]["resource_count"] = json!(120);
    let d = set.decide(&input).unwrap();
    assert_eq!(d.result, DecisionResult::Escalate);
    assert_eq!(d.reason, "120 items at once (policy: obj policy)");
    assert_eq!(d.rules[0].rule, "bulk_change");
}

#[test]
fn validate_accepts_good_policies_and_returns_the_package() {
    assert_eq!(
        validate("package behavry.policies.ok_1\n\nallow if input.request.action == \"read\"\n"),
        Ok("behavry.policies.ok_1".to_owned())
    );
    assert_eq!(
        validate(BASE_PACK_REGO),
        Ok("behavry.policies.base".to_owned())
    );
}

#[test]
fn validate_reports_syntax_errors_with_line_numbers() {
    let errors =
        validate("package behavry.policies.x\n\ndeny if {\n  input.a ==\n}\n").unwrap_err();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].line, Some(5), "{errors:?}");
    assert_eq!(errors[0].col, Some(1));
    assert!(!errors[0].message.is_empty());
    assert_eq!(errors[0].policy_id, None);

    // Rego v0 syntax is refused with a pointer to the rule.
    let errors = validate("package behavry.policies.x\n\ndeny { true }\n").unwrap_err();
    assert_eq!(errors[0].line, Some(3));
    assert!(errors[0].message.contains("if"), "{}", errors[0].message);
}

#[test]
fn validate_catches_semantic_errors() {
    let errors = validate("package behavry.policies.x\n\ndeny if {\n  x == 1\n}\n").unwrap_err();
    assert_eq!(errors[0].line, Some(4), "{errors:?}");
    assert!(
        errors[0].message.contains("unsafe"),
        "{}",
        errors[0].message
    );

    let errors = validate("package behavry.policies.x\n\ndeny if {\n  no_such_function(1)\n}\n")
        .unwrap_err();
    assert_eq!(errors[0].line, Some(4), "{errors:?}");

    // A rule whose shape breaks the convention even for an empty input.
    let errors = validate("package behavry.policies.x\n\ndeny := \"just a string\"\n").unwrap_err();
    assert!(
        errors[0].message.contains("expected a boolean"),
        "{}",
        errors[0].message
    );

    // Conflicting complete rules.
    let errors =
        validate("package behavry.policies.x\n\nallow := true\nallow := false\n").unwrap_err();
    assert!(!errors.is_empty());
}

#[test]
fn validate_enforces_the_package_convention() {
    for (content, line) in [
        ("package something.else\nallow := true\n", Some(1)),
        (
            "# a comment first\npackage behavry.policies.Bad\nallow := true\n",
            Some(2),
        ),
        ("package behavry.policies\nallow := true\n", Some(1)),
        ("package behavry.policies.a.b\nallow := true\n", Some(1)),
        ("package behavry.policies[\"x\"]\nallow := true\n", Some(1)),
        ("package behavry.authz\nallow := true\n", Some(1)),
    ] {
        let errors = validate(content).unwrap_err();
        assert_eq!(errors[0].line, line, "{content}: {errors:?}");
        assert!(
            errors[0].message.contains("behavry.policies.<name>"),
            "{content}: {errors:?}"
        );
    }
    assert!(validate("").is_err());
    assert!(validate("allow := true").is_err());
}

#[test]
fn rego_authz_decision_agrees_with_the_rust_combiner() {
    let tenant = vec![
        source(
            "p-prod",
            r#"package behavry.policies.prod
deny contains "no production writes" if {
    input.request.action == "write"
    input.request.mcp_server == "prod-db"
}
escalate contains {"rule": "tainted", "reason": "session saw an injection"} if input.session.tainted
"#,
        ),
        source(
            "p-ok",
            "package behavry.policies.ok\nallow if input.agent.roles[_] == \"admin\"\n",
        ),
        PolicySource {
            monitor: true,
            ..source("p-mon", "package behavry.policies.mon\ndeny := true\n")
        },
    ];
    let set = PolicySet::compile(tenant, true).unwrap();
    let mut tainted = call("read_file", "fs", json!({"path": "/a"}), &[]);
    tainted["session"]["tainted"] = json!(true);
    let mut admin_delete = call("delete_file", "fs", json!({"path": "/tmp/x"}), &[]);
    admin_delete["agent"]["roles"] = json!(["admin"]);
    let inputs = [
        call("read_file", "fs", json!({"path": "/a"}), &[]),
        call("write_file", "fs", json!({"path": "/a"}), &[]),
        call("write_file", "fs", json!({"path": "/a"}), &["fs:write"]),
        call("write_file", "prod-db", json!({"path": "/a"}), &["*:write"]),
        call(
            "write_file",
            "fs",
            json!({"path": "/etc/hosts"}),
            &["*:write"],
        ),
        call("delete_file", "fs", json!({"path": "/tmp/x"}), &[]),
        admin_delete,
        tainted,
        json!({}),
    ];
    for input in inputs {
        let rust = set.decide(&input).unwrap();
        let rego = set.authz_decision(&input).unwrap();
        assert_eq!(rego["result"], json!(rust.result), "{input}");
        assert_eq!(rego["reason"], json!(rust.reason), "{input}");
        assert_eq!(rego["policy"], json!(rust.policy_id), "{input}");
    }
}

#[test]
fn bad_inputs_are_errors_not_panics() {
    let set = base();
    for input in [json!(null), json!("read"), json!([1, 2]), json!(42)] {
        assert!(
            matches!(set.decide(&input), Err(PolicyError::InvalidInput(_))),
            "{input}"
        );
    }

    // Far deeper than any parsed JSON can be.
    let mut deep = json!("leaf");
    for _ in 0..100_000 {
        // Not json!: it would clone `deep` through serialisation, recursively.
        deep = Json::Array(vec![deep]);
    }
    let mut input = call("write_file", "fs", json!({}), &["*:write"]);
    input["request"]["parameters"] = deep;
    assert!(matches!(
        set.decide(&input),
        Err(PolicyError::InvalidInput(_))
    ));
    // serde_json drops deep values recursively; unwind it by hand so the
    // test itself does not overflow the stack.
    let mut current = input["request"]["parameters"].take();
    while let Json::Array(mut items) = current {
        current = items.pop().unwrap_or(Json::Null);
    }

    // As deep as a parsed request can be still decides.
    let mut nested = json!("/etc/shadow");
    for _ in 0..(MAX_INPUT_DEPTH - 4) {
        nested = Json::Object([("n".to_owned(), nested)].into_iter().collect());
    }
    let d = set
        .decide(&call("write_file", "fs", nested, &["*:write"]))
        .unwrap();
    assert_eq!(d.result, DecisionResult::Deny);

    // Large arguments: a megabyte of text in one string is cheap...
    let content = json!({ "path": "/tmp/a", "content": "x".repeat(1 << 20) });
    let d = set
        .decide(&call("write_file", "fs", content, &["*:write"]))
        .unwrap();
    assert_eq!(d.result, DecisionResult::Allow);
    // ...while tens of thousands of strings, each checked against the
    // sensitive paths, may run into the time limit: an error, not a hang.
    let many: Vec<String> = (0..20_000).map(|i| format!("/tmp/file-{i}")).collect();
    match set.decide(&call(
        "write_file",
        "fs",
        json!({ "paths": many }),
        &["*:write"],
    )) {
        Ok(d) => assert_eq!(d.result, DecisionResult::Allow),
        Err(e) => assert!(matches!(e, PolicyError::Evaluation(_)), "{e}"),
    }

    // Wrong types where the base pack expects strings or arrays.
    let weird = json!({
        "agent": {"permissions": "everything", "roles": 7},
        "request": {"action": ["read"], "resource": {"path": 1}, "parameters": "x", "mcp_server": null},
    });
    let d = set.decide(&weird).unwrap();
    assert_eq!(d.result, DecisionResult::Deny);
}

#[test]
fn malformed_rego_is_an_error_not_a_panic() {
    let garbage = [
        "",
        "package",
        "package behavry.policies.x\n\u{0}\u{1}",
        "package behavry.policies.x\nallow := {{{{{{{{",
        "package behavry.policies.x\nallow := \"unterminated",
        "package behavry.policies.x\nallow := `raw",
        "package behavry.policies.x\nallow if { some x in input; y := x[_][_][_] }",
        "package behavry.policies.x\nimport future.keywords\nallow contains x if x := 1 / 0",
    ];
    for content in garbage {
        let _ = validate(content);
        let _ = PolicySet::compile(vec![source("g", content)], true);
    }
}

#[test]
fn runaway_policies_hit_the_time_limit() {
    // A cross product of 10^8 pairs: interpreted step by step, so the timer
    // stops it. (A single builtin call that is itself huge, like
    // numbers.range(1, 1e9), runs to completion: regorus checks the clock
    // between steps, not inside builtins.)
    let slow = source(
        "slow",
        "package behavry.policies.slow\ndeny contains [x, y] if { some x in numbers.range(1, 10000); some y in numbers.range(1, 10000); x + y < 0 }\n",
    );
    // The dry run at compile time already meets the loop.
    let started = std::time::Instant::now();
    let err = PolicySet::compile(vec![slow], true).unwrap_err();
    assert!(err.to_string().contains("time limit"), "{err}");
    assert!(
        started.elapsed() < EVALUATION_TIME_LIMIT * 8,
        "{:?}",
        started.elapsed()
    );

    // One that is slow only for some inputs fails the decision, not the compile.
    let sometimes = source(
        "sometimes",
        "package behavry.policies.sometimes\ndeny contains [x, y] if { input.request.action == \"write\"; some x in numbers.range(1, 10000); some y in numbers.range(1, 10000); x + y < 0 }\n",
    );
    let set = PolicySet::compile(vec![sometimes], true).unwrap();
    let err = set
        .decide(&call("write_file", "fs", json!({}), &[]))
        .unwrap_err();
    assert!(matches!(err, PolicyError::Evaluation(_)), "{err}");
    assert!(set.decide(&call("read_file", "fs", json!({}), &[])).is_ok());
}

#[test]
fn policy_ids_must_be_unique_and_not_reserved() {
    let a = source("same", "package behavry.policies.a\nallow := true\n");
    let b = source("same", "package behavry.policies.b\nallow := true\n");
    let err = PolicySet::compile(vec![a, b], false).unwrap_err();
    let PolicyError::Compile(errors) = &err else {
        panic!("{err}")
    };
    assert!(errors[0].message.contains("share the id"), "{err}");

    let clash = source(
        BASE_PACK_ID,
        "package behavry.policies.mine\nallow := true\n",
    );
    assert!(PolicySet::compile(vec![clash.clone()], true).is_err());
    assert!(PolicySet::compile(vec![clash], false).is_ok());

    let reserved = source(
        "behavry-authz",
        "package behavry.policies.mine\nallow := true\n",
    );
    assert!(PolicySet::compile(vec![reserved], false).is_err());
}

#[test]
fn the_readme_example_policy_is_valid_and_behaves_as_described() {
    let readme = include_str!("../../README.md");
    let start = readme.find("```rego\n").expect("README has a rego example") + "```rego\n".len();
    let end = start + readme[start..].find("```").expect("the example ends");
    let example = &readme[start..end];
    assert_eq!(
        validate(example),
        Ok("behavry.policies.production_guard".to_owned())
    );

    let set = PolicySet::compile(vec![source("guard", example)], true).unwrap();
    let mut input = call("read_file", "fs", json!({"path": "/cache/x"}), &[]);
    input["agent"]["roles"] = json!(["ci"]);
    let d = set.decide(&input).unwrap();
    assert_eq!(d.result, DecisionResult::Allow);
    assert!(d.rules.iter().any(|r| r.rule == "ci_reads"), "{d:?}");
    input["request"]["resource_count"] = json!(51);
    assert_eq!(set.decide(&input).unwrap().result, DecisionResult::Escalate);
    input["request"]["mcp_server"] = json!("prod-db");
    let d = set.decide(&input).unwrap();
    assert_eq!(d.result, DecisionResult::Deny);
    assert_eq!(d.reason, "request denied (policy: guard policy)");
}
