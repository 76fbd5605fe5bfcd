//! Escalations end to end with the official TypeScript SDK as the agent
//! and the npm reference server upstream: the base pack escalates tools it
//! cannot classify (here `toggle-simulated-logging`), the call is held
//! until an admin decides through the API, an unanswered hold hands the
//! agent the escalation id and the retry picks up the decision, an
//! approval's exception stops the next escalation, time-outs refuse, and
//! on PostgreSQL an approval given through one replica releases a call
//! held on another.

use std::time::Duration;

use behavry_test_support::{Backend, TestApp};
use reqwest::Method;
use serde_json::{Value, json};

use crate::mcp::{Fixture, ts_client};
use crate::support::{list_until, post, request, send};

both_backends!(
    held_calls_are_released_by_approval_or_denial,
    the_retry_picks_up_the_decision_and_exceptions_stop_escalating,
);

#[tokio::test]
async fn unanswered_escalations_time_out() {
    // Every escalation expires after two seconds; the call is held longer.
    let fx = Fixture::with(
        Backend::Sqlite,
        |vars| {
            vars.insert("BEHAVRY_ESCALATION_HOLD_SECONDS".into(), "20".into());
            vars.insert("BEHAVRY_ESCALATION_MAX_TIMEOUT_SECONDS".into(), "2".into());
        },
        60_000,
    )
    .await;
    let out = call(&fx).await;
    assert_eq!(out["error"]["code"], -32040, "{out}");
    assert!(
        out["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not decided in time"),
        "{out}"
    );
    let list = escalations_until(
        &fx.app,
        &fx.admin,
        "?status=timed_out",
        "the time-out",
        |l| l.len() == 1,
    )
    .await;
    let id = list[0]["id"].as_str().unwrap();
    let msg = decide(&fx.app, &fx.admin, id, "approve", json!({}))
        .await
        .expect_error(409, "conflict");
    assert!(msg.contains("timed_out"), "{msg}");
    let events = fx
        .audit_until("the time-out audited", |e| {
            !of_action(e, "ESCALATION_TIMED_OUT").is_empty()
        })
        .await;
    let timed_out = of_action(&events, "ESCALATION_TIMED_OUT")[0];
    assert_eq!(timed_out["target"], id);
    assert!(
        timed_out["requester_id"].is_null(),
        "nobody decided: {timed_out}"
    );
}

#[tokio::test]
async fn an_approval_on_one_replica_releases_a_call_held_on_another() {
    let fx = Fixture::with(Backend::Postgres, hold_for("30"), 60_000).await;
    let other = fx.app.replica().await;
    let agent = call_in_background(&fx);
    let pending = escalations_until(
        &other,
        &fx.admin,
        "?status=pending",
        "the call held on the first replica",
        |l| l.len() == 1,
    )
    .await;
    let id = pending[0]["id"].as_str().unwrap();
    decide(
        &other,
        &fx.admin,
        id,
        "approve",
        json!({"reason": "from the other replica"}),
    )
    .await
    .expect(200);
    let out = tokio::time::timeout(Duration::from_secs(20), agent)
        .await
        .expect("released")
        .unwrap();
    assert!(out["error"].is_null(), "{out}");
    assert!(out["result"]["content"].is_array(), "{out}");
}

const TOOL: &str = "toggle-simulated-logging";

fn hold_for(seconds: &'static str) -> impl FnOnce(&mut std::collections::BTreeMap<String, String>) {
    move |vars| {
        vars.insert("BEHAVRY_ESCALATION_HOLD_SECONDS".into(), seconds.into());
    }
}

/// The agent's call, running in the background.
fn call_in_background(fx: &Fixture) -> tokio::task::JoinHandle<Value> {
    let (url, token) = (fx.url(), fx.agent_token.clone());
    tokio::spawn(async move { ts_client(&url, &token, "call", json!({"name": TOOL})).await })
}

async fn call(fx: &Fixture) -> Value {
    ts_client(&fx.url(), &fx.agent_token, "call", json!({"name": TOOL})).await
}

/// The tenant's escalations under a query string, once `done` holds.
async fn escalations_until(
    app: &TestApp,
    admin: &str,
    query: &str,
    what: &str,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let path = format!("/api/v1/escalations{query}");
    list_until(app, admin, &path, "escalations", what, done).await
}

async fn decide(
    app: &TestApp,
    admin: &str,
    id: &str,
    verb: &str,
    body: Value,
) -> crate::support::Reply {
    post(
        app,
        &format!("/api/v1/escalations/{id}/{verb}"),
        Some(admin),
        &body,
    )
    .await
}

fn of_action<'a>(events: &'a [Value], action: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["action"] == action).collect()
}

