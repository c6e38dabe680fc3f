//! The Unitel simulator over real HTTP: auth, products, bills and credits.

mod common;

use std::time::Duration;

use common::*;
use sandbox::{CreditKind, SandboxConfig};
use serde_json::{json, Value};

const UNAUTHORIZED: &str = r#"{"result":"401","code":"401","msg":"Unauthorized"}"#;

#[tokio::test]
async fn auth_needs_the_right_basic_credentials() {
    let sandbox = start("http://127.0.0.1:9").await;
    let http = client();
    let auth = format!("{}/auth", sandbox.unitel_url());

    for attempt in [
        http.post(&auth).basic_auth("elife", Some("wrong")),
        http.post(&auth),
        http.post(&auth).bearer_auth("elife:elife-secret"),
    ] {
        let response = attempt.send().await.unwrap();
        assert_eq!(response.status(), 401);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body, serde_json::from_str::<Value>(UNAUTHORIZED).unwrap());
    }

    let response = http
        .post(&auth)
        .basic_auth("elife", Some("elife-secret"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 120);
    assert!(body["access_token"].as_str().unwrap().len() >= 32);
    assert!(body["scope"].is_string());
}

#[tokio::test]
async fn service_calls_need_a_live_token() {
    let mut config = SandboxConfig::for_tests("http://127.0.0.1:9");
    config.token_ttl = Duration::from_millis(300);
    let sandbox = start_with(config).await;
    let mut unitel = Unitel::login(&sandbox).await;
    let body = json!({"msisdn": "88616600", "info": "1"});

    let (status, _) = unitel.call("/service/servicetype", body.clone()).await;
    assert_eq!(status, 200);

    tokio::time::sleep(Duration::from_millis(400)).await;
    let (status, answer) = unitel.call("/service/servicetype", body.clone()).await;
    assert_eq!(status, 401, "the token expired");
    assert_eq!(answer["msg"], "Unauthorized");

    unitel.token = "made-up".into();
    let (status, _) = unitel.call("/service/servicetype", body.clone()).await;
    assert_eq!(status, 401);

    let fresh = Unitel::login(&sandbox).await;
    let (status, _) = fresh.call("/service/servicetype", body).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn auth_failures_can_be_injected() {
    let sandbox = start("http://127.0.0.1:9").await;
    let mut faults = sandbox.faults();
    faults.unitel.auth_fail_next = 1;
    sandbox.set_faults(faults);
    let auth = format!("{}/auth", sandbox.unitel_url());
    let first = client()
        .post(&auth)
        .basic_auth("elife", Some("elife-secret"))
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 401);
    Unitel::login(&sandbox).await;
}

#[tokio::test]
async fn the_last_digit_picks_the_product_list() {
    let sandbox = start("http://127.0.0.1:9").await;
    let unitel = Unitel::login(&sandbox).await;
    let expectations = [
        ("88616600", "smart-data", "SD5000"),
        ("88616603", "smart-data", "SD5000"),
        ("88616601", "smart-days", "SY5000"),
        ("88616602", "smart-talk", "ST5000"),
        ("88616609", "postpaid", ""),
    ];
    for (msisdn, tariff, card) in expectations {
        let (status, products) = unitel
            .call(
                "/service/servicetype",
                json!({"msisdn": msisdn, "info": "1"}),
            )
            .await;
        assert_eq!(status, 200);
        assert_eq!(products["result"], "success");
        assert_eq!(products["3rdparty_name"], tariff, "{msisdn}");
        if !card.is_empty() {
            let cards = products["service"]["cards"]["day"].to_string();
            assert!(cards.contains(card), "{msisdn}: {cards}");
        }
    }
    for unknown in ["08616600", "8861660", "abcdefgh"] {
        let (status, answer) = unitel
            .call(
                "/service/servicetype",
                json!({"msisdn": unknown, "info": "1"}),
            )
            .await;
        assert_eq!(status, 200);
        assert_eq!(
            answer,
            json!({"result": "failed", "code": "404", "msg": "Subscriber not found"})
        );
    }
}

