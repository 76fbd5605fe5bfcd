//! Agent identity: registration by admins or by enrollment token, the
//! admin API over agents, and heartbeats.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use behavry_core::{AdminRole, Agent, AgentId, AgentStatus};
use behavry_store::{AgentFilter, AgentPatch, NewAgent, NewEnrollmentToken, StoreError};
use chrono::{DateTime, Duration, Utc};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::auth::{AgentAuth, TenantAdmin, TenantWriter, require_role};
use crate::error::{ApiError, ApiJson, ApiPath};
use crate::routes::tenants::new_token;
use crate::state::{AppState, ClientIp};

/// SHA-256 (hex) of a client secret. Secrets are 256 random bits, so a fast
/// hash is as strong as a slow one and keeps the token endpoint cheap.
pub fn hash_client_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// A new client id and client secret.
fn new_credentials() -> (String, String) {
    let mut id = [0u8; 10];
    let mut secret = [0u8; 32];
    let mut rng = rand::thread_rng();
    rng.fill_bytes(&mut id);
    rng.fill_bytes(&mut secret);
    (
        format!("bhv_{}", hex::encode(id)),
        format!("bhvs_{}", URL_SAFE_NO_PAD.encode(secret)),
    )
}

const MAX_LIST: usize = 64;

fn clean_list(field: &str, values: Option<Vec<String>>) -> Result<Option<Vec<String>>, ApiError> {
    let Some(values) = values else {
        return Ok(None);
    };
    if values.len() > MAX_LIST {
        return Err(ApiError::Validation(format!(
            "{field} may hold at most {MAX_LIST} entries"
        )));
    }
    let mut out = Vec::with_capacity(values.len());
    for v in values {
        let v = v.trim().to_string();
        if v.is_empty() || v.len() > 128 || v.chars().any(char::is_control) {
            return Err(ApiError::Validation(format!(
                "{field} entries must be 1 to 128 printable characters"
            )));
        }
        if !out.contains(&v) {
            out.push(v);
        }
    }
    Ok(Some(out))
}

fn clean_text(field: &str, value: &str, max: usize) -> Result<String, ApiError> {
    let value = value.trim();
    if value.is_empty() || value.chars().count() > max || value.chars().any(char::is_control) {
        return Err(ApiError::Validation(format!(
            "{field} must be 1 to {max} printable characters"
        )));
    }
    Ok(value.to_string())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAgentRequest {
    pub name: String,
    /// Free-form kind, e.g. `claude-code`, `langchain` (default `custom`).
    pub agent_type: Option<String>,
    pub owner: Option<String>,
    /// Roles the policy sees as `input.agent.roles`.
    pub roles: Option<Vec<String>>,
    /// Permissions such as `filesystem:read`, seen as `input.agent.permissions`.
    pub permissions: Option<Vec<String>>,
    pub tags: Option<Vec<String>>,
}

impl CreateAgentRequest {
    fn into_new_agent(self) -> Result<(NewAgent, String), ApiError> {
        let (client_id, client_secret) = new_credentials();
        Ok((
            NewAgent {
                name: clean_text("name", &self.name, 200)?,
                agent_type: match self.agent_type {
                    Some(t) => clean_text("agent_type", &t, 64)?,
                    None => "custom".into(),
                },
                owner: self
                    .owner
                    .map(|o| clean_text("owner", &o, 200))
                    .transpose()?,
                roles: clean_list("roles", self.roles)?.unwrap_or_default(),
                permissions: clean_list("permissions", self.permissions)?.unwrap_or_default(),
                tags: clean_list("tags", self.tags)?.unwrap_or_default(),
                client_id,
                client_secret_hash: hash_client_secret(&client_secret),
            },
            client_secret,
        ))
    }
}

/// An agent with its freshly issued credentials. The secret is shown only
/// in this response; it is stored hashed.
#[derive(Serialize, utoipa::ToSchema)]
pub struct AgentWithSecret {
    pub agent: AgentView,
    pub client_id: String,
    pub client_secret: String,
}

/// An agent as admins see it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct AgentView {
    #[serde(flatten)]
    pub agent: Agent,
    /// Seen (heartbeat or call) within the last five minutes.
    pub online: bool,
}

