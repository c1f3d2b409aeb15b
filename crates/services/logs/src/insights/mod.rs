//! The Logs Insights query language and its engine, pure: [`query::parse`] compiles a query,
//! [`engine::Engine`] runs it over records fed one at a time. Reading events from the store and
//! the query API live in `queries`.

pub mod engine;
pub mod eval;
pub mod query;
