//! Top-ups: what we ask Unitel to do for a paid order, and what it gives back.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::money::Mnt;
use crate::order::{Msisdn, OrderNumber};

/// The three things a paid order can buy, each a different Unitel endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopUp {
    Card { code: String },
    DataPackage { code: String },
    BillPayment,
}

impl TopUp {
    pub(crate) fn path(&self) -> &'static str {
        match self {
            TopUp::Card { .. } => "/service/recharge",
            TopUp::DataPackage { .. } => "/service/datapackage",
            TopUp::BillPayment => "/service/payment",
        }
    }

    /// Our order number is the `journal_id`, so Unitel's records and ours share a key.
    pub(crate) fn body(&self, msisdn: &Msisdn, journal_id: &OrderNumber, amount: Mnt) -> Value {
        let amount = amount.get().to_string();
        let transactions = |description: &str| {
            json!([{
                "journal_id": journal_id.as_str(),
                "amount": amount,
                "description": description,
                "account": "",
            }])
        };
        match self {
            TopUp::Card { code } => json!({
                "msisdn": msisdn.as_str(),
                "card": code,
                "vatflag": "1",
                "vat_register_no": "",
                "transactions": transactions("Recharge"),
            }),
            TopUp::DataPackage { code } => json!({
                "msisdn": msisdn.as_str(),
                "package": code,
                "vatflag": "1",
                "vat_register_no": "",
                "transactions": transactions("Data package"),
            }),
            TopUp::BillPayment => json!({
                "msisdn": msisdn.as_str(),
                "amount": amount,
                "remark": format!("eLife {}", journal_id.as_str()),
                "vatflag": "1",
                "vat_register_no": "",
                "transactions": transactions("Bill payment"),
            }),
        }
    }
}

/// What Unitel returns for a successful top-up. `vat` is the buyer's e-receipt (e-barimt),
/// kept whole: its shape is Unitel's, and the customer is entitled to all of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopUpReceipt {
    pub seq: Option<String>,
    pub sv_id: Option<String>,
    pub method: Option<String>,
    pub vat: Option<Value>,
}

impl TopUpReceipt {
    pub(crate) fn from_response(body: &Value) -> Self {
        let text = |key: &str| match body.get(key) {
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        TopUpReceipt {
            seq: text("seq"),
            sv_id: text("sv_id"),
            method: text("method"),
            vat: body.get("vat").filter(|v| !v.is_null()).cloned(),
        }
    }
}

/// `/service/check_transaction_result`'s verdict on an earlier top-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransactionStatus {
    Success,
    Pending,
    Failed {
        message: String,
    },
    /// A status we do not know: no verdict.
    Unrecognised(String),
}
