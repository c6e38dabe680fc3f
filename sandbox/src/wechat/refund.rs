//! `POST /_/pay/refund`: accepts a refund; it succeeds a little later and is called back.

use axum::body::Bytes;
use axum::extract::State;
use axum::response::Response;
use serde_json::{json, Map, Value};

use crate::state::AppState;
use crate::sync::stopped;
use crate::wechat::callbacks;
use crate::wechat::envelope::{self, Fields, PlatformError, WxPayFailure};
use crate::wechat::orders::{NewRefund, WechatOrder, WechatRefund};
use crate::wechat::query::check_merchant;

pub(crate) async fn refund(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<Response, PlatformError> {
    let merchant = state.config.merchant_id.clone();
    let request = envelope::parse_request(&body)?;
    let accepted = check_merchant(&request, &merchant)
        .and_then(|()| validate(&request))
        .and_then(|new_refund| state.orders.request_refund(new_refund));
    Ok(match accepted {
        Ok((order, refund, is_new)) => {
            tracing::info!(
                out_trade_no = %order.out_trade_no,
                out_refund_no = %refund.out_refund_no,
                refund_fee = refund.refund_fee,
                is_new,
                "refund accepted"
            );
            if is_new {
                complete_later(&state, &order, &refund, true);
            }
            envelope::success(&merchant, accepted_fields(&order, &refund))
        }
        Err(failure) => envelope::failure(&merchant, failure),
    })
}

fn validate(request: &Map<String, Value>) -> Result<NewRefund, WxPayFailure> {
    let fields = Fields(request);
    let out_trade_no = fields.text("out_trade_no")?;
    let out_refund_no = fields.text("out_refund_no")?;
    fields.text("env_id")?;
    let total_fee = fields.positive_integer("total_fee")?;
    let refund_fee = fields.positive_integer("refund_fee")?;
    let refund_desc = fields.optional_text("refund_desc")?;
    let (container_service, container_path) = fields.container()?;
    if !envelope::is_merchant_number(out_refund_no, 1..=64, &['@']) {
        return Err(WxPayFailure::param(
            "out_refund_no须为1-64位数字、大小写字母或_-|*@",
        ));
    }
    if refund_fee > total_fee {
        return Err(WxPayFailure::param("退款金额不能大于订单金额"));
    }
    Ok(NewRefund {
        out_trade_no: out_trade_no.to_owned(),
        out_refund_no: out_refund_no.to_owned(),
        total_fee,
        refund_fee,
        refund_desc: refund_desc.map(str::to_owned),
        container_service,
        container_path,
        notify_url: None,
    })
}

/// After `refund_delay` the refund succeeds and, with `notify`, its callback starts.
pub(crate) fn complete_later(
    state: &AppState,
    order: &WechatOrder,
    refund: &WechatRefund,
    notify: bool,
) {
    let state = state.clone();
    let out_trade_no = order.out_trade_no.clone();
    let out_refund_no = refund.out_refund_no.clone();
    let mut shutdown = state.shutdown.clone();
    let owing = callbacks::Owing::start(&state);
    tokio::spawn(async move {
        let _owing = owing;
        tokio::select! {
            _ = tokio::time::sleep(state.config.refund_delay) => {}
            _ = stopped(&mut shutdown) => return,
        }
        let v3 = state
            .orders
            .get(&out_trade_no)
            .is_some_and(|o| o.v3.is_some());
        let close = v3 && state.with_faults(|faults| faults.wechat.v3.take_refund_close());
        let done = if close {
            state.orders.close_refund(&out_trade_no, &out_refund_no)
        } else {
            state.orders.complete_refund(&out_trade_no, &out_refund_no)
        };
        if let Some((order, refund)) = done {
            tracing::info!(%out_trade_no, %out_refund_no, status = refund.status.as_str(), "refund done");
            if notify && v3 {
                crate::wechat::v3::notify::deliver_refund(&state, &order, &refund);
            } else if notify {
                callbacks::deliver_refund(&state, &order, &refund);
            }
        }
    });
}

fn accepted_fields(order: &WechatOrder, refund: &WechatRefund) -> Value {
    json!({
        "transaction_id": order.transaction_id,
        "out_trade_no": order.out_trade_no,
        "out_refund_no": refund.out_refund_no,
        "refund_id": refund.refund_id,
        "refund_channel": "",
        "refund_fee": refund.refund_fee,
        "coupon_refund_fee": 0,
        "total_fee": order.total_fee,
        "cash_fee": order.total_fee,
        "cash_refund_fee": refund.refund_fee,
        "coupon_refund_count": 0,
    })
}
