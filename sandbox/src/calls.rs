//! Every call the service made to either simulator, with its body: tests count queries
//! (`queryorder` per order, Unitel lookups per number) and read what was sent (`owner`).

use std::sync::Mutex;

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use crate::state::AppState;
use crate::sync::lock;

/// Bodies larger than this are not logged (the simulators refuse them anyway).
const MAX_LOGGED_BODY: usize = 64 * 1024;

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiCall {
    /// `wechat` or `unitel`.
    pub api: &'static str,
    /// The path as called, e.g. `/_/pay/queryorder` or `/api/v1/service/servicetype`.
    pub path: String,
    /// The JSON body; `null` when there was none or it was not JSON.
    pub body: Value,
    pub at: DateTime<Utc>,
}

#[derive(Default)]
pub(crate) struct CallLog(Mutex<Vec<ApiCall>>);

impl CallLog {
    pub(crate) fn all(&self) -> Vec<ApiCall> {
        lock(&self.0).clone()
    }

    pub(crate) fn clear(&self) {
        lock(&self.0).clear();
    }
}

async fn record(state: &AppState, api: &'static str, request: Request) -> Request {
    let (parts, body) = request.into_parts();
    let bytes = to_bytes(body, MAX_LOGGED_BODY).await.unwrap_or_default();
    lock(&state.calls.0).push(ApiCall {
        api,
        path: parts.uri.path().to_owned(),
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        at: Utc::now(),
    });
    Request::from_parts(parts, Body::from(bytes))
}

pub(crate) async fn record_wechat(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let request = record(&state, "wechat", request).await;
    next.run(request).await
}

pub(crate) async fn record_unitel(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let request = record(&state, "unitel", request).await;
    next.run(request).await
}
