//! The JSON body extractor every route uses: any body axum cannot read (not JSON, wrong
//! content type, wrong field types) is a 400 with the reason, in the envelope, like every
//! other bad input; a body over the size limit is a 413. Text containing NUL characters
//! is refused here too: PostgreSQL cannot store them, and no real input has them.

use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::Json;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::error::ApiError;

pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let value = match Json::<Value>::from_request(request, state).await {
            Ok(Json(value)) => value,
            Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                return Err(ApiError::PayloadTooLarge)
            }
            Err(rejection) => return Err(ApiError::BadRequest(rejection.body_text())),
        };
        if contains_nul(&value) {
            return Err(ApiError::BadRequest(
                "Text must not contain NUL characters".into(),
            ));
        }
        serde_path_to_error::deserialize(value)
            .map(ApiJson)
            .map_err(|e| ApiError::BadRequest(format!("Invalid request body: {e}")))
    }
}

pub fn contains_nul(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(contains_nul),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || contains_nul(v)),
        _ => false,
    }
}
