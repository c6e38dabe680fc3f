//! What `GET /admin/stats` must answer, worked out the slow, obvious way: every order read
//! from the database and counted in Rust. Tests and the statistics benchmark compare the
//! service's roll-ups with this.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Duration, NaiveDate, Timelike, Utc};
use serde_json::{json, Value};
use sqlx::PgPool;

#[derive(sqlx::FromRow)]
struct OrderFacts {
    created_at: DateTime<Utc>,
    user_id: i64,
    product_code: String,
    product_name: String,
    recharge_type: String,
    payment_status: String,
    recharge_status: String,
    refund_status: Option<String>,
    amount_fen: i64,
    price_mnt: i64,
}

#[derive(Default, Clone)]
struct Tally {
    created: i64,
    paid: i64,
    paid_fen: i64,
    paid_mnt: i64,
    success: i64,
    failed: i64,
    unknown: i64,
    pending: i64,
    credited_mnt: i64,
    refunds_pending: i64,
    refunds_succeeded: i64,
    refunds_failed: i64,
    refunded_fen: i64,
}

impl Tally {
    fn add(&mut self, o: &OrderFacts) {
        self.created += 1;
        if o.payment_status == "paid" {
            self.paid += 1;
            self.paid_fen += o.amount_fen;
            self.paid_mnt += o.price_mnt;
            match o.recharge_status.as_str() {
                "success" => {
                    self.success += 1;
                    self.credited_mnt += o.price_mnt;
                }
                "failed" => self.failed += 1,
                "unknown" => self.unknown += 1,
                _ => self.pending += 1,
            }
        }
        match o.refund_status.as_deref() {
            Some("requested" | "accepted") => self.refunds_pending += 1,
            Some("success") => {
                self.refunds_succeeded += 1;
                self.refunded_fen += o.amount_fen;
            }
            Some("failed") => self.refunds_failed += 1,
            _ => {}
        }
    }

    fn json(&self) -> Value {
        json!({
            "ordersCreated": self.created,
            "ordersPaid": self.paid,
            "paymentSuccessRate": rate(self.paid, self.created),
            "paidFen": self.paid_fen,
            "paidYuan": yuan(self.paid_fen),
            "paidMnt": self.paid_mnt,
            "rechargeSuccess": self.success,
            "rechargeFailed": self.failed,
            "rechargeUnknown": self.unknown,
            "rechargePending": self.pending,
            "creditedMnt": self.credited_mnt,
            "refundsPending": self.refunds_pending,
            "refundsSucceeded": self.refunds_succeeded,
            "refundsFailed": self.refunds_failed,
            "refundedFen": self.refunded_fen,
            "refundedYuan": yuan(self.refunded_fen),
        })
    }
}

/// `paid / created` to four decimals, halves away from zero, without trailing zeros.
fn rate(paid: i64, created: i64) -> Value {
    if created == 0 {
        return Value::Null;
    }
    let scaled = (paid * 20_000 + created) / (2 * created);
    let text = format!("{}.{:04}", scaled / 10_000, scaled % 10_000);
    let text = text.trim_end_matches('0').trim_end_matches('.');
    Value::String(text.to_owned())
}

fn yuan(fen: i64) -> String {
    format!("{}.{:02}", fen / 100, fen % 100)
}

fn merge(target: &mut Value, extra: Value) {
    if let (Value::Object(target), Value::Object(extra)) = (target, extra) {
        target.extend(extra);
    }
}

