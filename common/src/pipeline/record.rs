//! One parsed log record: an ordered list of fields.
//!
//! Fields keep the order the parser produced them in (the order they appear
//! in the line, documented per format in `docs/adapter.md`), which is the
//! order every output writes them in. Values borrow from the input line where
//! they can, so a parse allocates only for what it has to rewrite
//! (timestamps, unescaped strings).

use std::borrow::Cow;

/// A field's value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value<'a> {
    Str(Cow<'a, str>),
    Int(i64),
    Bool(bool),
    /// A flat object of strings (RFC 5424 structured data elements).
    Map(Vec<(Cow<'a, str>, Cow<'a, str>)>),
    /// Any JSON value (fields of `--from json` input).
    Json(serde_json::Value),
}

impl<'a> From<&'a str> for Value<'a> {
    fn from(text: &'a str) -> Self {
        Value::Str(Cow::Borrowed(text))
    }
}

impl From<String> for Value<'_> {
    fn from(text: String) -> Self {
        Value::Str(Cow::Owned(text))
    }
}

/// An ordered set of fields; a key appears at most once.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Record<'a> {
    pub fields: Vec<(Cow<'a, str>, Value<'a>)>,
}

impl<'a> Record<'a> {
    pub fn clear(&mut self) {
        self.fields.clear();
    }

    /// Appends a field the parser knows to be new (no duplicate check).
    pub fn push(&mut self, key: &'static str, value: impl Into<Value<'a>>) {
        self.fields.push((Cow::Borrowed(key), value.into()));
    }

    /// Sets `key`, replacing its value in place when present (keeps order),
    /// appending otherwise.
    pub fn set(&mut self, key: Cow<'a, str>, value: Value<'a>) {
        match self
            .fields
            .iter_mut()
            .find(|(existing, _)| *existing == key)
        {
            Some(slot) => slot.1 = value,
            None => self.fields.push((key, value)),
        }
    }

    pub fn get(&self, key: &str) -> Option<&Value<'a>> {
        self.fields
            .iter()
            .find(|(existing, _)| existing == key)
            .map(|(_, value)| value)
    }

    pub fn remove(&mut self, key: &str) {
        self.fields.retain(|(existing, _)| existing != key);
    }

    /// Renames `from` to `to` in place; an existing `to` is replaced.
    pub fn rename(&mut self, from: &str, to: &str) {
        if from == to || self.get(from).is_none() {
            return;
        }
        self.fields.retain(|(existing, _)| existing != to);
        if let Some(slot) = self.fields.iter_mut().find(|(key, _)| key == from) {
            slot.0 = Cow::Owned(to.to_owned());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rename_keeps_position_and_replaces_a_clashing_key() {
        let mut record = Record::default();
        record.push("a", "1");
        record.push("b", "2");
        record.push("c", "3");
        record.rename("a", "c");
        let keys: Vec<_> = record.fields.iter().map(|(key, _)| key.as_ref()).collect();
        assert_eq!(keys, ["c", "b"]);
        assert_eq!(record.get("c"), Some(&Value::from("1")));
    }

    #[test]
    fn set_replaces_in_place() {
        let mut record = Record::default();
        record.push("a", "1");
        record.push("b", "2");
        record.set("a".into(), Value::Int(5));
        record.set("z".into(), Value::Bool(true));
        assert_eq!(
            record.fields,
            vec![
                ("a".into(), Value::Int(5)),
                ("b".into(), Value::from("2")),
                ("z".into(), Value::Bool(true)),
            ]
        );
    }
}
