//! Deserializers for the compose spec's scalar and list-or-map shapes. They are streaming
//! visitors (no buffering through `untagged`), so every error keeps the exact line and column
//! the YAML reader reports.

use std::{collections::BTreeMap, fmt, marker::PhantomData};

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

use super::interpolate::interpolate;

/// A scalar read as text (strings, numbers and booleans alike), interpolated.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Text(pub String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Text;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or number")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Text, E> {
                interpolate(v).map(Text).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// A value that may be null.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NullableText(pub Option<String>);

impl<'de> Deserialize<'de> for NullableText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Option::<Text>::deserialize(d).map(|o| NullableText(o.map(|t| t.0)))
    }
}

/// One string or a list of strings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OneOrMany(pub Vec<String>);

impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = OneOrMany;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or a list of strings")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<OneOrMany, E> {
                Ok(OneOrMany(vec![interpolate(v).map_err(E::custom)?]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<OneOrMany, A::Error> {
                let mut out = Vec::new();
                while let Some(Text(t)) = seq.next_element()? {
                    out.push(t);
                }
                Ok(OneOrMany(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// A command: shell form (one string) or exec form (a list); null means unset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommandLine {
    /// `command: npm start`.
    Shell(String),
    /// `command: ["npm", "start"]`.
    Exec(Vec<String>),
}

impl<'de> Deserialize<'de> for CommandLine {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = CommandLine;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a command string or a list of arguments")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<CommandLine, E> {
                Ok(CommandLine::Shell(interpolate(v).map_err(E::custom)?))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<CommandLine, A::Error> {
                let mut out = Vec::new();
                while let Some(Text(t)) = seq.next_element()? {
                    out.push(t);
                }
                Ok(CommandLine::Exec(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// `KEY=VALUE` list or `KEY: VALUE` map (environment, labels, build args); a list entry
/// without `=` or a null map value is a key with no value.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListOrMap(pub BTreeMap<String, Option<String>>);

impl<'de> Deserialize<'de> for ListOrMap {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ListOrMap;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of KEY=VALUE strings or a map")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ListOrMap, A::Error> {
                let mut out = BTreeMap::new();
                while let Some(Text(entry)) = seq.next_element()? {
                    let (k, v) = match entry.split_once('=') {
                        Some((k, v)) => (k.to_owned(), Some(v.to_owned())),
                        None => (entry, None),
                    };
                    if k.is_empty() {
                        return Err(de::Error::custom("an entry has an empty name"));
                    }
                    out.insert(k, v);
                }
                Ok(ListOrMap(out))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ListOrMap, A::Error> {
                let mut out = BTreeMap::new();
                while let Some(key) = map.next_key::<String>()? {
                    let NullableText(v) = map.next_value()?;
                    out.insert(key, v);
                }
                Ok(ListOrMap(out))
            }
            fn visit_unit<E: de::Error>(self) -> Result<ListOrMap, E> {
                Ok(ListOrMap::default())
            }
        }
        d.deserialize_any(V)
    }
}

/// A list of names or a map from name to settings (depends_on, networks).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamesOrMap<T>(pub BTreeMap<String, T>);

impl<T> Default for NamesOrMap<T> {
    fn default() -> Self {
        Self(BTreeMap::new())
    }
}

impl<'de, T: Deserialize<'de> + Default> Deserialize<'de> for NamesOrMap<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de> + Default> Visitor<'de> for V<T> {
            type Value = NamesOrMap<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of names or a map")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = BTreeMap::new();
                while let Some(Text(name)) = seq.next_element()? {
                    out.insert(name, T::default());
                }
                Ok(NamesOrMap(out))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = BTreeMap::new();
                while let Some(key) = map.next_key::<String>()? {
                    let value: Option<T> = map.next_value()?;
                    out.insert(key, value.unwrap_or_default());
                }
                Ok(NamesOrMap(out))
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}

/// Either the short (string or number) or the long (map) syntax of an entry.
pub(crate) trait ShortOrLong: Sized {
    /// What the entry is, for error messages.
    const WHAT: &'static str;
    /// The long syntax.
    type Long: for<'de> Deserialize<'de>;
    /// Parses the short syntax.
    fn short(text: &str) -> Result<Vec<Self>, String>;
    /// Converts the long syntax.
    fn long(long: Self::Long) -> Result<Vec<Self>, String>;
}

/// A list of [`ShortOrLong`] entries; short entries may expand to several (port ranges).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Entries<T>(pub Vec<T>);

impl<T> Default for Entries<T> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

/// One entry of a list in short or long syntax.
pub(crate) struct Entry<T>(pub Vec<T>);

impl<'de, T: ShortOrLong> Deserialize<'de> for Entry<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: ShortOrLong> Visitor<'de> for V<T> {
            type Value = Entry<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                write!(f, "a {} in short (string) or long (map) syntax", T::WHAT)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Entry<T>, E> {
                let v = interpolate(v).map_err(E::custom)?;
                T::short(&v).map(Entry).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Entry<T>, E> {
                T::short(&v.to_string()).map(Entry).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Entry<T>, E> {
                T::short(&v.to_string()).map(Entry).map_err(E::custom)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Entry<T>, A::Error> {
                let long = T::Long::deserialize(de::value::MapAccessDeserializer::new(map))?;
                T::long(long).map(Entry).map_err(de::Error::custom)
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}

impl<'de, T: ShortOrLong> Deserialize<'de> for Entries<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let list: Option<Vec<Entry<T>>> = Option::deserialize(d)?;
        Ok(Entries(list.unwrap_or_default().into_iter().flat_map(|e| e.0).collect()))
    }
}

/// Fails with a message when deserialized, so the error carries the position of the value it
/// stands for (a key's own position is not available to a map visitor).
pub(crate) struct Reject(pub String);

impl<'de> de::DeserializeSeed<'de> for Reject {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

// Failing inside the visitor (not after it) lets the YAML reader attach the value's position.
impl<'de> Visitor<'de> for Reject {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(&self.0)
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Err(E::custom(self.0))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Err(E::custom(self.0))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Err(E::custom(self.0))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Err(E::custom(self.0))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Err(E::custom(self.0))
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Err(E::custom(self.0))
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Err(E::custom(self.0))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(de::Error::custom(self.0))
    }
    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(de::Error::custom(self.0))
    }
}

/// A whole number written as a number or a string.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Count(pub u32);

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Count;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a whole number")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Count, E> {
                u32::try_from(v).map(Count).map_err(|_| E::custom(format!("`{v}` is too large")))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Count, E> {
                u32::try_from(v).map(Count).map_err(|_| E::custom(format!("`{v}` is not a whole number")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Count, E> {
                let v = interpolate(v).map_err(E::custom)?;
                v.trim().parse().map(Count).map_err(|_| E::custom(format!("`{v}` is not a whole number")))
            }
        }
        d.deserialize_any(V)
    }
}

/// A compose duration (`30s`, `1m30s`, `500ms`, `2h`), in whole seconds rounded up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seconds(pub u64);

/// Parses a compose duration into seconds, rounded up.
pub fn parse_seconds(s: &str) -> Option<u64> {
    let mut total: f64 = 0.0;
    let mut num = String::new();
    let mut chars = s.trim().chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let n: f64 = num.parse().ok()?;
        num.clear();
        total += match c {
            'h' => n * 3600.0,
            'm' if chars.peek() == Some(&'s') => {
                chars.next();
                n / 1000.0
            }
            'm' => n * 60.0,
            's' => n,
            'u' | 'µ' | 'n' if chars.peek() == Some(&'s') => {
                chars.next();
                0.0
            }
            _ => return None,
        };
    }
    if !num.is_empty() || total.is_nan() || total > 1e12 {
        return None;
    }
    Some(total.ceil() as u64)
}

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Seconds;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration like 30s or 1m30s")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Seconds, E> {
                let v = interpolate(v).map_err(E::custom)?;
                parse_seconds(&v)
                    .map(Seconds)
                    .ok_or_else(|| E::custom(format!("`{v}` is not a duration like 30s or 1m30s")))
            }
        }
        d.deserialize_any(V)
    }
}

/// Whether a setting is on: `false` and null are off, anything else (`true`, a value, a map) is
/// on. The value itself is read and dropped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Switch(pub bool);

impl<'de> Deserialize<'de> for Switch {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Switch;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any value")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Switch, E> {
                Ok(Switch(v))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Switch, E> {
                Ok(Switch(false))
            }
            fn visit_none<E: de::Error>(self) -> Result<Switch, E> {
                Ok(Switch(false))
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Switch, D::Error> {
                Switch::deserialize(d)
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Switch, E> {
                Ok(Switch(true))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Switch, E> {
                Ok(Switch(true))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Switch, E> {
                Ok(Switch(true))
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Switch, E> {
                Ok(Switch(true))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Switch, A::Error> {
                while seq.next_element::<de::IgnoredAny>()?.is_some() {}
                Ok(Switch(true))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Switch, A::Error> {
                while map.next_entry::<de::IgnoredAny, de::IgnoredAny>()?.is_some() {}
                Ok(Switch(true))
            }
        }
        d.deserialize_any(V)
    }
}
