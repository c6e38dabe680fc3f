//! The open interface service's envelope around WeChat Pay v2 answers, and the reading of
//! request fields.

use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

use crate::ids;

/// The cloud-pay service provider and the mini-program, as WeChat Pay names them in
/// answers and callbacks. Made up, but shaped like real ones.
pub(crate) const PROVIDER_APPID: &str = "wx5c9a1e0b3d7f2a64";
pub(crate) const PROVIDER_MCH_ID: &str = "1800780001";
pub(crate) const MINI_PROGRAM_APPID: &str = "wx8b3f0d2e6a1c9754";

/// The platform's "invalid args", for a body that is not a JSON object.
const INVALID_ARGS: i64 = 40097;

/// A WeChat Pay business failure: relayed with errcode 0 and `result_code: FAIL`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WxPayFailure {
    pub err_code: String,
    pub err_code_des: String,
}

impl WxPayFailure {
    pub(crate) fn new(err_code: impl Into<String>, err_code_des: impl Into<String>) -> Self {
        WxPayFailure {
            err_code: err_code.into(),
            err_code_des: err_code_des.into(),
        }
    }

    pub(crate) fn param(description: impl Into<String>) -> Self {
        WxPayFailure::new("PARAM_ERROR", description)
    }

    pub(crate) fn lack(field: &str) -> Self {
        WxPayFailure::new("LACK_PARAMS", format!("缺少参数{field}"))
    }

    pub(crate) fn no_auth() -> Self {
        WxPayFailure::new("NOAUTH", "受理关系不存在")
    }
}

/// `errcode: 0`: the platform relayed the call; `respdata` holds WeChat Pay's answer.
pub(crate) fn relayed(respdata: Value) -> Response {
    with_seq_id(Json(
        json!({ "errcode": 0, "errmsg": "ok", "respdata": respdata }),
    ))
}

/// The platform itself refused the call: an envelope without respdata.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("platform error {errcode}: {errmsg}")]
pub(crate) struct PlatformError {
    pub errcode: i64,
    pub errmsg: String,
}

impl IntoResponse for PlatformError {
    fn into_response(self) -> Response {
        tracing::info!(error = %self, "WeChat call refused by the platform");
        with_seq_id(Json(
            json!({ "errcode": self.errcode, "errmsg": self.errmsg }),
        ))
    }
}

fn with_seq_id(body: impl IntoResponse) -> Response {
    let mut response = body.into_response();
    if let Ok(seq_id) = HeaderValue::from_str(&ids::openapi_seq_id()) {
        response.headers_mut().insert("x-openapi-seqid", seq_id);
    }
    response
}

/// WeChat Pay's common fields, `result_code: SUCCESS`, and `fields`.
pub(crate) fn success(sub_mch_id: &str, fields: Value) -> Response {
    let mut respdata = common_fields(sub_mch_id);
    respdata.insert("result_code".into(), "SUCCESS".into());
    if let Value::Object(fields) = fields {
        respdata.extend(fields);
    }
    relayed(Value::Object(respdata))
}

pub(crate) fn failure(sub_mch_id: &str, failure: WxPayFailure) -> Response {
    tracing::info!(err_code = %failure.err_code, err_code_des = %failure.err_code_des, "WeChat Pay call failed");
    let mut respdata = common_fields(sub_mch_id);
    respdata.insert("result_code".into(), "FAIL".into());
    respdata.insert("err_code".into(), failure.err_code.into());
    respdata.insert("err_code_des".into(), failure.err_code_des.into());
    relayed(Value::Object(respdata))
}

fn common_fields(sub_mch_id: &str) -> Map<String, Value> {
    let mut fields = Map::new();
    fields.insert("return_code".into(), "SUCCESS".into());
    fields.insert("return_msg".into(), "OK".into());
    fields.insert("appid".into(), PROVIDER_APPID.into());
    fields.insert("mch_id".into(), PROVIDER_MCH_ID.into());
    fields.insert("sub_appid".into(), MINI_PROGRAM_APPID.into());
    fields.insert("sub_mch_id".into(), sub_mch_id.into());
    fields.insert("nonce_str".into(), ids::alphanumeric(16).into());
    fields.insert("sign".into(), ids::hex(32, true).into());
    fields
}

