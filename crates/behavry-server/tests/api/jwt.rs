//! Access-token verification: every way of presenting a token that the
//! server did not issue, or no longer honours, is a 401 with the JSON error
//! body. Each forged token differs from a token that is accepted (the
//! control case) in one respect only.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use behavry_test_support::{Backend, TestApp, other_keys, test_keys};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::Method;
use serde_json::{Value, json};

use crate::auth::{claims_of, header_of};
use crate::support::{Reply, get, operator_token, request, send, str_field, tenant_admin};

const TENANTS: &str = "/api/v1/superadmin/tenants";
const USAGE: &str = "/api/v1/admin/usage";

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn sign(header: &Header, claims: &Value, key: &EncodingKey) -> String {
    jsonwebtoken::encode(header, claims, key).expect("sign test token")
}

fn rs256(kid: Option<&str>) -> Header {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = kid.map(str::to_string);
    header
}

fn server_key() -> EncodingKey {
    EncodingKey::from_rsa_pem(test_keys().0.as_bytes()).expect("server private key")
}

/// Replaces the payload of a token, keeping its header and signature.
fn with_payload(token: &str, claims: &Value) -> String {
    let mut parts = token.split('.');
    let header = parts.next().expect("header");
    let _ = parts.next().expect("payload");
    let signature = parts.next().expect("signature");
    format!(
        "{header}.{}.{signature}",
        b64(claims.to_string().as_bytes())
    )
}

#[track_caller]
fn assert_refused(reply: Reply, case: &str) {
    assert_eq!(
        reply.status, 401,
        "{case}: expected 401, got {}: {}",
        reply.status, reply.text
    );
    assert_eq!(reply.header("www-authenticate"), Some("Bearer"), "{case}");
    let message = reply.expect_error(401, "unauthorized");
    assert!(!message.is_empty(), "{case}");
}

#[tokio::test]
async fn forged_and_stale_tokens_are_refused() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let genuine = operator_token(&app).await;
    let kid = str_field(&header_of(&genuine), "kid").to_string();
    let claims = claims_of(&genuine);
    let now = chrono::Utc::now().timestamp();

    // Controls: the genuine token, and a token the test signs itself with
    // the server's key, are both accepted. The forgeries below differ from
    // the second in one respect each.
    get(&app, TENANTS, Some(&genuine)).await.expect(200);
    let control = sign(&rs256(Some(&kid)), &claims, &server_key());
    get(&app, TENANTS, Some(&control)).await.expect(200);

    let mut cases: Vec<(&str, String)> = Vec::new();

    // alg "none", no signature.
    let none_header = b64(json!({ "alg": "none", "typ": "JWT" })
        .to_string()
        .as_bytes());
    let payload = b64(claims.to_string().as_bytes());
    cases.push(("alg none", format!("{none_header}.{payload}.")));
    let none_with_kid = b64(json!({ "alg": "none", "typ": "JWT", "kid": kid })
        .to_string()
        .as_bytes());
    cases.push(("alg none with kid", format!("{none_with_kid}.{payload}.")));

    // HS256 keyed with the public key (the classic algorithm confusion).
    let mut hs256 = Header::new(Algorithm::HS256);
    hs256.kid = Some(kid.clone());
    cases.push((
        "HS256 with the public key as secret",
        sign(
            &hs256,
            &claims,
            &EncodingKey::from_secret(test_keys().1.as_bytes()),
        ),
    ));

    // Expired well beyond any leeway.
    let mut expired = claims.clone();
    expired["iat"] = json!(now - 7200);
    expired["exp"] = json!(now - 3600);
    cases.push(("expired", sign(&rs256(Some(&kid)), &expired, &server_key())));

    // Someone else's issuer.
    let mut foreign = claims.clone();
    foreign["iss"] = json!("someone-else");
    cases.push((
        "wrong issuer",
        sign(&rs256(Some(&kid)), &foreign, &server_key()),
    ));

    // Missing required claims.
    let mut no_exp = claims.clone();
    no_exp.as_object_mut().expect("claims object").remove("exp");
    cases.push(("no exp", sign(&rs256(Some(&kid)), &no_exp, &server_key())));

    // A token of another type (e.g. an agent token) signed by the server.
    let mut agent = claims.clone();
    agent["typ"] = json!("agent");
    cases.push(("typ agent", sign(&rs256(Some(&kid)), &agent, &server_key())));

    // Unknown or missing key id.
    cases.push((
        "unknown kid",
        sign(&rs256(Some("0123456789abcdef")), &claims, &server_key()),
    ));
    cases.push(("no kid", sign(&rs256(None), &claims, &server_key())));

    // Signed by an unrelated key but claiming the server's key id.
    let other = EncodingKey::from_rsa_pem(other_keys().0.as_bytes()).expect("other private key");
    cases.push((
        "other key, right kid",
        sign(&rs256(Some(&kid)), &claims, &other),
    ));

    // Genuine signature, altered payload.
    let mut longer = claims.clone();
    longer["exp"] = json!(now + 365 * 24 * 3600);
    cases.push(("tampered exp", with_payload(&genuine, &longer)));
    let mut renamed = claims.clone();
    renamed["username"] = json!("somebody-else");
    cases.push(("tampered username", with_payload(&genuine, &renamed)));
    // Signature stripped or garbled.
    let (signed, _) = genuine.rsplit_once('.').expect("three parts");
    cases.push(("signature stripped", format!("{signed}.")));
    cases.push((
        "signature garbled",
        format!("{signed}.{}", b64(b"not a signature")),
    ));

    // Not a JWT at all.
    cases.push(("garbage", "not-a-token".to_string()));
    cases.push(("two parts", format!("{none_header}.{payload}")));

    for (case, token) in &cases {
        assert_refused(get(&app, TENANTS, Some(token)).await, case);
    }
    // Nothing above locked anything: the genuine token still works.
    get(&app, TENANTS, Some(&genuine)).await.expect(200);
}

