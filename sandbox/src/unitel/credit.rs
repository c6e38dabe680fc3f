//! The calls that give a subscriber something: `/service/recharge`, `/service/datapackage`,
//! `/service/payment`, and `/service/check_transaction_result` to look one up by `seq`.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::faults::CreditOutcome;
use crate::net::ConnectionKill;
use crate::state::AppState;
use crate::unitel::ledger::CreditAnswer;
use crate::unitel::ledger::{CreditKind, Entry};
use crate::unitel::products::Tariff;
use crate::unitel::reply::UnitelError;
use crate::unitel::{parse_json, receipt};

/// How long a "timeout after credit" call holds its connection (unless the client leaves).
const HANG_FOR: Duration = Duration::from_secs(3600);

#[derive(Deserialize)]
struct CreditRequest {
    msisdn: Option<String>,
    card: Option<String>,
    package: Option<String>,
    amount: Option<Value>,
    #[serde(default)]
    transactions: Vec<TransactionLine>,
}

#[derive(Deserialize)]
struct TransactionLine {
    journal_id: Option<String>,
    amount: Option<Value>,
}

#[derive(Deserialize)]
struct CheckRequest {
    seq_id: Option<Value>,
}

pub(crate) async fn recharge(
    State(state): State<AppState>,
    kill: Option<Extension<ConnectionKill>>,
    body: Bytes,
) -> Result<Response, UnitelError> {
    credit_call(&state, kill, &body, CreditKind::Recharge).await
}

pub(crate) async fn data_package(
    State(state): State<AppState>,
    kill: Option<Extension<ConnectionKill>>,
    body: Bytes,
) -> Result<Response, UnitelError> {
    credit_call(&state, kill, &body, CreditKind::Datapackage).await
}

pub(crate) async fn bill_payment(
    State(state): State<AppState>,
    kill: Option<Extension<ConnectionKill>>,
    body: Bytes,
) -> Result<Response, UnitelError> {
    credit_call(&state, kill, &body, CreditKind::Payment).await
}

