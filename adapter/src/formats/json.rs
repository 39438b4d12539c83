//! One JSON object per line (`--from json`): the object's members become
//! fields in the order they are written (a later duplicate key replaces the
//! earlier value in place); nested values pass through unchanged. Anything
//! but an object (an array, a string, invalid JSON) is a parse error.

use std::borrow::Cow;
use std::fmt;

use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::ParseError;
use crate::record::{Record, Value};

/// A key or string value borrowed from the line when it has no escapes.
struct Text<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text<'de>;
            fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
                formatter.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, text: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(text)))
            }
            fn visit_str<E>(self, text: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(text.to_owned())))
            }
            fn visit_string<E>(self, text: String) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(text)))
            }
        }
        deserializer.deserialize_str(TextVisitor)
    }
}

/// A member's value: strings borrowed, integers and booleans as such,
/// anything else (floats, null, arrays, objects) as a `serde_json::Value`.
struct Member<'a>(Value<'a>);

impl<'de> Deserialize<'de> for Member<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MemberVisitor;
        impl<'de> Visitor<'de> for MemberVisitor {
            type Value = Member<'de>;
            fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
                formatter.write_str("a JSON value")
            }
            fn visit_borrowed_str<E>(self, text: &'de str) -> Result<Member<'de>, E> {
                Ok(Member(Value::Str(Cow::Borrowed(text))))
            }
            fn visit_str<E>(self, text: &str) -> Result<Member<'de>, E> {
                Ok(Member(Value::Str(Cow::Owned(text.to_owned()))))
            }
            fn visit_string<E>(self, text: String) -> Result<Member<'de>, E> {
                Ok(Member(Value::Str(Cow::Owned(text))))
            }
            fn visit_bool<E>(self, flag: bool) -> Result<Member<'de>, E> {
                Ok(Member(Value::Bool(flag)))
            }
            fn visit_i64<E>(self, number: i64) -> Result<Member<'de>, E> {
                Ok(Member(Value::Int(number)))
            }
            fn visit_u64<E>(self, number: u64) -> Result<Member<'de>, E> {
                Ok(Member(match i64::try_from(number) {
                    Ok(number) => Value::Int(number),
                    Err(_) => Value::Json(number.into()),
                }))
            }
            fn visit_f64<E>(self, number: f64) -> Result<Member<'de>, E> {
                Ok(Member(Value::Json(number.into())))
            }
            fn visit_unit<E>(self) -> Result<Member<'de>, E> {
                Ok(Member(Value::Json(serde_json::Value::Null)))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Member<'de>, A::Error> {
                let value = serde_json::Value::deserialize(MapAccessDeserializer::new(map))?;
                Ok(Member(Value::Json(value)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Member<'de>, A::Error> {
                let value = serde_json::Value::deserialize(SeqAccessDeserializer::new(seq))?;
                Ok(Member(Value::Json(value)))
            }
        }
        deserializer.deserialize_any(MemberVisitor)
    }
}

/// An object's members in document order.
struct Members<'a>(Vec<(Cow<'a, str>, Value<'a>)>);

impl<'de> Deserialize<'de> for Members<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MembersVisitor;
        impl<'de> Visitor<'de> for MembersVisitor {
            type Value = Members<'de>;
            fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
                formatter.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members<'de>, A::Error> {
                let mut members = Vec::with_capacity(map.size_hint().unwrap_or(12));
                while let Some((Text(key), Member(value))) = map.next_entry()? {
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
        record.set(key, value);
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