/// How long an agent may be silent before it is shown offline.
const ONLINE_WINDOW_SECS: i64 = 300;

impl From<Agent> for AgentView {
    fn from(agent: Agent) -> Self {
        let online = agent
            .last_seen_at
            .is_some_and(|t| (Utc::now() - t).num_seconds() <= ONLINE_WINDOW_SECS);
        AgentView { agent, online }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct AgentList {
    pub agents: Vec<AgentView>,
    pub total: i64,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListAgentsQuery {
    /// active, suspended or revoked.
    pub status: Option<String>,
    /// 1 to 500, default 50.
    pub limit: Option<i64>,
    pub offset: Option<i64>,
}

fn agent_id(raw: &str) -> Result<AgentId, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::BadRequest(format!("`{raw}` is not an agent id (expected a UUID)")))
}

fn agent_not_found(id: AgentId) -> impl FnOnce(StoreError) -> ApiError {
    move |e| match e {
        StoreError::NotFound => ApiError::NotFound(format!("no agent with id {id}")),
        other => other.into(),
    }
}

/// Registers an agent and issues its credentials.
#[utoipa::path(post, path = "/api/v1/agents", tag = "agents",
    security(("bearer" = [])),
    request_body = CreateAgentRequest,
    responses(
        (status = 201, description = "Agent registered; the secret is shown once", body = AgentWithSecret),
        (status = 403, description = "Role too low, tenant suspended or agent limit reached", body = crate::error::ErrorBody),
        (status = 422, description = "Invalid input", body = crate::error::ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    admin: TenantWriter,
    ApiJson(req): ApiJson<CreateAgentRequest>,
) -> Result<(StatusCode, Json<AgentWithSecret>), ApiError> {
    require_role(&admin.claims, AdminRole::Admin)?;
    let (new, client_secret) = req.into_new_agent()?;
    let agent = state.store.tenant(admin.tenant).create_agent(new).await?;
    tracing::info!(agent = %agent.id, tenant = %admin.tenant, by = %admin.claims.sub, "agent registered");
    Ok((
        StatusCode::CREATED,
        Json(AgentWithSecret {
            client_id: agent.client_id.clone(),
            agent: agent.into(),
            client_secret,
        }),
    ))
}

/// Agents of the caller's tenant, newest first.
#[utoipa::path(get, path = "/api/v1/agents", tag = "agents",
    security(("bearer" = [])),
    params(ListAgentsQuery),
    responses(
        (status = 200, description = "A page of agents", body = AgentList),
        (status = 400, description = "Bad filter", body = crate::error::ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    admin: TenantAdmin,
    query: Result<Query<ListAgentsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<AgentList>, ApiError> {
    let Query(q) = query?;
    let status = q
        .status
        .map(|s| s.parse::<AgentStatus>().map_err(ApiError::BadRequest))
        .transpose()?;
    let (limit, offset) = super::paging(q.limit, q.offset, 50)?;
    let (agents, total) = state
        .store
        .tenant(admin.tenant)
        .list_agents(AgentFilter {
            status,
            limit,
            offset,
        })
        .await?;
    Ok(Json(AgentList {
        agents: agents.into_iter().map(AgentView::from).collect(),
        total,
    }))
}

/// One agent.
#[utoipa::path(get, path = "/api/v1/agents/{agent_id}", tag = "agents",
    security(("bearer" = [])),
    params(("agent_id" = String, Path, description = "Agent id (UUID)")),
    responses(
        (status = 200, description = "The agent", body = AgentView),
        (status = 404, description = "No such agent in this tenant", body = crate::error::ErrorBody)))]
pub async fn detail(
    State(state): State<AppState>,
    admin: TenantAdmin,
    ApiPath(raw): ApiPath<String>,
) -> Result<Json<AgentView>, ApiError> {
    let id = agent_id(&raw)?;
    let agent = state
        .store
        .tenant(admin.tenant)
        .get_agent(id)
        .await
        .map_err(agent_not_found(id))?;
    Ok(Json(agent.into()))
}

/// An agent's risk, explained.
#[derive(Serialize, utoipa::ToSchema)]
pub struct AgentRisk {
    pub agent_id: AgentId,
    /// As last stored by the risk job (see `risk_assessed_at`).
    pub risk_score: i32,
    pub risk_tier: behavry_core::RiskTier,
    pub baseline_status: String,
    pub has_recent_drift: bool,
    /// The dimensions behind the stored score; null before the first
    /// assessment.
    pub risk_factors: Option<behavry_core::RiskFactors>,
    pub risk_assessed_at: Option<chrono::DateTime<Utc>>,
    /// What the reference window (the 14 days before the last day) says is
    /// normal, computed now from the activity rolled up so far.
    pub baseline: behavry_core::risk::Baseline,
    /// What that activity shows now; the risk job alerts on each once.
    pub findings: Vec<behavry_core::risk::Finding>,
}

/// An agent's risk score with its factors, its behavioural baseline and
/// current findings.
#[utoipa::path(get, path = "/api/v1/agents/{agent_id}/risk", tag = "agents",
    security(("bearer" = [])),
    params(("agent_id" = String, Path, description = "Agent id (UUID)")),
    responses(
        (status = 200, description = "The agent's risk", body = AgentRisk),
        (status = 404, description = "No such agent in this tenant", body = crate::error::ErrorBody)))]
