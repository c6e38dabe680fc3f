//! The APIv3 client: every request signed with the merchant key, every answer verified
//! with WeChat Pay's keys before a byte of it is believed. Answers come back as the same
//! types the cloud client returns, error codes in the v2 spelling callers already match.

use chrono::{DateTime, FixedOffset, SecondsFormat, Utc};
use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use shared::money::Fen;
use shared::order::{OpenId, OrderNumber, PaymentStatus};

use super::bill::{self, BillTicket};
use super::config::{MerchantForm, V3Config};
use super::resource::{refund_status, TransactionResource};
use super::signing;
use super::verify::{check_signature, NotificationVerifier};
use crate::wechat::{
    AcceptedRefund, BillDownload, CloseOutcome, PrepaidOrder, QueriedOrder, RefundState,
    WechatError,
};

/// v3 error codes in the v2 spelling the callers match (`ORDERNOTEXIST`, `ORDERCLOSED`,
/// `SYSTEMERROR`); every other code as WeChat gives it. The one place they are renamed.
pub fn business_code(v3_code: &str) -> String {
    match v3_code {
        "ORDER_NOT_EXIST" => "ORDERNOTEXIST",
        "ORDER_CLOSED" => "ORDERCLOSED",
        "SYSTEM_ERROR" => "SYSTEMERROR",
        other => other,
    }
    .to_owned()
}

pub struct WechatPayV3 {
    http: reqwest::Client,
    config: V3Config,
}

/// An answer WeChat Pay signed: a success, or a refusal it stands behind.
struct Answer {
    what: String,
    status: StatusCode,
    body: bytes::Bytes,
}

impl Answer {
    /// The refusal as a business error: `{code, message}`, the code in v2 spelling.
    fn refusal(&self) -> WechatError {
        match serde_json::from_slice::<ErrorBody>(&self.body) {
            Ok(ErrorBody {
                code: Some(code),
                message,
            }) => WechatError::Business {
                code: business_code(&code),
                description: message,
            },
            _ => WechatError::Platform(format!(
                "{}: HTTP {} without an error code",
                self.what, self.status
            )),
        }
    }

    fn accepted(self) -> Result<Answer, WechatError> {
        if self.status.is_success() {
            Ok(self)
        } else {
            Err(self.refusal())
        }
    }

    fn json<T: DeserializeOwned>(self) -> Result<T, WechatError> {
        let answer = self.accepted()?;
        serde_json::from_slice(&answer.body).map_err(|e| {
            WechatError::Platform(format!(
                "{}: unexpected answer (HTTP {}): {e}",
                answer.what, answer.status
            ))
        })
    }

    fn not_found(&self) -> bool {
        self.status == StatusCode::NOT_FOUND
    }
}

#[derive(Deserialize)]
struct ErrorBody {
    code: Option<String>,
    #[serde(default)]
    message: String,
}

