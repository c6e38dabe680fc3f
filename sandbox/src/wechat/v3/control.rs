//! The control API for APIv3: register the merchant, read the simulated WeChat Pay's keys,
//! choose which of them signs.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::{V3Merchant, V3Signer};
use crate::state::AppState;

pub(crate) fn router(state: AppState) -> Router {
    Router::new()
        .route(
            "/sandbox/wechat/v3/merchant",
            get(merchant).put(register_merchant),
        )
        .route("/sandbox/wechat/v3/keys", get(keys))
        .route("/sandbox/wechat/v3/signer", put(set_signer))
        .with_state(state)
}

async fn register_merchant(
    State(state): State<AppState>,
    Json(merchant): Json<V3Merchant>,
) -> Response {
    match state.v3.register(merchant) {
        Ok(()) => merchant_view(&state),
        Err(why) => (StatusCode::BAD_REQUEST, Json(json!({ "error": why }))).into_response(),
    }
}

async fn merchant(State(state): State<AppState>) -> Response {
    merchant_view(&state)
}

fn merchant_view(state: &AppState) -> Response {
    match state.v3.merchant() {
        Some(registered) => Json(registered.public_view()).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": "no APIv3 merchant registered" })),
        )
            .into_response(),
    }
}

/// What a client needs to verify the simulated WeChat Pay: the public key and its id, and
/// the platform certificate (made on first request) with its serial.
pub(crate) fn keys_view(state: &AppState) -> serde_json::Value {
    let keys = &state.v3.keys;
    let certificate = keys.certificate();
    json!({
        "publicKeyId": keys.public_key.serial,
        "publicKeyPem": keys.public_key.public_key_pem,
        "platformCertificateSerial": certificate.key.serial,
        "platformCertificatePem": certificate.pem,
        "signer": state.v3.signer(),
    })
}

async fn keys(State(state): State<AppState>) -> Response {
    Json(keys_view(&state)).into_response()
}

#[derive(Deserialize)]
struct SignerRequest {
    signer: V3Signer,
}

async fn set_signer(State(state): State<AppState>, Json(request): Json<SignerRequest>) -> Response {
    state.v3.set_signer(request.signer);
    Json(keys_view(&state)).into_response()
}
