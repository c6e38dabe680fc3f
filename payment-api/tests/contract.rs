//! The mini-program contract: every row of docs/compatibility.md checked against the
//! running service. Field rows: the path exists in a real answer with exactly that JSON
//! type. Status rows: the request (or the situation it names) gets exactly that status and
//! message, in the envelope. A row this suite cannot check fails it.

use std::collections::HashMap;
use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use testkit::{System, SystemOptions, ADMIN_TOKEN};

const DOC: &str = include_str!("../../docs/compatibility.md");

#[derive(Debug, Clone)]
struct FieldRow {
    path: String,
    kind: String,
}

#[derive(Debug, Clone)]
struct StatusRow {
    status: u16,
    request: String,
    message: String,
}

#[derive(Debug, Default)]
struct Section {
    /// `METHOD /path` from the heading; empty for sections that are not a route.
    route: Option<(Method, String)>,
    heading: String,
    fields: Vec<FieldRow>,
    statuses: Vec<StatusRow>,
}

fn cells(line: &str) -> Vec<String> {
    line.trim()
        .trim_matches('|')
        .split('|')
        .map(|c| c.trim().to_owned())
        .collect()
}

fn unquote(cell: &str) -> &str {
    cell.trim().trim_matches('`')
}

/// The document's sections and their tables.
fn parse() -> Vec<Section> {
    let mut sections: Vec<Section> = Vec::new();
    let mut table: Option<&'static str> = None;
    for line in DOC.lines() {
        if let Some(heading) = line
            .strip_prefix("## ")
            .or_else(|| line.strip_prefix("### "))
        {
            let route = heading.split('`').nth(1).and_then(|r| {
                let (method, path) = r.split_once(' ')?;
                Some((Method::from_bytes(method.as_bytes()).ok()?, path.to_owned()))
            });
            sections.push(Section {
                route,
                heading: heading.to_owned(),
                ..Section::default()
            });
            table = None;
            continue;
        }
        if !line.starts_with('|') {
            table = None;
            continue;
        }
        let row = cells(line);
        if row[0].starts_with("---") {
            continue;
        }
        match (table, row[0].as_str()) {
            (_, "field") => table = Some("field"),
            (_, "status") => table = Some("status"),
            (None, _) => table = Some("other"),
            (Some("field"), _) => sections.last_mut().unwrap().fields.push(FieldRow {
                path: unquote(&row[0]).to_owned(),
                kind: row[1].clone(),
            }),
            (Some("status"), _) => sections.last_mut().unwrap().statuses.push(StatusRow {
                status: row[0].parse().expect("a status code"),
                request: row[1].clone(),
                message: row[2].clone(),
            }),
            _ => {}
        }
    }
    sections
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Checks `path` (relative to `value`) has `kind`; problems are pushed to `errors`.
fn check_path(
    value: &Value,
    path: &[&str],
    kind: &str,
    order_fields: &[FieldRow],
    at: &str,
    errors: &mut Vec<String>,
) {
    let Some((head, rest)) = path.split_first() else {
        check_type(value, kind, order_fields, at, errors);
        return;
    };
    let (key, each) = match head.strip_suffix("[]") {
        Some(key) => (key, true),
        None => (*head, false),
    };
    let here = format!("{at}.{key}");
    let Some(child) = value.get(key) else {
        errors.push(format!("{here}: missing in {value}"));
        return;
    };
    if each {
        match child.as_array() {
            Some(items) if !items.is_empty() => {
                for (i, item) in items.iter().enumerate() {
                    check_path(
                        item,
                        rest,
                        kind,
                        order_fields,
                        &format!("{here}[{i}]"),
                        errors,
                    );
                }
            }
            _ => errors.push(format!(
                "{here}: not a non-empty array, cannot check: {child}"
            )),
        }
    } else {
        check_path(child, rest, kind, order_fields, &here, errors);
    }
}

fn check_type(
    value: &Value,
    kind: &str,
    order_fields: &[FieldRow],
    at: &str,
    errors: &mut Vec<String>,
) {
    if kind == "order object" {
        for field in order_fields {
            let path: Vec<&str> = field.path.split('.').collect();
            check_path(value, &path, &field.kind, &[], at, errors);
        }
        return;
    }
    let (base, nullable) = match kind.strip_suffix(" or null") {
        Some(base) => (base, true),
        None => (kind, false),
    };
    let found = json_type(value);
    if found != base && !(nullable && found == "null") {
        errors.push(format!("{at}: {found}, documented {kind}"));
    }
}

fn check_fields(
    body: &Value,
    fields: &[FieldRow],
    order_fields: &[FieldRow],
    errors: &mut Vec<String>,
) {
    for field in fields {
        let path: Vec<&str> = field.path.split('.').collect();
        check_path(body, &path, &field.kind, order_fields, "", errors);
    }
}

/// The service and the orders the situations need.
struct World {
    system: System,
    http: reqwest::Client,
    customer: &'static str,
    unpaid: String,
    paid: String,
    others: String,
    fresh: std::sync::atomic::AtomicUsize,
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
}

impl World {
    async fn new() -> World {
        let system = System::start(SystemOptions::default()).await;
        let customer = "o_contract";
        let unpaid = system
            .order_awaiting_payment(customer, "88616600", "voice", "SD5000")
            .await;
        let paid = system
            .order_and_pay(customer, "88616600", "data", "data3gb2d")
            .await;
        system
            .wait_for_outcome(&paid, Duration::from_secs(20))
            .await;
        let others = system
            .create_order("o_someone_else", "88616601", "voice", "SY5000")
            .await;
        World {
            system,
            http: reqwest::Client::new(),
            customer,
            unpaid,
            paid,
            others,
            fresh: Default::default(),
        }
    }

    fn fresh_user(&self) -> String {
        let n = self
            .fresh
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        format!("o_contract_row_{n}")
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        identity: Option<&str>,
        headers: &[(&str, String)],
        body: Option<Value>,
    ) -> Answer {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.system.api_url));
        if let Some(openid) = identity {
            request = request
                .header("X-WX-SOURCE", "wx_client")
                .header("X-WX-OPENID", openid)
                .header(
                    "X-Original-Forwarded-For",
                    format!(
                        "10.9.{}.{}",
                        openid.len(),
                        openid.bytes().map(u32::from).sum::<u32>() % 250
                    ),
                );
        }
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request sent");
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap_or_default();
        Answer {
            status,
            headers,
            body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
        }
    }

    /// A payment WeChat took without telling us, then told as the platform does.
    async fn genuine_callback(&self, bare: bool) -> Answer {
        let order = self
            .system
            .order_awaiting_payment(&self.fresh_user(), "88616600", "voice", "SD5000")
            .await;
        let transaction = self
            .system
            .sandbox
            .pay_without_callback(&order)
            .await
            .unwrap();
        let at_wechat = self.system.sandbox.wechat_order(&order).unwrap();
        let notification = json!({
            "returnCode": "SUCCESS", "resultCode": "SUCCESS", "subMchId": at_wechat.sub_mch_id,
            "outTradeNo": order, "totalFee": at_wechat.total_fee, "transactionId": transaction,
            "attach": at_wechat.attach, "timeEnd": "20261129120000",
        });
        let path = if bare {
            "/payment/callback".to_owned()
        } else {
            format!("/payment/callback/{order}")
        };
        let answer = self
            .send(
                Method::POST,
                &path,
                None,
                &[("X-WX-SOURCE", "wx_pay".into())],
                Some(notification),
            )
            .await;
        let (payment, _) = self.system.statuses(&order).await;
        assert_eq!(payment, "paid", "{path}: the payment was not recorded");
        answer
    }

    /// Performs one status row of `section`.
    async fn perform(&self, section: &Section, row: &StatusRow) -> Answer {
        let (method, template) = section
            .route
            .clone()
            .unwrap_or((Method::GET, String::new()));
        let request = row.request.as_str();
        let literal = request.split('`').nth(1).unwrap_or("");
        let situation = request.split('`').next().unwrap_or("").trim();
        let admin = [("Authorization", format!("Bearer {ADMIN_TOKEN}"))];
        // A route with an order number in its path: which order the situation names.
        let order_path = |order: &str| template.replace("{orderNumber}", order);
        match situation {
            "" if literal.starts_with('{') => {
                let body: Value = serde_json::from_str(literal).expect("a JSON body");
                self.send(method, &template, Some(&self.fresh_user()), &[], Some(body))
                    .await
            }
            "" if literal.starts_with('?') => {
                self.send(
                    method,
                    &format!("{template}{literal}"),
                    Some(self.customer),
                    &[],
                    None,
                )
                .await
            }
            "" => {
                let (method, path) = literal.split_once(' ').expect("METHOD /path");
                self.send(
                    Method::from_bytes(method.as_bytes()).unwrap(),
                    path,
                    Some(self.customer),
                    &[],
                    None,
                )
                .await
            }
            "(none)" => {
                self.send(method, &template, Some(self.customer), &[], None)
                    .await
            }
            "(no rate configured)" => {
                sqlx::query("DELETE FROM exchange_rates")
                    .execute(&self.system.db.pool)
                    .await
                    .unwrap();
                self.send(method, &template, None, &[], None).await
            }
            "(no X-WX-SOURCE)" => {
                let path = order_path(&self.unpaid);
                self.send(
                    method,
                    &path,
                    None,
                    &[("X-WX-OPENID", "o_contract".into())],
                    Some(json!({})),
                )
                .await
            }
            "(no openid)" => {
                self.send(
                    method,
                    &template,
                    None,
                    &[("X-WX-SOURCE", "wx_client".into())],
                    Some(json!({})),
                )
                .await
            }
            "(11 orders in a minute)" => {
                let user = self.fresh_user();
                let body = json!({"phoneNumber":"88616600","productOperator":"Unitel","rechargeType":"voice","productCode":"SD5000"});
                for n in 0..10 {
                    let answer = self
                        .send(
                            Method::POST,
                            "/orders",
                            Some(&user),
                            &[],
                            Some(body.clone()),
                        )
                        .await;
                    assert_eq!(
                        answer.status,
                        StatusCode::CREATED,
                        "order {n} within the limit: {}",
                        answer.body
                    );
                }
                let answer = self
                    .send(Method::POST, "/orders", Some(&user), &[], Some(body))
                    .await;
                assert_eq!(
                    answer
                        .headers
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok()),
                    Some("60"),
                    "429 says when to come back"
                );
                answer
            }
            "(own order)" => {
                self.send(
                    method,
                    &order_path(&self.paid),
                    Some(self.customer),
                    &[],
                    None,
                )
                .await
            }
            "(another user's order)"
            | "(no such order)"
            | "(own unpaid order)"
            | "(own paid order)" => {
                let order = match situation {
                    "(another user's order)" => self.others.clone(),
                    "(no such order)" => "ORD1000000000000NOSUCH01".to_owned(),
                    "(own unpaid order)" => self.unpaid.clone(),
                    _ => self.paid.clone(),
                };
                if template.contains("{orderNumber}") {
                    self.send(method, &order_path(&order), Some(self.customer), &[], None)
                        .await
                } else {
                    self.send(
                        method,
                        &template,
                        Some(self.customer),
                        &[],
                        Some(json!({"orderNumber": order})),
                    )
                    .await
                }
            }
            "(a genuine payment of a replaced system's order)" => self.genuine_callback(true).await,
            "(a genuine payment at the path with the order number)" => {
                self.genuine_callback(false).await
            }
            "(admin token)" => {
                self.send(method, &format!("{template}{literal}"), None, &admin, None)
                    .await
            }
            "(no admin token)" => self.send(method, &template, None, &[], None).await,
            other => panic!(
                "docs/compatibility.md names a situation this suite does not know: {other:?}"
            ),
        }
    }
}

