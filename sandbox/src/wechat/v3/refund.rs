//! `POST /v3/refund/domestic/refunds` and `GET …/refunds/{out_refund_no}` (partner form:
//! the same paths with `sub_mchid`).

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};

use super::error::V3Error;
use super::fields::{self, Fields};
use super::merchant::Registered;
use super::order;
use crate::state::AppState;
use crate::wechat::envelope::{is_merchant_number, WxPayFailure};
use crate::wechat::orders::{NewRefund, Protocol};

/// `reason` limit, in bytes.
const MAX_REASON_BYTES: usize = 80;

fn not_found(message: &str) -> V3Error {
    V3Error::new(StatusCode::NOT_FOUND, "RESOURCE_NOT_EXISTS", message)
}

/// A partner's calls name the sub-merchant; a direct merchant's do not.
fn check_sub_mchid(merchant: &Registered, sub_mchid: Option<&str>) -> Result<(), V3Error> {
    match (merchant.is_partner(), sub_mchid) {
        (true, None) => Err(V3Error::param("缺少参数sub_mchid")),
        (true, Some(sub_mchid)) if sub_mchid != merchant.merchant.mchid => {
            Err(V3Error::no_auth("特约商户号未授权服务商"))
        }
        _ => Ok(()),
    }
}

pub(crate) async fn create(
    State(state): State<AppState>,
    Extension(merchant): Extension<Arc<Registered>>,
    body: Bytes,
) -> Result<Response, V3Error> {
    let request = fields::parse(&body)?;
    let fields = Fields(&request);
    check_sub_mchid(&merchant, fields.optional_text("sub_mchid")?)?;
    let out_refund_no = fields.text("out_refund_no")?;
    if !is_merchant_number(out_refund_no, 1..=64, &['@']) {
        return Err(V3Error::param(
            "out_refund_no须为1-64位数字、大小写字母或_-|*@",
        ));
    }
    let reason = fields.optional_text("reason")?;
    if reason.is_some_and(|reason| reason.len() > MAX_REASON_BYTES) {
        return Err(V3Error::param("reason长度不能超过80字节"));
    }
    let notify_url = fields.optional_text("notify_url")?;
    if let Some(url) = notify_url {
        fields::check_notify_url(url, &state.callback_base())?;
    }
    let amount = fields.object("amount")?;
    let refund_fee = amount.positive_integer("refund")?;
    let total_fee = amount.positive_integer("total")?;
    amount.currency(true)?;
    if refund_fee > total_fee {
        return Err(V3Error::param("退款金额不能大于订单金额"));
    }
    let order = match (
        fields.optional_text("out_trade_no")?,
        fields.optional_text("transaction_id")?,
    ) {
        (None, None) => return Err(V3Error::param("out_trade_no与transaction_id须填一个")),
        (out_trade_no, transaction_id) => state.orders.find(out_trade_no, transaction_id),
    }
    .filter(|order| order.protocol == Protocol::ApiV3)
    .ok_or_else(|| not_found("订单不存在"))?;
    let (order, refund, is_new) = state
        .orders
        .request_refund(NewRefund {
            out_trade_no: order.out_trade_no,
            out_refund_no: out_refund_no.to_owned(),
            total_fee,
            refund_fee,
            refund_desc: reason.map(str::to_owned),
            container_service: String::new(),
            container_path: String::new(),
            notify_url: notify_url.map(str::to_owned),
        })
        .map_err(refusal)?;
    tracing::info!(out_trade_no = %order.out_trade_no, %out_refund_no, refund_fee, is_new, "APIv3 refund accepted");
    if is_new {
        crate::wechat::refund::complete_later(&state, &order, &refund, true);
    }
    Ok(Json(order::refund(&order, &refund)).into_response())
}

fn refusal(failure: WxPayFailure) -> V3Error {
    match failure.err_code.as_str() {
        "ORDERNOTEXIST" => not_found("订单不存在"),
        "PARAM_ERROR" => V3Error::param(failure.err_code_des),
        _ => V3Error::invalid_request(failure.err_code_des),
    }
}

pub(crate) async fn query(
    State(state): State<AppState>,
    Extension(merchant): Extension<Arc<Registered>>,
    Path(out_refund_no): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, V3Error> {
    check_sub_mchid(&merchant, query.get("sub_mchid").map(String::as_str))?;
    let found = state
        .orders
        .all()
        .into_iter()
        .filter(|order| order.protocol == Protocol::ApiV3)
        .find_map(|order| {
            let refund = order
                .refunds
                .iter()
                .find(|refund| refund.out_refund_no == out_refund_no)?
                .clone();
            Some((order, refund))
        });
    let (order, refund) = found.ok_or_else(|| not_found("退款单不存在"))?;
    Ok(Json(order::refund(&order, &refund)).into_response())
}
