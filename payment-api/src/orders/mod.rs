//! Order decisions, free of HTTP: an order created and priced on the server, an unpaid
//! order cancelled. The routes in [`crate::http`] read the request, call one function
//! here and turn its result into a response.

pub mod cancel;
pub mod create;
