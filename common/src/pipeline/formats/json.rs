//! One JSON object per line (`--from json`): the object's members become
//! fields in the order they are written; nested values pass through
//! unchanged. Anything but an object (an array, a string, invalid JSON) is a
//! parse error, and so is what a strict parser downstream would refuse or
//! read differently: a duplicate key (at any depth), a lone surrogate escape
//! (`"\ud800"`), a number out of range (`1e999`). The same rules hold in
//! every mode: the `--to json` pass-through ([`is_object`]), the full parse
//! ([`parse`], with `--add` and friends) and `--from auto`.

use std::borrow::Cow;
use std::fmt;

use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

use super::ParseError;
use crate::pipeline::record::{Record, Value};

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
                let Strict(value) = Strict::deserialize(MapAccessDeserializer::new(map))?;
                Ok(Member(Value::Json(value)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Member<'de>, A::Error> {
                let Strict(value) = Strict::deserialize(SeqAccessDeserializer::new(seq))?;
                Ok(Member(Value::Json(value)))
            }
        }
        deserializer.deserialize_any(MemberVisitor)
    }
}

/// A nested value as a `serde_json::Value`, refusing duplicate keys (which
/// `serde_json::Value` would silently resolve to the last).
struct Strict(serde_json::Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct StrictVisitor;
        impl<'de> Visitor<'de> for StrictVisitor {
            type Value = Strict;
            fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
                formatter.write_str("a JSON value")
            }
            fn visit_str<E>(self, text: &str) -> Result<Strict, E> {
                Ok(Strict(text.into()))
            }
            fn visit_string<E>(self, text: String) -> Result<Strict, E> {
                Ok(Strict(text.into()))
            }
            fn visit_bool<E>(self, flag: bool) -> Result<Strict, E> {
                Ok(Strict(flag.into()))
            }
            fn visit_i64<E>(self, number: i64) -> Result<Strict, E> {
                Ok(Strict(number.into()))
            }
            fn visit_u64<E>(self, number: u64) -> Result<Strict, E> {
                Ok(Strict(number.into()))
            }
            fn visit_f64<E>(self, number: f64) -> Result<Strict, E> {
                Ok(Strict(number.into()))
            }
            fn visit_unit<E>(self) -> Result<Strict, E> {
                Ok(Strict(serde_json::Value::Null))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Strict, A::Error> {
                let mut object = serde_json::Map::new();
                while let Some(Text(key)) = map.next_key()? {
                    if object.contains_key(key.as_ref()) {
                        return Err(duplicate::<A::Error>(&key));
                    }
                    let Strict(value) = map.next_value()?;
                    object.insert(key.into_owned(), value);
                }
                Ok(Strict(object.into()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Strict, A::Error> {
                let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(4));
                while let Some(Strict(item)) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Strict(items.into()))
            }
        }
        deserializer.deserialize_any(StrictVisitor)
    }
}

fn duplicate<E: serde::de::Error>(key: &str) -> E {
    E::custom(format_args!("duplicate key {key:?}"))
}

/// Whether `keys` (an object's keys, in order) has one twice.
fn has_duplicate(keys: &mut [Cow<'_, str>]) -> Option<String> {
    if keys.len() < 2 {
        return None;
    }
    keys.sort_unstable();
    keys.windows(2)
        .find(|pair| pair[0] == pair[1])
        .map(|pair| pair[0].clone().into_owned())
}

/// Any JSON value, checked as strictly as [`parse`] checks it (strings
/// decoded, so a lone surrogate is an error; numbers in range; keys unique)
/// without building it: the `--to json` pass-through's validation.
struct Checked;

impl<'de> Deserialize<'de> for Checked {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct CheckVisitor;
        impl<'de> Visitor<'de> for CheckVisitor {
            type Value = Checked;
            fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
                formatter.write_str("a JSON value")
            }
            fn visit_str<E>(self, _: &str) -> Result<Checked, E> {
                Ok(Checked)
            }
            fn visit_bool<E>(self, _: bool) -> Result<Checked, E> {
                Ok(Checked)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Checked, E> {
                Ok(Checked)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Checked, E> {
                Ok(Checked)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Checked, E> {
                Ok(Checked)
            }
            fn visit_unit<E>(self) -> Result<Checked, E> {
                Ok(Checked)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Checked, A::Error> {
                let mut keys = Vec::new();
                while let Some(Text(key)) = map.next_key()? {
                    map.next_value::<Checked>()?;
                    keys.push(key);
                }
                match has_duplicate(&mut keys) {
                    Some(key) => Err(duplicate::<A::Error>(&key)),
                    None => Ok(Checked),
                }
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Checked, A::Error> {
                while seq.next_element::<Checked>()?.is_some() {}
                Ok(Checked)
            }
        }
        deserializer.deserialize_any(CheckVisitor)
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
                let mut keys: Vec<Cow<'_, str>> = members
                    .iter()
                    .map(|(key, _)| Cow::Borrowed(key.as_ref()))
                    .collect();
                if let Some(key) = has_duplicate(&mut keys) {
                    return Err(duplicate::<A::Error>(&key));
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

/// Whether `line` is one JSON object that [`parse`] accepts, checked
/// without building it.
pub fn is_object(line: &str) -> bool {
    let trimmed = line.trim_start();
    trimmed.starts_with('{') && serde_json::from_str::<Checked>(trimmed).is_ok()
}

#[cfg(test)]
mod tests {
    use super::is_object;
    use crate::pipeline::formats::FormatName::Json;
    use crate::pipeline::formats::tests::parse_json;

    #[test]
    fn json_objects_keep_member_order_and_nested_values() {
        let cases = [
            (
                r#"{"ts":"2026-11-25T14:01:13Z","level":"info","n":-3,"f":1.5,"ok":true,"nested":{"b":1,"a":[1,"x",null]},"nothing":null}"#,
                r#"{"ts":"2026-11-25T14:01:13Z","level":"info","n":-3,"f":1.5,"ok":true,"nested":{"a":[1,"x",null],"b":1},"nothing":null}"#,
            ),
            (
                r#"  { "a" : "\u00e9\n" , "b": 2 }  "#,
                r#"{"a":"é\n","b":2}"#,
            ),
            (
                r#"{"a":"\ud83d\ude00","n":1e308}"#,
                r#"{"a":"😀","n":1e+308}"#,
            ),
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

    #[test]
    fn what_a_strict_parser_refuses_is_an_error_in_every_mode() {
        // Regression: the pass-through copied these, the full parse refused
        // the first two and resolved the duplicate to its last value.
        for (line, why) in [
            (r#"{"a":"\ud800"}"#, "hex escape"),
            (r#"{"a":"x\udc00y"}"#, "surrogate"),
            (r#"{"a":1e999}"#, "number out of range"),
            (r#"{"a":-1e999}"#, "number out of range"),
            (r#"{"a":1,"a":2}"#, "duplicate key \"a\""),
            (r#"{"n":{"b":1,"b":2}}"#, "duplicate key \"b\""),
            (r#"{"n":[{"c":1,"c":1}]}"#, "duplicate key \"c\""),
            (r#"{"n":["\ud800"]}"#, "hex escape"),
        ] {
            assert!(!is_object(line), "pass-through accepted {line}");
            let error = parse_json(Json, line).unwrap_err();
            assert!(error.contains(why), "{line}: {error}");
            assert!(
                parse_json(crate::pipeline::formats::FormatName::Auto, line).is_err(),
                "{line}"
            );
        }
    }
}