#[tokio::test]
async fn paths_work_with_and_without_the_api_prefix() {
    let sandbox = start("http://127.0.0.1:9").await;
    let mut unitel = Unitel::login(&sandbox).await;
    unitel.base = unitel.base.trim_end_matches("/api/v1").to_owned();
    let (status, products) = unitel
        .call(
            "/service/servicetype",
            json!({"msisdn": "88616600", "info": "1"}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(products["result"], "success");
}

#[tokio::test]
async fn postpaid_bills_by_number() {
    let sandbox = start("http://127.0.0.1:9").await;
    let unitel = Unitel::login(&sandbox).await;
    let bill = |msisdn: &str| json!({"owner": msisdn, "msisdn": msisdn});

    let (_, settled) = unitel.call("/service/unitel", bill("88616609")).await;
    assert_eq!(settled["total_unpaid"], 0);
    assert_eq!(settled["result"], "success");
    let (_, owing) = unitel.call("/service/unitel", bill("88616619")).await;
    assert_eq!(owing["total_unpaid"], 74220);
    assert_eq!(owing["invoice_status"], "unpaid");
    let (_, prepaid) = unitel.call("/service/unitel", bill("88616600")).await;
    assert_eq!(
        prepaid,
        json!({"result": "failed", "code": "404", "msg": "Not a postpaid subscriber"})
    );
}

#[tokio::test]
async fn a_recharge_credits_once_per_call_and_returns_a_receipt() {
    let sandbox = start("http://127.0.0.1:9").await;
    let unitel = Unitel::login(&sandbox).await;

    let (status, answer) = unitel
        .call(
            "/service/recharge",
            recharge_body("88616600", "SD5000", "5000", "ORD1"),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(answer["result"], "success");
    assert_eq!(answer["code"], "000");
    let seq = answer["seq"].as_str().unwrap().to_owned();
    assert_eq!(seq.len(), 13);
    assert!(answer["sv_id"].as_str().unwrap().starts_with("P_ETOPUP_"));
    let vat = &answer["vat"];
    assert_eq!(vat["amount"], "5000.00");
    assert_eq!(vat["vat"], "454.55");
    assert_eq!(vat["stocks"][0]["totalAmount"], "5000.00");
    assert!(vat["lottery"].as_str().unwrap().len() == 11);

    // The same journal_id again is credited again: preventing that is the caller's job.
    let (_, again) = unitel
        .call(
            "/service/recharge",
            recharge_body("88616600", "SD5000", "5000", "ORD1"),
        )
        .await;
    assert_eq!(again["result"], "success");
    assert_ne!(again["seq"], seq.as_str());

    let ledger = sandbox.ledger();
    assert_eq!(ledger.len(), 2);
    assert!(ledger.iter().all(|credit| credit.journal_id == "ORD1"));
    assert_eq!(ledger[0].kind, CreditKind::Recharge);
    assert!(ledger[0].kind == "recharge");
    assert_eq!(ledger[0].product.as_deref(), Some("SD5000"));
    assert_eq!(ledger[0].amount, 5000);
    assert_eq!(ledger[0].msisdn, "88616600");
    assert_eq!(ledger[0].seq, seq);

    let (_, found) = unitel
        .call("/service/check_transaction_result", json!({"seq_id": seq}))
        .await;
    assert_eq!(
        found,
        json!({"result": "success", "code": "000", "msg": "success", "status": "success"})
    );
    let (_, missing) = unitel
        .call(
            "/service/check_transaction_result",
            json!({"seq_id": "1111111111111"}),
        )
        .await;
    assert_eq!(missing["status"], "failed");
    assert_eq!(missing["msg"], "transaction not found");

    let http_ledger: Value = client()
        .get(format!("{}/sandbox/unitel/ledger", sandbox.control_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(http_ledger[1]["journalId"], "ORD1");
    assert_eq!(http_ledger[1]["kind"], "recharge");
    assert!(http_ledger[1]["creditedAt"].is_string());
}

#[tokio::test]
async fn invalid_recharges_fail_without_credit() {
    let sandbox = start("http://127.0.0.1:9").await;
    let unitel = Unitel::login(&sandbox).await;
    let cases = [
        (
            "wrong amount",
            recharge_body("88616600", "SD5000", "4999", "J"),
            "400",
        ),
        (
            "numeric amount",
            {
                let mut body = recharge_body("88616600", "SD5000", "5000", "J");
                body["transactions"][0]["amount"] = 5000.into();
                body
            },
            "400",
        ),
        (
            "card of another tariff",
            recharge_body("88616601", "SD5000", "5000", "J"),
            "400",
        ),
        (
            "postpaid has no cards",
            recharge_body("88616609", "SD5000", "5000", "J"),
            "400",
        ),
        (
            "unknown card",
            recharge_body("88616600", "XX1", "5000", "J"),
            "400",
        ),
        (
            "no journal id",
            recharge_body("88616600", "SD5000", "5000", ""),
            "400",
        ),
        (
            "no transactions",
            {
                let mut body = recharge_body("88616600", "SD5000", "5000", "J");
                body["transactions"] = json!([]);
                body
            },
            "400",
        ),
        (
            "unknown subscriber",
            recharge_body("0861660", "SD5000", "5000", "J"),
            "404",
        ),
    ];
    for (case, body, code) in cases {
        let (status, answer) = unitel.call("/service/recharge", body).await;
        assert_eq!(status, 200, "{case}");
        assert_eq!(answer["result"], "failed", "{case}: {answer}");
        assert_eq!(answer["code"], code, "{case}: {answer}");
        assert!(answer["msg"].is_string());
    }
    assert!(sandbox.ledger().is_empty());
}

#[tokio::test]
async fn data_packages_and_bill_payments_credit_their_kind() {
    let sandbox = start("http://127.0.0.1:9").await;
    let unitel = Unitel::login(&sandbox).await;

    let (_, package) = unitel
        .call(
            "/service/datapackage",
            package_body("88616609", "data3gb2d", "3500", "ORD2"),
        )
        .await;
    assert_eq!(package["result"], "success", "{package}");
    assert_eq!(package["sv_id"], Value::Null);
    assert_eq!(package["vat"]["vat"], "318.18");

    let (_, wrong) = unitel
        .call(
            "/service/datapackage",
            package_body("88616600", "SD5000", "5000", "ORD3"),
        )
        .await;
    assert_eq!(wrong["result"], "failed", "a card is not a package");

    let payment = |msisdn: &str, amount: &str| {
        json!({
            "msisdn": msisdn,
            "amount": amount,
            "remark": "bill",
            "vatflag": "1",
            "vat_register_no": "",
            "transactions": [{"journal_id": "ORD4", "amount": amount, "description": "Payment", "account": ""}],
        })
    };
    let (_, paid) = unitel
        .call("/service/payment", payment("88616619", "74220"))
        .await;
    assert_eq!(paid["result"], "success", "{paid}");
    assert_eq!(paid["vat"]["amount"], "74220.00");
    let (_, prepaid) = unitel
        .call("/service/payment", payment("88616600", "1000"))
        .await;
    assert_eq!(prepaid["result"], "failed");
    let (_, zero) = unitel
        .call("/service/payment", payment("88616619", "0"))
        .await;
    assert_eq!(zero["result"], "failed");

    let kinds: Vec<String> = sandbox
        .ledger()
        .iter()
        .map(|credit| credit.kind.to_string())
        .collect();
    assert_eq!(kinds, vec!["datapackage", "payment"]);
    assert_eq!(sandbox.ledger()[1].product, None);
    assert_eq!(sandbox.ledger()[1].amount, 74220);
}

#[tokio::test]
async fn failures_and_server_errors_can_be_injected_without_credit() {
    let sandbox = start("http://127.0.0.1:9").await;
    let unitel = Unitel::login(&sandbox).await;
    let mut faults = sandbox.faults();
    faults.unitel.fail_next = 1;
    faults.unitel.http_error_next = 1;
    sandbox.set_faults(faults);
    let body = || recharge_body("88616602", "ST3000", "3000", "ORD5");

    let (status, _) = unitel.call("/service/recharge", body()).await;
    assert_eq!(status, 500);
    let (status, failed) = unitel.call("/service/recharge", body()).await;
    assert_eq!(status, 200);
    assert_eq!(failed["result"], "failed");
    assert_eq!(failed["code"], "105");
    assert!(sandbox.ledger().is_empty());
    assert_eq!(sandbox.faults().unitel.fail_next, 0, "counters are used up");

    let (_, ok) = unitel.call("/service/recharge", body()).await;
    assert_eq!(ok["result"], "success");
    assert_eq!(sandbox.ledger().len(), 1);
}
