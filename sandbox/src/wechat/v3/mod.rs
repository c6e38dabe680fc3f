//! WeChat Pay APIv3, as a merchant reaches it directly (`https://api.mch.weixin.qq.com/v3/…`),
//! on the same port as the open interface: signed requests (`WECHATPAY2-SHA256-RSA2048`),
//! signed answers, `{code, message}` errors, encrypted notifications to `notify_url`.
//! Direct (`appid` + `mchid`) and service-provider (`/partner/`, `sp_mchid` + `sub_mchid`)
//! forms; orders live in the same [`OrderBook`](crate::wechat::orders::OrderBook) as
//! open-interface ones, marked [`Protocol::ApiV3`](crate::wechat::orders::Protocol).

mod auth;
mod bill;
pub(crate) mod control;
mod error;
mod fields;
mod handle;
pub(crate) mod keys;
pub(crate) mod merchant;
pub(crate) mod notify;
pub(crate) mod order;
mod pay;
mod refund;

use std::sync::{Arc, Mutex};

use axum::middleware;
use axum::routing::{get, post};
use axum::Router;

use crate::state::AppState;
use crate::sync::lock;
pub use keys::V3Signer;
pub use merchant::V3Merchant;

/// Everything APIv3 adds to the simulator's state.
pub(crate) struct V3State {
    pub keys: keys::PlatformKeys,
    merchant: Mutex<Option<Arc<merchant::Registered>>>,
    signer: Mutex<V3Signer>,
    pub bills: bill::BillFiles,
}

impl V3State {
    pub(crate) fn new() -> anyhow::Result<V3State> {
        Ok(V3State {
            keys: keys::PlatformKeys::generate()?,
            merchant: Mutex::new(None),
            signer: Mutex::new(V3Signer::default()),
            bills: bill::BillFiles::default(),
        })
    }

    pub(crate) fn merchant(&self) -> Option<Arc<merchant::Registered>> {
        lock(&self.merchant).clone()
    }

    pub(crate) fn register(&self, merchant: V3Merchant) -> Result<(), String> {
        let registered = merchant::Registered::new(merchant)?;
        tracing::info!(merchant = ?registered.merchant, "APIv3 merchant registered");
        *lock(&self.merchant) = Some(Arc::new(registered));
        Ok(())
    }

    pub(crate) fn signer(&self) -> V3Signer {
        *lock(&self.signer)
    }

    pub(crate) fn set_signer(&self, signer: V3Signer) {
        *lock(&self.signer) = signer;
    }

    pub(crate) fn signing_key(&self) -> &keys::SigningKey {
        self.keys.for_signer(self.signer())
    }
}

/// The contract's paths, both forms; the bill download path is the one `tradebill` hands out.
pub(crate) fn router(state: AppState) -> Router {
    const OUT_TRADE_NO: &str = "/v3/pay/transactions/out-trade-no/{out_trade_no}";
    const PARTNER_OUT_TRADE_NO: &str = "/v3/pay/partner/transactions/out-trade-no/{out_trade_no}";
    Router::new()
        .route("/v3/pay/transactions/jsapi", post(pay::prepay_direct))
        .route(
            "/v3/pay/partner/transactions/jsapi",
            post(pay::prepay_partner),
        )
        .route(OUT_TRADE_NO, get(pay::query_direct))
        .route(PARTNER_OUT_TRADE_NO, get(pay::query_partner))
        .route(&format!("{OUT_TRADE_NO}/close"), post(pay::close_direct))
        .route(
            &format!("{PARTNER_OUT_TRADE_NO}/close"),
            post(pay::close_partner),
        )
        .route("/v3/refund/domestic/refunds", post(refund::create))
        .route(
            "/v3/refund/domestic/refunds/{out_refund_no}",
            get(refund::query),
        )
        .route("/v3/bill/tradebill", get(bill::trade_bill))
        .route(bill::FILE_PATH, get(bill::download))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate_and_sign,
        ))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            crate::wechat::add_latency,
        ))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            crate::calls::record_wechat,
        ))
        .with_state(state)
}
