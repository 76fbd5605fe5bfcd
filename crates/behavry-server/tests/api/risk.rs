//! Behavioural baselines and risk scores end to end: synthetic history
//! written to the audit trail, the risk job's roll-up and verdict, the
//! alerts it raises (each once), the verdict on the agent, and the tier
//! reaching live calls (an escalation's time-out follows it).

use behavry_core::{AgentId, TenantId};
use behavry_store::NewAuditEvent;
use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::mcp::Fixture;
use crate::support::{get, list_until};

both_backends!(synthetic_traffic_gets_the_known_verdict);

fn call(agent: AgentId, at: DateTime<Utc>, tool: &str) -> NewAuditEvent {
    NewAuditEvent {
        id: Uuid::now_v7(),
        timestamp: at,
        agent_id: Some(agent),
        action: "TOOL_CALL".into(),
        tool_name: Some(tool.into()),
        mcp_server: Some("everything".into()),
        policy_result: Some("allow".into()),
        dlp_findings: json!([]),
        request_size: 500,
        response_size: 2000,
        extra: json!({}),
        ..NewAuditEvent::default()
    }
}

/// Ten days of office work (10 calls an hour, eight hours a day, `echo`
/// and `get-sum`), then, in the current hour at a time of day the agent
/// never worked: 60 calls, 20 of them denied calls of a tool it never
/// used, 6 carrying DLP findings.
fn synthetic(agent: AgentId, current: DateTime<Utc>) -> Vec<NewAuditEvent> {
    let mut events = Vec::new();
    for day in 2..=11 {
        for offset in 3..=10 {
            let hour = current - Duration::days(day) + Duration::hours(offset);
            for i in 0..10 {
                let tool = if i % 2 == 0 { "echo" } else { "get-sum" };
                events.push(call(agent, hour + Duration::minutes(i * 5), tool));
            }
        }
    }
    for i in 0..60 {
        let at = current + Duration::seconds(i * 10);
        let mut e = if i < 20 {
            let mut e = call(agent, at, "get-env");
            e.policy_result = Some("deny".into());
            e
        } else {
            call(agent, at, "echo")
        };
        if i >= 54 {
            e.dlp_findings =
                json!([{"pattern": "aws_access_key", "severity": "high", "field": "text"}]);
        }
        events.push(e);
    }
    events
}

async fn agent_view(fx: &Fixture) -> Value {
    let path = format!("/api/v1/agents/{}", fx.agent_id);
    get(&fx.app, &path, Some(&fx.admin)).await.expect(200).body
}

