//! JSAPI prepay, query by `out_trade_no`, and close, in both forms.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::json;

use super::error::V3Error;
use super::fields::{self, Fields};
use super::merchant::{Form, Registered};
use super::order::{self, V3Order};
use crate::state::AppState;
use crate::wechat::envelope::{is_merchant_number, WxPayFailure};
use crate::wechat::orders::{NewOrder, Protocol, WechatOrder};

/// The contract's limits, in characters.
const MAX_DESCRIPTION: usize = 127;
const MAX_ATTACH: usize = 128;

type Merchant = Extension<Arc<Registered>>;

pub(crate) async fn prepay_direct(
    State(state): State<AppState>,
    Extension(merchant): Merchant,
    body: Bytes,
) -> Result<Response, V3Error> {
    prepay(&state, &merchant, Form::Direct, &body)
}

pub(crate) async fn prepay_partner(
    State(state): State<AppState>,
    Extension(merchant): Merchant,
    body: Bytes,
) -> Result<Response, V3Error> {
    prepay(&state, &merchant, Form::Partner, &body)
}

fn prepay(
    state: &AppState,
    merchant: &Registered,
    form: Form,
    body: &[u8],
) -> Result<Response, V3Error> {
    merchant.check_form(form)?;
    if let Some(injected) = state.with_faults(|faults| faults.wechat.take_unified_order_error()) {
        return Err(match (injected.errcode, injected.err_code) {
            (Some(errcode), _) if errcode != 0 => V3Error::system_error(),
            (_, code) => V3Error::injected(
                code.as_deref().unwrap_or("SYSTEM_ERROR"),
                injected.err_code_des,
            ),
        });
    }
    let request = fields::parse(body)?;
    let new_order = validate(state, merchant, form, &Fields(&request))?;
    let order = state.orders.place(new_order).map_err(placement_error)?;
    tracing::info!(out_trade_no = %order.out_trade_no, total = order.total_fee, ?form, "APIv3 prepay");
    Ok(Json(json!({ "prepay_id": order.prepay_id })).into_response())
}

fn validate(
    state: &AppState,
    merchant: &Registered,
    form: Form,
    fields: &Fields<'_>,
) -> Result<NewOrder, V3Error> {
    let registered = &merchant.merchant;
    let mismatch = || {
        V3Error::new(
            StatusCode::BAD_REQUEST,
            "APPID_MCHID_NOT_MATCH",
            "appid和mch_id不匹配",
        )
    };
    let (appid, sp_appid, sp_mchid, payer_field, openid) = match form {
        Form::Direct => {
            let appid = fields.text("appid")?;
            let mchid = fields.text("mchid")?;
            if appid != registered.appid || mchid != registered.mchid {
                return Err(mismatch());
            }
            let openid = fields.object("payer")?.text("openid")?;
            (appid.to_owned(), None, None, "openid", openid)
        }
        Form::Partner => {
            let sp_appid = fields.text("sp_appid")?;
            let sp_mchid = fields.text("sp_mchid")?;
            if Some(sp_appid) != registered.sp_appid.as_deref()
                || Some(sp_mchid) != registered.sp_mchid.as_deref()
            {
                return Err(mismatch());
            }
            if fields.text("sub_mchid")? != registered.mchid {
                return Err(V3Error::no_auth("特约商户号未授权服务商"));
            }
            let sub_appid = fields.optional_text("sub_appid")?;
            if sub_appid.is_some_and(|sub_appid| sub_appid != registered.appid) {
                return Err(V3Error::new(
                    StatusCode::BAD_REQUEST,
                    "APPID_MCHID_NOT_MATCH",
                    "sub_appid和sub_mchid不匹配",
                ));
            }
            let payer = fields.object("payer")?;
            let (field, openid) = match (
                payer.optional_text("sub_openid")?,
                payer.optional_text("sp_openid")?,
            ) {
                (Some(sub_openid), _) if !sub_openid.is_empty() => {
                    if sub_appid.is_none() {
                        return Err(V3Error::param("传sub_openid时sub_appid必填"));
                    }
                    ("sub_openid", sub_openid)
                }
                (_, Some(sp_openid)) if !sp_openid.is_empty() => ("sp_openid", sp_openid),
                _ => return Err(V3Error::param("payer.sp_openid与payer.sub_openid须填一个")),
            };
            (
                sub_appid.unwrap_or_default().to_owned(),
                Some(sp_appid.to_owned()),
                Some(sp_mchid.to_owned()),
                field,
                openid,
            )
        }
    };
    let description = fields.text("description")?;
    if description.chars().count() > MAX_DESCRIPTION {
        return Err(V3Error::param("description长度不能超过127"));
    }
    let out_trade_no = fields.text("out_trade_no")?;
    if !is_merchant_number(out_trade_no, 6..=32, &[]) {
        return Err(V3Error::param(
            "out_trade_no须为6-32位数字、大小写字母或_-|*",
        ));
    }
    let notify_url = fields.text("notify_url")?;
    fields::check_notify_url(notify_url, &state.callback_base())?;
    let amount = fields.object("amount")?;
    let total = amount.positive_integer("total")?;
    amount.currency(false)?;
    let attach = fields.optional_text("attach")?;
    if attach.is_some_and(|attach| attach.chars().count() > MAX_ATTACH) {
        return Err(V3Error::param("attach长度不能超过128"));
    }
    let time_expire = fields.optional_text("time_expire")?;
    if time_expire.is_some_and(|at| chrono::DateTime::parse_from_rfc3339(at).is_err()) {
        return Err(V3Error::param("time_expire须为RFC 3339格式"));
    }
    if !openid
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(V3Error::param("无效的openid"));
    }
    Ok(NewOrder {
        out_trade_no: out_trade_no.to_owned(),
        total_fee: total,
        openid: openid.to_owned(),
        sub_mch_id: registered.mchid.clone(),
        attach: attach.map(str::to_owned),
        body: description.to_owned(),
        env_id: String::new(),
        spbill_create_ip: String::new(),
        container_service: String::new(),
        container_path: String::new(),
        v3: Some(V3Order {
            appid,
            mchid: registered.mchid.clone(),
            sp_appid,
            sp_mchid,
            notify_url: notify_url.to_owned(),
            payer_field: payer_field.to_owned(),
            time_expire: time_expire.map(str::to_owned),
        }),
    })
}

