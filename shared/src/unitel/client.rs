//! The HTTP client: bearer-token cache, one retry on a refused token, and the
//! classification of every failure into [`UnitelError`].

use std::time::{Duration, Instant};

use base64::Engine;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::sync::Mutex;

use super::products::{PostpaidBill, ServiceType};
use super::topup::{TopUp, TopUpReceipt, TransactionStatus};
use super::UnitelError;
use crate::config::{Secret, UnitelConfig};
use crate::money::Mnt;
use crate::order::{Msisdn, OrderNumber};

/// Tokens live about two minutes; renewing well before that avoids a 401 round trip.
const TOKEN_REUSE_AT_MOST: Duration = Duration::from_secs(90);

/// A bearer token in hand, for one top-up.
pub struct Token(Secret);

/// Why one request got no usable answer.
enum Refused {
    /// The token was refused, before Unitel processed anything.
    Token,
    Answer(UnitelError),
}

pub struct UnitelClient {
    http: reqwest::Client,
    base: String,
    refusal_codes: Vec<String>,
    username: String,
    password: Secret,
    token: Mutex<Option<CachedToken>>,
}

struct CachedToken {
    value: Secret,
    usable_until: Instant,
}

impl UnitelClient {
    pub fn new(config: &UnitelConfig) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(5)))
            .pool_idle_timeout(Duration::from_secs(30))
            .build()?;
        Ok(UnitelClient {
            http,
            base: config.api_url.clone(),
            refusal_codes: config.refusal_codes.clone(),
            username: config.username.clone(),
            password: config.password.clone(),
            token: Mutex::new(None),
        })
    }

    /// The number's tariff and products. `info` is Unitel's tariff-detail switch ("0" or
    /// "1"), passed as the mini-program gives it; orders ask with "1".
    pub async fn service_type(
        &self,
        msisdn: &Msisdn,
        info: &str,
    ) -> Result<ServiceType, UnitelError> {
        let body = self
            .call_expecting_success(
                "/service/servicetype",
                &json!({"msisdn": msisdn.as_str(), "info": info}),
            )
            .await?;
        ServiceType::from_response(&body)
            .ok_or_else(|| UnitelError::Unknown("servicetype answer has no service list".into()))
    }

    /// The unpaid bill of a postpaid number; `owner` is the account holder's number, as
    /// the customer gives it (Unitel's `/service/unitel` takes both).
    pub async fn postpaid_bill(
        &self,
        owner: &Msisdn,
        msisdn: &Msisdn,
    ) -> Result<PostpaidBill, UnitelError> {
        let body = self
            .call_expecting_success(
                "/service/unitel",
                &json!({"owner": owner.as_str(), "msisdn": msisdn.as_str()}),
            )
            .await?;
        let mut bill: PostpaidBill = serde_json::from_value(body.clone())
            .map_err(|e| UnitelError::Unknown(format!("unreadable postpaid bill: {e}")))?;
        bill.raw = body;
        Ok(bill)
    }

    /// Sends one top-up with `token`, fetched ([`UnitelClient::token`]) before the order was
    /// marked sent: between marking it and sending it nothing waits on `/auth`. This
    /// function never sends the same request twice; a refused token (Unitel refuses it
    /// before processing anything) is forgotten and answered `NotSent`, so that the caller
    /// fetches a fresh one and marks the order again.
    ///
    /// Nothing is written after `write_by` (the caller's lease is over then: the order may
    /// be someone else's, or settled): checked on the monotonic clock right before the
    /// request starts, whose own timeout starts there too. Past it, `NotSent`.
    pub async fn top_up(
        &self,
        token: &Token,
        top_up: &TopUp,
        msisdn: &Msisdn,
        journal_id: &OrderNumber,
        amount: Mnt,
        write_by: Instant,
    ) -> Result<TopUpReceipt, UnitelError> {
        let body = top_up.body(msisdn, journal_id, amount);
        let sent = self
            .send_once(top_up.path(), &body, &token.0, Some(write_by))
            .await;
        let answer = match sent {
            Err(Refused::Token) => {
                self.forget_token(&token.0).await;
                return Err(UnitelError::NotSent(
                    "Unitel refused the token (401)".into(),
                ));
            }
            Err(Refused::Answer(error)) => Err(error),
            Ok(answer) => Ok(answer),
        };
        let answer = match answer {
            Err(UnitelError::Rejected { code, message }) => {
                return Err(self.top_up_refusal(code, message, None))
            }
            other => other?,
        };
        match result_of(&answer) {
            "success" => Ok(TopUpReceipt::from_response(&answer)),
            // Assumed by the integration's authors, never seen: accepted, not yet done.
            "pending" => Err(UnitelError::Pending {
                seq: TopUpReceipt::from_response(&answer).seq,
            }),
            // An answer without a verdict says nothing about the credit.
            "" => Err(UnitelError::Unknown(format!(
                "answer without a result: {}",
                answer.to_string().chars().take(200).collect::<String>()
            ))),
            _ => match rejection(&answer) {
                UnitelError::Rejected { code, message } => Err(self.top_up_refusal(
                    code,
                    message,
                    TopUpReceipt::from_response(&answer).seq,
                )),
                other => Err(other),
            },
        }
    }

    /// A top-up refused after it reached Unitel is a definitive "nothing was done" only
    /// for the codes known to mean that; any other may hide a credit.
    fn top_up_refusal(&self, code: String, message: String, seq: Option<String>) -> UnitelError {
        if self.refusal_codes.contains(&code) {
            UnitelError::Rejected { code, message }
        } else {
            UnitelError::Unrecognised { code, message, seq }
        }
    }

    pub async fn transaction_status(&self, seq: &str) -> Result<TransactionStatus, UnitelError> {
        let body = self
            .call_expecting_success("/service/check_transaction_result", &json!({"seq_id": seq}))
            .await?;
        let status = body.get("status").and_then(Value::as_str).unwrap_or("");
        Ok(match status {
            "success" => TransactionStatus::Success,
            "pending" => TransactionStatus::Pending,
            "failed" => TransactionStatus::Failed {
                message: body
                    .get("msg")
                    .and_then(Value::as_str)
                    .unwrap_or(status)
                    .to_owned(),
            },
            // Anything else is not a verdict: the order stays unknown for a person.
            other => TransactionStatus::Unrecognised(other.to_owned()),
        })
    }

    async fn call_expecting_success(&self, path: &str, body: &Value) -> Result<Value, UnitelError> {
        let answer = self.call(path, body).await?;
        if result_of(&answer) == "success" {
            Ok(answer)
        } else {
            Err(rejection(&answer))
        }
    }

    /// POSTs with a bearer token; a 401 renews the token and tries exactly once more.
    async fn call(&self, path: &str, body: &Value) -> Result<Value, UnitelError> {
        let mut renewed = false;
        loop {
            let token = self.cached_token().await?;
            match self.send_once(path, body, &token, None).await {
                Ok(answer) => return Ok(answer),
                Err(Refused::Answer(error)) => return Err(error),
                Err(Refused::Token) => {
                    self.forget_token(&token).await;
                    if renewed {
                        return Err(UnitelError::NotSent(
                            "Unitel refused a fresh token (401)".into(),
                        ));
                    }
                    renewed = true;
                }
            }
        }
    }

    /// One POST with this token, not started past `write_by`. Unitel reports a refused
    /// token either as HTTP 401 or as HTTP 200 with result "401"; both come before any
    /// processing.
    async fn send_once(
        &self,
        path: &str,
        body: &Value,
        token: &Secret,
        write_by: Option<Instant>,
    ) -> Result<Value, Refused> {
        let request = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(token.expose())
            .json(body);
        // Nothing between this check and `send`, which starts the request's own timeout:
        // what is left is the instant between starting the request and writing it.
        if write_by.is_some_and(|by| Instant::now() >= by) {
            return Err(Refused::Answer(UnitelError::NotSent(
                "the lease ran out before the request was written".into(),
            )));
        }
        let response = request
            .send()
            .await
            .map_err(|e| Refused::Answer(classify_send_error(e)))?;
        let status = response.status();
        let text = response.text().await.map_err(|e| {
            Refused::Answer(UnitelError::Unknown(format!(
                "answer lost while reading: {e}"
            )))
        })?;
        let answer = classify_answer(status, &text);
        let token_refused = status == StatusCode::UNAUTHORIZED
            || matches!(&answer, Ok(body) if result_of(body) == "401");
        if token_refused {
            return Err(Refused::Token);
        }
        answer.map_err(Refused::Answer)
    }

    /// A token for a top-up, fetched now if the cached one is too old. Any failure is
    /// `NotSent`: nothing was sent yet.
    pub async fn token(&self) -> Result<Token, UnitelError> {
        self.cached_token().await.map(Token)
    }

    async fn cached_token(&self) -> Result<Secret, UnitelError> {
        let mut cached = self.token.lock().await;
        if let Some(token) = cached.as_ref() {
            if Instant::now() < token.usable_until {
                return Ok(token.value.clone());
            }
        }
        let fresh = self.fetch_token().await?;
        let value = fresh.value.clone();
        *cached = Some(fresh);
        Ok(value)
    }

    async fn forget_token(&self, used: &Secret) {
        let mut cached = self.token.lock().await;
        if cached.as_ref().is_some_and(|t| &t.value == used) {
            *cached = None;
        }
    }

    /// Any failure here is `NotSent`: the top-up itself has not been sent yet.
    async fn fetch_token(&self) -> Result<CachedToken, UnitelError> {
        let credentials = base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            self.username,
            self.password.expose()
        ));
        let response = self
            .http
            .post(format!("{}/auth", self.base))
            .header("Authorization", format!("Basic {credentials}"))
            .send()
            .await
            .map_err(|e| UnitelError::NotSent(format!("auth request failed: {e}")))?;
        let status = response.status();
        if !status.is_success() {
            return Err(UnitelError::NotSent(format!("auth refused: HTTP {status}")));
        }
        let body: Value = response
            .json()
            .await
            .map_err(|e| UnitelError::NotSent(format!("auth answer unreadable: {e}")))?;
        let token = body
            .get("access_token")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| UnitelError::NotSent("auth answer has no access_token".into()))?;
        let lifetime = body
            .get("expires_in")
            .and_then(Value::as_u64)
            .map(|secs| Duration::from_secs(secs * 3 / 4))
            .unwrap_or(TOKEN_REUSE_AT_MOST)
            .min(TOKEN_REUSE_AT_MOST);
        Ok(CachedToken {
            value: Secret::new(token),
            usable_until: Instant::now() + lifetime,
        })
    }
}

