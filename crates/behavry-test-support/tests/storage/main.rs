//! Storage test suite: the conformance suite run against both backends, and
//! the PostgreSQL row-level security suite.

#![allow(clippy::unwrap_used)]

mod conformance;
mod rls;
