//! Enrichment: `--add KEY=VALUE`, `--rename OLD=NEW` and `--drop KEY`,
//! applied to a parsed [`Record`] in that order: rename, drop, add (so an
//! added field cannot be renamed or dropped away, and `--add` overwrites).
//! `--add` values come from the flag or its environment variable, so a
//! manifest passes `$(POD_NAME)` from the Downward API.

use std::borrow::Cow;

use crate::pipeline::record::{Record, Value};

/// A `KEY=VALUE` flag that is not one.
#[derive(Debug, thiserror::Error)]
#[error("{flag} {text:?}: expected KEY=VALUE")]
pub struct BadPair {
    flag: &'static str,
    text: String,
}

/// `--add`, `--rename` and `--drop`.
#[derive(Clone, Debug, Default)]
pub struct Edits {
    pub add: Vec<(String, String)>,
    pub rename: Vec<(String, String)>,
    pub drop: Vec<String>,
}

/// Splits `KEY=VALUE` at the first `=`; the key must not be empty.
pub fn pair(flag: &'static str, text: &str) -> Result<(String, String), BadPair> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(BadPair {
            flag,
            text: text.to_owned(),
        }),
    }
}

impl Edits {
    /// From the flags' texts (`KEY=VALUE`, `OLD=NEW`, `KEY`).
    pub fn parse(add: &[String], rename: &[String], drop: &[String]) -> Result<Self, BadPair> {
        Ok(Self {
            add: add
                .iter()
                .map(|text| pair("--add", text))
                .collect::<Result<_, _>>()?,
            rename: rename
                .iter()
                .map(|text| pair("--rename", text))
                .collect::<Result<_, _>>()?,
            drop: drop.to_vec(),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.add.is_empty() && self.rename.is_empty() && self.drop.is_empty()
    }

    /// Rename, drop, then add.
    pub fn apply<'a>(&'a self, record: &mut Record<'a>) {
        for (from, to) in &self.rename {
            record.rename(from, to);
        }
        for key in &self.drop {
            record.remove(key);
        }
        self.add_to(record);
    }

    /// Only the `--add` fields (what an unparsed line gets).
    pub fn add_to<'a>(&'a self, record: &mut Record<'a>) {
        for (key, value) in &self.add {
            record.set(Cow::Borrowed(key), Value::from(value.as_str()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rename_drop_then_add_and_bad_pairs_are_named() {
        let edits = Edits::parse(
            &["pod=web-0".into(), "msg=x".into()],
            &["msg=message".into()],
            &["secret".into()],
        )
        .unwrap();
        let mut record = Record::default();
        record.push("msg", "hi");
        record.push("secret", "s3");
        edits.apply(&mut record);
        let keys: Vec<_> = record.fields.iter().map(|(key, _)| key.as_ref()).collect();
        assert_eq!(keys, ["message", "pod", "msg"]);
        let error = Edits::parse(&["novalue".into()], &[], &[]).unwrap_err();
        assert_eq!(error.to_string(), "--add \"novalue\": expected KEY=VALUE");
        assert!(Edits::parse(&[], &["=x".into()], &[]).is_err());
    }
}
