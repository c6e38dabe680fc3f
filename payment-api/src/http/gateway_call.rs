//! What the platform POSTs to us about payments and refunds, taken in the same way for
//! both: the body must be a JSON object (serde would read a struct from an array too)
//! without NUL characters (PostgreSQL cannot store them); in production it must come
//! through the gateway, which marks WeChat's calls with `X-WX-SOURCE`; and its merchant
//! must be ours. The answer is a bare `{"errcode":0,"errmsg":""}` once handled — never the
//! response envelope: the platform reads a top-level errcode and retries anything else for
//! two days — or a non-zero errcode, which asks for the notification again.

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::DeserializeOwned;
use serde_json::{json, Map, Value};
use shared::config::AppEnv;

use super::json::contains_nul;
use crate::config::{ApiConfig, PayMode};

/// A notification's body, read but not yet believed.
pub struct Notification {
    body: Map<String, Value>,
    through_gateway: bool,
}

impl Notification {
    /// `Err` with why the body cannot be a notification.
    pub fn read(headers: &HeaderMap, body: &[u8]) -> Result<Self, String> {
        let value: Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
        if contains_nul(&value) {
            return Err("the body contains NUL characters".into());
        }
        let Value::Object(body) = value else {
            return Err("the body is not a JSON object".into());
        };
        Ok(Notification {
            body,
            through_gateway: headers.contains_key("x-wx-source"),
        })
    }

    /// Came through the cloud-hosting gateway, or need not have (development). In direct
    /// mode no gateway stands in front of us: anyone can send its header, so nothing that
    /// arrives on these routes is vouched for (WeChat Pay's own results are signed and
    /// come to `/payment/notify`).
    pub fn source_trusted(&self, config: &ApiConfig) -> bool {
        config.pay_mode == PayMode::Cloud
            && (self.through_gateway || config.app_env == AppEnv::Development)
    }

    pub fn text(&self, key: &str) -> Option<&str> {
        self.body.get(key).and_then(Value::as_str)
    }

    /// The body as received, for the anomaly record.
    pub fn body(&self) -> Value {
        Value::Object(self.body.clone())
    }

    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, String> {
        serde_json::from_value(self.body()).map_err(|e| e.to_string())
    }
}

/// The platform's answer.
pub enum Reply {
    /// Recorded (whatever the verdict): do not send it again.
    Handled,
    /// The request can never be a notification of ours (bad path, unreadable body).
    Unreadable(&'static str),
    /// Not recorded now: send it again.
    RetryLater(&'static str),
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        let (status, errcode, errmsg) = match self {
            Reply::Handled => (StatusCode::OK, 0, ""),
            Reply::Unreadable(why) => (StatusCode::BAD_REQUEST, 400, why),
            Reply::RetryLater(why) => (StatusCode::INTERNAL_SERVER_ERROR, -1, why),
        };
        (status, Json(json!({"errcode": errcode, "errmsg": errmsg}))).into_response()
    }
}
