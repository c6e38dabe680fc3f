//! How long each fault took to heal, measured from what the system records.
//!
//! - A SIGKILLed worker: from the kill until every order it held (claimed, by its
//!   `WORKER_ID`) is finished (`success`, `failed`), `unknown`, or released and sent again
//!   by another worker.
//! - The SIGKILLed payment-api: from the kill until every payment WeChat had taken by then
//!   is recorded here.
//! - A RabbitMQ or PostgreSQL restart: from the restart until `/health` answers 200 again.

use std::time::{Duration, Instant};

use sqlx::PgPool;
use tokio::task::JoinHandle;

use crate::load::Client;

/// Poll period: figures are good to about this much.
const POLL: Duration = Duration::from_millis(100);
/// A fault not healed after this is reported as such (and fails the run's check).
const GIVE_UP: Duration = Duration::from_secs(600);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fault {
    WorkerKill,
    ApiKill,
    RabbitRestart,
    PostgresRestart,
}

impl Fault {
    pub fn name(self) -> &'static str {
        match self {
            Fault::WorkerKill => "worker SIGKILLed (orders it held settled)",
            Fault::ApiKill => "payment-api SIGKILLed (payments WeChat took recorded)",
            Fault::RabbitRestart => "RabbitMQ restarted (/health 200 again)",
            Fault::PostgresRestart => "PostgreSQL restarted (/health 200 again)",
        }
    }
}

/// One fault's recovery; `None` when it did not heal within [`GIVE_UP`].
pub struct Healed {
    pub fault: Fault,
    pub took: Option<Duration>,
    /// Orders (or payments) it concerned; 0 for restarts.
    pub orders: usize,
    /// For a worker kill: which worker, when, and the order that was settled last, so that
    /// a slow recovery can be explained from that order's history.
    pub kill: Option<KilledWorker>,
}

pub struct KilledWorker {
    pub worker: String,
    pub at: chrono::DateTime<chrono::Utc>,
    pub last_settled: Option<String>,
}

#[derive(Default)]
pub struct Recoveries {
    watching: Vec<JoinHandle<Healed>>,
}

impl Recoveries {
    /// Right after `worker` was killed: the orders it held, and until when.
    pub async fn worker_killed(&mut self, db: &PgPool, worker: &str) {
        let killed = Instant::now();
        let killed_at = chrono::Utc::now();
        let held: Vec<String> = sqlx::query_scalar(
            "SELECT order_number FROM orders WHERE recharge_status = 'processing' AND recharge_worker = $1",
        )
        .bind(worker)
        .fetch_all(db)
        .await
        .unwrap_or_default();
        let (db, worker) = (db.clone(), worker.to_owned());
        self.watching.push(tokio::spawn(async move {
            let orders = held.len();
            let unsettled = std::sync::Mutex::new(held.clone());
            let last_settled = std::sync::Mutex::new(None);
            let took = until(killed, || {
                let (db, worker, unsettled, last_settled) =
                    (&db, &worker, &unsettled, &last_settled);
                async move {
                    let waiting = unsettled.lock().unwrap().clone();
                    let Ok(settled) = sqlx::query_scalar::<_, String>(
                        "SELECT order_number FROM orders
                          WHERE order_number = ANY($1)
                            AND (recharge_status IN ('success', 'failed', 'unknown')
                                 OR (recharge_worker IS DISTINCT FROM $2 AND recharge_sent_at IS NOT NULL))",
                    )
                    .bind(&waiting)
                    .bind(worker)
                    .fetch_all(db)
                    .await
                    else {
                        return false;
                    };
                    let mut unsettled = unsettled.lock().unwrap();
                    unsettled.retain(|order| !settled.contains(order));
                    if unsettled.is_empty() {
                        *last_settled.lock().unwrap() = settled.into_iter().next();
                    }
                    unsettled.is_empty()
                }
            })
            .await;
            Healed {
                fault: Fault::WorkerKill,
                took,
                orders,
                kill: Some(KilledWorker {
                    worker,
                    at: killed_at,
                    last_settled: last_settled.into_inner().unwrap(),
                }),
            }
        }));
    }

    /// Right after a payment-api instance was killed: the payments WeChat has taken so far.
    pub async fn api_killed(&mut self, db: &PgPool, client: &Client) {
        let killed = Instant::now();
        let paid_at_wechat = client.paid_at_wechat().await.unwrap_or_default();
        let db = db.clone();
        self.watching.push(tokio::spawn(async move {
            let orders = paid_at_wechat.len();
            let took = until(killed, || {
                let (db, paid) = (&db, &paid_at_wechat);
                async move {
                    let recorded: i64 = sqlx::query_scalar(
                        "SELECT count(*) FROM orders WHERE order_number = ANY($1) AND payment_status = 'paid'",
                    )
                    .bind(paid)
                    .fetch_one(db)
                    .await
                    .unwrap_or(0);
                    recorded as usize == paid.len()
                }
            })
            .await;
            Healed {
                fault: Fault::ApiKill,
                took,
                orders,
                kill: None,
            }
        }));
    }

    /// A dependency restarted at `at`: until the service is healthy again.
    pub fn restarted(&mut self, fault: Fault, at: Instant, client: &Client) {
        let client = client.clone();
        self.watching.push(tokio::spawn(async move {
            let took = until(at, || {
                let client = &client;
                async move { client.healthy().await }
            })
            .await;
            Healed {
                fault,
                took,
                orders: 0,
                kill: None,
            }
        }));
    }

    pub async fn results(self) -> Vec<Healed> {
        let mut healed = Vec::new();
        for watch in self.watching {
            if let Ok(result) = watch.await {
                healed.push(result);
            }
        }
        healed
    }
}

async fn until<F, Fut>(since: Instant, mut done: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    loop {
        if done().await {
            return Some(since.elapsed());
        }
        if since.elapsed() > GIVE_UP {
            return None;
        }
        tokio::time::sleep(POLL).await;
    }
}
