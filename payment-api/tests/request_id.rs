//! Every request is named by an `x-request-id`, the caller's own or one made at the door:
//! it comes back on the answer, and every line logged while serving the request carries it.

use testkit::{CapturedLog, System, SystemOptions};

#[tokio::test]
async fn every_request_answers_with_its_id_and_logs_under_it() {
    let log = CapturedLog::default();
    // tower-http reports each finished request at debug, inside the request's span.
    let _guard = log.install_at("info,tower_http=debug");
    let system = System::start(SystemOptions::default()).await;

    let given = system
        .http
        .get(format!("{}/no-such-route", system.api_url))
        .header("x-request-id", "caller-chose-this-id")
        .send()
        .await
        .unwrap();
    assert_eq!(given.headers()["x-request-id"], "caller-chose-this-id");

    let made = system
        .http
        .get(format!("{}/no-such-route", system.api_url))
        .send()
        .await
        .unwrap();
    let made = made
        .headers()
        .get("x-request-id")
        .expect("an id made for a request that came without one")
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(made.len(), 36, "a UUID: {made}");

    let text = log.text();
    for id in ["caller-chose-this-id", made.as_str()] {
        let lines: Vec<_> = text
            .lines()
            .filter(|line| line.contains("request{") && line.contains(id))
            .collect();
        assert!(
            lines
                .iter()
                .any(|line| line.contains("finished processing request")),
            "no line logged under {id}:\n{text}"
        );
    }
    system.shutdown().await;
}
