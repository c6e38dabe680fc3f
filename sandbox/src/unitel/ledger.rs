//! Every credit the simulated Unitel performed. Nothing here deduplicates `journal_id`:
//! sending the same top-up twice credits twice, and the ledger shows both.

use std::fmt;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::sync::lock;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CreditKind {
    /// `/service/recharge`: a voice/unit card.
    Recharge,
    /// `/service/datapackage`.
    Datapackage,
    /// `/service/payment`: a postpaid bill payment.
    Payment,
}

impl CreditKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CreditKind::Recharge => "recharge",
            CreditKind::Datapackage => "datapackage",
            CreditKind::Payment => "payment",
        }
    }
}

impl fmt::Display for CreditKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for CreditKind {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Credit {
    pub journal_id: String,
    pub msisdn: String,
    pub kind: CreditKind,
    /// The card or package code; `None` for a bill payment.
    pub product: Option<String>,
    /// MNT.
    pub amount: i64,
    pub seq: String,
    pub credited_at: DateTime<Utc>,
    /// How the call that credited ended for the caller: a load test tells from this which
    /// credits the caller cannot have known about.
    pub answer: CreditAnswer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum CreditAnswer {
    /// The caller got the success response.
    Answered,
    /// The call never answered (the caller timed out).
    Hung,
    /// The connection was closed without a response.
    Dropped,
}

#[derive(Default)]
pub(crate) struct Ledger {
    credits: Mutex<Vec<Credit>>,
    last_seq: Mutex<i64>,
}

/// What a credit call is about to credit.
pub(crate) struct Entry {
    pub journal_id: String,
    pub msisdn: String,
    pub kind: CreditKind,
    pub product: Option<String>,
    pub amount: i64,
}

impl Ledger {
    pub(crate) fn credit(&self, entry: Entry, answer: CreditAnswer) -> Credit {
        let credit = Credit {
            answer,
            journal_id: entry.journal_id,
            msisdn: entry.msisdn,
            kind: entry.kind,
            product: entry.product,
            amount: entry.amount,
            seq: self.next_seq(),
            credited_at: Utc::now(),
        };
        tracing::info!(
            journal_id = %credit.journal_id,
            msisdn = %credit.msisdn,
            kind = %credit.kind,
            amount = credit.amount,
            seq = %credit.seq,
            "credited"
        );
        lock(&self.credits).push(credit.clone());
        credit
    }

    pub(crate) fn all(&self) -> Vec<Credit> {
        lock(&self.credits).clone()
    }

    pub(crate) fn contains_seq(&self, seq: &str) -> bool {
        lock(&self.credits).iter().any(|credit| credit.seq == seq)
    }

    pub(crate) fn clear(&self) {
        lock(&self.credits).clear();
    }

    /// 13 digits like the real `1760754386127`: the time in milliseconds, bumped when two
    /// credits land in the same millisecond, so every seq is unique.
    fn next_seq(&self) -> String {
        let mut last = lock(&self.last_seq);
        *last = (*last + 1).max(Utc::now().timestamp_millis());
        last.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seqs_are_unique_and_thirteen_digits() {
        let ledger = Ledger::default();
        let seqs: Vec<String> = (0..100)
            .map(|n| {
                ledger
                    .credit(
                        Entry {
                            journal_id: format!("J{n}"),
                            msisdn: "88616600".into(),
                            kind: CreditKind::Recharge,
                            product: Some("SD5000".into()),
                            amount: 5000,
                        },
                        CreditAnswer::Answered,
                    )
                    .seq
            })
            .collect();
        let unique: std::collections::HashSet<_> = seqs.iter().collect();
        assert_eq!(unique.len(), 100);
        assert!(seqs.iter().all(|seq| seq.len() == 13));
        assert!(ledger.contains_seq(&seqs[42]));
    }

    #[test]
    fn kind_compares_with_its_wire_name() {
        assert!(CreditKind::Datapackage == "datapackage");
        assert_eq!(
            serde_json::to_value(CreditKind::Payment).unwrap(),
            "payment"
        );
    }
}