/// The statistics for the days `from..=to` in Asia/Shanghai, as JSON shaped like the
/// `data` of `GET /admin/stats`.
pub async fn expected_stats(db: &PgPool, from: NaiveDate, to: NaiveDate) -> Value {
    let orders: Vec<OrderFacts> = sqlx::query_as(
        "SELECT o.created_at, o.user_id, o.product_code, o.product_name, o.recharge_type,
                o.payment_status, o.recharge_status, r.status AS refund_status,
                o.amount_fen, o.price_mnt
           FROM orders o LEFT JOIN refunds r ON r.order_number = o.order_number",
    )
    .fetch_all(db)
    .await
    .expect("orders read");
    let local = |at: DateTime<Utc>| (at + Duration::hours(8)).naive_utc();

    let mut paid_days: HashMap<i64, BTreeSet<NaiveDate>> = HashMap::new();
    for o in orders.iter().filter(|o| o.payment_status == "paid") {
        paid_days
            .entry(o.user_id)
            .or_default()
            .insert(local(o.created_at).date());
    }

    let mut totals = Tally::default();
    let mut days: BTreeMap<NaiveDate, Tally> = BTreeMap::new();
    let mut hours: BTreeMap<u32, Tally> = BTreeMap::new();
    let mut products: BTreeMap<(String, String), (Tally, String)> = BTreeMap::new();
    let mut types: BTreeMap<String, Tally> = BTreeMap::new();
    for o in &orders {
        let at = local(o.created_at);
        if at.date() < from || at.date() > to {
            continue;
        }
        totals.add(o);
        days.entry(at.date()).or_default().add(o);
        hours.entry(at.hour()).or_default().add(o);
        let product = products
            .entry((o.product_code.clone(), o.recharge_type.clone()))
            .or_default();
        product.0.add(o);
        if o.product_name > product.1 {
            product.1 = o.product_name.clone();
        }
        types.entry(o.recharge_type.clone()).or_default().add(o);
    }

    let (mut new, mut returning) = (0, 0);
    let mut customers_by_day: BTreeMap<NaiveDate, (i64, i64)> = BTreeMap::new();
    for paid in paid_days.values() {
        let first = *paid.iter().next().expect("a customer paid at least once");
        let mut in_range = paid.range(from..=to).peekable();
        if in_range.peek().is_some() {
            if first >= from {
                new += 1;
            } else {
                returning += 1;
            }
        }
        for day in in_range {
            let counts = customers_by_day.entry(*day).or_default();
            if *day == first {
                counts.0 += 1;
            } else {
                counts.1 += 1;
            }
        }
    }

    let per_day: Vec<Value> = from
        .iter_days()
        .take_while(|day| *day <= to)
        .map(|day| {
            let mut entry = json!({ "day": day.to_string() });
            merge(
                &mut entry,
                days.get(&day).cloned().unwrap_or_default().json(),
            );
            let (new, returning) = customers_by_day.get(&day).copied().unwrap_or_default();
            merge(
                &mut entry,
                json!({ "newCustomers": new, "returningCustomers": returning }),
            );
            entry
        })
        .collect();
    let per_hour: Vec<Value> = (0..24)
        .map(|hour| {
            let mut entry = json!({ "hour": hour });
            merge(
                &mut entry,
                hours.get(&hour).cloned().unwrap_or_default().json(),
            );
            entry
        })
        .collect();
    let mut product_rows: Vec<_> = products.into_iter().collect();
    product_rows.sort_by(|((code_a, type_a), (a, _)), ((code_b, type_b), (b, _))| {
        b.created
            .cmp(&a.created)
            .then_with(|| code_a.cmp(code_b))
            .then_with(|| type_a.cmp(type_b))
    });
    let per_product: Vec<Value> = product_rows
        .into_iter()
        .map(|((code, recharge_type), (tally, name))| {
            let mut entry = json!({
                "productCode": code, "productName": name, "rechargeType": recharge_type,
            });
            merge(&mut entry, tally.json());
            entry
        })
        .collect();
    let per_type: Vec<Value> = types
        .into_iter()
        .map(|(recharge_type, tally)| {
            let mut entry = json!({ "rechargeType": recharge_type });
            merge(&mut entry, tally.json());
            entry
        })
        .collect();

    json!({
        "from": from.to_string(),
        "to": to.to_string(),
        "timeZone": "Asia/Shanghai",
        "totals": totals.json(),
        "customers": { "new": new, "returning": returning },
        "perDay": per_day,
        "perHourOfDay": per_hour,
        "perProduct": per_product,
        "perRechargeType": per_type,
    })
}

/// The first difference between two JSON documents, by path, for a readable failure.
pub fn first_difference(path: &str, expected: &Value, actual: &Value) -> Option<String> {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            for key in e.keys().chain(a.keys()) {
                let (ev, av) = (
                    e.get(key).unwrap_or(&Value::Null),
                    a.get(key).unwrap_or(&Value::Null),
                );
                if let Some(found) = first_difference(&format!("{path}.{key}"), ev, av) {
                    return Some(found);
                }
            }
            None
        }
        (Value::Array(e), Value::Array(a)) => {
            if e.len() != a.len() {
                return Some(format!(
                    "{path}: {} items expected, {} found",
                    e.len(),
                    a.len()
                ));
            }
            e.iter()
                .zip(a)
                .enumerate()
                .find_map(|(i, (ev, av))| first_difference(&format!("{path}[{i}]"), ev, av))
        }
        _ if expected == actual => None,
        _ => Some(format!("{path}: expected {expected}, found {actual}")),
    }
}
