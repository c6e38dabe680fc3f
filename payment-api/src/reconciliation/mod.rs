//! Every day our books are matched against WeChat Pay's trade bill of that day. The bill
//! of day D (China time) is generated from 09:00 on D+1; from 10:00 the job fetches it,
//! stores it, and matches every line against our orders and refunds both ways, to the
//! fen. A payment WeChat took that we never recorded is confirmed with `queryorder` and
//! recorded through the normal transition (so it is fulfilled once); every other
//! difference is recorded with an anomaly and raised to a person, never fulfilled again
//! or refunded automatically. A day whose bill cannot be fetched or does not add up is
//! retried, and alerted once it is late. Re-running a day changes nothing settled.

pub mod matching;
mod record;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Days, FixedOffset, NaiveDate, NaiveTime, TimeZone, Utc};
use shared::jobs::{ExclusiveJob, Hold, RoundReport, Rounds};
use shared::lifecycle::PaymentOutcome;
use shared::order::{OrderNumber, RefundStatus};
use sqlx::PgPool;

pub use matching::{DayTotals, DifferenceKind};
pub use record::{resolve_difference, DayStatus};

use crate::config::ReconciliationConfig;
use crate::payment_watch::{PaymentWatch, QueryResult, WatchError};
use crate::store::orders;
use crate::wechat::{BillDownload, TradeBill, WechatError, WechatPay};
use matching::{Books, OurPayment, OurRefund};

/// WeChat generates day D's bill from 09:00 China time on D+1 and recommends fetching
/// from 10:00.
const BILL_READY_AT: NaiveTime = match NaiveTime::from_hms_opt(10, 0, 0) {
    Some(t) => t,
    None => panic!("10:00 is a time"),
};
/// WeChat serves bills of the last three months only.
const DAYS_SERVED: u64 = 89;
/// Days one round reconciles at most, so that a first run over months of history is
/// worked off in bounded steps.
const DAYS_PER_ROUND: usize = 7;

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// What the job needs, and nothing else.
pub struct Reconciliation {
    pub db: PgPool,
    pub wechat: Arc<WechatPay>,
    pub payments: Arc<PaymentWatch>,
    pub config: ReconciliationConfig,
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct ReconcileReport {
    pub days: usize,
    pub balanced: usize,
    pub differences: usize,
}

impl RoundReport for ReconcileReport {
    fn is_quiet(&self) -> bool {
        self.days == 0
    }
}

fn china() -> FixedOffset {
    FixedOffset::east_opt(8 * 3600).expect("UTC+8 is a valid offset")
}

/// The instant a China day starts.
pub fn day_start(day: NaiveDate) -> DateTime<Utc> {
    china()
        .from_local_datetime(&day.and_time(NaiveTime::MIN))
        .single()
        .expect("UTC+8 has no gaps")
        .with_timezone(&Utc)
}

/// When WeChat's bill of `day` can be fetched.
pub fn bill_ready_at(day: NaiveDate) -> Option<DateTime<Utc>> {
    let next = day.checked_add_days(Days::new(1))?;
    china()
        .from_local_datetime(&next.and_time(BILL_READY_AT))
        .single()
        .map(|t| t.with_timezone(&Utc))
}

pub fn china_today(now: DateTime<Utc>) -> NaiveDate {
    now.with_timezone(&china()).date_naive()
}

impl Reconciliation {
    /// Days whose bill should be ready and that are not settled yet, oldest first.
    async fn due_days(&self) -> Result<Vec<NaiveDate>, sqlx::Error> {
        let now = Utc::now();
        let today = china_today(now);
        let oldest_served = today - Days::new(DAYS_SERVED);
        let since = match self.config.since {
            Some(since) => Some(since),
            None => record::first_order_day(&self.db).await?,
        };
        let Some(since) = since else {
            return Ok(Vec::new());
        };
        let mut day = since.max(oldest_served);
        let settled = record::settled_days(&self.db, day).await?;
        let mut due = Vec::new();
        while day < today && due.len() < DAYS_PER_ROUND {
            if bill_ready_at(day).is_some_and(|ready| ready <= now) && !settled.contains(&day) {
                due.push(day);
            }
            match day.succ_opt() {
                Some(next) => day = next,
                None => break,
            }
        }
        Ok(due)
    }