#[tokio::test]
async fn tampered_privileges_are_refused() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let (tenant_id, token) = tenant_admin(&app, "Tamper Co", "tamper-admin").await;
    let (other_tenant, _) = tenant_admin(&app, "Victim Co", "victim-admin").await;
    let claims = claims_of(&token);
    assert_eq!(claims["tenant"], tenant_id);
    assert_eq!(claims["sa"], false);

    // Controls.
    get(&app, USAGE, Some(&token)).await.expect(200);
    get(&app, TENANTS, Some(&token))
        .await
        .expect_error(403, "forbidden");

    // Promoting oneself to super-admin.
    let mut promoted = claims.clone();
    promoted["sa"] = json!(true);
    assert_refused(
        get(&app, TENANTS, Some(&with_payload(&token, &promoted))).await,
        "sa=true",
    );
    // Dropping the tenant (looks like an operator).
    let mut untenanted = promoted.clone();
    untenanted
        .as_object_mut()
        .expect("claims object")
        .remove("tenant");
    assert_refused(
        get(&app, TENANTS, Some(&with_payload(&token, &untenanted))).await,
        "sa=true without tenant",
    );
    // Switching tenant.
    let mut moved = claims.clone();
    moved["tenant"] = json!(other_tenant);
    assert_refused(
        get(&app, USAGE, Some(&with_payload(&token, &moved))).await,
        "other tenant",
    );
    // Changing the role.
    let mut demoted = claims.clone();
    demoted["role"] = json!("viewer");
    assert_refused(
        get(&app, USAGE, Some(&with_payload(&token, &demoted))).await,
        "role changed",
    );

    // An operator token with a changed role is refused too.
    let operator = operator_token(&app).await;
    let mut op_claims = claims_of(&operator);
    op_claims["role"] = json!("viewer");
    assert_refused(
        get(&app, TENANTS, Some(&with_payload(&operator, &op_claims))).await,
        "operator role",
    );
}

#[tokio::test]
async fn authorization_header_must_be_a_bearer_token() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let genuine = operator_token(&app).await;

    // Missing header.
    assert_refused(get(&app, TENANTS, None).await, "no header");

    let with_header = |value: String| {
        send(request(&app, Method::GET, TENANTS, None).header("authorization", value))
    };
    for (case, value) in [
        ("basic scheme", format!("Basic {genuine}")),
        ("token scheme", format!("Token {genuine}")),
        ("no scheme", genuine.clone()),
        ("scheme only", "Bearer".to_string()),
        ("empty token", "Bearer ".to_string()),
        ("blank token", "Bearer    ".to_string()),
        ("empty header", String::new()),
    ] {
        assert_refused(with_header(value).await, case);
    }
    // The scheme is case-insensitive.
    with_header(format!("bearer {genuine}")).await.expect(200);
    with_header(format!("BEARER {genuine}")).await.expect(200);
}
