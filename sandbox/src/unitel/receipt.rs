//! Success answers of credit calls: the recorded responses with a fresh `seq` and a fresh
//! VAT e-receipt (e-barimt) whose amounts match what was paid.

use std::sync::LazyLock;

use chrono::Utc;
use serde_json::{json, Value};

use crate::ids;
use crate::unitel::ledger::{Credit, CreditKind};

static RECHARGE: LazyLock<Value> = LazyLock::new(|| {
    serde_json::from_str(include_str!("../../fixtures/recharge-res.json"))
        .expect("recharge-res.json is valid JSON")
});
static DATA_PACKAGE: LazyLock<Value> = LazyLock::new(|| {
    serde_json::from_str(include_str!("../../fixtures/activateDataPackage-res.json"))
        .expect("activateDataPackage-res.json is valid JSON")
});

/// The answer to a credit call that succeeded. A bill payment was never recorded, so it
/// borrows the recharge shape with its own `sv_id` prefix.
pub(crate) fn success_response(credit: &Credit) -> Value {
    let mut response = match credit.kind {
        CreditKind::Recharge => RECHARGE.clone(),
        CreditKind::Datapackage => DATA_PACKAGE.clone(),
        CreditKind::Payment => RECHARGE.clone(),
    };
    response["seq"] = credit.seq.as_str().into();
    response["sv_id"] = match credit.kind {
        CreditKind::Recharge => format!("P_ETOPUP_{}", ids::digits(10)).into(),
        CreditKind::Datapackage => Value::Null,
        CreditKind::Payment => format!("P_PAYMENT_{}", ids::digits(10)).into(),
    };
    fill_receipt(&mut response["vat"], credit.amount);
    response
}

fn fill_receipt(vat: &mut Value, amount: i64) {
    let amount_text = two_decimals(amount * 100);
    let vat_text = two_decimals(vat_in_cents(amount));
    vat["billId"] = format!("000005036895{}", ids::digits(21)).into();
    vat["amount"] = amount_text.clone().into();
    vat["cashAmount"] = amount_text.clone().into();
    vat["nonCashAmount"] = "0.00".into();
    vat["vat"] = vat_text.clone().into();
    vat["date"] = ids::readable_time(Utc::now()).into();
    vat["internalCode"] = ids::hex(54, true).into();
    vat["lottery"] = ids::lottery().into();
    vat["qrData"] = ids::digits(312).into();
    vat["stocks"] = json!([{
        "code": "8413100",
        "name": "Tulult",
        "measureUnit": "ш",
        "qty": "1.00",
        "unitPrice": amount_text,
        "totalAmount": amount_text,
        "vat": vat_text,
        "barCode": "",
        "cityTax": "0.00",
    }]);
}

/// Mongolian VAT is 10% included in the price: amount / 11, rounded half up to a cent
/// (3000 → 272.73, 3500 → 318.18, as in the recorded receipts).
fn vat_in_cents(amount: i64) -> i64 {
    (amount * 100 * 2 + 11) / 22
}

fn two_decimals(cents: i64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vat_matches_the_recorded_receipts() {
        assert_eq!(two_decimals(vat_in_cents(3000)), "272.73");
        assert_eq!(two_decimals(vat_in_cents(3500)), "318.18");
        assert_eq!(two_decimals(vat_in_cents(74220)), "6747.27");
        assert_eq!(two_decimals(3000 * 100), "3000.00");
    }

    #[test]
    fn a_receipt_carries_the_credited_amount() {
        let credit = Credit {
            journal_id: "J1".into(),
            msisdn: "88616600".into(),
            kind: CreditKind::Datapackage,
            product: Some("data3gb2d".into()),
            amount: 3500,
            seq: "1760754538548".into(),
            credited_at: Utc::now(),
            answer: crate::unitel::ledger::CreditAnswer::Answered,
        };
        let response = success_response(&credit);
        assert_eq!(response["seq"], "1760754538548");
        assert_eq!(response["sv_id"], Value::Null);
        assert_eq!(response["vat"]["amount"], "3500.00");
        assert_eq!(response["vat"]["vat"], "318.18");
        assert_eq!(response["vat"]["stocks"][0]["totalAmount"], "3500.00");
        assert_ne!(
            response["vat"]["billId"], DATA_PACKAGE["vat"]["billId"],
            "a fresh bill id"
        );
    }
}
