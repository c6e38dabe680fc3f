//! Everything both simulators and the control API share: one value behind an `Arc`.

use std::ops::Deref;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use crate::config::SandboxConfig;
use crate::faults::Faults;
use crate::net::ClosableListener;
use crate::sync::lock;
use crate::unitel::auth::Tokens;
use crate::unitel::ledger::Ledger;
use crate::wechat::callbacks::{CallbackLog, Owed};
use crate::wechat::orders::OrderBook;

#[derive(Clone)]
pub(crate) struct AppState(Arc<Inner>);

pub(crate) struct Inner {
    pub config: SandboxConfig,
    callback_base: Mutex<String>,
    faults: Mutex<Faults>,
    pub orders: OrderBook,
    pub callbacks: CallbackLog,
    pub owed: Owed,
    pub ledger: Ledger,
    pub tokens: Tokens,
    pub calls: crate::calls::CallLog,
    pub wecom: crate::wecom::WecomInbox,
    pub v3: crate::wechat::v3::V3State,
    pub logins: crate::wechat::login::Logins,
    /// Delivers the platform's callbacks to the service under test.
    pub http: reqwest::Client,
    pub unitel_listener: Arc<ClosableListener>,
    /// Turns true once, when the sandbox shuts down; background tasks stop on it.
    pub shutdown: watch::Receiver<bool>,
}

impl Deref for AppState {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    pub(crate) fn new(
        config: SandboxConfig,
        unitel_listener: Arc<ClosableListener>,
        shutdown: watch::Receiver<bool>,
    ) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(config.callback_timeout)
            .build()?;
        Ok(AppState(Arc::new(Inner {
            callback_base: Mutex::new(config.callback_base.clone()),
            faults: Mutex::new(Faults::default()),
            orders: OrderBook::default(),
            callbacks: CallbackLog::default(),
            owed: Owed::default(),
            ledger: Ledger::default(),
            tokens: Tokens::default(),
            calls: Default::default(),
            wecom: Default::default(),
            v3: crate::wechat::v3::V3State::new()?,
            logins: Default::default(),
            http,
            unitel_listener,
            shutdown,
            config,
        })))
    }

    pub(crate) fn callback_base(&self) -> String {
        lock(&self.callback_base).clone()
    }

    pub(crate) fn set_callback_base(&self, base: String) {
        *lock(&self.callback_base) = base;
    }

    pub(crate) fn faults(&self) -> Faults {
        lock(&self.faults).clone()
    }

    /// Replaces the whole set. A refusal window starts now and is not kept as a setting.
    pub(crate) fn set_faults(&self, mut faults: Faults) {
        let refuse_ms = std::mem::take(&mut faults.unitel.refuse_connections_for_ms);
        tracing::info!(?faults, refuse_ms, "faults set");
        *lock(&self.faults) = faults;
        if refuse_ms > 0 {
            self.unitel_listener
                .refuse_for(std::time::Duration::from_millis(refuse_ms));
        }
    }

    /// Reads and changes the faults under one lock, so a counter is never used twice.
    pub(crate) fn with_faults<R>(&self, change: impl FnOnce(&mut Faults) -> R) -> R {
        change(&mut lock(&self.faults))
    }

    /// Faults off and the Unitel port open again; with `clear`, forgets orders, callbacks
    /// and credits as well.
    pub(crate) fn reset(&self, clear: bool) {
        *lock(&self.faults) = Faults::default();
        if let Err(error) = self.unitel_listener.reopen() {
            tracing::warn!(%error, "cannot reopen the Unitel port on reset");
        }
        if clear {
            self.orders.clear();
            self.callbacks.clear();
            self.ledger.clear();
            self.calls.clear();
        }
        tracing::info!(clear, "sandbox reset");
    }
}
