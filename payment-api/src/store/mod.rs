//! Reading what the routes and jobs show, one module per table. Changes of an order's or
//! a refund's state are not here: they are the transitions of [`shared::lifecycle`].

pub mod attention;
pub mod history;
pub mod legacy_stats;
pub mod orders;
pub mod rates;
pub mod reconciliation;
pub mod sessions;
pub mod users;