    /// One round: every due day, oldest first, until the job's lock is lost.
    pub async fn round(&self, hold: &Hold) -> Result<ReconcileReport, ReconcileError> {
        let mut report = ReconcileReport::default();
        for day in self.due_days().await? {
            if hold.is_lost() {
                break;
            }
            let status = self.reconcile_day(day, hold).await?;
            report.days += 1;
            match status {
                DayStatus::Balanced => report.balanced += 1,
                DayStatus::Differences => report.differences += 1,
                _ => {}
            }
        }
        record::publish_metrics(&self.db).await?;
        Ok(report)
    }

    /// Fetches, matches and records one day. Safe to run again: a settled difference
    /// stays as it was settled; one that no longer holds is closed by the reconciliation.
    /// Once `hold` says the lock is lost, no more payments are confirmed with WeChat: the
    /// day is recorded with them open, and tried again.
    pub async fn reconcile_day(
        &self,
        day: NaiveDate,
        hold: &Hold,
    ) -> Result<DayStatus, ReconcileError> {
        let bill = match self.wechat.download_bill(day).await {
            Ok(BillDownload::Ready(bill)) => bill,
            // No trade that day at WeChat: an empty bill, which balances by itself.
            Ok(BillDownload::NoBill) => TradeBill {
                lines: Vec::new(),
                malformed: Vec::new(),
                summary: None,
                text: String::new(),
            },
            Ok(BillDownload::NotReady) => {
                record::not_fetched(
                    &self.db,
                    day,
                    DayStatus::Waiting,
                    None,
                    self.config.retry_after,
                )
                .await?;
                metrics::counter!("reconciliation_runs_total", "status" => "waiting").increment(1);
                return Ok(DayStatus::Waiting);
            }
            Err(error) => {
                tracing::warn!(%day, %error, "WeChat's bill could not be fetched");
                let error = match error {
                    WechatError::Platform(text) => text,
                    WechatError::Business { code, description } => {
                        format!("{code}: {description}")
                    }
                };
                record::not_fetched(
                    &self.db,
                    day,
                    DayStatus::Failed,
                    Some(&error),
                    self.config.retry_after,
                )
                .await?;
                metrics::counter!("reconciliation_runs_total", "status" => "failed").increment(1);
                return Ok(DayStatus::Failed);
            }
        };
        let merchant = self.wechat.merchant_id().unwrap_or_default();
        let mut books = self.books(day, &bill).await?;
        // Payments WeChat took and we never recorded: confirmed and recorded first, so
        // that they are fulfilled once and match below.
        let mut recorded = Vec::new();
        for (line, amount) in matching::payments_to_confirm(&bill, &books, &merchant) {
            if hold.is_lost() {
                break;
            }
            let Ok(order_number) = OrderNumber::parse(&line.out_trade_no) else {
                continue;
            };
            let channel = orders::channel(&self.db, &order_number)
                .await?
                .unwrap_or(self.wechat.creating_channel());
            match self
                .payments
                .settle_by_query(channel, &order_number, amount)
                .await
            {
                Ok(QueryResult::Paid(
                    PaymentOutcome::Recorded | PaymentOutcome::AlreadyRecorded,
                )) => {
                    tracing::warn!(order_number = %order_number, alert = true,
                        "payment found in WeChat's bill: its callback and every query were lost");
                    recorded.push(line.out_trade_no.clone());
                }
                // Paid after it closed, or with another transaction: the query recorded
                // the anomaly, whose alert asks a person to give the money back.
                Ok(QueryResult::Paid(outcome)) => {
                    tracing::warn!(order_number = %order_number, ?outcome, "the bill shows a payment that will not be fulfilled");
                }
                Ok(QueryResult::NotPaid(status)) => {
                    tracing::warn!(order_number = %order_number, %status, "the bill shows a payment queryorder does not confirm");
                }
                Err(WatchError::Database(error)) => return Err(error.into()),
                Err(WatchError::Wechat(error)) => {
                    tracing::warn!(order_number = %order_number, %error, "queryorder failed while reconciling")
                }
            }
        }
        if !recorded.is_empty() {
            books = self.books(day, &bill).await?;
        }
        self.find_refunds_on_other_days(&bill, &mut books).await;
        let matched = matching::match_day(&bill, &books, &merchant);
        // Our books of the day are not needed past the matching: freed before the bill is
        // stored, which copies its text once more.
        drop(books);
        let status = record::store_day(
            &self.db,
            day,
            &bill,
            &matched,
            &recorded,
            self.config.retry_after,
        )
        .await?;
        metrics::counter!("reconciliation_runs_total", "status" => status.as_str()).increment(1);
        tracing::info!(%day, status = status.as_str(), lines = bill.lines.len(),
            matched = matched.lines_matched, differences = matched.differences.len(),
            "day reconciled with WeChat's bill");
        Ok(status)
    }

