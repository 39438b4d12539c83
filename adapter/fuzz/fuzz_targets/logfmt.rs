//! `cargo fuzz run logfmt`: the logfmt parser; see `shared.rs` for what is checked.
#![no_main]

#[path = "shared.rs"]
mod shared;

libfuzzer_sys::fuzz_target!(|data: &[u8]| shared::check(
    adapter::formats::FormatName::Logfmt,
    data
));
