//! GET /api/v1/admin/usage (and the operator's view of the same figures).

use behavry_core::{AgentId, TenantId};
use behavry_store::{NewAuditEvent, NewEscalation};
use behavry_test_support::{Backend, TestApp};
use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::support::{get, operator_token, tenant_admin};

const USAGE: &str = "/api/v1/admin/usage";

fn event(
    at: DateTime<Utc>,
    action: &str,
    agent: Option<AgentId>,
    findings: Value,
    request_size: i64,
    response_size: i64,
) -> NewAuditEvent {
    NewAuditEvent {
        id: Uuid::now_v7(),
        timestamp: at,
        agent_id: agent,
        action: action.to_string(),
        tool_name: Some("read_file".into()),
        dlp_findings: findings,
        request_size,
        response_size,
        extra: json!({}),
        ..NewAuditEvent::default()
    }
}

fn escalation(at: DateTime<Utc>, agent: Option<AgentId>) -> NewEscalation {
    NewEscalation {
        id: Uuid::now_v7(),
        agent_id: agent,
        status: "pending".into(),
        summary: json!({ "reason": "test" }),
        created_at: at,
        expires_at: at + Duration::hours(1),
        ..NewEscalation::default()
    }
}

fn counts(usage: &Value) -> [i64; 5] {
    [
        "tool_calls_30d",
        "agents_active_30d",
        "dlp_hits_30d",
        "escalations_30d",
        "data_volume_bytes_30d",
    ]
    .map(|k| {
        usage[k]
            .as_i64()
            .unwrap_or_else(|| panic!("`{k}` missing in {usage}"))
    })
}

fn timestamp(usage: &Value, field: &str) -> DateTime<Utc> {
    usage[field]
        .as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .unwrap_or_else(|| panic!("`{field}` is not a timestamp in {usage}"))
        .with_timezone(&Utc)
}

#[tokio::test]
async fn usage_needs_a_tenant_admin() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let missing = get(&app, USAGE, None).await;
    assert_eq!(missing.header("www-authenticate"), Some("Bearer"));
    missing.expect_error(401, "unauthorized");
    get(&app, USAGE, Some("not-a-jwt"))
        .await
        .expect_error(401, "unauthorized");

    // The platform operator has no tenant.
    let operator = operator_token(&app).await;
    let message = get(&app, USAGE, Some(&operator))
        .await
        .expect_error(403, "forbidden");
    assert!(message.contains("/api/v1/superadmin/tenants"), "{message}");
}

async fn usage_counts_the_last_30_days_of_the_callers_tenant(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (tenant, token) = tenant_admin(&app, "Usage Co", "usage-admin").await;
    let (other, other_token) = tenant_admin(&app, "Other Usage Co", "other-usage-admin").await;
    let operator = operator_token(&app).await;

    // A fresh tenant: all zeros over a 30-day window ending now.
    let before = Utc::now();
    let fresh = get(&app, USAGE, Some(&token)).await.expect(200);
    assert_eq!(counts(&fresh.body), [0; 5], "{}", fresh.text);
    let start = timestamp(&fresh.body, "period_start");
    let end = timestamp(&fresh.body, "period_end");
    assert_eq!(end - start, Duration::days(30));
    assert!(
        (end - before).num_seconds().abs() < 60,
        "period ends now: {}",
        fresh.text
    );

    let now = Utc::now();
    let (a1, a2, a3) = (AgentId::new(), AgentId::new(), AgentId::new());
    let tenant_id: TenantId = tenant.parse().expect("tenant id");
    let other_id: TenantId = other.parse().expect("tenant id");
    let finding = json!([{ "type": "email", "count": 1 }]);
    let store = app.store.tenant(tenant_id);
    store
        .append_audit_events(&[
            event(
                now - Duration::minutes(5),
                "TOOL_CALL",
                Some(a1),
                json!([]),
                100,
                200,
            ),
            event(
                now - Duration::hours(3),
                "TOOL_CALL",
                Some(a1),
                finding.clone(),
                50,
                0,
            ),
            event(
                now - Duration::days(29),
                "TOOL_CALL",
                Some(a2),
                json!([{ "type": "ssn" }, { "type": "email" }]),
                1000,
                2000,
            ),
            event(
                now - Duration::days(2),
                "TOOL_CALL",
                Some(a3),
                json!([]),
                1,
                2,
            ),
            event(
                now - Duration::days(1),
                "TOOL_CALL",
                Some(a2),
                json!([]),
                0,
                0,
            ),
            // Not a tool call: counted in neither tool calls nor (no agent)
            // active agents.
            event(
                now - Duration::hours(1),
                "POLICY_UPDATE",
                None,
                json!([]),
                0,
                0,
            ),
            // Older than 30 days: not counted at all.
            event(
                now - Duration::days(31),
                "TOOL_CALL",
                Some(AgentId::new()),
                finding.clone(),
                5000,
                5000,
            ),
            event(
                now - Duration::days(90),
                "TOOL_CALL",
                Some(a1),
                finding.clone(),
                7000,
                7000,
            ),
        ])
        .await
        .expect("append audit events");
    store
        .record_escalation(escalation(now - Duration::hours(2), Some(a1)))
        .await
        .expect("escalation");
    store
        .record_escalation(escalation(now - Duration::days(10), Some(a2)))
        .await
        .expect("escalation");
    store
        .record_escalation(escalation(now - Duration::days(45), Some(a3)))
        .await
        .expect("escalation");

    // Another tenant's activity.
    let other_store = app.store.tenant(other_id);
    other_store
        .append_audit_events(&[
            event(
                now - Duration::minutes(1),
                "TOOL_CALL",
                Some(AgentId::new()),
                finding.clone(),
                777,
                223,
            ),
            event(
                now - Duration::minutes(2),
                "TOOL_CALL",
                Some(AgentId::new()),
                json!([]),
                0,
                0,
            ),
        ])
        .await
        .expect("append audit events");
    other_store
        .record_escalation(escalation(now - Duration::hours(1), None))
        .await
        .expect("escalation");

    // tool calls: 5; agents: a1, a2, a3; DLP hits: 2 events with findings;
    // escalations: 2; bytes: 300 + 50 + 3000 + 3 + 0 + 0.
    let expected = [5, 3, 2, 2, 3353];
    let reply = get(&app, USAGE, Some(&token)).await.expect(200);
    assert_eq!(counts(&reply.body), expected, "{}", reply.text);

    // The operator sees the same figures per tenant.
    let reply = get(
        &app,
        &format!("/api/v1/superadmin/tenants/{tenant}/usage"),
        Some(&operator),
    )
    .await
    .expect(200);
    assert_eq!(counts(&reply.body), expected, "{}", reply.text);

    let reply = get(&app, USAGE, Some(&other_token)).await.expect(200);
    assert_eq!(counts(&reply.body), [2, 2, 1, 1, 1000], "{}", reply.text);
    let reply = get(
        &app,
        &format!("/api/v1/superadmin/tenants/{other}/usage"),
        Some(&operator),
    )
    .await
    .expect(200);
    assert_eq!(counts(&reply.body), [2, 2, 1, 1, 1000], "{}", reply.text);
}

both_backends!(usage_counts_the_last_30_days_of_the_callers_tenant);