impl WechatPayV3 {
    pub fn new(config: V3Config) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            // A redirect would send a request signed for another URL; WeChat sends none.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("elife-payment-api/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(WechatPayV3 { http, config })
    }

    pub fn config(&self) -> &V3Config {
        &self.config
    }

    /// Checks notifications with the keys this client checks answers with.
    pub fn notification_verifier(&self) -> NotificationVerifier {
        NotificationVerifier::new(
            self.config.platform_keys.clone(),
            self.config.api_v3_key.clone(),
        )
    }

    pub async fn jsapi_prepay(
        &self,
        order_number: &OrderNumber,
        openid: &OpenId,
        amount: Fen,
        description: &str,
        attach: &str,
        time_expire: DateTime<Utc>,
    ) -> Result<PrepaidOrder, WechatError> {
        // WeChat counts at most 127 characters of description.
        let description: String = description.chars().take(127).collect();
        let china = FixedOffset::east_opt(8 * 3600).expect("UTC+8 is a valid offset");
        let mut body = json!({
            "description": description,
            "out_trade_no": order_number.as_str(),
            "time_expire": time_expire.with_timezone(&china).to_rfc3339_opts(SecondsFormat::Secs, false),
            "attach": attach,
            "notify_url": self.config.notify_url,
            "amount": {"total": amount.get(), "currency": "CNY"},
        });
        let path = match &self.config.form {
            MerchantForm::Direct { appid, mchid } => {
                body["appid"] = json!(appid);
                body["mchid"] = json!(mchid);
                body["payer"] = json!({"openid": openid.as_str()});
                "/v3/pay/transactions/jsapi"
            }
            MerchantForm::Partner {
                sp_appid,
                sp_mchid,
                sub_appid,
                sub_mchid,
            } => {
                body["sp_appid"] = json!(sp_appid);
                body["sp_mchid"] = json!(sp_mchid);
                body["sub_appid"] = json!(sub_appid);
                body["sub_mchid"] = json!(sub_mchid);
                // The mini-program's openid belongs to sub_appid.
                body["payer"] = json!({"sub_openid": openid.as_str()});
                "/v3/pay/partner/transactions/jsapi"
            }
        };
        #[derive(Deserialize)]
        struct Prepay {
            prepay_id: String,
        }
        let Prepay { prepay_id } = self.call(Method::POST, path, Some(&body)).await?.json()?;
        let payment = signing::request_payment(
            &self.config.merchant_key,
            self.config.form.payer_appid(),
            &prepay_id,
            Utc::now().timestamp(),
        )
        .map_err(|e| WechatError::Platform(format!("paySign: {e}")))?;
        Ok(PrepaidOrder { prepay_id, payment })
    }

    /// 404 is `ORDERNOTEXIST`, whatever code it carries.
    pub async fn query_order(
        &self,
        order_number: &OrderNumber,
    ) -> Result<QueriedOrder, WechatError> {
        let path = match &self.config.form {
            MerchantForm::Direct { mchid, .. } => {
                format!("/v3/pay/transactions/out-trade-no/{order_number}?mchid={mchid}")
            }
            MerchantForm::Partner { sp_mchid, sub_mchid, .. } => format!(
                "/v3/pay/partner/transactions/out-trade-no/{order_number}?sp_mchid={sp_mchid}&sub_mchid={sub_mchid}"
            ),
        };
        let answer = self.call(Method::GET, &path, None).await?;
        if answer.not_found() {
            let description = match answer.refusal() {
                WechatError::Business { description, .. } => description,
                WechatError::Platform(text) => text,
            };
            return Err(WechatError::Business {
                code: "ORDERNOTEXIST".into(),
                description,
            });
        }
        let transaction: TransactionResource = answer.json()?;
        Ok(QueriedOrder {
            status: transaction.status(),
            paid_at: transaction.success_time,
            total_fee: Some(transaction.amount.total),
            transaction_id: transaction.transaction_id.filter(|t| !t.is_empty()),
            trade_state: transaction.trade_state,
        })
    }

    /// Closes an unpaid order. APIv3 has no `ORDERPAID`: whatever the close answers, the
    /// order is queried after it, and a paid one is [`CloseOutcome::AlreadyPaid`].
    pub async fn close_order(
        &self,
        order_number: &OrderNumber,
    ) -> Result<CloseOutcome, WechatError> {
        let (path, body) = match &self.config.form {
            MerchantForm::Direct { mchid, .. } => (
                format!("/v3/pay/transactions/out-trade-no/{order_number}/close"),
                json!({"mchid": mchid}),
            ),
            MerchantForm::Partner {
                sp_mchid,
                sub_mchid,
                ..
            } => (
                format!("/v3/pay/partner/transactions/out-trade-no/{order_number}/close"),
                json!({"sp_mchid": sp_mchid, "sub_mchid": sub_mchid}),
            ),
        };
        let closed = self
            .call(Method::POST, &path, Some(&body))
            .await
            .and_then(Answer::accepted);
        let queried = self.query_order(order_number).await;
        match (closed, queried) {
            (_, Ok(q)) if q.status == PaymentStatus::Paid => Ok(CloseOutcome::AlreadyPaid),
            (Ok(_), Ok(_)) => Ok(CloseOutcome::Closed),
            (Err(WechatError::Business { code, .. }), Ok(_)) if code == "ORDERCLOSED" => {
                Ok(CloseOutcome::Closed)
            }
            (Err(WechatError::Business { .. }), Ok(q)) if q.status == PaymentStatus::Closed => {
                Ok(CloseOutcome::Closed)
            }
            (Err(closing), _) => Err(closing),
            // Closed, but whether it had been paid first is unknown: ask again later.
            (Ok(_), Err(querying)) => Err(querying),
        }
    }

    /// Idempotent per `out_refund_no`: sending it again never refunds twice. Success means
    /// accepted; the outcome comes by notification or [`query_refund`](Self::query_refund).
    pub async fn refund(
        &self,
        order_number: &OrderNumber,
        out_refund_no: &str,
        total: Fen,
        refund: Fen,
        reason: &str,
    ) -> Result<AcceptedRefund, WechatError> {
        let mut body = json!({
            "out_trade_no": order_number.as_str(),
            "out_refund_no": out_refund_no,
            "reason": truncate_bytes(reason, 80),
            "notify_url": self.config.refund_notify_url,
            "amount": {"refund": refund.get(), "total": total.get(), "currency": "CNY"},
        });
        if let MerchantForm::Partner { sub_mchid, .. } = &self.config.form {
            body["sub_mchid"] = json!(sub_mchid);
        }
        #[derive(Deserialize)]
        struct Accepted {
            #[serde(default)]
            refund_id: Option<String>,
        }
        let Accepted { refund_id } = self
            .call(Method::POST, "/v3/refund/domestic/refunds", Some(&body))
            .await?
            .json()?;
        Ok(AcceptedRefund { refund_id })
    }

    /// A refund by our number; `None` when WeChat has none by it (404).
    pub async fn query_refund(
        &self,
        out_refund_no: &str,
    ) -> Result<Option<RefundState>, WechatError> {
        let mut path = format!("/v3/refund/domestic/refunds/{out_refund_no}");
        if let MerchantForm::Partner { sub_mchid, .. } = &self.config.form {
            path.push_str(&format!("?sub_mchid={sub_mchid}"));
        }
        let answer = self.call(Method::GET, &path, None).await?;
        if answer.not_found() {
            return Ok(None);
        }
        #[derive(Deserialize)]
        struct Refund {
            out_refund_no: String,
            #[serde(default)]
            refund_id: Option<String>,
            status: String,
        }
        let refund: Refund = answer.json()?;
        Ok(Some(RefundState {
            status: refund_status(&refund.status),
            out_refund_no: refund.out_refund_no,
            refund_id: refund.refund_id.filter(|r| !r.is_empty()),
            wechat_status: refund.status,
        }))
    }

    /// The trade bill of `date` (a China date), gzip, checked by its SHA-1.
    pub async fn download_bill(
        &self,
        date: chrono::NaiveDate,
    ) -> Result<BillDownload, WechatError> {
        let mut path = format!(
            "/v3/bill/tradebill?bill_date={}&bill_type=ALL&tar_type=GZIP",
            date.format("%Y-%m-%d")
        );
        if let MerchantForm::Partner { sub_mchid, .. } = &self.config.form {
            path.push_str(&format!("&sub_mchid={sub_mchid}"));
        }
        let ticket: BillTicket = match self.call(Method::GET, &path, None).await?.json() {
            Err(WechatError::Business { code, description }) => {
                return bill::refusal(&code).ok_or(WechatError::Business { code, description })
            }
            other => other?,
        };
        let url = Url::parse(&ticket.download_url)
            .map_err(|_| WechatError::Platform("tradebill: download_url is not a URL".into()))?;
        let base = Url::parse(&self.config.api_base)
            .map_err(|_| WechatError::Platform("WECHAT_PAY_API_BASE is not a URL".into()))?;
        // Our signed request goes only where our other requests go.
        if url.origin() != base.origin() {
            return Err(WechatError::Platform(format!(
                "tradebill: download_url is not on {}",
                self.config.api_base
            )));
        }
        let response = self.send(Method::GET, url, None).await?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| WechatError::Platform(format!("bill download: {e}")))?;
        if !status.is_success() {
            return Err(unverified_error("bill download", status, &bytes));
        }
        bill::read(&ticket, &bytes)
    }

    /// Signs and sends a request to `path_and_query` under the API base, and verifies the
    /// answer: 2xx must be signed; a signed error is a business refusal; an unsigned error
    /// is nothing known.
    async fn call(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<&Value>,
    ) -> Result<Answer, WechatError> {
        let what = format!(
            "{method} {}",
            path_and_query.split('?').next().unwrap_or("")
        );
        let url = Url::parse(&format!("{}{path_and_query}", self.config.api_base))
            .map_err(|e| WechatError::Platform(format!("{what}: bad URL: {e}")))?;
        let response = self.send(method, url, body).await?;
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| WechatError::Platform(format!("{what}: HTTP {status}: {e}")))?;
        let signed = headers.contains_key(super::verify::SIGNATURE);
        if !status.is_success() && !signed {
            return Err(unverified_error(&what, status, &bytes));
        }
        check_signature(&self.config.platform_keys, &headers, &bytes, Utc::now()).map_err(|e| {
            WechatError::Platform(format!(
                "{what}: HTTP {status} answer not from WeChat Pay ({e}); not trusted"
            ))
        })?;
        Ok(Answer {
            what,
            status,
            body: bytes,
        })
    }

    async fn send(
        &self,
        method: Method,
        url: Url,
        body: Option<&Value>,
    ) -> Result<reqwest::Response, WechatError> {
        let what = format!("{method} {}", url.path());
        let body = body
            .map(serde_json::to_vec)
            .transpose()
            .map_err(|e| WechatError::Platform(format!("{what}: {e}")))?;
        let path_and_query = match url.query() {
            Some(query) => format!("{}?{query}", url.path()),
            None => url.path().to_owned(),
        };
        let nonce = signing::nonce().map_err(|e| WechatError::Platform(format!("{what}: {e}")))?;
        let authorization = signing::authorization(
            &self.config.merchant_key,
            self.config.form.signing_mchid(),
            method.as_str(),
            &path_and_query,
            Utc::now().timestamp(),
            &nonce,
            body.as_deref().unwrap_or_default(),
        )
        .map_err(|e| WechatError::Platform(format!("{what}: {e}")))?;
        let mut request = self
            .http
            .request(method, url)
            .header("Authorization", authorization)
            .header("Accept", "application/json");
        if let Some(id) = self.config.platform_keys.public_key_id() {
            // Asks WeChat to sign its answer with the public key, also mid-migration.
            request = request.header("Wechatpay-Serial", id);
        }
        if let Some(body) = body {
            request = request
                .header("Content-Type", "application/json")
                .body(body);
        }
        request
            .send()
            .await
            .map_err(|e| WechatError::Platform(format!("{what}: {e}")))
    }
}

