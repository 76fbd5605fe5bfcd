//! Storage test suite: the conformance suite run against both backends, and
//! the PostgreSQL row-level security suite.

mod conformance;
mod rls;
