//! Unitel's partner API (see the project README for the contract). One client serves
//! payment-api (product lists, postpaid bills) and the worker (top-ups, transaction checks).
//!
//! The one rule this module exists to keep: a top-up request is classified by whether it
//! can have reached Unitel. Only a request that provably never left is safe to send again.

mod client;
mod products;
mod topup;

pub use client::{Token, UnitelClient};
pub use products::{PostpaidBill, Product, ProductGroup, ServiceType};
pub use topup::{TopUp, TopUpReceipt, TransactionStatus};

/// Why a Unitel call did not succeed, by what it means for sending it again.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum UnitelError {
    /// The request never reached Unitel (connection refused, DNS, TLS, authentication
    /// refused before processing): sending it again is safe.
    #[error("request not sent to Unitel: {0}")]
    NotSent(String),
    /// Unitel answered and said no: for a top-up, with a code known to mean nothing was
    /// done; for a lookup, any refusal.
    #[error("Unitel refused ({code}): {message}")]
    Rejected { code: String, message: String },
    /// The request may have been processed (timeout after sending, dropped connection,
    /// server error, unreadable answer): the outcome is unknown and it must not be re-sent.
    #[error("Unitel outcome unknown: {0}")]
    Unknown(String),
    /// Unitel accepted the top-up and has not finished it; `seq` lets
    /// `check_transaction_result` tell the outcome later.
    #[error("Unitel accepted the top-up without finishing it (seq {seq:?})")]
    Pending { seq: Option<String> },
    /// Unitel answered a top-up with a refusal whose code is not known to mean "nothing was
    /// done" (`UNITEL_REFUSAL_CODES`): the number may have been credited all the same.
    #[error("Unitel answered {code} ({message}), not a known refusal")]
    Unrecognised {
        code: String,
        message: String,
        seq: Option<String>,
    },
}