async fn held_calls_are_released_by_approval_or_denial(backend: Backend) {
    let fx = Fixture::with(backend, hold_for("30"), 60_000).await;

    // Held; approved; the call completes.
    let agent = call_in_background(&fx);
    let pending = escalations_until(&fx.app, &fx.admin, "?status=pending", "a held call", |l| {
        l.len() == 1
    })
    .await;
    let held = &pending[0];
    let id = held["id"].as_str().unwrap().to_string();
    assert_eq!(held["summary"]["tool"], TOOL, "{held}");
    assert_eq!(held["summary"]["server"]["name"], "everything");
    assert_eq!(held["summary"]["agent"]["name"], "assistant");
    assert_eq!(held["summary"]["policy_id"], "behavry-base");
    assert_eq!(held["agent_id"], fx.agent_id.as_str());
    assert!(
        held["summary"]["reason"]
            .as_str()
            .is_some_and(|r| !r.is_empty())
    );
    // metadata_only storage: the approver sees no arguments.
    assert_eq!(held["summary"]["payload_storage"], "metadata_only");
    assert!(held["summary"].get("arguments").is_none(), "{held}");
    assert!(held["audit_event_id"].is_string());
    assert!(!agent.is_finished(), "the agent is still waiting");

    let approved = decide(
        &fx.app,
        &fx.admin,
        &id,
        "approve",
        json!({"reason": "planned maintenance"}),
    )
    .await
    .expect(200)
    .body;
    assert_eq!(approved["status"], "approved");
    assert_eq!(approved["decision_reason"], "planned maintenance");
    assert!(approved["decided_by"].is_string());
    let out = tokio::time::timeout(Duration::from_secs(20), agent)
        .await
        .expect("the held call is released")
        .unwrap();
    assert!(out["error"].is_null(), "approved: {out}");
    assert!(out["result"]["content"].is_array(), "{out}");
    // Decided once.
    let msg = decide(
        &fx.app,
        &fx.admin,
        &id,
        "deny",
        json!({"reason": "too late"}),
    )
    .await
    .expect_error(409, "conflict");
    assert!(msg.contains("already approved"), "{msg}");

    // The same call again is a new escalation (a decision applies once):
    // held, then denied with a reason the agent is told.
    let agent = call_in_background(&fx);
    let pending = escalations_until(
        &fx.app,
        &fx.admin,
        "?status=pending",
        "a second held call",
        |l| l.len() == 1,
    )
    .await;
    let second = pending[0]["id"].as_str().unwrap().to_string();
    assert_ne!(second, id);
    decide(&fx.app, &fx.admin, &second, "deny", json!({"reason": "  "}))
        .await
        .expect_error(422, "validation_failed");
    decide(&fx.app, &fx.admin, &second, "deny", json!({}))
        .await
        .expect_error(422, "validation_failed");
    let denied = decide(
        &fx.app,
        &fx.admin,
        &second,
        "deny",
        json!({"reason": "not during the audit"}),
    )
    .await
    .expect(200)
    .body;
    assert_eq!(denied["status"], "denied");
    let out = tokio::time::timeout(Duration::from_secs(20), agent)
        .await
        .expect("the held call is released")
        .unwrap();
    assert_eq!(out["error"]["code"], -32040, "{out}");
    let message = out["error"]["message"].as_str().unwrap();
    assert!(message.contains("not during the audit"), "{out}");

    // Filters, detail, bad input.
    let page = |q: &'static str| {
        send(request(
            &fx.app,
            Method::GET,
            &format!("/api/v1/escalations{q}"),
            Some(&fx.admin),
        ))
    };
    assert_eq!(page("?status=approved").await.expect(200).body["total"], 1);
    assert_eq!(page("?status=denied").await.expect(200).body["total"], 1);
    assert_eq!(page("").await.expect(200).body["total"], 2);
    page("?status=maybe").await.expect_error(400, "bad_request");
    let detail = send(request(
        &fx.app,
        Method::GET,
        &format!("/api/v1/escalations/{id}"),
        Some(&fx.admin),
    ))
    .await
    .expect(200)
    .body;
    assert_eq!(detail["status"], "approved");
    assert!(
        detail["consumed_at"].is_string(),
        "the decision was used: {detail}"
    );
    send(request(
        &fx.app,
        Method::GET,
        &format!("/api/v1/escalations/{}", uuid::Uuid::now_v7()),
        Some(&fx.admin),
    ))
    .await
    .expect_error(404, "not_found");
    decide(
        &fx.app,
        &fx.admin,
        &uuid::Uuid::now_v7().to_string(),
        "approve",
        json!({}),
    )
    .await
    .expect_error(404, "not_found");

    // Who decided what, and when, is in the audit trail.
    let events = fx
        .audit_until("both decisions", |e| {
            !of_action(e, "ESCALATION_APPROVED").is_empty()
                && !of_action(e, "ESCALATION_DENIED").is_empty()
        })
        .await;
    let approval = of_action(&events, "ESCALATION_APPROVED")[0];
    assert_eq!(approval["target"], id.as_str());
    assert_eq!(approval["policy_reason"], "planned maintenance");
    assert!(approval["requester_id"].is_string(), "{approval}");
    let calls = of_action(&events, "TOOL_CALL");
    assert_eq!(calls.len(), 2);
    assert!(calls.iter().all(|c| c["policy_result"] == "escalate"));
    assert_eq!(calls[0]["extra"]["escalation_id"], id.as_str());
    // Only the approved call reached the upstream.
    assert_eq!(of_action(&events, "TOOL_RESULT").len(), 1, "{events:?}");
}

