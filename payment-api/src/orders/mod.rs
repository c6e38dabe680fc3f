//! Order decisions, free of HTTP: an order created and priced on the server, an unpaid
//! order cancelled, an `unknown` top-up settled by a person. The routes (`http/`) read
//! the request, call one function here and turn its result into a response.

pub mod cancel;
pub mod create;
pub mod resolve;
