//! Direct mode's identity (`WECHAT_PAY_MODE=direct`): a `wx.login` code exchanged at
//! (the sandbox's) WeChat for our own session token, which alone names the caller; cloud
//! mode keeps the gateway's headers and does not offer `/auth/login`.

use reqwest::StatusCode;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use testkit::{CapturedLog, System, SystemOptions};

fn direct(overrides: &[(&'static str, &str)]) -> SystemOptions {
    SystemOptions {
        workers: 0,
        overrides: [("WECHAT_PAY_MODE", "direct")]
            .iter()
            .chain(overrides)
            .map(|(name, value)| (*name, (*value).to_owned()))
            .collect(),
        ..SystemOptions::default()
    }
}

async fn sessions_where(system: &System, condition: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT count(*) FROM sessions WHERE {condition}"))
        .fetch_one(&system.db.pool)
        .await
        .unwrap()
}

/// A request with exactly these headers (and the customer's address).
async fn get_with(system: &System, path: &str, headers: &[(&str, &str)]) -> (StatusCode, Value) {
    let mut request = system
        .http
        .get(format!("{}{path}", system.api_url))
        .header("X-Original-Forwarded-For", "10.1.2.3");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_login_opens_a_session_that_reaches_the_orders_and_its_code_is_spent() {
    let system = System::start(direct(&[])).await;
    let customer = system.client("o_direct_customer");
    let code = system.sandbox.login_code("o_direct_customer");

    let (status, body) = customer.log_in(&code).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["code"], 200, "the usual envelope: {body}");
    assert_eq!(body["data"]["expiresIn"], 7200);
    let token = body["data"]["token"].as_str().unwrap().to_owned();
    assert_eq!(token.len(), 43, "32 bytes in base64url: {token}");

    // The user exists, recorded with the mini-program's appid; only the token's hash is kept.
    let (appid,): (Option<String>,) =
        sqlx::query_as("SELECT appid FROM users WHERE openid = 'o_direct_customer'")
            .fetch_one(&system.db.pool)
            .await
            .unwrap();
    assert_eq!(appid.as_deref(), Some(sandbox::LOGIN_APP_ID));
    let (stored,): (Vec<u8>,) = sqlx::query_as("SELECT token_hash FROM sessions")
        .fetch_one(&system.db.pool)
        .await
        .unwrap();
    assert_eq!(stored, Sha256::digest(token.as_bytes()).to_vec());

    // The token names the customer: their orders, and a new one in their name.
    let bearer = format!("Bearer {token}");
    let (status, body) = get_with(&system, "/orders/my", &[("Authorization", &bearer)]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let order = system
        .create_order("o_direct_customer", "88616600", "voice", "SD5000")
        .await;
    let (status, body) = get_with(
        &system,
        &format!("/orders/{order}"),
        &[("Authorization", &bearer)],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["openid"], "o_direct_customer");

    // wx.login's code is good once.
    let (status, body) = customer.log_in(&code).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["message"], "登录凭证无效或已使用，请重新登录");
    let (status, body) = customer.post("/auth/login", json!({})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["message"], "登录凭证必须是字符串, 登录凭证不能为空");
    system.shutdown().await;
}

#[tokio::test]
async fn each_refusal_of_wechats_has_its_own_answer_without_wechats_words() {
    let mut system = System::start(direct(&[])).await;
    let cases = [
        (
            40029,
            StatusCode::BAD_REQUEST,
            "登录凭证无效或已使用，请重新登录",
        ),
        (
            45011,
            StatusCode::TOO_MANY_REQUESTS,
            "登录过于频繁，请稍后再试",
        ),
        (
            40226,
            StatusCode::FORBIDDEN,
            "微信判定该账号存在安全风险，暂时无法登录",
        ),
        (
            -1,
            StatusCode::SERVICE_UNAVAILABLE,
            "微信登录繁忙，请稍后再试",
        ),
        (
            40001,
            StatusCode::BAD_GATEWAY,
            "微信登录暂时不可用，请稍后再试",
        ),
    ];
    system.sandbox.set_faults(sandbox::Faults {
        wechat: sandbox::WechatFaults {
            login_errors: cases.iter().map(|(errcode, _, _)| *errcode).collect(),
            ..Default::default()
        },
        ..Default::default()
    });
    for (n, (errcode, status, message)) in cases.into_iter().enumerate() {
        let openid = format!("o_refused_{n}");
        let code = system.sandbox.login_code(&openid);
        let (answered, body) = system.client(&openid).log_in(&code).await;
        assert_eq!(answered, status, "errcode {errcode}: {body}");
        assert_eq!(body["message"], message, "errcode {errcode}");
    }
    assert_eq!(
        sessions_where(&system, "true").await,
        0,
        "no refusal opened a session"
    );

    // Our own configuration wrong (WeChat's 40125), or WeChat out of reach.
    system
        .restart_api(&[("WECHAT_APP_SECRET", "not-the-registered-secret")])
        .await;
    let code = system.sandbox.login_code("o_wrong_secret");
    let (status, body) = system.client("o_wrong_secret").log_in(&code).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert!(!body.to_string().contains("appsecret"), "{body}");
    system
        .restart_api(&[("WECHAT_LOGIN_API_BASE", "http://127.0.0.1:1")])
        .await;
    let (status, body) = system.client("o_unreachable").log_in("a-code").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    system.shutdown().await;
}

#[tokio::test]
async fn logins_are_limited_per_client_address() {
    // Customers reach us through an ingress that names them in this header (testkit's
    // clients each send their own address in it); direct mode's default, the peer, would
    // make every test client one address.
    let system = System::start(direct(&[
        ("RATE_LIMIT_PER_ADDRESS_PER_MINUTE", "2"),
        ("CLIENT_ADDRESS_FROM", "x-original-forwarded-for"),
    ]))
    .await;
    let customer = system.client("o_hasty");
    for _ in 0..2 {
        let (status, body) = customer.log_in(&system.sandbox.login_code("o_hasty")).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let (status, body) = customer.log_in(&system.sandbox.login_code("o_hasty")).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    // Another address is not held back.
    let (status, body) = system
        .client("o_elsewhere")
        .log_in(&system.sandbox.login_code("o_elsewhere"))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    system.shutdown().await;
}

#[tokio::test]
async fn a_session_ends_when_it_expires_and_when_its_customer_logs_out() {
    let system = System::start(direct(&[])).await;
    let customer = system.client("o_leaving");
    let token = customer.session_token().await.unwrap();
    let bearer = format!("Bearer {token}");
    assert_eq!(customer.get("/orders/my").await.0, StatusCode::OK);

    sqlx::query("UPDATE sessions SET expires_at = now() - interval '1 second'")
        .execute(&system.db.pool)
        .await
        .unwrap();
    let (status, body) = get_with(&system, "/orders/my", &[("Authorization", &bearer)]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["message"], "登录已失效，请重新登录");

    // The next login deletes the expired session.
    let (status, body) = customer
        .log_in(&system.sandbox.login_code("o_leaving"))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(sessions_where(&system, "expires_at <= now()").await, 0);
    let bearer = format!("Bearer {}", body["data"]["token"].as_str().unwrap());

    let logout = |bearer: String| {
        let request = system
            .http
            .post(format!("{}/auth/logout", system.api_url))
            .header("Authorization", bearer);
        async move {
            let response = request.send().await.unwrap();
            (response.status(), response.json::<Value>().await.unwrap())
        }
    };
    assert_eq!(
        get_with(&system, "/orders/my", &[("Authorization", &bearer)])
            .await
            .0,
        StatusCode::OK
    );
    let (status, body) = logout(bearer.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["data"]["revoked"], true);
    let (status, body) = get_with(&system, "/orders/my", &[("Authorization", &bearer)]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, body) = logout(bearer).await;
    assert_eq!(
        (status, &body["data"]["revoked"]),
        (StatusCode::CREATED, &json!(false))
    );
    system.shutdown().await;
}

#[tokio::test]
async fn direct_mode_ignores_the_gateways_headers_which_cloud_mode_still_trusts() {
    let gateway = [("X-WX-SOURCE", "wx_client"), ("X-WX-OPENID", "o_pretender")];
    let mock = [("X-Mock-Openid", "o_pretender")];

    let system = System::start(direct(&[])).await;
    for headers in [&gateway[..], &mock[..]] {
        let (status, body) = get_with(&system, "/orders/my", headers).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{headers:?}: {body}");
        assert_eq!(body["message"], "未登录");
    }
    let forged = [
        gateway[0],
        gateway[1],
        ("Authorization", "Bearer not-a-token"),
    ];
    let (status, body) = get_with(&system, "/orders/my", &forged).await;
    assert_eq!(
        (status, body["message"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("登录已失效，请重新登录"))
    );
    assert_eq!(sessions_where(&system, "true").await, 0);
    system.shutdown().await;

    // Cloud mode whatever the suite's pass: its gateway is what these headers come from.
    let system = System::start(SystemOptions {
        workers: 0,
        overrides: vec![("WECHAT_PAY_MODE", "cloud".into())],
        ..SystemOptions::default()
    })
    .await;
    for headers in [&gateway[..], &mock[..]] {
        let (status, body) = get_with(&system, "/orders/my", headers).await;
        assert_eq!(status, StatusCode::OK, "{headers:?}: {body}");
    }
    let code = system.sandbox.login_code("o_pretender");
    let (status, body) = system.client("o_pretender").log_in(&code).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["message"], "Cannot POST /auth/login");
    let (_, doc) = system.anonymous().get("/api-json").await;
    for path in ["/auth/login", "/auth/logout"] {
        assert!(doc["paths"][path]["post"].is_object(), "{path} documented");
    }
    system.shutdown().await;
}

#[tokio::test]
async fn the_app_secret_the_token_and_the_session_key_never_reach_the_log() {
    let log = CapturedLog::default();
    // Everything our code and its HTTP client log, and each request's span.
    let _guard = log.install_at("debug");
    let mut system = System::start(direct(&[])).await;
    let customer = system.client("o_private");
    let code = system.sandbox.login_code("o_private");
    let (status, body) = customer.log_in(&code).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let token = body["data"]["token"].as_str().unwrap().to_owned();
    let bearer = format!("Bearer {token}");
    assert_eq!(
        get_with(&system, "/orders/my", &[("Authorization", &bearer)])
            .await
            .0,
        StatusCode::OK
    );
    // Each way a login fails logs something; none of it may carry a secret.
    system.sandbox.set_faults(sandbox::Faults {
        wechat: sandbox::WechatFaults {
            login_errors: vec![-1, 40001],
            ..Default::default()
        },
        ..Default::default()
    });
    for _ in 0..2 {
        let code = system.sandbox.login_code("o_private");
        assert!(customer.log_in(&code).await.0.is_server_error());
    }
    system
        .restart_api(&[("WECHAT_LOGIN_API_BASE", "http://127.0.0.1:1")])
        .await;
    let (status, _) = system.client("o_private").log_in("a-code").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    system.shutdown().await;

    let text = log.text();
    assert!(
        text.contains("session opened"),
        "the log was captured:\n{text}"
    );
    assert!(text.contains("WeChat login unavailable"), "{text}");
    assert!(text.contains("WeChat login failed"), "{text}");
    for secret in [sandbox::LOGIN_APP_SECRET, token.as_str(), "session_key"] {
        assert!(!text.contains(secret), "{secret} is in the log:\n{text}");
    }
}
