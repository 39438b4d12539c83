//! Enrichment: `--add KEY=VALUE`, `--rename OLD=NEW` and `--drop KEY`,
//! applied to a parsed [`Record`] in that order: rename, drop, add (so an
//! added field cannot be renamed or dropped away, and `--add` overwrites).
//! `--add` values come from the flag or its environment variable, and
//! `${NAME}` in a value is the environment variable NAME (as Vector and
//! Fluent Bit expand their configuration): a manifest passes
//! `--add pod=${POD_NAME}` with POD_NAME from the Downward API, which works
//! where the kubelet's own `$(POD_NAME)` expansion of arguments does not
//! happen (podman `kube play`, Docker).

use std::borrow::Cow;

use crate::pipeline::record::{Record, Value};

/// A `KEY=VALUE` flag that is not one, or names a variable that is not set.
#[derive(Debug, thiserror::Error)]
pub enum BadPair {
    #[error("{flag} {text:?}: expected KEY=VALUE")]
    NotAPair { flag: &'static str, text: String },
    #[error("--add {text:?}: environment variable {name} is not set (or not UTF-8)")]
    Unset { text: String, name: String },
    #[error("--add {text:?}: unclosed ${{ (write ${{NAME}})")]
    Unclosed { text: String },
}

/// `value` with each `${NAME}` replaced by the environment variable NAME,
/// read through `env` (a missing one is an error, never an empty field).
fn expand(
    text: &str,
    value: &str,
    env: impl Fn(&str) -> Option<String>,
) -> Result<String, BadPair> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            return Err(BadPair::Unclosed {
                text: text.to_owned(),
            });
        };
        let name = &after[..end];
        let found = env(name).ok_or_else(|| BadPair::Unset {
            text: text.to_owned(),
            name: name.to_owned(),
        })?;
        out.push_str(&found);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
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
        _ => Err(BadPair::NotAPair {
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
                .map(|text| {
                    let (key, value) = pair("--add", text)?;
                    Ok((key, expand(text, &value, |name| std::env::var(name).ok())?))
                })
                .collect::<Result<_, BadPair>>()?,
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

    #[test]
    fn add_values_take_environment_variables_by_name() {
        let env = |name: &str| (name == "POD_NAME").then(|| "web-0".to_owned());
        assert_eq!(expand("t", "${POD_NAME}", env).unwrap(), "web-0");
        assert_eq!(expand("t", "a-${POD_NAME}-b", env).unwrap(), "a-web-0-b");
        assert_eq!(
            expand("t", "$(POD_NAME) $x", env).unwrap(),
            "$(POD_NAME) $x"
        );
        let unset = expand("pod=${NOPE}", "${NOPE}", env)
            .unwrap_err()
            .to_string();
        assert!(unset.contains("NOPE is not set"), "{unset}");
        assert!(expand("t", "${POD_NAME", env).is_err());
    }
}
