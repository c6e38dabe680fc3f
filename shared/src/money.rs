//! Money. WeChat Pay counts in fen (1/100 yuan), Unitel in whole tugrik (MNT). Both are
//! integers here; the only division in the system is MNT → yuan at the exchange rate, and
//! it happens in [`price_in_fen`] alone.

use std::fmt;

use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MoneyError {
    #[error("amount must not be negative")]
    Negative,
    #[error("{0} yuan is not a whole number of fen")]
    NotWholeFen(Decimal),
    #[error("amount is too large")]
    Overflow,
    #[error("exchange rate must be a positive number")]
    InvalidRate,
    #[error("price rounds to nothing in yuan")]
    BelowOneFen,
    #[error("{0:?} is not an amount in yuan")]
    NotAnAmount(String),
}

/// An amount in fen, never negative.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "i64")]
pub struct Fen(i64);

impl Fen {
    pub const ZERO: Fen = Fen(0);

    pub fn new(fen: i64) -> Result<Self, MoneyError> {
        if fen < 0 {
            return Err(MoneyError::Negative);
        }
        Ok(Fen(fen))
    }

    /// Exact conversion from yuan: an amount with a fraction of a fen is refused, never rounded.
    pub fn from_yuan(yuan: Decimal) -> Result<Self, MoneyError> {
        if yuan.is_sign_negative() && !yuan.is_zero() {
            return Err(MoneyError::Negative);
        }
        let fen = yuan
            .checked_mul(Decimal::ONE_HUNDRED)
            .ok_or(MoneyError::Overflow)?;
        if !fen.fract().is_zero() {
            return Err(MoneyError::NotWholeFen(yuan));
        }
        let fen = i64::try_from(fen.trunc()).map_err(|_| MoneyError::Overflow)?;
        Fen::new(fen)
    }

    /// A yuan amount as WeChat Pay writes it in bills (`11.36`, `0.00`, `5`): digits, an
    /// optional point and decimals, nothing else (no sign, exponent, spaces or `_`, which
    /// `Decimal`'s own parser would let through). A fraction of a fen is refused.
    pub fn parse_yuan(text: &str) -> Result<Self, MoneyError> {
        let not_an_amount = || MoneyError::NotAnAmount(text.to_owned());
        let (whole, fraction) = text.split_once('.').unwrap_or((text, "0"));
        let digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
        if !digits(whole) || !digits(fraction) || fraction.len() > 28 {
            return Err(not_an_amount());
        }
        let yuan = text.parse::<Decimal>().map_err(|_| not_an_amount())?;
        Fen::from_yuan(yuan)
    }

    pub fn get(self) -> i64 {
        self.0
    }

    /// The amount in yuan with exactly two decimals (`11.36`).
    pub fn yuan(self) -> Decimal {
        Decimal::new(self.0, 2)
    }
}

impl TryFrom<i64> for Fen {
    type Error = MoneyError;
    fn try_from(value: i64) -> Result<Self, Self::Error> {
        Fen::new(value)
    }
}

impl From<Fen> for i64 {
    fn from(value: Fen) -> Self {
        value.0
    }
}

impl fmt::Display for Fen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} fen", self.0)
    }
}

/// An amount in whole Mongolian tugrik, as Unitel prices everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "i64")]
pub struct Mnt(i64);

impl Mnt {
    pub fn new(mnt: i64) -> Result<Self, MoneyError> {
        if mnt < 0 {
            return Err(MoneyError::Negative);
        }
        Ok(Mnt(mnt))
    }

    pub fn get(self) -> i64 {
        self.0
    }
}

impl TryFrom<i64> for Mnt {
    type Error = MoneyError;
    fn try_from(value: i64) -> Result<Self, Self::Error> {
        Mnt::new(value)
    }
}

impl From<Mnt> for i64 {
    fn from(value: Mnt) -> Self {
        value.0
    }
}

impl fmt::Display for Mnt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} MNT", self.0)
    }
}

crate::db::bigint_column!(Fen);
crate::db::bigint_column!(Mnt);

/// How many tugrik one yuan buys (the `MNT_TO_CNY` rate, e.g. 440).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Decimal", into = "Decimal")]
pub struct MntPerYuan(Decimal);

impl MntPerYuan {
    pub fn new(rate: Decimal) -> Result<Self, MoneyError> {
        if rate <= Decimal::ZERO {
            return Err(MoneyError::InvalidRate);
        }
        Ok(MntPerYuan(rate))
    }

    pub fn get(self) -> Decimal {
        self.0
    }
}

impl sqlx::Type<sqlx::Postgres> for MntPerYuan {
    fn type_info() -> sqlx::postgres::PgTypeInfo {
        <Decimal as sqlx::Type<sqlx::Postgres>>::type_info()
    }
}