async fn the_retry_picks_up_the_decision_and_exceptions_stop_escalating(backend: Backend) {
    // The test default: calls are held one second.
    let fx = Fixture::new(backend).await;

    // Unanswered within the hold: the agent gets the escalation id.
    let out = call(&fx).await;
    assert_eq!(out["error"]["code"], -32041, "{out}");
    assert_eq!(out["error"]["data"]["status"], "pending", "{out}");
    assert_eq!(out["error"]["data"]["policy"], "behavry-base", "{out}");
    let id = out["error"]["data"]["escalation_id"]
        .as_str()
        .expect("escalation id")
        .to_string();
    assert!(
        out["error"]["message"].as_str().unwrap().contains(&id),
        "{out}"
    );
    // Asking again while it is pending waits on the same escalation.
    let again = call(&fx).await;
    assert_eq!(
        again["error"]["data"]["escalation_id"],
        id.as_str(),
        "{again}"
    );
    let all = escalations_until(&fx.app, &fx.admin, "", "one escalation", |l| !l.is_empty()).await;
    assert_eq!(all.len(), 1, "a retry opens no second escalation: {all:?}");

    // Approved with nobody waiting: the next attempt goes through.
    decide(&fx.app, &fx.admin, &id, "approve", json!({}))
        .await
        .expect(200);
    let out = call(&fx).await;
    assert!(
        out["error"].is_null(),
        "the retry picks up the approval: {out}"
    );
    // Used: the next call is escalated afresh, and this time denied.
    let out = call(&fx).await;
    assert_eq!(out["error"]["code"], -32041, "{out}");
    let second = out["error"]["data"]["escalation_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(second, id);
    decide(&fx.app, &fx.admin, &second, "deny", json!({"reason": "no"}))
        .await
        .expect(200);
    let out = call(&fx).await;
    assert_eq!(out["error"]["code"], -32040, "{out}");
    assert_eq!(
        out["error"]["data"]["escalation_id"],
        second.as_str(),
        "{out}"
    );
    assert!(
        out["error"]["message"]
            .as_str()
            .unwrap()
            .contains("denied in escalation"),
        "{out}"
    );

    // An approval with an exception: later calls are not escalated.
    let out = call(&fx).await;
    let third = out["error"]["data"]["escalation_id"]
        .as_str()
        .unwrap()
        .to_string();
    decide(
        &fx.app,
        &fx.admin,
        &third,
        "approve",
        json!({"exception": {"same_resource": true}}),
    )
    .await
    .expect_error(422, "validation_failed");
    decide(
        &fx.app,
        &fx.admin,
        &third,
        "approve",
        json!({"exception": {"expires_in_hours": 0}}),
    )
    .await
    .expect_error(422, "validation_failed");
    let approved = decide(
        &fx.app,
        &fx.admin,
        &third,
        "approve",
        json!({"exception": {"expires_in_hours": 2}}),
    )
    .await
    .expect(200)
    .body;
    assert!(approved["exception_id"].is_string(), "{approved}");
    for _ in 0..3 {
        let out = call(&fx).await;
        assert!(out["error"].is_null(), "{out}");
    }
    let exceptions = send(request(
        &fx.app,
        Method::GET,
        "/api/v1/escalation-exceptions",
        Some(&fx.admin),
    ))
    .await
    .expect(200)
    .body;
    let exceptions = exceptions.as_array().unwrap();
    assert_eq!(exceptions.len(), 1);
    assert_eq!(exceptions[0]["tool_name"], TOOL);
    assert_eq!(exceptions[0]["agent_id"], fx.agent_id.as_str());
    assert_eq!(exceptions[0]["escalation_id"], third.as_str());
    let events = fx.audit().await;
    assert!(
        events.iter().any(|e| e["action"] == "TOOL_CALL"
            && e["policy_id"] == "escalation_exception"
            && e["policy_result"] == "allow"),
        "calls allowed by the exception say so"
    );
    let total = send(request(
        &fx.app,
        Method::GET,
        "/api/v1/escalations",
        Some(&fx.admin),
    ))
    .await
    .expect(200)
    .body["total"]
        .clone();
    assert_eq!(total, 3, "no escalation while the exception holds");

    // Withdrawn: escalated again.
    let ex = exceptions[0]["id"].as_str().unwrap();
    send(request(
        &fx.app,
        Method::DELETE,
        &format!("/api/v1/escalation-exceptions/{ex}"),
        Some(&fx.admin),
    ))
    .await
    .expect(204);
    send(request(
        &fx.app,
        Method::DELETE,
        &format!("/api/v1/escalation-exceptions/{ex}"),
        Some(&fx.admin),
    ))
    .await
    .expect_error(404, "not_found");
    let out = call(&fx).await;
    assert_eq!(out["error"]["code"], -32041, "{out}");
}
