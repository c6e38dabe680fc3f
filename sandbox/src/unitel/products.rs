//! Which tariff a number is on, and what it may buy at what price: the recorded product
//! lists, chosen by the number's last digit.

use std::sync::LazyLock;

use serde_json::Value;

/// A subscriber's tariff, decided by the msisdn alone so that tests can pick one:
///
/// | msisdn (8 digits, not starting with 0) | tariff | fixture |
/// |---|---|---|
/// | last digit 9 | postpaid | `postpaid.json` (no cards, data packages only) |
/// | last digit % 3 == 0 (0, 3, 6) | prepaid Smart Data | `Smart-data.json` (cards `SD…`) |
/// | last digit % 3 == 1 (1, 4, 7) | prepaid Smart Days | `Smart-days.json` (cards `SY…`) |
/// | last digit % 3 == 2 (2, 5, 8) | prepaid Smart Talk | `Smart-talk.json` (cards `ST…`) |
///
/// Any other msisdn is an unknown subscriber. A postpaid number ending in `09` has nothing
/// to pay (bill "a" of `postpaid-bill.json`); any other postpaid number owes 74220 MNT
/// (bill "b").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tariff {
    SmartData,
    SmartDays,
    SmartTalk,
    Postpaid,
}

static SMART_DATA: LazyLock<Value> =
    LazyLock::new(|| fixture(include_str!("../../fixtures/Smart-data.json")));
static SMART_DAYS: LazyLock<Value> =
    LazyLock::new(|| fixture(include_str!("../../fixtures/Smart-days.json")));
static SMART_TALK: LazyLock<Value> =
    LazyLock::new(|| fixture(include_str!("../../fixtures/Smart-talk.json")));
static POSTPAID: LazyLock<Value> =
    LazyLock::new(|| fixture(include_str!("../../fixtures/postpaid.json")));
static BILLS: LazyLock<Value> =
    LazyLock::new(|| fixture(include_str!("../../fixtures/postpaid-bill.json")));

fn fixture(text: &str) -> Value {
    serde_json::from_str(text).expect("the recorded Unitel fixtures are valid JSON")
}

impl Tariff {
    /// `None` for anything but 8 digits not starting with 0.
    pub fn of(msisdn: &str) -> Option<Tariff> {
        let bytes = msisdn.as_bytes();
        let valid = bytes.len() == 8 && bytes.iter().all(u8::is_ascii_digit) && bytes[0] != b'0';
        if !valid {
            return None;
        }
        Some(match bytes[7] - b'0' {
            9 => Tariff::Postpaid,
            digit if digit % 3 == 0 => Tariff::SmartData,
            digit if digit % 3 == 1 => Tariff::SmartDays,
            _ => Tariff::SmartTalk,
        })
    }

    pub fn is_postpaid(self) -> bool {
        self == Tariff::Postpaid
    }

    /// The `/service/servicetype` answer for this tariff, as recorded.
    pub fn product_list(self) -> &'static Value {
        match self {
            Tariff::SmartData => &SMART_DATA,
            Tariff::SmartDays => &SMART_DAYS,
            Tariff::SmartTalk => &SMART_TALK,
            Tariff::Postpaid => &POSTPAID,
        }
    }

    /// Price in MNT of a voice/unit card (`service.cards.*`) this tariff sells.
    pub fn card_price(self, code: &str) -> Option<i64> {
        price_in(&self.product_list()["service"]["cards"], code)
    }

    /// Price in MNT of a data package (`service.data.*`) this tariff sells.
    pub fn package_price(self, code: &str) -> Option<i64> {
        price_in(&self.product_list()["service"]["data"], code)
    }
}

/// The postpaid bill of a postpaid number, shaped as `postpaid-bill.json`.
pub fn postpaid_bill(msisdn: &str) -> Option<&'static Value> {
    match Tariff::of(msisdn)? {
        Tariff::Postpaid if msisdn.ends_with("09") => Some(&BILLS["a"]),
        Tariff::Postpaid => Some(&BILLS["b"]),
        _ => None,
    }
}

/// Looks through every list of a group (`day`, `noday`, `special`, ...).
fn price_in(group: &Value, code: &str) -> Option<i64> {
    group
        .as_object()?
        .values()
        .filter_map(Value::as_array)
        .flatten()
        .find(|product| product["code"] == code)
        .and_then(|product| product["price"].as_i64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_digit_picks_the_tariff() {
        assert_eq!(Tariff::of("88616600"), Some(Tariff::SmartData));
        assert_eq!(Tariff::of("88616603"), Some(Tariff::SmartData));
        assert_eq!(Tariff::of("88616601"), Some(Tariff::SmartDays));
        assert_eq!(Tariff::of("88616602"), Some(Tariff::SmartTalk));
        assert_eq!(Tariff::of("88616609"), Some(Tariff::Postpaid));
        assert_eq!(Tariff::of("08616609"), None);
        assert_eq!(Tariff::of("8861660"), None);
        assert_eq!(Tariff::of("886166091"), None);
        assert_eq!(Tariff::of("8861660a"), None);
    }

    #[test]
    fn prices_come_from_the_fixtures() {
        assert_eq!(Tariff::SmartData.card_price("SD5000"), Some(5000));
        assert_eq!(Tariff::SmartData.card_price("SD3000"), Some(3000));
        assert_eq!(Tariff::SmartData.card_price("SY5000"), None);
        assert_eq!(Tariff::SmartDays.card_price("SY5000"), Some(5000));
        assert_eq!(Tariff::SmartTalk.card_price("ST3000"), Some(3000));
        assert_eq!(Tariff::Postpaid.card_price("SD5000"), None);
        assert_eq!(Tariff::Postpaid.package_price("data3gb2d"), Some(3500));
        assert_eq!(Tariff::SmartData.package_price("datalooktv30d"), Some(2900));
        assert_eq!(Tariff::SmartData.package_price("SD5000"), None);
    }

    #[test]
    fn bills_depend_on_the_last_two_digits() {
        assert_eq!(postpaid_bill("88616609").unwrap()["total_unpaid"], 0);
        assert_eq!(postpaid_bill("88616619").unwrap()["total_unpaid"], 74220);
        assert!(postpaid_bill("88616600").is_none());
    }
}