impl<'r> sqlx::Decode<'r, sqlx::Postgres> for MntPerYuan {
    fn decode(value: sqlx::postgres::PgValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        let rate = <Decimal as sqlx::Decode<sqlx::Postgres>>::decode(value)?;
        Ok(MntPerYuan::new(rate)?)
    }
}

impl TryFrom<Decimal> for MntPerYuan {
    type Error = MoneyError;
    fn try_from(value: Decimal) -> Result<Self, Self::Error> {
        MntPerYuan::new(value)
    }
}

impl From<MntPerYuan> for Decimal {
    fn from(value: MntPerYuan) -> Self {
        value.0
    }
}

/// What a product priced in tugrik costs in fen: yuan = MNT / rate, rounded half away from
/// zero to two decimals, as the system we replace priced it (5000 MNT at 440 → 11.36 yuan).
pub fn price_in_fen(price: Mnt, rate: MntPerYuan) -> Result<Fen, MoneyError> {
    let yuan = Decimal::from(price.get())
        .checked_div(rate.get())
        .ok_or(MoneyError::Overflow)?
        .round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero);
    let fen = Fen::from_yuan(yuan)?;
    if fen.get() == 0 {
        return Err(MoneyError::BelowOneFen);
    }
    Ok(fen)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn dec(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    #[test]
    fn five_thousand_tugrik_at_440_is_1136_fen() {
        let rate = MntPerYuan::new(dec("440")).unwrap();
        let fen = price_in_fen(Mnt::new(5000).unwrap(), rate).unwrap();
        assert_eq!(fen.get(), 1136);
        assert_eq!(fen.yuan().to_string(), "11.36");
    }

    #[test]
    fn rounding_is_half_away_from_zero_at_the_fen() {
        // 1 MNT at 200 = 0.005 yuan: exactly half a fen rounds up to one fen.
        let rate = MntPerYuan::new(dec("200")).unwrap();
        assert_eq!(price_in_fen(Mnt::new(1).unwrap(), rate).unwrap().get(), 1);
        // 3 MNT at 440 = 0.0068 yuan → 0.01
        let rate = MntPerYuan::new(dec("440")).unwrap();
        assert_eq!(price_in_fen(Mnt::new(3).unwrap(), rate).unwrap().get(), 1);
        // 74220 MNT at 440 = 168.6818… → 168.68
        assert_eq!(
            price_in_fen(Mnt::new(74220).unwrap(), rate).unwrap().get(),
            16868
        );
    }

    #[test]
    fn a_price_below_half_a_fen_is_an_error() {
        let rate = MntPerYuan::new(dec("440")).unwrap();
        assert_eq!(
            price_in_fen(Mnt::new(1).unwrap(), rate),
            Err(MoneyError::BelowOneFen)
        );
    }

    #[test]
    fn yuan_with_a_fraction_of_a_fen_is_refused() {
        assert_eq!(Fen::from_yuan(dec("11.36")).unwrap().get(), 1136);
        assert_eq!(Fen::from_yuan(dec("11.360")).unwrap().get(), 1136);
        assert_eq!(
            Fen::from_yuan(dec("11.365")),
            Err(MoneyError::NotWholeFen(dec("11.365")))
        );
        assert_eq!(Fen::from_yuan(dec("-1")), Err(MoneyError::Negative));
    }

    #[test]
    fn yuan_text_is_read_exactly_or_refused() {
        assert_eq!(Fen::parse_yuan("0.01").unwrap().get(), 1);
        assert_eq!(Fen::parse_yuan("11.36").unwrap().get(), 1136);
        assert_eq!(Fen::parse_yuan("5").unwrap().get(), 500);
        assert_eq!(Fen::parse_yuan("0.00").unwrap().get(), 0);
        assert_eq!(Fen::parse_yuan("1.500").unwrap().get(), 150);
        assert_eq!(
            Fen::parse_yuan("0.001"),
            Err(MoneyError::NotWholeFen(dec("0.001")))
        );
        for bad in [
            "",
            "1.0x",
            "x",
            "-1.00",
            "+1.00",
            "1e2",
            "1_000.00",
            " 1.00",
            "1.00 ",
            "1.",
            ".5",
            "1..0",
            "1,00",
            "١.٠٠",
            "99999999999999999999999999999.99",
        ] {
            assert!(
                matches!(
                    Fen::parse_yuan(bad),
                    Err(MoneyError::NotAnAmount(_) | MoneyError::Overflow)
                ),
                "{bad:?} must be refused"
            );
        }
    }

    #[test]
    fn rates_and_amounts_must_be_positive() {
        assert_eq!(MntPerYuan::new(Decimal::ZERO), Err(MoneyError::InvalidRate));
        assert_eq!(MntPerYuan::new(dec("-440")), Err(MoneyError::InvalidRate));
        assert_eq!(Fen::new(-1), Err(MoneyError::Negative));
        assert!(serde_json::from_str::<Fen>("-5").is_err());
        assert_eq!(serde_json::from_str::<Fen>("1136").unwrap().get(), 1136);
    }
}