async fn synthetic_traffic_gets_the_known_verdict(backend: behavry_test_support::Backend) {
    let fx = Fixture::new(backend).await;
    let tenant = TenantId(fx.tenant.parse().unwrap());
    let agent = AgentId(fx.agent_id.parse().unwrap());
    let current = behavry_core::risk::hour_of(Utc::now());
    let now = current + Duration::minutes(20);
    let store = fx.app.store.tenant(tenant);
    for chunk in synthetic(agent, current).chunks(200) {
        store.append_audit_events(chunk).await.unwrap();
    }

    let pass = behavry_server::risk::assess_tenant(&fx.app.state, tenant, now)
        .await
        .unwrap();
    assert_eq!(pass.agents_assessed, 1);
    assert_eq!(pass.agents_changed, 1);
    // calls, bytes in, bytes out and deny rate above 3σ, the hour of day,
    // the new tool, the deny spike.
    assert_eq!(pass.alerts_raised, 7);

    // The verdict: denial 20/60 → 0.667 (16.7 points), anomaly 1 (20),
    // data volume 6× the usual → 1 (15), one of two tools new → 0.5
    // (7.5), 10 % of calls flagged → 0.5 (7.5): 66.7 → 67, high.
    let shown = agent_view(&fx).await;
    assert_eq!(shown["risk_score"], 67, "{shown}");
    assert_eq!(shown["risk_tier"], "high");
    assert_eq!(shown["baseline_status"], "established");
    assert_eq!(shown["has_recent_drift"], true);
    let factors = &shown["risk_factors"];
    assert_eq!(factors["anomaly"], 1.0);
    assert_eq!(factors["data_volume"], 1.0);
    assert_eq!(factors["new_resource_access"], 0.5);
    assert_eq!(factors["session_behaviour"], 0.5);
    assert_eq!(factors["escalation_outcomes"], 0.0);
    assert!(
        (factors["denial_rate"].as_f64().unwrap() - 2.0 / 3.0).abs() < 1e-9,
        "{factors}"
    );
    assert!(shown.get("risk_reported").is_none(), "internal: {shown}");

    // The alerts: the five anomalies fold into one.
    let path = format!("/api/v1/alerts?agent_id={}", fx.agent_id);
    let alerts = list_until(
        &fx.app,
        &fx.admin,
        &path,
        "alerts",
        "the risk alerts",
        |l| {
            l.len() == 3
                && l.iter()
                    .map(|a| a["occurrences"].as_i64().unwrap())
                    .sum::<i64>()
                    == 7
        },
    )
    .await;
    let of = |t: &str| alerts.iter().find(|a| a["alert_type"] == t).unwrap();
    let anomaly = of("anomaly");
    assert_eq!(anomaly["occurrences"], 5);
    assert_eq!(anomaly["severity"], "critical", "50σ: {anomaly}");
    let drift = of("baseline_drift");
    assert_eq!(drift["details"]["tool"], "get-env", "{drift}");
    assert_eq!(drift["severity"], "warning");
    let spike = of("policy_deny_spike");
    assert_eq!(spike["details"]["denies"], 20, "{spike}");

    // The explanation: the stored score with the baseline and findings
    // behind it.
    let path = format!("/api/v1/agents/{}/risk", fx.agent_id);
    let explained = get(&fx.app, &path, Some(&fx.admin)).await.expect(200).body;
    assert_eq!(explained["risk_score"], 67, "{explained}");
    assert_eq!(explained["risk_factors"], shown["risk_factors"]);
    let baseline = &explained["baseline"];
    assert_eq!(baseline["active_hours"], 80, "{baseline}");
    // Ten days of eight-hour shifts; a shift may cross midnight (UTC).
    let days = baseline["active_days"].as_u64().unwrap();
    assert!((10..=11).contains(&days), "{baseline}");
    assert_eq!(baseline["tools"], json!(["echo", "get-sum"]));
    assert_eq!(baseline["hours_of_day"].as_array().unwrap().len(), 8);
    assert_eq!(baseline["metrics"]["calls_per_hour"]["mean"], 10.0);
    let kinds: Vec<&str> = explained["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "deny_spike",
            "anomaly",
            "anomaly",
            "anomaly",
            "anomaly",
            "off_hours",
            "new_tool"
        ],
        "{explained}"
    );

    // Judged again: nothing new to say, nothing changed.
    let again = behavry_server::risk::assess_tenant(&fx.app.state, tenant, now)
        .await
        .unwrap();
    assert_eq!((again.agents_changed, again.alerts_raised), (0, 0));

    // The tier moved, and the trail says why.
    let events = fx
        .audit_until("the risk change", |e| {
            e.iter().any(|e| e["action"] == "AGENT_RISK_CHANGED")
        })
        .await;
    let changed = events
        .iter()
        .find(|e| e["action"] == "AGENT_RISK_CHANGED")
        .unwrap();
    assert_eq!(changed["extra"]["from"]["tier"], "low", "{changed}");
    assert_eq!(changed["extra"]["to"]["tier"], "high");
    assert_eq!(changed["extra"]["to"]["score"], 67);

    // Live calls see the new tier: a high-risk agent's escalation waits
    // 30 minutes for a decision, not a low-risk agent's 24 hours.
    let out = fx.call(json!({"name": "toggle-simulated-logging"})).await;
    assert_eq!(out["error"]["code"], -32041, "{out}");
    let pending = list_until(
        &fx.app,
        &fx.admin,
        "/api/v1/escalations?status=pending",
        "escalations",
        "the escalation",
        |l| l.len() == 1,
    )
    .await;
    let seconds = |field: &str| {
        DateTime::parse_from_rfc3339(pending[0][field].as_str().unwrap())
            .unwrap()
            .timestamp()
    };
    assert_eq!(
        seconds("expires_at") - seconds("created_at"),
        1800,
        "{}",
        pending[0]
    );
}

/// Real calls through the gateway feed the roll-up: a new agent's first
/// calls are counted per tool, and it stays in learning with a score of 0.
#[tokio::test]
async fn real_calls_are_rolled_up_and_a_new_agent_is_learning() {
    let fx = Fixture::new(behavry_test_support::Backend::Sqlite).await;
    for text in ["one", "two", "three"] {
        let out = fx
            .call(json!({"name": "echo", "arguments": {"message": text}}))
            .await;
        assert!(out["error"].is_null(), "{out}");
    }
    fx.audit_until("three calls", |e| {
        e.iter().filter(|e| e["action"] == "TOOL_CALL").count() == 3
    })
    .await;
    let tenant = TenantId(fx.tenant.parse().unwrap());
    let pass = behavry_server::risk::assess_tenant(&fx.app.state, tenant, Utc::now())
        .await
        .unwrap();
    assert_eq!((pass.agents_assessed, pass.alerts_raised), (1, 0));
    let rows = fx
        .app
        .store
        .tenant(tenant)
        .agent_activity(Utc::now() - Duration::hours(2), None)
        .await
        .unwrap();
    let echo: i64 = rows
        .iter()
        .filter(|r| r.tool_name == "echo")
        .map(|r| r.calls)
        .sum();
    assert_eq!(echo, 3, "{rows:?}");
    assert!(
        rows.iter().all(|r| r.bytes_out > 0 && r.bytes_in > 0),
        "{rows:?}"
    );

    let shown: Value = agent_view(&fx).await;
    assert_eq!(shown["baseline_status"], "learning", "{shown}");
    assert_eq!(shown["risk_score"], 0);
    assert_eq!(shown["risk_tier"], "low");
    assert_eq!(shown["has_recent_drift"], false);
    assert!(shown["risk_assessed_at"].is_string(), "{shown}");
}
