//! `POST /_/pay/unifiedOrder`: places an order and returns what `wx.requestPayment` needs.

use axum::body::Bytes;
use axum::extract::State;
use axum::response::Response;
use serde_json::{json, Map, Value};

use crate::ids;
use crate::state::AppState;
use crate::wechat::envelope::{self, Fields, PlatformError, WxPayFailure, MINI_PROGRAM_APPID};
use crate::wechat::orders::{NewOrder, WechatOrder};

/// The open interface adds the merchant's identity and signs; a service that sends these
/// itself is misconfigured.
const FORBIDDEN_FIELDS: [&str; 4] = ["mch_id", "appid", "sign", "sign_type"];

/// WeChat Pay v2 field limits, in bytes.
const MAX_BODY_BYTES: usize = 128;
const MAX_ATTACH_BYTES: usize = 127;

pub(crate) async fn unified_order(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<Response, PlatformError> {
    let merchant = state.config.merchant_id.clone();
    if let Some(injected) = state.with_faults(|faults| faults.wechat.take_unified_order_error()) {
        return injected_failure(&merchant, injected);
    }
    let request = envelope::parse_request(&body)?;
    let placed = validate(&request, &merchant).and_then(|new_order| state.orders.place(new_order));
    Ok(match placed {
        Ok(order) => {
            tracing::info!(out_trade_no = %order.out_trade_no, total_fee = order.total_fee, "unifiedOrder");
            envelope::success(&merchant, prepay_fields(&order))
        }
        Err(failure) => envelope::failure(&merchant, failure),
    })
}

fn injected_failure(
    merchant: &str,
    injected: crate::faults::UnifiedOrderError,
) -> Result<Response, PlatformError> {
    match injected.errcode {
        Some(errcode) if errcode != 0 => Err(PlatformError {
            errcode,
            errmsg: injected
                .err_code_des
                .unwrap_or_else(|| "system error (injected by the sandbox)".into()),
        }),
        _ => Ok(envelope::failure(
            merchant,
            WxPayFailure::new(
                injected.err_code.unwrap_or_else(|| "SYSTEMERROR".into()),
                injected.err_code_des.unwrap_or_else(|| "系统超时".into()),
            ),
        )),
    }
}

fn validate(request: &Map<String, Value>, merchant: &str) -> Result<NewOrder, WxPayFailure> {
    if let Some(field) = FORBIDDEN_FIELDS.iter().find(|f| request.contains_key(**f)) {
        return Err(WxPayFailure::param(format!(
            "云调用不需要也不允许传{field}，由开放接口服务代为填写"
        )));
    }
    let fields = Fields(request);
    let body = fields.text("body")?;
    let openid = fields.text("openid")?;
    let out_trade_no = fields.text("out_trade_no")?;
    let total_fee = fields.positive_integer("total_fee")?;
    let spbill_create_ip = fields.text("spbill_create_ip")?;
    let env_id = fields.text("env_id")?;
    let sub_mch_id = fields.text("sub_mch_id")?;
    let trade_type = fields.text("trade_type")?;
    let attach = fields.optional_text("attach")?;
    let (container_service, container_path) = fields.container()?;

    if body.len() > MAX_BODY_BYTES {
        return Err(WxPayFailure::param("body长度不能超过128字节"));
    }
    if !openid
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(WxPayFailure::param("无效的openid"));
    }
    if !envelope::is_merchant_number(out_trade_no, 6..=32, &[]) {
        return Err(WxPayFailure::param(
            "out_trade_no须为6-32位数字、大小写字母或_-|*",
        ));
    }
    if spbill_create_ip.parse::<std::net::IpAddr>().is_err() {
        return Err(WxPayFailure::param("spbill_create_ip格式错误"));
    }
    if trade_type != "JSAPI" {
        return Err(WxPayFailure::param("trade_type必须为JSAPI"));
    }
    if attach.is_some_and(|attach| attach.len() > MAX_ATTACH_BYTES) {
        return Err(WxPayFailure::param("attach长度不能超过127字节"));
    }
    if sub_mch_id != merchant {
        return Err(WxPayFailure::no_auth());
    }
    Ok(NewOrder {
        out_trade_no: out_trade_no.to_owned(),
        total_fee,
        openid: openid.to_owned(),
        sub_mch_id: sub_mch_id.to_owned(),
        attach: attach.map(str::to_owned),
        body: body.to_owned(),
        env_id: env_id.to_owned(),
        spbill_create_ip: spbill_create_ip.to_owned(),
        container_service,
        container_path,
        v3: None,
    })
}

fn prepay_fields(order: &WechatOrder) -> Value {
    json!({
        "trade_type": "JSAPI",
        "prepay_id": order.prepay_id,
        "payment": {
            "appId": MINI_PROGRAM_APPID,
            "timeStamp": chrono::Utc::now().timestamp().to_string(),
            "nonceStr": ids::alphanumeric(16),
            "package": format!("prepay_id={}", order.prepay_id),
            "signType": "MD5",
            "paySign": ids::hex(32, true),
        },
    })
}
