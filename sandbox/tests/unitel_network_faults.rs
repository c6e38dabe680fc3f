//! Faults a client can only see on the wire: refused connections, a connection dropped
//! after the credit, an answer that never comes; and the control API that sets them.

mod common;

use std::time::Duration;

use common::*;
use sandbox::Faults;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_connections_are_connect_errors_until_the_window_ends() {
    let sandbox = start("http://127.0.0.1:9").await;
    let unitel = Unitel::login(&sandbox).await;
    let body = || recharge_body("88616600", "SD3000", "3000", "ORDREFUSE1");

    let mut faults = Faults::default();
    faults.unitel.refuse_connections_for_ms = 700;
    sandbox.set_faults(faults);
    assert_eq!(
        sandbox.faults().unitel.refuse_connections_for_ms,
        0,
        "a trigger, not a setting"
    );

    // At once for a new connection. A kept-alive connection is dropped by its own task,
    // so give that a moment: were it still open, the call would succeed over it.
    let refused = |http: reqwest::Client| {
        let request = http
            .post(format!("{}/service/recharge", unitel.base))
            .bearer_auth(&unitel.token)
            .json(&body());
        async move {
            let error = request.send().await.expect_err("the port is closed");
            assert!(error.is_connect(), "{error:?}");
        }
    };
    refused(client()).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    refused(unitel.client.clone()).await;
    assert!(sandbox.ledger().is_empty());

    let reopened = async {
        loop {
            if let Ok(response) = unitel.send("/service/recharge", body()).await {
                return response;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let response = tokio::time::timeout(Duration::from_secs(3), reopened)
        .await
        .expect("the port opens again");
    assert_eq!(response.status(), 200);
    assert_eq!(sandbox.ledger().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_dropped_after_the_credit_is_not_a_connect_error() {
    let sandbox = start("http://127.0.0.1:9").await;
    let unitel = Unitel::login(&sandbox).await;
    let mut faults = Faults::default();
    faults.unitel.drop_after_credit = 1;
    sandbox.set_faults(faults);

    let error = unitel
        .send(
            "/service/recharge",
            recharge_body("88616600", "SD3000", "3000", "ORDDROP001"),
        )
        .await
        .expect_err("no response");
    assert!(!error.is_connect(), "{error:?}");
    assert!(!error.is_timeout(), "{error:?}");

    let ledger = sandbox.ledger();
    assert_eq!(ledger.len(), 1, "credited before the drop");
    assert_eq!(ledger[0].journal_id, "ORDDROP001");

    // Only the next call was affected.
    let (status, answer) = unitel
        .call(
            "/service/recharge",
            recharge_body("88616600", "SD3000", "3000", "ORDDROP002"),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(answer["result"], "success");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_that_times_out_after_the_credit_still_credited() {
    let sandbox = start("http://127.0.0.1:9").await;
    let unitel = Unitel::login(&sandbox).await;
    let mut faults = Faults::default();
    faults.unitel.timeout_after_credit = 1;
    sandbox.set_faults(faults);

    let error = unitel
        .client
        .post(format!("{}/service/datapackage", unitel.base))
        .bearer_auth(&unitel.token)
        .timeout(Duration::from_millis(300))
        .json(&package_body("88616600", "data3gb2d", "3500", "ORDHANG001"))
        .send()
        .await
        .expect_err("no answer in time");
    assert!(error.is_timeout(), "{error:?}");
    assert_eq!(sandbox.ledger().len(), 1);
    assert_eq!(sandbox.ledger()[0].journal_id, "ORDHANG001");
}

#[tokio::test]
async fn latency_delays_every_call() {
    let sandbox = start("http://127.0.0.1:9").await;
    let mut faults = Faults::default();
    faults.unitel.latency_ms = 200;
    sandbox.set_faults(faults);
    let started = std::time::Instant::now();
    Unitel::login(&sandbox).await;
    assert!(started.elapsed() >= Duration::from_millis(200));
}

#[tokio::test]
async fn faults_are_set_read_and_reset_over_http() {
    let sandbox = start("http://127.0.0.1:9").await;
    let control = sandbox.control_url();
    let http = client();

    let set: Value = http
        .put(format!("{control}/sandbox/faults"))
        .json(&json!({"unitel": {"failNext": 3}, "wechat": {"callbackDuplicates": 1}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(set["unitel"]["failNext"], 3);
    assert_eq!(
        set["unitel"]["dropAfterCredit"], 0,
        "everything else defaults"
    );
    assert_eq!(sandbox.faults().wechat.callback_duplicates, 1);

    // A credit so that reset has something to keep or clear.
    let unitel = Unitel::login(&sandbox).await;
    sandbox.reset(false);
    unitel
        .call(
            "/service/recharge",
            recharge_body("88616600", "SD3000", "3000", "ORDRESET01"),
        )
        .await;
    assert_eq!(sandbox.ledger().len(), 1);

    http.put(format!("{control}/sandbox/faults"))
        .json(&json!({"unitel": {"failNext": 3}}))
        .send()
        .await
        .unwrap();
    let reset = http
        .post(format!("{control}/sandbox/reset"))
        .send()
        .await
        .unwrap();
    assert_eq!(reset.status(), 200);
    let after: Value = http
        .get(format!("{control}/sandbox/faults"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(after["unitel"]["failNext"], 0);
    assert_eq!(sandbox.ledger().len(), 1, "kept without clear");

    http.post(format!("{control}/sandbox/reset"))
        .json(&json!({"clear": true}))
        .send()
        .await
        .unwrap();
    assert!(sandbox.ledger().is_empty());
}

#[tokio::test]
async fn reset_reopens_a_refusing_port() {
    let sandbox = start("http://127.0.0.1:9").await;
    let mut faults = Faults::default();
    faults.unitel.refuse_connections_for_ms = 60_000;
    sandbox.set_faults(faults);
    let refused = client()
        .post(format!("{}/auth", sandbox.unitel_url()))
        .send()
        .await
        .expect_err("refused");
    assert!(refused.is_connect());
    sandbox.reset(false);
    Unitel::login(&sandbox).await;
}

#[tokio::test]
async fn shutdown_frees_both_ports() {
    let sandbox = start("http://127.0.0.1:9").await;
    let wechat = sandbox.wechat_url();
    let unitel = sandbox.unitel_url();
    sandbox.shutdown().await;
    for url in [format!("{wechat}/sandbox/health"), format!("{unitel}/auth")] {
        let error = client().post(url).send().await.expect_err("stopped");
        assert!(error.is_connect(), "{error:?}");
    }
}
