//! The handle a test or the binary holds: starts both simulators, exposes their addresses
//! and state, and stops them.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::SandboxConfig;
use crate::error::SandboxError;
use crate::faults::Faults;
use crate::net::{self, ClosableListener};
use crate::state::AppState;
use crate::unitel::ledger::Credit;
use crate::wechat::callbacks::CallbackDelivery;
use crate::wechat::orders::{PaidOrder, WechatOrder, WechatRefund};
use crate::{control, unitel, wechat};

/// Running simulators. Dropping it stops them too; `shutdown` also waits for that.
pub struct Sandbox {
    state: AppState,
    wechat_addr: SocketAddr,
    unitel_addr: SocketAddr,
    stop: watch::Sender<bool>,
    servers: Vec<JoinHandle<()>>,
}

impl Sandbox {
    pub async fn start(config: SandboxConfig) -> anyhow::Result<Sandbox> {
        let wechat_listener = ClosableListener::bind(config.wechat_addr)
            .await
            .with_context(|| format!("binding the WeChat simulator to {}", config.wechat_addr))?;
        let unitel_listener = ClosableListener::bind(config.unitel_addr)
            .await
            .with_context(|| format!("binding the Unitel simulator to {}", config.unitel_addr))?;
        let (stop, stopped) = watch::channel(false);
        let state = AppState::new(config, unitel_listener.clone(), stopped.clone())?;

        // The control API shares the WeChat port, which no fault ever closes.
        let wechat_router = wechat::router(state.clone()).merge(control::router(state.clone()));
        let unitel_router = unitel::router(state.clone());
        let wechat_addr = reachable(wechat_listener.local_addr());
        let unitel_addr = reachable(unitel_listener.local_addr());
        let servers = vec![
            tokio::spawn(net::serve(wechat_listener, wechat_router, stopped.clone())),
            tokio::spawn(net::serve(unitel_listener, unitel_router, stopped)),
        ];
        tracing::info!(%wechat_addr, %unitel_addr, config = ?state.config, "sandbox started");
        Ok(Sandbox {
            state,
            wechat_addr,
            unitel_addr,
            stop,
            servers,
        })
    }

    /// A `WECHAT_API_BASE`: calls go to `{this}/_/pay/unifiedOrder`.
    pub fn wechat_url(&self) -> String {
        format!("http://{}", self.wechat_addr)
    }

    /// A `UNITEL_API_URL`: calls go to `{this}/auth`, `{this}/service/recharge`, ...
    pub fn unitel_url(&self) -> String {
        format!("http://{}/api/v1", self.unitel_addr)
    }

    /// Base of the `/sandbox/*` control API (the WeChat port).
    pub fn control_url(&self) -> String {
        self.wechat_url()
    }

    pub fn wechat_addr(&self) -> SocketAddr {
        self.wechat_addr
    }

    pub fn unitel_addr(&self) -> SocketAddr {
        self.unitel_addr
    }

    /// Where later callback attempts go (attempts already under way keep their URL).
    pub fn set_callback_base(&self, base: String) {
        self.state.set_callback_base(base);
    }

    /// Every credit the simulated Unitel performed, oldest first.
    pub fn ledger(&self) -> Vec<Credit> {
        self.state.ledger.all()
    }

    /// Replaces the current faults; a Unitel refusal window starts now.
    pub fn set_faults(&self, faults: Faults) {
        self.state.set_faults(faults);
    }

    /// The faults in force, with counters as far as they have been used up.
    pub fn faults(&self) -> Faults {
        self.state.faults()
    }

    /// Unitel forgets every bearer token it issued: the next call with one gets a 401.
    pub fn revoke_unitel_tokens(&self) {
        self.state.tokens.revoke_all();
    }

    /// Faults off; with `clear`, orders, callbacks and the ledger are forgotten too.
    pub fn reset(&self, clear: bool) {
        self.state.reset(clear);
    }

    /// The simulated user pays. Returns the transaction id once the order is SUCCESS; the
    /// payment callback is then delivered in the background.
    pub async fn pay(&self, out_trade_no: &str) -> Result<String, SandboxError> {
        wechat::pay(&self.state, out_trade_no, true)
            .map(|order| order.transaction_id.unwrap_or_default())
    }

    /// The user pays, and the platform sends no callback (one that was lost, or went to the
    /// system the order came from). Returns the transaction id.
    pub async fn pay_without_callback(&self, out_trade_no: &str) -> Result<String, SandboxError> {
        wechat::pay(&self.state, out_trade_no, false)
            .map(|order| order.transaction_id.unwrap_or_default())
    }

    /// Orders already paid at WeChat (history a test or benchmark starts from), all or
    /// none. Returns how many.
    pub fn seed_paid_orders(&self, orders: Vec<PaidOrder>) -> Result<usize, SandboxError> {
        self.state
            .orders
            .seed_paid(orders, &self.state.config.merchant_id)
    }

    /// A refund made at WeChat by hand, which the service never requested: it shows in
    /// queryorder, queryrefund and the bill, succeeds after `refund_delay`, and is never
    /// called back.
    pub fn refund_outside(
        &self,
        out_trade_no: &str,
        refund_fee: i64,
    ) -> Result<WechatRefund, SandboxError> {
        wechat::refund_outside(&self.state, out_trade_no, refund_fee)
    }

    /// Callbacks the platform still owes: being delivered (until accepted or given up) or
    /// due when an accepted refund completes. None owed and none logged: none will come.
    pub fn callbacks_owed(&self) -> usize {
        self.state.owed.count()
    }

    /// What `wx.login` gives the user `openid`: a code the registered mini-program can
    /// exchange once, within five minutes, at `{wechat_url}/sns/jscode2session`.
    pub fn login_code(&self, openid: &str) -> String {
        self.state.logins.mint(openid, None)
    }

    /// Every call the service made to WeChat Pay or Unitel, oldest first.
    pub fn api_calls(&self) -> Vec<crate::ApiCall> {
        self.state.calls.all()
    }

    pub fn wechat_order(&self, out_trade_no: &str) -> Option<WechatOrder> {
        self.state.orders.get(out_trade_no)
    }

    pub fn wechat_orders(&self) -> Vec<WechatOrder> {
        self.state.orders.all()
    }

    /// Every WeCom robot message accepted so far; the webhook URL is
    /// `{wechat_url}/cgi-bin/webhook/send?key=<any>`.
    pub fn wecom_messages(&self) -> Vec<crate::WecomMessage> {
        self.state.wecom.all()
    }

    /// Every callback attempt so far, in the order they finished.
    pub fn callback_log(&self) -> Vec<CallbackDelivery> {
        self.state.callbacks.all()
    }

    pub(crate) fn state(&self) -> &AppState {
        &self.state
    }

    /// Stops accepting, drops open connections and background deliveries, and waits
    /// (briefly) for the servers to finish.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        for server in std::mem::take(&mut self.servers) {
            if tokio::time::timeout(Duration::from_secs(5), server)
                .await
                .is_err()
            {
                tracing::warn!("a sandbox server did not stop in time");
            }
        }
        tracing::info!("sandbox stopped");
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// A listener on 0.0.0.0 is reached through 127.0.0.1.
fn reachable(addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        let loopback = match addr {
            SocketAddr::V4(_) => std::net::IpAddr::from([127, 0, 0, 1]),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        };
        SocketAddr::new(loopback, addr.port())
    } else {
        addr
    }
}
