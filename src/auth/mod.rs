//! Authorisation schemes beyond basic auth (which lives in the API layer).

pub mod bearer;