/// An error answer WeChat did not sign: its words are reported, not acted on.
fn unverified_error(what: &str, status: StatusCode, bytes: &[u8]) -> WechatError {
    let (code, message) = match serde_json::from_slice::<ErrorBody>(bytes) {
        Ok(ErrorBody { code, message }) => (code.unwrap_or_default(), message),
        Err(_) => (String::new(), String::new()),
    };
    WechatError::Platform(format!(
        "{what}: HTTP {status}, unsigned answer {code} {message}"
    ))
}

/// At most `max` bytes of `text`, cut at a character boundary (`reason` counts bytes).
fn truncate_bytes(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v3_codes_take_the_v2_spelling_callers_match() {
        assert_eq!(business_code("ORDER_NOT_EXIST"), "ORDERNOTEXIST");
        assert_eq!(business_code("ORDER_CLOSED"), "ORDERCLOSED");
        assert_eq!(business_code("SYSTEM_ERROR"), "SYSTEMERROR");
        assert_eq!(business_code("PARAM_ERROR"), "PARAM_ERROR");
    }

    #[test]
    fn reasons_are_cut_at_80_bytes_on_a_character() {
        let reason = "充值失败".repeat(10);
        let cut = truncate_bytes(&reason, 80);
        assert!(cut.len() <= 80 && reason.starts_with(cut));
        assert_eq!(cut.len(), 78);
        assert_eq!(truncate_bytes("short", 80), "short");
    }
}