pub async fn risk(
    State(state): State<AppState>,
    admin: TenantAdmin,
    ApiPath(raw): ApiPath<String>,
) -> Result<Json<AgentRisk>, ApiError> {
    let id = agent_id(&raw)?;
    let store = state.store.tenant(admin.tenant);
    let agent = store.get_agent(id).await.map_err(agent_not_found(id))?;
    let now = crate::risk::assess_agent(&*store, id, Utc::now()).await?;
    Ok(Json(AgentRisk {
        agent_id: agent.id,
        risk_score: agent.risk_score,
        risk_tier: agent.risk_tier,
        baseline_status: agent.baseline_status,
        has_recent_drift: agent.has_recent_drift,
        risk_factors: agent.risk_factors,
        risk_assessed_at: agent.risk_assessed_at,
        baseline: now.baseline,
        findings: now.findings,
    }))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateAgentRequest {
    pub name: Option<String>,
    #[serde(default, deserialize_with = "crate::error::nullable")]
    #[schema(value_type = Option<String>)]
    pub owner: Option<Option<String>>,
    pub agent_type: Option<String>,
    pub roles: Option<Vec<String>>,
    pub permissions: Option<Vec<String>>,
    pub tags: Option<Vec<String>>,
}

/// Changes an agent's name, owner, type, roles, permissions or tags.
#[utoipa::path(patch, path = "/api/v1/agents/{agent_id}", tag = "agents",
    security(("bearer" = [])),
    params(("agent_id" = String, Path, description = "Agent id (UUID)")),
    request_body = UpdateAgentRequest,
    responses(
        (status = 200, description = "Updated agent", body = AgentView),
        (status = 404, description = "No such agent", body = crate::error::ErrorBody),
        (status = 422, description = "Invalid or unknown field", body = crate::error::ErrorBody)))]
