//! MCP (Model Context Protocol) building blocks for the gateway.
//!
//! - [`jsonrpc`]: parsing and building JSON-RPC 2.0 messages, with errors
//!   that say what was wrong.
//! - [`protocol`]: protocol versions and their negotiation.
//! - [`sse`]: Server-Sent Events framing, both directions.
//! - [`upstream`]: clients that talk to the real MCP servers behind the
//!   gateway, over stdio, Streamable HTTP or legacy HTTP+SSE, multiplexing
//!   many agent sessions over one supervised connection.
//!
//! Nothing here knows about HTTP servers, policy or storage.

pub mod jsonrpc;
pub mod outbound;
pub mod protocol;
pub mod sse;
pub mod upstream;