fn check_envelope(
    section: &str,
    row: &StatusRow,
    answer: &Answer,
    envelopes: &[Section],
    errors: &mut Vec<String>,
) {
    let what = format!("{section} [{} {}]", row.status, row.request);
    if answer.status.as_u16() != row.status {
        errors.push(format!(
            "{what}: HTTP {}, body {}",
            answer.status, answer.body
        ));
        return;
    }
    if section.contains("/payment/callback") {
        if answer.body["errcode"] != json!(0) {
            errors.push(format!("{what}: {}", answer.body));
        }
        return;
    }
    let (success, failure) = (&envelopes[0].fields, &envelopes[1].fields);
    let mut problems = Vec::new();
    if answer.status.is_success() {
        check_fields(&answer.body, success, &[], &mut problems);
        if answer.body["code"] != json!(200) || answer.body["message"] != json!("success") {
            problems.push(format!("not the success envelope: {}", answer.body));
        }
    } else {
        check_fields(&answer.body, failure, &[], &mut problems);
        if answer.body["code"] != json!(row.status) {
            problems.push(format!(
                "code {} for HTTP {}",
                answer.body["code"], row.status
            ));
        }
        if answer.body["message"] != json!(row.message) {
            problems.push(format!(
                "message {} , documented {:?}",
                answer.body["message"], row.message
            ));
        }
    }
    errors.extend(problems.into_iter().map(|p| format!("{what}: {p}")));
}

