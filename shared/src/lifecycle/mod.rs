//! Every change of an order's or a refund's state, for both binaries: every status change
//! of an order or a refund is one statement here and writes its history row.
//!
//! ```text
//! payment   unpaid ──record_payment──▶ paid            unpaid ──close_unpaid──▶ closed
//! recharge  pending ──claim──▶ processing ──record_outcome──▶ success | failed | unknown
//!                   ◀──release / release_abandoned_claims──┘   (nothing sent yet)
//!           processing ──abandon_sent_claims──▶ unknown ──settle_unknown──▶ success | failed
//!           (a claim is its worker's while the worker's lease is live: register_lease)
//! refund    requested ──change_refund(Accepted)──▶ accepted ──(Succeeded)──▶ success
//!           requested | accepted ──(Failed)──▶ failed ──retry_refund──▶ requested
//! ```
//!
//! Each transition is one SQL statement that says what it expects to find (`WHERE
//! payment_status = 'unpaid'`), so concurrent callers cannot race: one changes the row,
//! the others change nothing and are told so. Each writes its own line of the order's
//! history ([`OrderEvent`](crate::history::OrderEvent) by an
//! [`Actor`](crate::history::Actor)) in the same statement, and a payment writes its
//! [`OrderPaid`](crate::message::OrderPaid) message to the outbox there too. Nothing else
//! in the code base changes an order's or a refund's state or writes its history.
//!
//! By entity: `payment` (orders and their payments), `import` (orders brought over
//! from the replaced system), `lease` (recharge-worker leases), `recharge` (top-ups),
//! `refund` (money going back), and anomalies (reports that disagreed with our records).
//! Everything is re-exported here: callers name `lifecycle::record_payment`.

mod anomaly;
mod import;
mod lease;
mod payment;
mod recharge;
mod refund;

pub use anomaly::record_anomaly;
pub use import::{import_order, ImportedOrder, ImportedPayment, ImportedRecharge};
pub use lease::{
    end_lease, prune_leases, register_lease, renew_lease, LeaseId, WorkerId, LONGEST_LEASE,
};
#[cfg(feature = "bench")]
pub use payment::record_payment_statements;
pub use payment::{
    close_unpaid, create_order, record_payment, record_payment_after_close, record_prepay,
    take_payment_check, NewOrder, PaymentOutcome, ReportedPayment,
};
pub use recharge::{
    abandon_sent_claims, claim, claim_state, mark_sent, record_outcome, release,
    release_abandoned_claims, requeue_pending, settle_unknown, take_unknown_for_check, unmark_sent,
    ClaimState, ClaimedOrder, RechargeOutcome, Settlement, Settler, Stuck, Verdict,
    IN_FLIGHT_MARGIN,
};
pub use refund::{
    change_refund, failed_top_ups_to_refund, out_refund_no, refund_check_later, refund_deferred,
    request_refund, retry_refund, FailedTopUp, RefundChange,
};
