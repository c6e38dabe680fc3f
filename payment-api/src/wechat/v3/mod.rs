//! WeChat Pay APIv3 with our own merchant keys (`WECHAT_PAY_MODE=direct`), as a direct
//! merchant or as a service provider for a sub-merchant.
//!
//! Requests are signed with the merchant private key; answers and notifications are
//! believed only once a WeChat Pay key (chosen by `Wechatpay-Serial`) verifies them over
//! the raw bytes. Results come back in the types of [`crate::wechat`], so callers do not
//! know which channel answered.

mod bill;
mod client;
mod config;
mod keys;
mod resource;
mod signing;
mod verify;

#[cfg(test)]
pub(crate) mod test_keys;

pub use client::{business_code, WechatPayV3};
pub use config::{MerchantForm, V3Config, WECHAT_PAY_API};
pub use keys::{ApiV3Key, KeySource, MerchantKey, PlatformKeys, SignatureRejected, SigningFailed};
pub use resource::{Payer, RefundAmount, RefundResource, TransactionAmount, TransactionResource};
pub use verify::{NoticeError, NotificationVerifier, VerifiedNotice, MAX_SKEW_SECONDS};
