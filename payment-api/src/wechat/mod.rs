//! WeChat Pay, reached through the channel each order was created with: the Cloud Hosting
//! open interface ([`cloud`]) or, outside Cloud Hosting, APIv3 with the merchant's own
//! keys. [`WechatPay`] holds the configured channels and only talks: every decision about
//! what an answer means for the books is in `crate::payments`.
//!
//! WeChat's words stop here: its trade and refund states become our [`PaymentStatus`] and
//! [`RefundStatus`], its `time_end` a UTC time, in this module and nowhere else.

mod bill;
mod cloud;
pub mod login;
mod payment_notice;
pub mod settings;
mod states;
pub mod v3;

pub use bill::{BillDownload, BillLine, BillLineKind, BillSummary, MalformedLine, TradeBill};
pub use payment_notice::{Attach, PaymentNotification};
pub use states::china_time;

pub use cloud::CloudPay;
use v3::{NotificationVerifier, WechatPayV3};

use chrono::{DateTime, NaiveDate, Utc};
use serde::Deserialize;
use serde_json::Value;
use shared::money::Fen;
use shared::order::{OpenId, OrderNumber, PayChannel, PaymentStatus, RefundStatus};

/// A payment result as a channel reported it, in one shape whichever channel carried it:
/// read, not yet believed. `crate::payments::payment_result` checks it against the books.
#[derive(Debug, Clone)]
pub struct PaymentReport {
    /// The channel it came through.
    pub channel: PayChannel,
    pub out_trade_no: Option<String>,
    /// WeChat says the customer paid (`SUCCESS`).
    pub succeeded: bool,
    /// Whose payment it says it is.
    pub merchant: MerchantIds,
    pub attach: Attach,
    pub transaction_id: Option<String>,
    /// In fen, as WeChat reported it.
    pub total_fee: Option<i64>,
    pub paid_at: Option<DateTime<Utc>>,
    /// The fields as received, for the anomaly record.
    pub detail: Value,
}

/// The ids a payment names: the merchant it was paid to (Cloud Hosting's `sub_mch_id`,
/// APIv3's `mchid`, or `sub_mchid` through a service provider), the service provider
/// (`sp_mchid`) and the app (`appid` / `sub_appid`) where the channel names them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MerchantIds {
    pub merchant: Option<String>,
    pub service_provider: Option<String>,
    pub app: Option<String>,
}

/// The channels this deployment can reach WeChat Pay through, and the one new orders use
/// (`WECHAT_PAY_MODE`).
pub struct WechatPay {
    creating: PayChannel,
    cloud: Option<CloudPay>,
    /// APIv3 as a direct merchant or through a service provider (`direct` / `partner`).
    apiv3: Option<(PayChannel, WechatPayV3)>,
}

/// A payment being prepared, as the channel needs it described.
pub struct PaymentToPrepare<'a> {
    pub order_number: &'a OrderNumber,
    pub openid: &'a OpenId,
    pub amount: Fen,
    pub description: &'a str,
    /// Echoed back with the result: one more thing a forger has to get right.
    pub attach: &'a str,
    /// When WeChat stops accepting the payment.
    pub expires_at: DateTime<Utc>,
}

