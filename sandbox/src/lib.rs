//! Simulators of the two outside parties of the payment backend, for tests and demos:
//!
//! - **WeChat Pay through WeChat Cloud Hosting's open interface service** (`/_/pay/*` on
//!   the WeChat port), including the payment and refund callbacks the platform POSTs to
//!   the service, retried until the service answers `{"errcode": 0}`, and the daily trade
//!   bill (`downloadbill`) built from the payments and refunds it holds.
//! - **WeChat Pay APIv3** (`/v3/*` on the WeChat port), as a merchant reaches it directly:
//!   signed requests and answers, encrypted notifications to `notify_url` (see
//!   [`Sandbox::register_v3_merchant`]).
//! - **Mini-program login** (`GET /sns/jscode2session` on the WeChat port), exchanging
//!   the codes a test mints ([`Sandbox::login_code`]) for the openid they were minted for.
//! - **A WeCom group robot webhook** (`/cgi-bin/webhook/send` on the WeChat port), where
//!   the service's alerts arrive.
//! - **Unitel's partner API** (`/api/v1/auth`, `/api/v1/service/*` on the Unitel port),
//!   with the recorded product lists and responses, and a ledger of every credit.
//!
//! Both misbehave on demand ([`Faults`]), down to refusing TCP connections and dropping
//! a connection after crediting. The control API (`/sandbox/*`, on the WeChat port) plays
//! the paying user and shows what happened. See [`unitel::products::Tariff`] for which
//! msisdn gets which tariff.

mod calls;
mod config;
mod control;
mod error;
mod faults;
mod ids;
mod net;
mod sandbox;
mod state;
mod sync;
pub mod unitel;
mod wechat;
mod wecom;

pub use calls::ApiCall;
pub use config::{BillsReady, SandboxConfig};
pub use error::SandboxError;
pub use faults::{
    BillAlteration, Faults, UnifiedOrderError, UnitelFaults, WechatFaults, WechatV3Faults,
    WecomFaults,
};
pub use sandbox::Sandbox;
pub use unitel::ledger::{Credit, CreditAnswer, CreditKind};
pub use unitel::products::Tariff;
pub use wechat::callbacks::{CallbackDelivery, CallbackKind};
pub use wechat::login::{LOGIN_APP_ID, LOGIN_APP_SECRET};
pub use wechat::orders::{
    PaidOrder, Protocol, RefundStatus, TradeState, V3Order, WechatOrder, WechatRefund,
};
pub use wechat::v3::{V3Merchant, V3Signer};
pub use wecom::WecomMessage;

/// The code the sandbox refuses a top-up with (`failNext`, `failRate`) before crediting
/// anything: a deployment against the sandbox lists it in `UNITEL_REFUSAL_CODES`.
pub const REFUSAL_CODE: &str = "105";