    /// Our orders and refunds the day's bill names, and those of the day by our books.
    async fn books(&self, day: NaiveDate, bill: &TradeBill) -> Result<Books, sqlx::Error> {
        let (from, to) = (day_start(day), day_start(day.succ_opt().unwrap_or(day)));
        let named_orders: Vec<String> = bill
            .lines
            .iter()
            .map(|l| l.out_trade_no.clone())
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let named_refunds: Vec<String> = bill
            .lines
            .iter()
            .filter_map(|l| l.out_refund_no.clone())
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let (orders, paid_on_day) = record::our_payments(&self.db, &named_orders, from, to).await?;
        let (refunds, refunded_on_day) =
            record::our_refunds(&self.db, &named_refunds, from, to).await?;
        Ok(Books {
            orders: orders
                .into_iter()
                .map(|o| (o.order_number.clone(), o))
                .collect::<HashMap<_, OurPayment>>(),
            paid_on_day,
            refunds: refunds
                .into_iter()
                .map(|r| (r.out_refund_no.clone(), r))
                .collect::<HashMap<_, OurRefund>>(),
            refunds_on_other_days: HashSet::new(),
            refunded_on_day,
        })
    }

    /// A refund WeChat took late on one day by our clock can be on the next day's bill:
    /// one that WeChat knows (`queryrefund`) is on another day's bill, not missing.
    async fn find_refunds_on_other_days(&self, bill: &TradeBill, books: &mut Books) {
        let in_bill: HashSet<&str> = bill
            .lines
            .iter()
            .filter_map(|l| l.out_refund_no.as_deref())
            .collect();
        for out_refund_no in &books.refunded_on_day {
            if in_bill.contains(out_refund_no.as_str()) {
                continue;
            }
            let ours = &books.refunds[out_refund_no];
            let Ok(order_number) = OrderNumber::parse(&ours.order_number) else {
                continue;
            };
            let channel = match orders::channel(&self.db, &order_number).await {
                Ok(channel) => channel.unwrap_or(self.wechat.creating_channel()),
                Err(error) => {
                    tracing::warn!(%error, "the order's channel could not be read");
                    continue;
                }
            };
            let known = self
                .wechat
                .query_refund(channel, &order_number, out_refund_no)
                .await;
            match known {
                Ok(state) => {
                    if state.is_some_and(|s| s.status != RefundStatus::Failed) {
                        books.refunds_on_other_days.insert(out_refund_no.clone());
                    }
                }
                // Unconfirmed either way: it stays a difference, to be looked at.
                Err(error) => {
                    tracing::warn!(order_number = %order_number, %error, "queryrefund failed while reconciling")
                }
            }
        }
    }
}

impl Rounds for Reconciliation {
    type Report = ReconcileReport;
    type Error = ReconcileError;

    async fn round(&self, hold: &Hold) -> Result<ReconcileReport, ReconcileError> {
        Reconciliation::round(self, hold).await
    }
}

/// Runs one day now, under the job's lock (another instance's round waits or is waited
/// for), for an operator re-running a day.
pub async fn reconcile_now(
    job: &Reconciliation,
    day: NaiveDate,
) -> Result<DayStatus, ReconcileError> {
    let mut lock = ExclusiveJob::Reconciliation.lock(&job.db).await?;
    let hold = Hold::new();
    let status = lock.keep_during(&hold, job.reconcile_day(day, &hold)).await;
    // A lost lock costs exclusivity, never correctness: every write of a day is idempotent.
    if let Err(error) = lock.release().await {
        tracing::warn!(%error, %day, "the reconciliation lock ended before the run");
    }
    let status = status?;
    record::publish_metrics(&job.db).await?;
    Ok(status)
}
