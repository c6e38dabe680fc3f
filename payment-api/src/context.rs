//! The state every handler shares.

use std::sync::Arc;

use shared::unitel::UnitelClient;
use sqlx::PgPool;

use crate::alerts::Channels;
use crate::config::ApiConfig;
use crate::http::RateLimiter;
use crate::outbox::OutboxSignal;
use crate::wechat::WechatPay;

#[derive(Clone)]
pub struct ApiContext {
    pub config: Arc<ApiConfig>,
    pub db: PgPool,
    pub wechat: Arc<WechatPay>,
    pub unitel: Arc<UnitelClient>,
    pub outbox: OutboxSignal,
    pub limiter: Arc<RateLimiter>,
    pub alerts: Arc<Channels>,
}