fn result_of(answer: &Value) -> &str {
    answer.get("result").and_then(Value::as_str).unwrap_or("")
}

fn rejection(answer: &Value) -> UnitelError {
    let field = |key: &str| match answer.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    };
    let code = [field("code"), field("result")]
        .into_iter()
        .find(|c| !c.is_empty())
        .unwrap_or_else(|| "unknown".into());
    UnitelError::Rejected {
        code,
        message: field("msg"),
    }
}

/// A connect error (refused, DNS, TLS handshake, connect timeout) happens before a byte of
/// the request is written. Anything later may have reached Unitel.
fn classify_send_error(error: reqwest::Error) -> UnitelError {
    if error.is_connect() || error.is_builder() {
        UnitelError::NotSent(error.to_string())
    } else {
        UnitelError::Unknown(error.to_string())
    }
}

fn classify_answer(status: StatusCode, text: &str) -> Result<Value, UnitelError> {
    let parsed = serde_json::from_str::<Value>(text).ok();
    match status.as_u16() {
        200..=299 => parsed
            .ok_or_else(|| UnitelError::Unknown(format!("HTTP {status} with an unreadable body"))),
        // 408 and 429 may come from a proxy that gave up after forwarding the request:
        // only Unitel's own answer is a definitive refusal.
        408 | 429 => Err(UnitelError::Unknown(format!("HTTP {status}"))),
        400..=499 => Err(match parsed {
            Some(answer) if answer.is_object() => rejection(&answer),
            _ => UnitelError::Rejected {
                code: status.as_u16().to_string(),
                message: text.chars().take(200).collect(),
            },
        }),
        _ => Err(UnitelError::Unknown(format!("HTTP {status}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_classified_by_what_they_mean_for_a_resend() {
        assert!(classify_answer(StatusCode::OK, r#"{"result":"success"}"#).is_ok());
        assert!(matches!(
            classify_answer(StatusCode::OK, "<html>"),
            Err(UnitelError::Unknown(_))
        ));
        assert!(matches!(
            classify_answer(StatusCode::INTERNAL_SERVER_ERROR, r#"{"result":"failed"}"#),
            Err(UnitelError::Unknown(_))
        ));
        assert!(matches!(
            classify_answer(StatusCode::TOO_MANY_REQUESTS, ""),
            Err(UnitelError::Unknown(_))
        ));
        assert!(matches!(
            classify_answer(StatusCode::REQUEST_TIMEOUT, ""),
            Err(UnitelError::Unknown(_))
        ));
        assert_eq!(
            classify_answer(
                StatusCode::BAD_REQUEST,
                r#"{"result":"failed","code":"105","msg":"no"}"#
            ),
            Err(UnitelError::Rejected {
                code: "105".into(),
                message: "no".into()
            })
        );
    }
}