#[tokio::test]
async fn every_row_of_the_compatibility_table_holds() {
    let sections = parse();
    let envelopes: Vec<Section> = sections
        .iter()
        .filter(|s| s.heading == "The envelopes")
        .flat_map(|s| {
            // Its two field tables, success then error, were parsed into one list.
            let split = s
                .fields
                .iter()
                .skip(1)
                .position(|f| f.path == "code")
                .map(|i| i + 1)
                .unwrap();
            [
                Section {
                    fields: s.fields[..split].to_vec(),
                    ..Section::default()
                },
                Section {
                    fields: s.fields[split..].to_vec(),
                    ..Section::default()
                },
            ]
        })
        .collect();
    assert_eq!(envelopes.len(), 2, "the envelopes section");
    let order_fields = &sections
        .iter()
        .find(|s| s.heading == "The order object")
        .expect("the order object section")
        .fields;
    assert!(order_fields.len() > 30, "the order object has its rows");
    let routes: Vec<&Section> = sections.iter().filter(|s| !s.statuses.is_empty()).collect();
    assert!(routes.len() >= 11, "{} route sections", routes.len());

    let world = World::new().await;
    let mut errors = Vec::new();
    let mut checked = 0;
    // Situations that change the world for every later row come last.
    let mut deferred = Vec::new();
    for section in &routes {
        let mut fields_checked = section.fields.is_empty();
        for row in &section.statuses {
            if row.request == "(no rate configured)" {
                deferred.push((section, row));
                continue;
            }
            let answer = world.perform(section, row).await;
            check_envelope(&section.heading, row, &answer, &envelopes, &mut errors);
            if answer.status.is_success() && !fields_checked {
                check_fields(&answer.body, &section.fields, order_fields, &mut errors);
                fields_checked = true;
            }
            checked += 1;
        }
        if !fields_checked {
            errors.push(format!(
                "{}: no successful answer to check its fields against",
                section.heading
            ));
        }
    }
    for (section, row) in deferred {
        let answer = world.perform(section, row).await;
        check_envelope(&section.heading, row, &answer, &envelopes, &mut errors);
        checked += 1;
    }

    // The statistics' parts answer alone exactly as they appear together.
    sqlx::query("INSERT INTO exchange_rates (currency_pair, rate, set_by) VALUES ('MNT_TO_CNY', 440, 'test')")
        .execute(&world.system.db.pool)
        .await
        .unwrap();
    let admin = [("Authorization", format!("Bearer {ADMIN_TOKEN}"))];
    let overview = world
        .send(Method::GET, "/statistics", None, &admin, None)
        .await
        .body;
    for part in ["users", "orders", "revenue"] {
        let alone = world
            .send(
                Method::GET,
                &format!("/statistics/{part}"),
                None,
                &admin,
                None,
            )
            .await;
        assert_eq!(alone.status, StatusCode::OK, "{}", alone.body);
        let keys = |v: &Value| -> HashMap<String, &'static str> {
            v.as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), json_type(v)))
                .collect()
        };
        assert_eq!(
            keys(&alone.body["data"]),
            keys(&overview["data"][part]),
            "/statistics/{part}"
        );
    }
    // An app id PostgreSQL cannot compare is bad input, not a server error.
    let nul = world
        .send(
            Method::GET,
            "/statistics/users?appid=wx%00",
            None,
            &admin,
            None,
        )
        .await;
    assert_eq!(nul.status, StatusCode::BAD_REQUEST, "{}", nul.body);

    assert!(
        errors.is_empty(),
        "{} of the contract's rows do not hold:\n{}",
        errors.len(),
        errors.join("\n")
    );
    let documented: usize = routes.iter().map(|s| s.statuses.len()).sum();
    assert_eq!(checked, documented, "every status row was performed");
    assert!(documented >= 45, "{documented} status rows");
    world.system.shutdown().await;
}

#[test]
fn the_document_parses_into_the_rows_the_suite_checks() {
    let sections = parse();
    let orders = sections
        .iter()
        .find(|s| s.heading.starts_with("`POST /orders`"))
        .unwrap();
    assert_eq!(orders.route, Some((Method::POST, "/orders".to_owned())));
    assert!(orders.statuses.iter().any(|r| r.status == 429));
    let object = sections
        .iter()
        .find(|s| s.heading == "The order object")
        .unwrap();
    assert!(object
        .fields
        .iter()
        .any(|f| f.path == "productPriceTg" && f.kind == "string"));
    // Every replaced field of the order object is documented.
    for name in [
        "orderNumber",
        "openid",
        "phoneNumber",
        "productOperator",
        "productRechargeType",
        "productName",
        "productEngName",
        "productCode",
        "productPriceTg",
        "productPriceRmb",
        "productUnit",
        "productData",
        "productDays",
        "seqId",
        "paymentStatus",
        "rechargeStatus",
        "createdAt",
        "paidAt",
        "rechargeAt",
        "version",
        "anomalyReason",
        "anomalyDetails",
    ] {
        assert!(object.fields.iter().any(|f| f.path == name), "{name}");
    }
}
