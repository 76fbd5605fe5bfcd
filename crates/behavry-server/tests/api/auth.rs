//! Admin login and the published signing keys.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use behavry_test_support::{Backend, OPERATOR_PASSWORD, OPERATOR_USERNAME, TestApp, test_keys};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use reqwest::Method;
use rsa::RsaPublicKey;
use rsa::pkcs8::DecodePublicKey;
use rsa::traits::PublicKeyParts;
use serde_json::{Value, json};

use crate::support::{PASSWORD, get, login, request, send, signup, str_field, tenant_admin};

/// The claims part of a JWT, decoded without verification.
pub fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("a JWT has a payload");
    let bytes = URL_SAFE_NO_PAD.decode(payload).expect("base64url payload");
    serde_json::from_slice(&bytes).expect("JSON payload")
}

/// The header part of a JWT, decoded without verification.
pub fn header_of(token: &str) -> Value {
    let header = token.split('.').next().expect("a JWT has a header");
    let bytes = URL_SAFE_NO_PAD.decode(header).expect("base64url header");
    serde_json::from_slice(&bytes).expect("JSON header")
}

#[tokio::test]
async fn jwks_publishes_the_signing_key() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let reply = get(&app, "/.well-known/jwks.json", None).await.expect(200);
    let keys = reply.body["keys"].as_array().expect("keys array");
    assert_eq!(keys.len(), 1, "{}", reply.text);
    let key = &keys[0];
    assert_eq!(key["kty"], "RSA");
    assert_eq!(key["alg"], "RS256");
    assert_eq!(key["use"], "sig");
    let kid = str_field(key, "kid");
    assert!(!kid.is_empty());

    // n and e are those of the configured public key.
    let public = RsaPublicKey::from_public_key_pem(&test_keys().1).expect("test public key");
    assert_eq!(key["n"], URL_SAFE_NO_PAD.encode(public.n().to_bytes_be()));
    assert_eq!(key["e"], URL_SAFE_NO_PAD.encode(public.e().to_bytes_be()));
    // No private parts.
    for private in ["d", "p", "q", "dp", "dq", "qi"] {
        assert!(key.get(private).is_none(), "JWKS leaks `{private}`");
    }

    // Issued tokens name this key and verify with it.
    let reply = login(&app, OPERATOR_USERNAME, OPERATOR_PASSWORD)
        .await
        .expect(200);
    let token = str_field(&reply.body, "access_token");
    let header = header_of(token);
    assert_eq!(header["alg"], "RS256");
    assert_eq!(header["kid"], kid);
    let decoding = DecodingKey::from_rsa_components(str_field(key, "n"), str_field(key, "e"))
        .expect("decoding key from JWKS");
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_issuer(&["behavry"]);
    let verified = jsonwebtoken::decode::<Value>(token, &decoding, &validation)
        .expect("token verifies with the published key");
    assert_eq!(verified.claims["username"], OPERATOR_USERNAME);
}

async fn login_succeeds_with_documented_shape(backend: Backend) {
    let app = TestApp::spawn(backend).await;

    // The platform operator.
    let reply = login(&app, OPERATOR_USERNAME, OPERATOR_PASSWORD)
        .await
        .expect(200);
    let body = &reply.body;
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    let admin = &body["admin"];
    assert_eq!(admin["username"], OPERATOR_USERNAME);
    assert_eq!(admin["role"], "admin");
    assert_eq!(admin["tenant_id"], Value::Null);
    assert_eq!(admin["is_super_admin"], true);
    let operator_id = str_field(admin, "id");
    uuid::Uuid::parse_str(operator_id).expect("admin id is a UUID");
    let mut keys: Vec<&str> = body
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(keys, ["access_token", "admin", "expires_in", "token_type"]);

    let token = str_field(body, "access_token");
    assert_eq!(token.split('.').count(), 3);
    let claims = claims_of(token);
    assert_eq!(claims["iss"], "behavry");
    assert_eq!(claims["sub"], operator_id);
    assert_eq!(claims["typ"], "admin");
    assert_eq!(claims["username"], OPERATOR_USERNAME);
    assert_eq!(claims["role"], "admin");
    assert_eq!(claims["sa"], true);
    assert!(claims.get("tenant").is_none_or(Value::is_null), "{claims}");
    let iat = claims["iat"].as_i64().expect("iat");
    let exp = claims["exp"].as_i64().expect("exp");
    assert_eq!(exp - iat, 3600);
    assert!(
        (iat - chrono::Utc::now().timestamp()).abs() < 60,
        "iat is now"
    );

    // The username is trimmed and case-insensitive.
    login(&app, "  OPERATOR ", OPERATOR_PASSWORD)
        .await
        .expect(200);

    // A tenant admin created by signup.
    let signup = signup(&app, "Login Test Co", "Owner@Login-Test.example", PASSWORD)
        .await
        .expect(201);
    let tenant_id = str_field(&signup.body, "tenant_id");
    let reply = login(&app, "owner@login-test.example", PASSWORD)
        .await
        .expect(200);
    let admin = &reply.body["admin"];
    assert_eq!(admin["username"], "owner@login-test.example");
    assert_eq!(admin["tenant_id"], tenant_id);
    assert_eq!(admin["is_super_admin"], false);
    assert_eq!(admin["role"], "admin");
    let claims = claims_of(str_field(&reply.body, "access_token"));
    assert_eq!(claims["tenant"], tenant_id);
    assert_eq!(claims["sa"], false);
    assert_eq!(claims["sub"], admin["id"]);

    // The token works.
    let token = str_field(&reply.body, "access_token");
    get(&app, "/api/v1/admin/usage", Some(token))
        .await
        .expect(200);

    // And a wrong password for that account fails.
    login(
        &app,
        "owner@login-test.example",
        "correct horse battery stapler",
    )
    .await
    .expect_error(401, "unauthorized");
}

