//! Payment decisions, free of HTTP: a payment started, a payment result verified and
//! recorded, refunds asked for, sent and checked. The routes (`http/`) read the
//! request, call one function here and turn its result into a response.
//!
//! [`Payments`] holds what these decisions use and nothing more: it is not the
//! application's context, so nothing here depends on what the routes share.

pub mod apiv3_notice;
pub mod payment_result;
pub mod refund_result;
pub mod refunds;
pub mod rejections;
pub mod start;

use std::sync::Arc;

use shared::outbox::OutboxSignal;
use sqlx::PgPool;

use crate::config::PaymentPolicy;
use crate::rate_limit::RateLimiter;
use crate::wechat::WechatPay;
use refunds::Refunds;

/// What the payment decisions need: the books, WeChat Pay (through the channel each order
/// was created with), the outbox to wake once a payment is recorded, and the policy.
pub struct Payments {
    pub db: PgPool,
    pub wechat: Arc<WechatPay>,
    pub outbox: OutboxSignal,
    /// Counts rejected notifications per source ([`rejections`]).
    pub limiter: RateLimiter,
    pub refunds: Arc<Refunds>,
    pub policy: PaymentPolicy,
    /// `CALLBACK_REJECTS_PER_MINUTE`.
    pub rejects_per_minute: u32,
}