pub(crate) async fn check_transaction_result(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<Response, UnitelError> {
    let request: CheckRequest = parse_json(&body)?;
    let seq = match request.seq_id {
        Some(Value::String(seq)) => seq,
        Some(Value::Number(seq)) => seq.to_string(),
        _ => return Err(UnitelError::bad_request("seq_id is required")),
    };
    let (msg, status) = if state.ledger.contains_seq(&seq) {
        ("success", "success")
    } else {
        ("transaction not found", "failed")
    };
    Ok(
        Json(json!({ "result": "success", "code": "000", "msg": msg, "status": status }))
            .into_response(),
    )
}

async fn credit_call(
    state: &AppState,
    kill: Option<Extension<ConnectionKill>>,
    body: &[u8],
    kind: CreditKind,
) -> Result<Response, UnitelError> {
    let request: CreditRequest = parse_json(body)?;
    let entry = validate(&request, kind)?;
    let (outcome, nul) = state.with_faults(|faults| {
        let outcome = faults
            .unitel
            .next_credit_outcome(&mut || rand::random::<f64>());
        (outcome, faults.unitel.take_nul_in_answer())
    });
    if outcome != CreditOutcome::Answer {
        tracing::info!(journal_id = %entry.journal_id, ?outcome, "credit call misbehaves (injected)");
    }
    match outcome {
        CreditOutcome::HttpError => Err(UnitelError::ServerError),
        CreditOutcome::Fail if nul => {
            tracing::info!(journal_id = %entry.journal_id, "refusal with NUL characters (injected)");
            Ok(Json(with_nul(json!({
                "result": "failed", "code": crate::REFUSAL_CODE, "msg": "Insufficient balance",
            })))
            .into_response())
        }
        CreditOutcome::Fail => Err(UnitelError::failed(
            crate::REFUSAL_CODE,
            "Insufficient balance",
        )),
        CreditOutcome::Answer => {
            let credit = state.ledger.credit(entry, CreditAnswer::Answered);
            let mut answer = receipt::success_response(&credit);
            if nul {
                tracing::info!(journal_id = %credit.journal_id, "answer with NUL characters (injected)");
                answer = with_nul(answer);
            }
            Ok(Json(answer).into_response())
        }
        CreditOutcome::CreditThenDrop => {
            state.ledger.credit(entry, CreditAnswer::Dropped);
            if let Some(Extension(kill)) = kill {
                kill.kill();
            }
            // Never answer: the connection task drops the connection meanwhile.
            std::future::pending().await
        }
        CreditOutcome::CreditThenHang => {
            let credit = state.ledger.credit(entry, CreditAnswer::Hung);
            // A client that gives up closes the connection, and hyper drops this future.
            tokio::time::sleep(HANG_FOR).await;
            Ok(Json(receipt::success_response(&credit)).into_response())
        }
    }
}

/// A NUL character at the end of the texts Unitel writes itself (`nulInAnswerNext`).
fn with_nul(mut answer: Value) -> Value {
    let add = |text: &mut Value| {
        if let Value::String(s) = text {
            s.push('\0');
        }
    };
    add(&mut answer["code"]);
    add(&mut answer["msg"]);
    if answer.get("sv_id").is_some_and(Value::is_string) {
        add(&mut answer["sv_id"]);
    }
    if answer.get("vat").is_some_and(Value::is_object) {
        add(&mut answer["vat"]["billId"]);
        if let Some(Value::Array(stocks)) = answer["vat"].get_mut("stocks") {
            for stock in stocks {
                add(&mut stock["name"]);
            }
        }
    }
    answer
}

/// Everything a credit must satisfy before anything is credited, checked in the order a
/// caller would want to hear about it.
fn validate(request: &CreditRequest, kind: CreditKind) -> Result<Entry, UnitelError> {
    let msisdn = request.msisdn.clone().unwrap_or_default();
    let tariff = Tariff::of(&msisdn).ok_or_else(UnitelError::subscriber_not_found)?;
    let (product, price) = match kind {
        CreditKind::Recharge => {
            let card = required(&request.card, "card")?;
            let price = tariff.card_price(card).ok_or_else(|| {
                UnitelError::bad_request(format!(
                    "card {card} is not available for this subscriber"
                ))
            })?;
            (Some(card.to_owned()), price)
        }
        CreditKind::Datapackage => {
            let package = required(&request.package, "package")?;
            let price = tariff.package_price(package).ok_or_else(|| {
                UnitelError::bad_request(format!(
                    "package {package} is not available for this subscriber"
                ))
            })?;
            (Some(package.to_owned()), price)
        }
        CreditKind::Payment => {
            if !tariff.is_postpaid() {
                return Err(UnitelError::not_postpaid());
            }
            (None, digits_amount(request.amount.as_ref(), "amount")?)
        }
    };
    let [line] = request.transactions.as_slice() else {
        return Err(UnitelError::bad_request(
            "exactly one transaction is expected",
        ));
    };
    let journal_id = required(&line.journal_id, "transactions[0].journal_id")?;
    let paid = digits_amount(line.amount.as_ref(), "transactions[0].amount")?;
    if paid != price {
        return Err(UnitelError::bad_request(format!(
            "transaction amount {paid} does not match the price {price}"
        )));
    }
    Ok(Entry {
        journal_id: journal_id.to_owned(),
        msisdn,
        kind,
        product,
        amount: price,
    })
}

fn required<'a>(value: &'a Option<String>, name: &str) -> Result<&'a str, UnitelError> {
    match value.as_deref() {
        Some(text) if !text.trim().is_empty() => Ok(text),
        _ => Err(UnitelError::bad_request(format!("{name} is required"))),
    }
}

/// Amounts travel as strings of digits ("5000"); a JSON number is refused.
fn digits_amount(value: Option<&Value>, name: &str) -> Result<i64, UnitelError> {
    let refuse = || UnitelError::bad_request(format!("{name} must be a string of digits above 0"));
    let Some(Value::String(text)) = value else {
        return Err(refuse());
    };
    if text.is_empty() || text.len() > 12 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(refuse());
    }
    match text.parse::<i64>() {
        Ok(amount) if amount > 0 => Ok(amount),
        _ => Err(refuse()),
    }
}
