//! PostgreSQL: the pool every binary opens the same way, and how domain values cross the
//! column boundary. Values are decoded straight from rows into their types: a column that
//! does not parse is a decode error (the database's CHECK constraints make that a bug,
//! never data), not a string handed on for each caller to parse again or not.

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

use crate::config::Secret;

/// How long a request waits for a free connection before it fails: long enough for a
/// burst, short enough that a stuck pool shows as errors rather than hung requests.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// Opens the process's pool. `application` names the connections in `pg_stat_activity`.
pub async fn connect(
    url: &Secret,
    max_connections: u32,
    application: &str,
) -> anyhow::Result<PgPool> {
    let options = PgConnectOptions::from_str(url.expose())
        .context("DATABASE_URL is not a PostgreSQL URL")?
        .application_name(application);
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect_with(options)
        .await
        .context("cannot connect to PostgreSQL (DATABASE_URL)")
}

/// A domain type stored as TEXT: written as its canonical text, read back through its
/// parser.
macro_rules! text_column {
    ($type:ty) => {
        impl sqlx::Type<sqlx::Postgres> for $type {
            fn type_info() -> sqlx::postgres::PgTypeInfo {
                <String as sqlx::Type<sqlx::Postgres>>::type_info()
            }
            fn compatible(ty: &sqlx::postgres::PgTypeInfo) -> bool {
                <String as sqlx::Type<sqlx::Postgres>>::compatible(ty)
            }
        }
        impl sqlx::postgres::PgHasArrayType for $type {
            fn array_type_info() -> sqlx::postgres::PgTypeInfo {
                <String as sqlx::postgres::PgHasArrayType>::array_type_info()
            }
        }
        impl<'r> sqlx::Decode<'r, sqlx::Postgres> for $type {
            fn decode(
                value: sqlx::postgres::PgValueRef<'r>,
            ) -> Result<Self, sqlx::error::BoxDynError> {
                let text = <&str as sqlx::Decode<sqlx::Postgres>>::decode(value)?;
                Ok(<$type>::from_column(text)?)
            }
        }
        impl sqlx::Encode<'_, sqlx::Postgres> for $type {
            fn encode_by_ref(
                &self,
                buf: &mut sqlx::postgres::PgArgumentBuffer,
            ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
                <&str as sqlx::Encode<sqlx::Postgres>>::encode(self.as_str(), buf)
            }
        }
    };
}

/// A domain amount stored as BIGINT, read back through its constructor.
macro_rules! bigint_column {
    ($type:ty) => {
        impl sqlx::Type<sqlx::Postgres> for $type {
            fn type_info() -> sqlx::postgres::PgTypeInfo {
                <i64 as sqlx::Type<sqlx::Postgres>>::type_info()
            }
        }
        impl<'r> sqlx::Decode<'r, sqlx::Postgres> for $type {
            fn decode(
                value: sqlx::postgres::PgValueRef<'r>,
            ) -> Result<Self, sqlx::error::BoxDynError> {
                let number = <i64 as sqlx::Decode<sqlx::Postgres>>::decode(value)?;
                Ok(<$type>::new(number)?)
            }
        }
        impl sqlx::Encode<'_, sqlx::Postgres> for $type {
            fn encode_by_ref(
                &self,
                buf: &mut sqlx::postgres::PgArgumentBuffer,
            ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
                <i64 as sqlx::Encode<sqlx::Postgres>>::encode(self.get(), buf)
            }
        }
    };
}

pub(crate) use {bigint_column, text_column};
