//! `POST /_/pay/queryorder`, `/_/pay/closeorder` and `/_/pay/queryrefund`: reading and
//! closing an order by its merchant number.

use axum::body::Bytes;
use axum::extract::State;
use axum::response::Response;
use serde_json::{json, Map, Value};

use crate::state::AppState;
use crate::wechat::envelope::{self, Fields, PlatformError, WxPayFailure};
use crate::wechat::orders::{order_not_found, WechatOrder, WechatRefund};
use crate::wechat::payer;

pub(crate) async fn query_order(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<Response, PlatformError> {
    answer(&state, &body, |state, request| {
        let fields = Fields(request);
        let out_trade_no = fields.optional_text("out_trade_no")?;
        let transaction_id = fields.optional_text("transaction_id")?;
        if out_trade_no.is_none() && transaction_id.is_none() {
            return Err(WxPayFailure::lack("out_trade_no"));
        }
        let order = state
            .orders
            .find(out_trade_no, transaction_id)
            .ok_or_else(order_not_found)?;
        Ok(order_fields(&order))
    })
}

pub(crate) async fn close_order(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<Response, PlatformError> {
    answer(&state, &body, |state, request| {
        let out_trade_no = Fields(request).text("out_trade_no")?;
        state
            .orders
            .close(out_trade_no, state.config.close_min_age)?;
        tracing::info!(%out_trade_no, "closeorder");
        Ok(json!({ "result_msg": "OK" }))
    })
}

pub(crate) async fn query_refund(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<Response, PlatformError> {
    answer(&state, &body, |state, request| {
        let fields = Fields(request);
        let out_trade_no = fields.optional_text("out_trade_no")?;
        let transaction_id = fields.optional_text("transaction_id")?;
        let out_refund_no = fields.optional_text("out_refund_no")?;
        let order = match (out_trade_no, transaction_id, out_refund_no) {
            (None, None, Some(refund_no)) => state.orders.all().into_iter().find(|order| {
                order
                    .refunds
                    .iter()
                    .any(|refund| refund.out_refund_no == refund_no)
            }),
            (None, None, None) => return Err(WxPayFailure::lack("out_trade_no")),
            _ => state.orders.find(out_trade_no, transaction_id),
        };
        let order = order.ok_or_else(order_not_found)?;
        let refunds: Vec<&WechatRefund> = order
            .refunds
            .iter()
            .filter(|refund| out_refund_no.is_none_or(|no| refund.out_refund_no == no))
            .collect();
        if refunds.is_empty() {
            return Err(WxPayFailure::new("REFUNDNOTEXIST", "退款订单查询失败"));
        }
        Ok(refund_fields(&order, &refunds))
    })
}

/// Parses, checks the merchant, and wraps what `handle` returns.
fn answer(
    state: &AppState,
    body: &[u8],
    handle: impl FnOnce(&AppState, &Map<String, Value>) -> Result<Value, WxPayFailure>,
) -> Result<Response, PlatformError> {
    let merchant = &state.config.merchant_id;
    let request = envelope::parse_request(body)?;
    let outcome = check_merchant(&request, merchant).and_then(|()| handle(state, &request));
    Ok(match outcome {
        Ok(fields) => envelope::success(merchant, fields),
        Err(failure) => envelope::failure(merchant, failure),
    })
}

pub(crate) fn check_merchant(
    request: &Map<String, Value>,
    merchant: &str,
) -> Result<(), WxPayFailure> {
    if Fields(request).text("sub_mch_id")? == merchant {
        Ok(())
    } else {
        Err(WxPayFailure::no_auth())
    }
}

fn order_fields(order: &WechatOrder) -> Value {
    let mut fields = json!({
        "trade_state": order.trade_state.as_str(),
        "trade_state_desc": order.trade_state.description(),
        "out_trade_no": order.out_trade_no,
        "total_fee": order.total_fee,
        "fee_type": "CNY",
        "trade_type": "JSAPI",
        "openid": payer::provider_openid(&order.openid),
        "is_subscribe": "N",
        "sub_openid": order.openid,
        "sub_is_subscribe": "N",
    });
    if let Some(attach) = &order.attach {
        fields["attach"] = attach.as_str().into();
    }
    if let (Some(transaction_id), Some(time_end)) = (&order.transaction_id, &order.time_end) {
        fields["transaction_id"] = transaction_id.as_str().into();
        fields["time_end"] = time_end.as_str().into();
        fields["cash_fee"] = order.total_fee.into();
        fields["cash_fee_type"] = "CNY".into();
        fields["bank_type"] = "OTHERS".into();
    }
    fields
}

/// The refunds both as v2's numbered fields (`refund_id_0`, ...) and as JSON arrays
/// (`refund_id_list`, ...), so either reading works.
fn refund_fields(order: &WechatOrder, refunds: &[&WechatRefund]) -> Value {
    let mut fields = json!({
        "out_trade_no": order.out_trade_no,
        "transaction_id": order.transaction_id,
        "total_fee": order.total_fee,
        "cash_fee": order.total_fee,
        "refund_count": refunds.len(),
        "out_refund_no_list": refunds.iter().map(|r| r.out_refund_no.clone()).collect::<Vec<_>>(),
        "refund_id_list": refunds.iter().map(|r| r.refund_id.clone()).collect::<Vec<_>>(),
        "refund_fee_list": refunds.iter().map(|r| r.refund_fee).collect::<Vec<_>>(),
        "refund_status_list": refunds.iter().map(|r| r.status.as_str()).collect::<Vec<_>>(),
        "refund_success_time_list": refunds
            .iter()
            .map(|r| r.success_time.clone().unwrap_or_default())
            .collect::<Vec<_>>(),
    });
    for (n, refund) in refunds.iter().enumerate() {
        fields[format!("out_refund_no_{n}")] = refund.out_refund_no.as_str().into();
        fields[format!("refund_id_{n}")] = refund.refund_id.as_str().into();
        fields[format!("refund_fee_{n}")] = refund.refund_fee.into();
        fields[format!("refund_status_{n}")] = refund.status.as_str().into();
        if let Some(success_time) = &refund.success_time {
            fields[format!("refund_success_time_{n}")] = success_time.as_str().into();
        }
    }
    fields
}