pub async fn update(
    State(state): State<AppState>,
    admin: TenantWriter,
    ApiPath(raw): ApiPath<String>,
    ApiJson(req): ApiJson<UpdateAgentRequest>,
) -> Result<Json<AgentView>, ApiError> {
    require_role(&admin.claims, AdminRole::Admin)?;
    let id = agent_id(&raw)?;
    let patch = AgentPatch {
        name: req.name.map(|n| clean_text("name", &n, 200)).transpose()?,
        owner: match req.owner {
            Some(Some(o)) => Some(Some(clean_text("owner", &o, 200)?)),
            Some(None) => Some(None),
            None => None,
        },
        agent_type: req
            .agent_type
            .map(|t| clean_text("agent_type", &t, 64))
            .transpose()?,
        roles: clean_list("roles", req.roles)?,
        permissions: clean_list("permissions", req.permissions)?,
        tags: clean_list("tags", req.tags)?,
    };
    let agent = state
        .store
        .tenant(admin.tenant)
        .update_agent(id, patch)
        .await
        .map_err(agent_not_found(id))?;
    Ok(Json(agent.into()))
}

async fn change_status(
    state: &AppState,
    admin: &TenantWriter,
    raw: &str,
    status: AgentStatus,
) -> Result<Json<AgentView>, ApiError> {
    require_role(&admin.claims, AdminRole::Admin)?;
    let id = agent_id(raw)?;
    let agent = state
        .store
        .tenant(admin.tenant)
        .set_agent_status(id, status)
        .await
        .map_err(agent_not_found(id))?;
    state.changed_agent(admin.tenant, id);
    if status != AgentStatus::Active {
        // Suspension and revocation end the agent's live sessions at once.
        let ended = state
            .sessions
            .end_agent(state.store.as_ref(), admin.tenant, id)
            .await?;
        tracing::info!(agent = %id, sessions = ended, "ended the agent's sessions");
    }
    tracing::warn!(agent = %id, status = status.as_str(), by = %admin.claims.sub, "agent status changed");
    Ok(Json(agent.into()))
}

/// Suspends an agent: its calls are refused until it is reactivated.
#[utoipa::path(post, path = "/api/v1/agents/{agent_id}/suspend", tag = "agents",
    security(("bearer" = [])),
    params(("agent_id" = String, Path, description = "Agent id (UUID)")),
    responses((status = 200, description = "Suspended agent", body = AgentView)))]
pub async fn suspend(
    State(state): State<AppState>,
    admin: TenantWriter,
    ApiPath(raw): ApiPath<String>,
) -> Result<Json<AgentView>, ApiError> {
    change_status(&state, &admin, &raw, AgentStatus::Suspended).await
}

/// Lifts a suspension.
#[utoipa::path(post, path = "/api/v1/agents/{agent_id}/reactivate", tag = "agents",
    security(("bearer" = [])),
    params(("agent_id" = String, Path, description = "Agent id (UUID)")),
    responses(
        (status = 200, description = "Active agent", body = AgentView),
        (status = 403, description = "The agent was revoked", body = crate::error::ErrorBody)))]
pub async fn reactivate(
    State(state): State<AppState>,
    admin: TenantWriter,
    ApiPath(raw): ApiPath<String>,
) -> Result<Json<AgentView>, ApiError> {
    change_status(&state, &admin, &raw, AgentStatus::Active).await
}

/// Unfreezes an agent that a blast-radius window froze, and starts its
/// windows afresh on this replica.
#[utoipa::path(post, path = "/api/v1/agents/{agent_id}/unfreeze", tag = "agents",
    security(("bearer" = [])),
    params(("agent_id" = String, Path, description = "Agent id (UUID)")),
    responses(
        (status = 200, description = "Unfrozen agent", body = AgentView),
        (status = 404, description = "No such agent", body = crate::error::ErrorBody)))]
