//! The operator's routes: nothing without the token; an unknown top-up settled by a person
//! with a note, kept in the order's history.

use reqwest::StatusCode;
use serde_json::{json, Value};
use testkit::{System, SystemOptions};

const TOKEN: &str = testkit::ADMIN_TOKEN;

#[tokio::test]
async fn admin_routes_refuse_a_missing_or_wrong_token_and_leak_nothing() {
    let system = System::start(SystemOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    let order = system
        .create_order("o-admin", "88616600", "voice", "SD5000")
        .await;
    let path = format!("/admin/orders/{order}");
    for token in [
        None,
        Some("wrong"),
        Some("test-admin-token-012345678"),
        Some(""),
    ] {
        let (status, body) = system
            .admin_request(reqwest::Method::GET, &path, token, None)
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{token:?}");
        assert_eq!(body["data"], Value::Null);
        for secret in ["o-admin", "88616600", "SD5000"] {
            assert!(
                !body.to_string().contains(secret),
                "no order data in a refusal: {body}"
            );
        }
    }
    let (status, body) = system
        .admin_request(reqwest::Method::GET, &path, Some(TOKEN), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["data"]["order"]["orderNumber"], order.as_str());
    assert_eq!(body["data"]["openid"], "o-admin");
    assert_eq!(body["data"]["events"][0]["event"], "created");
    let (status, _) = system
        .admin_request(
            reqwest::Method::POST,
            &format!("{path}/resolve"),
            None,
            Some(json!({"outcome": "success", "note": "x"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    system.shutdown().await;
}

#[tokio::test]
async fn a_person_settles_an_unknown_top_up_with_a_note() {
    let system = System::start(SystemOptions {
        unitel_timeout_ms: 500,
        ..Default::default()
    })
    .await;
    let (order, outcome) = system
        .top_up_under(
            "o-unknown",
            sandbox::UnitelFaults {
                timeout_after_credit: 1,
                ..Default::default()
            },
        )
        .await;
    assert_eq!(outcome, "unknown");
    let resolve = format!("/admin/orders/{order}/resolve");

    for bad in [
        json!({"outcome": "success", "note": "nul \u{0} inside"}),
        json!({"outcome": "refunded", "note": "x"}),
        json!({"outcome": "success", "note": "  "}),
        json!({"outcome": "success"}),
    ] {
        let (status, body) = system
            .admin_request(
                reqwest::Method::POST,
                &resolve,
                Some(TOKEN),
                Some(bad.clone()),
            )
            .await;
        assert!(status.is_client_error(), "{bad}: {status} {body}");
    }
    assert_eq!(system.statuses(&order).await.1, "unknown");

    let note = "Unitel support confirmed the credit (their ledger shows the journal id)";
    let (status, body) = system
        .admin_request(
            reqwest::Method::POST,
            &resolve,
            Some(TOKEN),
            Some(json!({"outcome": "success", "note": note, "resolvedBy": "ops-zhang"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["order"]["rechargeStatus"], "success");
    let last = body["data"]["events"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["event"], "success");
    assert_eq!(last["actor"], "admin:ops-zhang");
    assert_eq!(last["detail"]["note"], note);
    let events: Vec<&str> = body["data"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(events, ["created", "paid", "claimed", "unknown", "success"]);

    let (status, body) = system
        .admin_request(
            reqwest::Method::POST,
            &resolve,
            Some(TOKEN),
            Some(json!({"outcome": "failed", "note": "again"})),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "only unknown can be resolved: {body}"
    );
    assert_eq!(
        system.sandbox.ledger().len(),
        1,
        "resolving sends nothing to Unitel"
    );
    system.shutdown().await;
}