both_backends!(login_succeeds_with_documented_shape);

#[tokio::test]
async fn wrong_password_and_unknown_user_are_indistinguishable() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let wrong_password = login(&app, OPERATOR_USERNAME, "not-the-operator-password").await;
    let unknown_user = login(&app, "nobody-by-that-name", "not-the-operator-password").await;
    assert_eq!(wrong_password.status, 401);
    assert_eq!(wrong_password.status, unknown_user.status);
    assert_eq!(wrong_password.text, unknown_user.text);
    assert_eq!(wrong_password.header("www-authenticate"), Some("Bearer"));
    assert_eq!(
        wrong_password.header("www-authenticate"),
        unknown_user.header("www-authenticate")
    );
    let message = wrong_password.expect_error(401, "unauthorized");
    assert_eq!(message, "invalid username or password");
    unknown_user.expect_error(401, "unauthorized");
}

#[tokio::test]
async fn login_rejects_malformed_requests() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let path = "/api/v1/auth/admin/login";

    // Missing field.
    let message =
        send(request(&app, Method::POST, path, None).json(&json!({ "username": "operator" })))
            .await
            .expect_error(422, "validation_failed");
    assert!(message.contains("password"), "{message}");
    // Unknown field.
    send(request(&app, Method::POST, path, None).json(&json!({
        "username": "operator", "password": OPERATOR_PASSWORD, "remember_me": true
    })))
    .await
    .expect_error(422, "validation_failed");
    // Wrong type.
    send(request(&app, Method::POST, path, None).json(&json!({ "username": 42, "password": "x" })))
        .await
        .expect_error(422, "validation_failed");
    // Blank username.
    login(&app, "   ", OPERATOR_PASSWORD)
        .await
        .expect_error(422, "validation_failed");
    // Malformed JSON.
    send(
        request(&app, Method::POST, path, None)
            .header("content-type", "application/json")
            .body(r#"{"username": "operator", "password": "#),
    )
    .await
    .expect_error(400, "bad_request");
    // No JSON content type.
    let body = json!({ "username": OPERATOR_USERNAME, "password": OPERATOR_PASSWORD }).to_string();
    send(
        request(&app, Method::POST, path, None)
            .header("content-type", "text/plain")
            .body(body.clone()),
    )
    .await
    .expect_error(415, "unsupported_media_type");
    send(request(&app, Method::POST, path, None).body(body.clone()))
        .await
        .expect_error(415, "unsupported_media_type");
    // A JSON content type with parameters is fine.
    send(
        request(&app, Method::POST, path, None)
            .header("content-type", "application/json; charset=utf-8")
            .body(body),
    )
    .await
    .expect(200);
}

#[tokio::test]
async fn repeated_failures_lock_the_username() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    // Another account, to show the lock is per username.
    let (_, _) = tenant_admin(&app, "Bystander Inc", "bystander").await;

    for attempt in 1..=10 {
        let reply = login(
            &app,
            OPERATOR_USERNAME,
            &format!("wrong-password-{attempt}"),
        )
        .await;
        reply.expect_error(401, "unauthorized");
    }
    // The 11th attempt is refused even with the right password, and in
    // any letter case.
    for username in [OPERATOR_USERNAME, "Operator"] {
        let reply = login(&app, username, OPERATOR_PASSWORD).await;
        let retry_after: u64 = reply
            .header("retry-after")
            .expect("Retry-After header")
            .parse()
            .expect("Retry-After is a number of seconds");
        assert!(
            (1..=900).contains(&retry_after),
            "Retry-After: {retry_after}"
        );
        let message = reply.expect_error(429, "rate_limited");
        assert!(message.contains(&retry_after.to_string()), "{message}");
    }
    // Other accounts are unaffected.
    login(&app, "bystander", PASSWORD).await.expect(200);
}

#[tokio::test]
async fn too_many_logins_from_one_address_are_refused() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    // 30 attempts per address per 5 minutes, successful or not.
    login(&app, OPERATOR_USERNAME, OPERATOR_PASSWORD)
        .await
        .expect(200);
    for n in 2..=30 {
        login(&app, &format!("user-{n}"), "some-password-123")
            .await
            .expect_error(401, "unauthorized");
    }
    let reply = login(&app, OPERATOR_USERNAME, OPERATOR_PASSWORD).await;
    let retry_after: u64 = reply
        .header("retry-after")
        .expect("Retry-After header")
        .parse()
        .expect("Retry-After is a number of seconds");
    assert!(
        (1..=300).contains(&retry_after),
        "Retry-After: {retry_after}"
    );
    reply.expect_error(429, "rate_limited");
}

#[tokio::test]
async fn passwords_longer_than_72_bytes_are_not_truncated() {
    // Passwords of up to 256 characters are accepted, so every character
    // must count. bcrypt only looks at the first 72 bytes.
    let app = TestApp::spawn(Backend::Sqlite).await;
    let prefix = "a long passphrase ".repeat(4);
    assert_eq!(prefix.len(), 72);
    let password = format!("{prefix}and the real ending");
    let lookalike = format!("{prefix}and something else entirely");
    signup(&app, "Long Passwords Ltd", "owner@long.example", &password)
        .await
        .expect(201);
    login(&app, "owner@long.example", &password)
        .await
        .expect(200);
    // bcrypt alone reads only 72 bytes; a password sharing the first 72
    // bytes must still be refused.
    login(&app, "owner@long.example", &lookalike)
        .await
        .expect_error(401, "unauthorized");
}
