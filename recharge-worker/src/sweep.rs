//! The worker's periodic sweep, run by one worker at a time, so that no paid order is left
//! without an outcome whatever crashed:
//!
//! 1. a claim whose worker's lease expired before anything was sent is released, put back
//!    on the queue and fulfilled by this worker at once (safe to send; its message may
//!    have been dead-lettered by the deliveries dead workers used up);
//! 2. a claim whose worker's lease expired after the request may have gone out becomes
//!    `unknown`;
//! 3. a paid order still `pending` long after payment (its message lost, dead-lettered or
//!    never published) is put back on the queue through the outbox;
//! 4. an `unknown` order whose `seq` Unitel gave us is settled with
//!    `check_transaction_result`.
//!
//! Each step is a transition of [`shared::lifecycle`]; this module decides when. Steps 1
//! and 2 are the backstop: a dead worker's messages come back at once, and the worker that
//! receives one takes the order over as soon as the lease has expired. They also take over
//! a claim `processing` for longer than a lease, a Unitel timeout and a margin whatever its
//! lease ([`lifecycle::Stuck`]): no live worker takes that long, so its worker lost track
//! of it; its history says so, and that is an alert.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;

use shared::history::Actor;
use shared::jobs::{Hold, RoundReport, Rounds};
use shared::lifecycle::{self, Settlement, Settler, Verdict};
use shared::order::OrderNumber;
use shared::outbox::OutboxSignal;
use shared::unitel::{TransactionStatus, UnitelClient};
use sqlx::PgPool;

use crate::fulfil::{Disposition, Fulfiller};

const BATCH: i64 = 200;

pub struct Sweeper {
    pub db: PgPool,
    pub unitel: Arc<UnitelClient>,
    pub worker_id: String,
    pub every: Duration,
    pub requeue_after: Duration,
    /// A claim `processing` this long is taken over whatever its lease.
    pub stuck_after: Duration,
    /// Wakes this worker's outbox relay when a requeue wrote a message.
    pub outbox: OutboxSignal,
    /// Released claims are fulfilled here at once, not from the back of the queue: behind
    /// a backlog their requeued message could wait longer than the customer should.
    pub takeovers: Takeovers,
}

/// This worker's fulfilment of released claims: at most `slots` at a time, tracked so that
/// a stopping worker finishes them within its shutdown grace like its messages.
#[derive(Clone)]
pub struct Takeovers {
    pub fulfiller: Arc<Fulfiller>,
    pub slots: Arc<Semaphore>,
    pub tasks: TaskTracker,
    pub requeue_after: Duration,
    pub outbox: OutboxSignal,
}

impl Takeovers {
    fn start(&self, order_number: OrderNumber, sweeper: Actor) {
        let this = self.clone();
        self.tasks.spawn(async move {
            let Ok(_slot) = this.slots.clone().acquire_owned().await else {
                return;
            };
            match this.fulfiller.fulfil(&order_number).await {
                // Given back unsent (Unitel unreachable, a stop): the message requeued with
                // the release may have been taken and acked meanwhile, so queue another.
                Ok(Disposition::Requeue) => {
                    let db = &this.fulfiller.db;
                    let now = std::slice::from_ref(&order_number);
                    match lifecycle::requeue_pending(db, this.requeue_after, BATCH, now, &sweeper)
                        .await
                    {
                        Ok(_) => this.outbox.wake(),
                        Err(error) => {
                            tracing::warn!(%order_number, %error, "given back; left to the sweep's requeue")
                        }
                    }
                }
                Ok(disposition) => {
                    tracing::info!(%order_number, ?disposition, "released claim taken over by the sweep")
                }
                Err(error) => {
                    tracing::warn!(%order_number, %error, "released claim left to its requeued message")
                }
            }
        });
    }
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct SweepReport {
    pub released: u64,
    pub made_unknown: u64,
    pub requeued: u64,
    pub reconciled: u64,
}

impl RoundReport for SweepReport {
    fn is_quiet(&self) -> bool {
        *self == SweepReport::default()
    }
}

impl Rounds for Sweeper {
    type Report = SweepReport;
    type Error = sqlx::Error;

    async fn round(&self, _hold: &Hold) -> Result<SweepReport, sqlx::Error> {
        self.sweep().await
    }
}

impl Sweeper {
    async fn sweep(&self) -> Result<SweepReport, sqlx::Error> {
        let actor = Actor::RechargeSweep(self.worker_id.clone());
        let in_hand = self.takeovers.fulfiller.in_hand.orders();
        let stuck = lifecycle::Stuck {
            after: self.stuck_after,
            except: &in_hand,
        };
        let released = lifecycle::release_abandoned_claims(&self.db, &actor, Some(&stuck)).await?;
        // Released orders go back on the queue, then this worker takes them over: even if
        // the requeue fails, the takeovers start (the list exists nowhere else).
        let requeued =
            lifecycle::requeue_pending(&self.db, self.requeue_after, BATCH, &released, &actor)
                .await;
        for order_number in &released {
            self.takeovers.start(order_number.clone(), actor.clone());
        }
        let requeued = requeued?;
        if requeued > 0 {
            self.outbox.wake();
        }
        let lost = lifecycle::abandon_sent_claims(&self.db, None, &actor, Some(&stuck)).await?;
        for order_number in &lost {
            tracing::error!(%order_number, alert = true, "top-up outcome unknown: the worker stopped after sending");
        }
        let reconciled = self.reconcile_unknown(&actor).await?;
        lifecycle::prune_leases(&self.db).await?;
        Ok(SweepReport {
            released: released.len() as u64,
            made_unknown: lost.len() as u64,
            requeued,
            reconciled,
        })
    }

    /// Asks Unitel about `unknown` orders that have a `seq`, at most once per requeue period.
    async fn reconcile_unknown(&self, sweeper: &Actor) -> Result<u64, sqlx::Error> {
        let candidates =
            lifecycle::take_unknown_for_check(&self.db, self.requeue_after, BATCH).await?;
        let mut settled = 0;
        for (order_number, seq) in candidates {
            let verdict = match self.unitel.transaction_status(&seq).await {
                Ok(TransactionStatus::Success) => Verdict::Credited,
                Ok(TransactionStatus::Failed { message }) => {
                    Verdict::NotCredited { reason: message }
                }
                Ok(TransactionStatus::Pending) => continue,
                Ok(TransactionStatus::Unrecognised(status)) => {
                    tracing::warn!(%order_number, %status, "check_transaction_result gave no verdict");
                    continue;
                }
                Err(error) => {
                    tracing::warn!(%order_number, %error, "check_transaction_result failed");
                    continue;
                }
            };
            let settler = Settler::Reconciliation {
                sweeper: sweeper.clone(),
                seq,
            };
            let settlement = lifecycle::settle_unknown(
                &self.db,
                &order_number,
                &verdict,
                &settler,
                // Only a person's "not credited" waits for the request in flight.
                Duration::ZERO,
            )
            .await?;
            if settlement == Settlement::Settled {
                settled += 1;
                tracing::info!(%order_number, ?verdict, "unknown top-up reconciled with Unitel");
            }
        }
        Ok(settled)
    }
}