/// One channel, borrowed for one call.
enum Channel<'a> {
    Cloud(&'a CloudPay),
    ApiV3(&'a WechatPayV3),
}

impl WechatPay {
    /// Cloud Hosting only, as every deployment before APIv3.
    pub fn cloud(client: CloudPay) -> Self {
        WechatPay {
            creating: PayChannel::Cloud,
            cloud: Some(client),
            apiv3: None,
        }
    }

    /// APIv3 for new orders, with Cloud Hosting kept for the orders created through it.
    pub fn apiv3(client: WechatPayV3, cloud: Option<CloudPay>) -> Self {
        let channel = match client.config().form {
            v3::MerchantForm::Direct { .. } => PayChannel::Direct,
            v3::MerchantForm::Partner { .. } => PayChannel::Partner,
        };
        WechatPay {
            creating: channel,
            cloud,
            apiv3: Some((channel, client)),
        }
    }

    /// The channels these settings set up: Cloud Hosting's open interface, APIv3, or both
    /// (`ApiConfig::wechat` and `ApiConfig::direct`).
    pub fn from_settings(
        cloud: Option<&settings::WechatConfig>,
        direct: Option<&v3::V3Config>,
    ) -> Result<Self, reqwest::Error> {
        let cloud = cloud.cloned().map(CloudPay::new).transpose()?;
        Ok(match direct {
            Some(direct) => WechatPay::apiv3(WechatPayV3::new(direct.clone())?, cloud),
            None => WechatPay {
                creating: PayChannel::Cloud,
                cloud,
                apiv3: None,
            },
        })
    }

    /// The channel new orders are created with.
    pub fn creating_channel(&self) -> PayChannel {
        self.creating
    }

    fn channel(&self, channel: PayChannel) -> Result<Channel<'_>, WechatError> {
        match (channel, &self.cloud, &self.apiv3) {
            (PayChannel::Cloud, Some(cloud), _) => Ok(Channel::Cloud(cloud)),
            (wanted, _, Some((configured, client))) if wanted == *configured => {
                Ok(Channel::ApiV3(client))
            }
            _ => Err(WechatError::Platform(format!(
                "the {channel} channel is not configured here"
            ))),
        }
    }

    /// What checks APIv3 notifications: `None` without an APIv3 channel.
    pub fn notification_verifier(&self) -> Option<(PayChannel, NotificationVerifier)> {
        self.apiv3
            .as_ref()
            .map(|(channel, client)| (*channel, client.notification_verifier()))
    }

    /// The ids a payment through `channel` must name: anything else is not ours.
    pub fn our_ids(&self, channel: PayChannel) -> Option<MerchantIds> {
        match self.channel(channel).ok()? {
            Channel::Cloud(cloud) => Some(MerchantIds {
                merchant: Some(cloud.merchant_id().to_owned()),
                // The platform vouches for the rest.
                service_provider: None,
                app: None,
            }),
            Channel::ApiV3(client) => Some(match &client.config().form {
                v3::MerchantForm::Direct { appid, mchid } => MerchantIds {
                    merchant: Some(mchid.clone()),
                    service_provider: None,
                    app: Some(appid.clone()),
                },
                v3::MerchantForm::Partner {
                    sp_mchid,
                    sub_mchid,
                    sub_appid,
                    ..
                } => MerchantIds {
                    merchant: Some(sub_mchid.clone()),
                    service_provider: Some(sp_mchid.clone()),
                    app: Some(sub_appid.clone()),
                },
            }),
        }
    }

    /// A payment result through `channel` names exactly our ids.
    pub fn is_ours(&self, channel: PayChannel, named: &MerchantIds) -> bool {
        self.names_ours(channel, named, true)
    }

    /// A refund result through `channel` names our merchant (and service provider). APIv3's
    /// refund results carry no app id (the refund belongs to the merchant), so none is
    /// asked of them: asking refused every genuine one.
    pub fn is_our_merchant(&self, channel: PayChannel, named: &MerchantIds) -> bool {
        self.names_ours(channel, named, false)
    }

    fn names_ours(&self, channel: PayChannel, named: &MerchantIds, with_app: bool) -> bool {
        let Some(ours) = self.our_ids(channel) else {
            return false;
        };
        let same = |expected: &Option<String>, given: &Option<String>| {
            expected.is_none() || expected == given
        };
        ours.merchant.is_some()
            && same(&ours.merchant, &named.merchant)
            && same(&ours.service_provider, &named.service_provider)
            && (!with_app || same(&ours.app, &named.app))
    }

    /// The merchant id the channel new orders use answers for (the bill's merchant).
    pub fn merchant_id(&self) -> Option<String> {
        self.our_ids(self.creating).and_then(|ids| ids.merchant)
    }

    pub async fn prepare_payment(
        &self,
        channel: PayChannel,
        payment: &PaymentToPrepare<'_>,
    ) -> Result<PrepaidOrder, WechatError> {
        match self.channel(channel)? {
            Channel::Cloud(cloud) => cloud.unified_order(payment).await,
            Channel::ApiV3(client) => {
                client
                    .jsapi_prepay(
                        payment.order_number,
                        payment.openid,
                        payment.amount,
                        payment.description,
                        payment.attach,
                        payment.expires_at,
                    )
                    .await
            }
        }
    }

    pub async fn query_order(
        &self,
        channel: PayChannel,
        order_number: &OrderNumber,
    ) -> Result<QueriedOrder, WechatError> {
        match self.channel(channel)? {
            Channel::Cloud(cloud) => cloud.query_order(order_number).await,
            Channel::ApiV3(client) => client.query_order(order_number).await,
        }
    }

    /// Closes an unpaid order at WeChat so that it can no longer be paid.
    pub async fn close_order(
        &self,
        channel: PayChannel,
        order_number: &OrderNumber,
    ) -> Result<CloseOutcome, WechatError> {
        match self.channel(channel)? {
            Channel::Cloud(cloud) => cloud.close_order(order_number).await,
            Channel::ApiV3(client) => client.close_order(order_number).await,
        }
    }

    /// Asks WeChat to return `refund` of the order's `total`. Idempotent per
    /// `out_refund_no`: sending it again never refunds twice. Success means *accepted*.
    pub async fn refund(
        &self,
        channel: PayChannel,
        order_number: &OrderNumber,
        out_refund_no: &str,
        total: Fen,
        refund: Fen,
        reason: &str,
    ) -> Result<AcceptedRefund, WechatError> {
        match self.channel(channel)? {
            Channel::Cloud(cloud) => {
                cloud
                    .refund(order_number, out_refund_no, total, refund, reason)
                    .await
            }
            Channel::ApiV3(client) => {
                client
                    .refund(order_number, out_refund_no, total, refund, reason)
                    .await
            }
        }
    }

    /// The refund `out_refund_no` of an order, as WeChat knows it (`None`: it does not).
    pub async fn query_refund(
        &self,
        channel: PayChannel,
        order_number: &OrderNumber,
        out_refund_no: &str,
    ) -> Result<Option<RefundState>, WechatError> {
        match self.channel(channel)? {
            Channel::Cloud(cloud) => Ok(cloud
                .query_refunds(order_number)
                .await?
                .into_iter()
                .find(|s| s.out_refund_no == out_refund_no)),
            Channel::ApiV3(client) => client.query_refund(out_refund_no).await,
        }
    }

    /// The trade bill of `date` (a China date) of the channel new orders use.
    pub async fn download_bill(&self, date: NaiveDate) -> Result<BillDownload, WechatError> {
        match self.channel(self.creating)? {
            Channel::Cloud(cloud) => cloud.download_bill(date).await,
            Channel::ApiV3(client) => client.download_bill(date).await,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WechatError {
    /// The call did not go through the platform (transport error, errcode ≠ 0,
    /// return_code FAIL): nothing is known about the payment.
    #[error("WeChat platform error: {0}")]
    Platform(String),
    /// WeChat Pay answered with a business error code (`ORDERPAID`, `PARAM_ERROR`...).
    #[error("WeChat Pay refused ({code}): {description}")]
    Business { code: String, description: String },
}

pub struct PrepaidOrder {
    pub prepay_id: String,
    /// Exactly the argument of the mini-program's `wx.requestPayment`.
    pub payment: Value,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AcceptedRefund {
    #[serde(default)]
    pub refund_id: Option<String>,
}

/// One refund as `queryrefund` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundState {
    pub out_refund_no: String,
    pub refund_id: Option<String>,
    /// `SUCCESS` is [`RefundStatus::Success`]; `REFUNDCLOSE` and `CHANGE` (the money could
    /// not reach the customer's account) are [`RefundStatus::Failed`]; `PROCESSING`, and
    /// anything unknown, [`RefundStatus::Accepted`]: taken, outcome pending.
    pub status: RefundStatus,
    /// WeChat's own word, for the history.
    pub wechat_status: String,
}

impl RefundState {
    /// Reads the parallel `*_list` arrays, or v2's numbered fields (`out_refund_no_0`...).
    fn from_respdata(respdata: &Value) -> Vec<RefundState> {
        let text = |v: Option<&Value>| match v {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        let list = |key: &str, i: usize| {
            text(respdata.get(format!("{key}_list")).and_then(|l| l.get(i)))
                .or_else(|| text(respdata.get(format!("{key}_{i}"))))
        };
        let count = respdata
            .get("refund_count")
            .and_then(|c| {
                c.as_u64()
                    .or_else(|| c.as_str().and_then(|s| s.parse().ok()))
            })
            .unwrap_or(0) as usize;
        (0..count.min(50))
            .filter_map(|i| {
                let wechat_status = list("refund_status", i)?;
                Some(RefundState {
                    out_refund_no: list("out_refund_no", i)?,
                    refund_id: list("refund_id", i),
                    status: states::refund_status(&wechat_status),
                    wechat_status,
                })
            })
            .collect()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseOutcome {
    Closed,
    /// Paid after all: the order must become paid, not closed.
    AlreadyPaid,
}

/// What `queryorder` says of an order.
#[derive(Debug, Clone)]
pub struct QueriedOrder {
    /// `SUCCESS` is [`PaymentStatus::Paid`]; `CLOSED`, `REVOKED` and `REFUND` are
    /// [`PaymentStatus::Closed`]; `NOTPAY`, `USERPAYING`, `ACCEPT`, `PAYERROR` and anything
    /// unknown are [`PaymentStatus::Unpaid`].
    pub status: PaymentStatus,
    /// WeChat's own word, for logs and anomalies.
    pub trade_state: String,
    pub total_fee: Option<i64>,
    pub transaction_id: Option<String>,
    /// When the customer paid, by WeChat's clock.
    pub paid_at: Option<DateTime<Utc>>,
}

#[derive(Deserialize)]
struct QueryAnswer {
    trade_state: String,
    /// A number in the documented answer; a string of digits is read too.
    #[serde(default, deserialize_with = "payment_notice::fen_amount")]
    total_fee: Option<i64>,
    #[serde(default)]
    transaction_id: Option<String>,
    #[serde(default)]
    time_end: Option<String>,
}

impl From<QueryAnswer> for QueriedOrder {
    fn from(answer: QueryAnswer) -> Self {
        QueriedOrder {
            status: states::payment_status(&answer.trade_state),
            paid_at: answer.time_end.as_deref().and_then(china_time),
            trade_state: answer.trade_state,
            total_fee: answer.total_fee,
            transaction_id: answer.transaction_id.filter(|t| !t.is_empty()),
        }
    }
}

impl QueriedOrder {
    /// Paid, for this amount: what fulfilment requires of a query.
    pub fn confirms(&self, amount: Fen) -> bool {
        self.status == PaymentStatus::Paid && self.total_fee == Some(amount.get())
    }
}
