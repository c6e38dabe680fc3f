//! SQL, one module per table. Every state change is one statement that states what it
//! expects to find (`WHERE payment_status = 'unpaid'`), so concurrent requests cannot race.

pub mod anomalies;
pub mod orders;
pub mod payments;
pub mod rates;
pub mod users;