pub async fn unfreeze(
    State(state): State<AppState>,
    admin: TenantWriter,
    ApiPath(raw): ApiPath<String>,
) -> Result<Json<AgentView>, ApiError> {
    require_role(&admin.claims, AdminRole::Admin)?;
    let id = agent_id(&raw)?;
    let agent = state
        .store
        .tenant(admin.tenant)
        .set_agent_frozen(id, None)
        .await
        .map_err(agent_not_found(id))?;
    state.windows.reset(id);
    state.changed_agent(admin.tenant, id);
    tracing::warn!(agent = %id, by = %admin.claims.sub, "agent unfrozen");
    Ok(Json(agent.into()))
}

/// Revokes an agent for good.
#[utoipa::path(post, path = "/api/v1/agents/{agent_id}/revoke", tag = "agents",
    security(("bearer" = [])),
    params(("agent_id" = String, Path, description = "Agent id (UUID)")),
    responses((status = 200, description = "Revoked agent", body = AgentView)))]
pub async fn revoke(
    State(state): State<AppState>,
    admin: TenantWriter,
    ApiPath(raw): ApiPath<String>,
) -> Result<Json<AgentView>, ApiError> {
    change_status(&state, &admin, &raw, AgentStatus::Revoked).await
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct RotatedSecret {
    pub client_id: String,
    /// Shown once; the previous secret stops working immediately.
    pub client_secret: String,
}

/// Issues a new client secret; the old one stops working.
#[utoipa::path(post, path = "/api/v1/agents/{agent_id}/rotate-secret", tag = "agents",
    security(("bearer" = [])),
    params(("agent_id" = String, Path, description = "Agent id (UUID)")),
    responses(
        (status = 200, description = "New secret", body = RotatedSecret),
        (status = 404, description = "No such (unrevoked) agent", body = crate::error::ErrorBody)))]
pub async fn rotate_secret(
    State(state): State<AppState>,
    admin: TenantWriter,
    ApiPath(raw): ApiPath<String>,
) -> Result<Json<RotatedSecret>, ApiError> {
    require_role(&admin.claims, AdminRole::Admin)?;
    let id = agent_id(&raw)?;
    let store = state.store.tenant(admin.tenant);
    let (_, client_secret) = new_credentials();
    store
        .set_agent_secret(id, &hash_client_secret(&client_secret))
        .await
        .map_err(agent_not_found(id))?;
    let agent = store.get_agent(id).await.map_err(agent_not_found(id))?;
    tracing::info!(agent = %id, by = %admin.claims.sub, "agent secret rotated");
    Ok(Json(RotatedSecret {
        client_id: agent.client_id,
        client_secret,
    }))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateEnrollmentTokenRequest {
    /// Hours until the token expires: 1 to 720, default 24.
    pub expires_in_hours: Option<i64>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct EnrollmentTokenResponse {
    /// Single use; shown only here.
    pub enrollment_token: String,
    pub expires_at: DateTime<Utc>,
}

/// Creates a single-use enrollment token an agent can register itself with.
#[utoipa::path(post, path = "/api/v1/agents/enrollment-tokens", tag = "agents",
    security(("bearer" = [])),
    request_body = CreateEnrollmentTokenRequest,
    responses((status = 201, description = "Token created", body = EnrollmentTokenResponse)))]
pub async fn create_enrollment_token(
    State(state): State<AppState>,
    admin: TenantWriter,
    ApiJson(req): ApiJson<CreateEnrollmentTokenRequest>,
) -> Result<(StatusCode, Json<EnrollmentTokenResponse>), ApiError> {
    require_role(&admin.claims, AdminRole::Admin)?;
    let hours = req.expires_in_hours.unwrap_or(24);
    if !(1..=720).contains(&hours) {
        return Err(ApiError::Validation(
            "expires_in_hours must be from 1 to 720".into(),
        ));
    }
    let (token, token_hash) = new_token();
    let expires_at = Utc::now() + Duration::hours(hours);
    state
        .store
        .tenant(admin.tenant)
        .create_enrollment_token(
            NewEnrollmentToken {
                token_hash,
                expires_at,
            },
            Some(admin.claims.sub),
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(EnrollmentTokenResponse {
            enrollment_token: token,
            expires_at,
        }),
    ))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnrollRequest {
    pub enrollment_token: String,
    pub name: String,
    pub agent_type: Option<String>,
    pub owner: Option<String>,
    pub roles: Option<Vec<String>>,
    pub permissions: Option<Vec<String>>,
    pub tags: Option<Vec<String>>,
}

