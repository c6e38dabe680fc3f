//! The state every handler shares. Background jobs do not take it: each gets only what it
//! uses ([`PaymentWatch`], [`crate::payments::refunds::Refunds`],
//! [`crate::alerts::Alerting`]); nor do the payment decisions ([`Payments`]).

use std::ops::Deref;
use std::sync::Arc;

use shared::outbox::OutboxSignal;
use shared::unitel::UnitelClient;
use sqlx::PgPool;

use crate::config::ApiConfig;
use crate::lookups::Lookups;
use crate::payment_watch::PaymentWatch;
use crate::payments::Payments;
use crate::rate_limit::RateLimiter;
use crate::reconciliation::Reconciliation;
use crate::sessions::Sessions;
use crate::wechat::WechatPay;

/// What every handler reaches, behind one reference count: axum clones the state for
/// every request and several of its extractors, and one `Arc` costs one atomic increment
/// where a dozen fields cost a dozen.
#[derive(Clone)]
pub struct ApiContext(Arc<ApiState>);

impl ApiContext {
    pub fn new(state: ApiState) -> ApiContext {
        ApiContext(Arc::new(state))
    }
}

impl Deref for ApiContext {
    type Target = ApiState;

    fn deref(&self) -> &ApiState {
        &self.0
    }
}

pub struct ApiState {
    pub config: Arc<ApiConfig>,
    pub db: PgPool,
    pub wechat: Arc<WechatPay>,
    pub unitel: Arc<UnitelClient>,
    pub outbox: OutboxSignal,
    pub limiter: RateLimiter,
    /// Unitel's answers to product and bill lookups, kept a while per number.
    pub lookups: Arc<Lookups>,
    /// Asks WeChat about unpaid orders (on read and on cancel).
    pub watch: Arc<PaymentWatch>,
    /// Payments started, results recorded, refunds asked for.
    pub payments: Arc<Payments>,
    /// Matches WeChat's daily bills against our books (an operator can re-run a day).
    pub reconciliation: Arc<Reconciliation>,
    /// Direct mode's logins; `None` in cloud mode, where the gateway names the caller.
    pub sessions: Option<Arc<Sessions>>,
}
