//! The record half of the pipeline every binary configures: a line read by
//! [`crate::follow`] (or from stdin) is parsed ([`formats`]) into a
//! [`record::Record`], enriched ([`enrich`]: `--add`, `--rename`, `--drop`)
//! and encoded ([`encode`]: JSON, logfmt, template); [`convert::Converter`]
//! chains the three for one line. `adapter` and `log-aggregator --follow
//! --parse` both go through it, so a format name, a field name and the shape
//! of an unparsed line are the same in both.
//!
//! Invariant: a line that does not parse is never lost here; it becomes
//! `{"message": <line>, "parse_error": <why>}` (plus the `--add` fields)
//! unless the binary sets it aside itself.

pub mod convert;
pub mod encode;
pub mod enrich;
pub mod follow_args;
pub mod formats;
pub mod output;
pub mod record;
pub mod time;
