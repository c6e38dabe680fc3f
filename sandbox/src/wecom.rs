//! A WeCom (企业微信) group robot webhook: `POST /cgi-bin/webhook/send?key=...` takes a
//! `text` or `markdown` message and answers `{"errcode":0,"errmsg":"ok"}`. It keeps every
//! message it accepted, and can be down on demand (`Faults::wecom`).

use std::sync::Mutex;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::state::AppState;
use crate::sync::lock;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WecomMessage {
    pub key: String,
    pub msgtype: String,
    pub content: String,
}

#[derive(Default)]
pub(crate) struct WecomInbox(Mutex<Vec<WecomMessage>>);

impl WecomInbox {
    pub(crate) fn all(&self) -> Vec<WecomMessage> {
        lock(&self.0).clone()
    }
}

#[derive(Deserialize)]
pub(crate) struct KeyQuery {
    key: Option<String>,
}

pub(crate) async fn send(
    State(state): State<AppState>,
    Query(query): Query<KeyQuery>,
    body: axum::body::Bytes,
) -> Response {
    if state.with_faults(|f| f.wecom.down) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "robot unavailable (injected)",
        )
            .into_response();
    }
    let Some(key) = query.key.filter(|k| !k.is_empty()) else {
        return Json(json!({"errcode": 93000, "errmsg": "invalid webhook url"})).into_response();
    };
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return Json(json!({"errcode": 40001, "errmsg": "invalid json"})).into_response();
    };
    let msgtype = body["msgtype"].as_str().unwrap_or("").to_owned();
    let content = match msgtype.as_str() {
        "text" | "markdown" => body[&msgtype]["content"].as_str().unwrap_or(""),
        _ => "",
    };
    if content.is_empty() {
        return Json(json!({"errcode": 40008, "errmsg": "invalid message type or empty content"}))
            .into_response();
    }
    lock(&state.wecom.0).push(WecomMessage {
        key,
        msgtype,
        content: content.to_owned(),
    });
    Json(json!({"errcode": 0, "errmsg": "ok"})).into_response()
}
