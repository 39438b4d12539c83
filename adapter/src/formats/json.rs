//! One JSON object per line (`--from json`): the object's members become
//! fields in the order they are written (a later duplicate key replaces the
//! earlier value in place); nested values pass through unchanged. Anything
//! but an object (an array, a string, invalid JSON) is a parse error.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, Visitor};

use super::ParseError;
use crate::record::{Record, Value};

/// An object's members in document order.
struct Members(Vec<(String, serde_json::Value)>);

impl<'de> Deserialize<'de> for Members {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MembersVisitor;
        impl<'de> Visitor<'de> for MembersVisitor {
            type Value = Members;
            fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
                formatter.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members, A::Error> {
                let mut members = Vec::with_capacity(map.size_hint().unwrap_or(8));
                while let Some((key, value)) = map.next_entry::<String, serde_json::Value>()? {
                    members.push((key, value));
                }
                Ok(Members(members))
            }
        }
        deserializer.deserialize_map(MembersVisitor)
    }
}

pub fn parse<'a>(line: &'a str, record: &mut Record<'a>) -> Result<(), ParseError> {
    let trimmed = line.trim_start();
    if !trimmed.starts_with('{') {
        return Err(Cow::Borrowed("not a JSON object"));
    }
    let Members(members) = serde_json::from_str(trimmed)
        .map_err(|error| Cow::Owned(format!("invalid JSON: {error}")))?;
    for (key, value) in members {
        let value = match value {
            serde_json::Value::String(text) => Value::Str(Cow::Owned(text)),
            serde_json::Value::Bool(flag) => Value::Bool(flag),
            serde_json::Value::Number(number) if number.is_i64() => {
                Value::Int(number.as_i64().unwrap_or_default())
            }
            other => Value::Json(other),
        };
        record.set(Cow::Owned(key), value);
    }
    Ok(())
}

/// Whether `line` is one valid JSON object, checked without building it.
pub fn is_object(line: &str) -> bool {
    let trimmed = line.trim_start();
    trimmed.starts_with('{') && serde_json::from_str::<IgnoredAny>(trimmed).is_ok()
}

#[cfg(test)]
mod tests {
    use super::is_object;
    use crate::formats::FormatName::Json;
    use crate::formats::tests::parse_json;

    #[test]
    fn json_objects_keep_member_order_and_nested_values() {
        let cases = [
            (
                r#"{"ts":"2026-11-25T14:01:13Z","level":"info","n":-3,"f":1.5,"ok":true,"nested":{"b":1,"a":[1,"x",null]},"nothing":null}"#,
                r#"{"ts":"2026-11-25T14:01:13Z","level":"info","n":-3,"f":1.5,"ok":true,"nested":{"a":[1,"x",null],"b":1},"nothing":null}"#,
            ),
            (r#"  { "a" : "\u00e9\n" , "a": 2 }  "#, r#"{"a":2}"#),
            ("{}", "{}"),
        ];
        for (line, expected) in cases {
            assert_eq!(parse_json(Json, line).as_deref(), Ok(expected), "{line}");
        }
    }

    #[test]
    fn non_objects_are_errors() {
        for line in [
            "[1,2]",
            "\"text\"",
            "42",
            "",
            "{\"a\":",
            "{} trailing",
            "not json",
        ] {
            assert!(parse_json(Json, line).is_err(), "{line}");
            assert!(!is_object(line), "{line}");
        }
        assert!(is_object(r#" {"a":{"b":[]}} "#));
    }
}