/// The order book speaks v2; APIv3 names these failures its own way.
fn placement_error(failure: WxPayFailure) -> V3Error {
    match failure.err_code.as_str() {
        "ORDERCLOSED" => V3Error::new(StatusCode::BAD_REQUEST, "ORDER_CLOSED", "订单已关闭"),
        // APIv3 lists no ORDERPAID for prepay; a paid number is a number used (inferred).
        "ORDERPAID" => V3Error::new(
            StatusCode::FORBIDDEN,
            "OUT_TRADE_NO_USED",
            "订单已支付，商户订单号重复",
        ),
        "OUT_TRADE_NO_USED" => V3Error::new(
            StatusCode::FORBIDDEN,
            "OUT_TRADE_NO_USED",
            failure.err_code_des,
        ),
        _ => V3Error::param(failure.err_code_des),
    }
}

/// This merchant's APIv3 order; an open-interface order, or none, is ORDER_NOT_EXIST: a
/// channel sees only the orders placed through it (inferred; undocumented upstream).
pub(crate) fn own_order(state: &AppState, out_trade_no: &str) -> Result<WechatOrder, V3Error> {
    state
        .orders
        .get(out_trade_no)
        .filter(|order| order.protocol == Protocol::ApiV3)
        .ok_or_else(V3Error::order_not_exist)
}

/// The merchant ids of a query string or a close body, checked against the registration.
fn check_ids(
    merchant: &Registered,
    form: Form,
    get: impl Fn(&str) -> Option<String>,
) -> Result<(), V3Error> {
    merchant.check_form(form)?;
    let required = |name: &str| {
        get(name)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| V3Error::param(format!("缺少参数{name}")))
    };
    let registered = &merchant.merchant;
    match form {
        Form::Direct => {
            if required("mchid")? != registered.mchid {
                return Err(V3Error::no_auth("商户号无权限"));
            }
        }
        Form::Partner => {
            if Some(required("sp_mchid")?) != registered.sp_mchid
                || required("sub_mchid")? != registered.mchid
            {
                return Err(V3Error::no_auth("商户号无权限"));
            }
        }
    }
    Ok(())
}

pub(crate) async fn query_direct(
    State(state): State<AppState>,
    Extension(merchant): Merchant,
    Path(out_trade_no): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, V3Error> {
    query_order(&state, &merchant, Form::Direct, &out_trade_no, &query)
}

pub(crate) async fn query_partner(
    State(state): State<AppState>,
    Extension(merchant): Merchant,
    Path(out_trade_no): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, V3Error> {
    query_order(&state, &merchant, Form::Partner, &out_trade_no, &query)
}

fn query_order(
    state: &AppState,
    merchant: &Registered,
    form: Form,
    out_trade_no: &str,
    query: &HashMap<String, String>,
) -> Result<Response, V3Error> {
    check_ids(merchant, form, |name| query.get(name).cloned())?;
    let order = own_order(state, out_trade_no)?;
    Ok(Json(order::transaction(&order)).into_response())
}

pub(crate) async fn close_direct(
    State(state): State<AppState>,
    Extension(merchant): Merchant,
    Path(out_trade_no): Path<String>,
    body: Bytes,
) -> Result<Response, V3Error> {
    close(&state, &merchant, Form::Direct, &out_trade_no, &body)
}

pub(crate) async fn close_partner(
    State(state): State<AppState>,
    Extension(merchant): Merchant,
    Path(out_trade_no): Path<String>,
    body: Bytes,
) -> Result<Response, V3Error> {
    close(&state, &merchant, Form::Partner, &out_trade_no, &body)
}

fn close(
    state: &AppState,
    merchant: &Registered,
    form: Form,
    out_trade_no: &str,
    body: &[u8],
) -> Result<Response, V3Error> {
    let request = fields::parse(body)?;
    let fields = Fields(&request);
    check_ids(merchant, form, |name| {
        fields.optional_text(name).ok().flatten().map(str::to_owned)
    })?;
    own_order(state, out_trade_no)?;
    state
        .orders
        .close(out_trade_no, state.config.close_min_age)
        .map_err(|failure| match failure.err_code.as_str() {
            "ORDERCLOSED" => V3Error::new(StatusCode::BAD_REQUEST, "ORDER_CLOSED", "订单已关闭"),
            "ORDERNOTEXIST" => V3Error::order_not_exist(),
            // Undocumented in APIv3 (no ORDERPAID): inferred.
            "ORDERPAID" => V3Error::invalid_request("订单已支付，不能关闭"),
            _ => V3Error::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "SYSTEM_ERROR",
                failure.err_code_des,
            ),
        })?;
    tracing::info!(%out_trade_no, "APIv3 close");
    Ok(StatusCode::NO_CONTENT.into_response())
}
