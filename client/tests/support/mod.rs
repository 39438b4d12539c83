//! Helpers shared by the client's process tests.

pub mod server;