/// The request as a JSON object; anything else is the platform's "invalid args".
pub(crate) fn parse_request(body: &[u8]) -> Result<Map<String, Value>, PlatformError> {
    let errmsg = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(fields)) => return Ok(fields),
        Ok(_) => "invalid args: the body must be a JSON object".to_owned(),
        Err(error) => format!("invalid args: the body is not valid JSON ({error})"),
    };
    Err(PlatformError {
        errcode: INVALID_ARGS,
        errmsg,
    })
}

/// Typed access to request fields, with WeChat Pay's failures for what is missing or wrong.
pub(crate) struct Fields<'a>(pub &'a Map<String, Value>);

impl<'a> Fields<'a> {
    /// A non-empty string: LACK_PARAMS when absent or empty, PARAM_ERROR when not a string.
    pub(crate) fn text(&self, name: &str) -> Result<&'a str, WxPayFailure> {
        match self.0.get(name) {
            None | Some(Value::Null) => Err(WxPayFailure::lack(name)),
            Some(Value::String(text)) if text.is_empty() => Err(WxPayFailure::lack(name)),
            Some(Value::String(text)) => Ok(text),
            Some(_) => Err(WxPayFailure::param(format!("{name}必须为字符串"))),
        }
    }

    pub(crate) fn optional_text(&self, name: &str) -> Result<Option<&'a str>, WxPayFailure> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(text)) => Ok(Some(text)),
            Some(_) => Err(WxPayFailure::param(format!("{name}必须为字符串"))),
        }
    }

    /// A JSON integer above 0: a string or a float is PARAM_ERROR, as WeChat Pay's
    /// integer fen fields are.
    pub(crate) fn positive_integer(&self, name: &str) -> Result<i64, WxPayFailure> {
        match self.0.get(name) {
            None | Some(Value::Null) => Err(WxPayFailure::lack(name)),
            Some(Value::Number(number)) => match number.as_i64() {
                Some(value) if value > 0 => Ok(value),
                _ => Err(WxPayFailure::param(format!("{name}必须为大于0的整数"))),
            },
            Some(_) => Err(WxPayFailure::param(format!("{name}必须为整数"))),
        }
    }

    pub(crate) fn integer(&self, name: &str) -> Result<i64, WxPayFailure> {
        match self.0.get(name) {
            None | Some(Value::Null) => Err(WxPayFailure::lack(name)),
            Some(Value::Number(number)) => number
                .as_i64()
                .ok_or_else(|| WxPayFailure::param(format!("{name}必须为整数"))),
            Some(_) => Err(WxPayFailure::param(format!("{name}必须为整数"))),
        }
    }

    /// `callback_type` 2 (cloud hosting) with `container {service, path}`; the path is
    /// where the platform will POST results. Cloud functions (type 1) are not simulated.
    pub(crate) fn container(&self) -> Result<(String, String), WxPayFailure> {
        if self.integer("callback_type")? != 2 {
            return Err(WxPayFailure::param(
                "callback_type必须为2（云托管），沙箱不模拟云函数回调",
            ));
        }
        let container = match self.0.get("container") {
            None | Some(Value::Null) => return Err(WxPayFailure::lack("container")),
            Some(Value::Object(container)) => Fields(container),
            Some(_) => return Err(WxPayFailure::param("container必须为对象")),
        };
        let service = container.text("service")?;
        let path = container.text("path")?;
        if !path.starts_with('/') {
            return Err(WxPayFailure::param("container.path必须以/开头"));
        }
        Ok((service.to_owned(), path.to_owned()))
    }
}

/// `[0-9A-Za-z_\-|*]`, plus `extra` (refund numbers also allow `@`).
pub(crate) fn is_merchant_number(
    value: &str,
    lengths: std::ops::RangeInclusive<usize>,
    extra: &[char],
) -> bool {
    lengths.contains(&value.len())
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-|*".contains(c) || extra.contains(&c))
}
