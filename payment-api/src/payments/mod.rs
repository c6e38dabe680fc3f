//! Payment decisions, free of HTTP: a payment started, a payment result verified and
//! recorded, refunds asked for, sent and checked. The routes (`http/`) read the
//! request, call one function here and turn its result into a response.

pub mod payment_result;
pub mod refund_result;
pub mod refunds;
pub mod rejections;
pub mod start;