/// An agent registers itself with a single-use enrollment token (no admin
/// token involved).
#[utoipa::path(post, path = "/api/v1/enroll/agent", tag = "agents",
    request_body = EnrollRequest,
    responses(
        (status = 201, description = "Agent registered; the secret is shown once", body = AgentWithSecret),
        (status = 401, description = "Token unknown, used or expired", body = crate::error::ErrorBody),
        (status = 429, description = "Too many attempts", body = crate::error::ErrorBody)))]
pub async fn enroll(
    State(state): State<AppState>,
    ip: ClientIp,
    body: Result<ApiJson<EnrollRequest>, ApiError>,
) -> Result<(StatusCode, Json<AgentWithSecret>), ApiError> {
    state
        .limits
        .token_ip
        .acquire(&ip.key())
        .map_err(|retry_after_secs| ApiError::RateLimited { retry_after_secs })?;
    let ApiJson(req) = body?;
    let token_hash = hex::encode(Sha256::digest(req.enrollment_token.trim().as_bytes()));
    let (new, client_secret) = CreateAgentRequest {
        name: req.name,
        agent_type: req.agent_type,
        owner: req.owner,
        roles: req.roles,
        permissions: req.permissions,
        tags: req.tags,
    }
    .into_new_agent()?;
    let agent = state
        .store
        .auth()
        .enroll_agent(&token_hash, new)
        .await
        .map_err(|e| match e {
            StoreError::NotFound => ApiError::Unauthorized(
                "enrollment token is unknown, already used or expired".into(),
            ),
            other => other.into(),
        })?;
    tracing::info!(agent = %agent.id, tenant = %agent.tenant_id, "agent enrolled");
    Ok((
        StatusCode::CREATED,
        Json(AgentWithSecret {
            client_id: agent.client_id.clone(),
            agent: agent.into(),
            client_secret,
        }),
    ))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct HeartbeatResponse {
    pub agent_id: AgentId,
    pub last_seen_at: DateTime<Utc>,
}

/// An agent reports that it is alive.
#[utoipa::path(post, path = "/api/v1/agents/heartbeat", tag = "agents",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Recorded", body = HeartbeatResponse),
        (status = 401, description = "Not an agent token", body = crate::error::ErrorBody),
        (status = 403, description = "The agent or its tenant is suspended, revoked or frozen", body = crate::error::ErrorBody)))]
pub async fn heartbeat(
    State(state): State<AppState>,
    AgentAuth(agent): AgentAuth,
) -> Result<Json<HeartbeatResponse>, ApiError> {
    // Refused like the agent's calls: a suspended agent is not "alive".
    let current = state
        .gate
        .agent(state.store.as_ref(), agent.tenant, agent.sub)
        .await
        .map_err(|e| match e {
            StoreError::NotFound => ApiError::Unauthorized("the agent no longer exists".into()),
            other => other.into(),
        })?;
    if let Err(crate::mcp::gate::Refusal::Suspended(why)) = crate::mcp::gate::Gate::admit(&current)
    {
        return Err(ApiError::Forbidden(format!("heartbeat refused: {why}")));
    }
    state
        .store
        .tenant(agent.tenant)
        .touch_agent(agent.sub)
        .await
        .map_err(|e| match e {
            StoreError::NotFound => ApiError::Unauthorized("the agent no longer exists".into()),
            other => other.into(),
        })?;
    Ok(Json(HeartbeatResponse {
        agent_id: agent.sub,
        last_seen_at: Utc::now(),
    }))
}
