//! Readers for the loosely typed JSON that ServiceNow and Jenkins answer with. The answer types
//! are `#[derive(Deserialize)]` structs whose fields use these, so that a field of an unexpected
//! type reads as "not there" (as a lookup in a `serde_json::Value` would) instead of failing the
//! whole answer, and a struct is only ever read from a JSON object, never from an array.
use std::fmt;
use std::marker::PhantomData;

use serde::de::value::MapAccessDeserializer;
use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Number;

/// One JSON value as the clients read it: only strings, numbers and booleans carry anything.
#[derive(Clone, Debug, PartialEq)]
pub enum Scalar {
    Null,
    Str(String),
    Num(Number),
    Bool(bool),
    /// An array or an object.
    Compound,
}

impl Scalar {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Scalar::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Scalar::Bool(b) => Some(*b),
            _ => None,
        }
    }

    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Scalar::Num(n) => n.as_u64(),
            _ => None,
        }
    }

    /// A non-empty string, or a number as written.
    pub fn text(&self) -> Option<String> {
        match self {
            Scalar::Str(s) if !s.is_empty() => Some(s.clone()),
            Scalar::Num(n) => Some(n.to_string()),
            _ => None,
        }
    }
}

/// [`Scalar::text`] of a field that may be missing.
pub fn text(field: &Option<Scalar>) -> Option<String> {
    field.as_ref().and_then(Scalar::text)
}

/// [`Scalar::as_str`] of a field that may be missing.
pub fn str_of(field: &Option<Scalar>) -> Option<&str> {
    field.as_ref().and_then(Scalar::as_str)
}

/// A JSON object read as `T`, or any other JSON value as a [`Scalar`].
#[derive(Clone, Debug, PartialEq)]
pub enum Json<T> {
    Object(T),
    Other(Scalar),
}

impl<T: Default> Json<T> {
    /// The object, or what a lookup in a non-object finds: nothing, as in `T::default()`.
    pub fn into_object(self) -> T {
        match self {
            Json::Object(t) => t,
            Json::Other(_) => T::default(),
        }
    }
}

impl<T> Json<T> {
    pub fn object(&self) -> Option<&T> {
        match self {
            Json::Object(t) => Some(t),
            Json::Other(_) => None,
        }
    }
}

/// A field that counts as present even when it is `null` (`{"error": null}` has an `error`);
/// use with `#[serde(default, deserialize_with = "present")]`.
pub fn present<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

struct JsonVisitor<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for JsonVisitor<T> {
    type Value = Json<T>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Json<T>, A::Error> {
        T::deserialize(MapAccessDeserializer::new(map)).map(Json::Object)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json<T>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Json::Other(Scalar::Compound))
    }

    fn visit_str<E>(self, v: &str) -> Result<Json<T>, E> {
        Ok(Json::Other(Scalar::Str(v.to_string())))
    }

    fn visit_string<E>(self, v: String) -> Result<Json<T>, E> {
        Ok(Json::Other(Scalar::Str(v)))
    }

    fn visit_bool<E>(self, v: bool) -> Result<Json<T>, E> {
        Ok(Json::Other(Scalar::Bool(v)))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Json<T>, E> {
        Ok(Json::Other(Scalar::Num(v.into())))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Json<T>, E> {
        Ok(Json::Other(Scalar::Num(v.into())))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Json<T>, E> {
        Ok(Json::Other(
            Number::from_f64(v).map_or(Scalar::Null, Scalar::Num),
        ))
    }

    fn visit_unit<E>(self) -> Result<Json<T>, E> {
        Ok(Json::Other(Scalar::Null))
    }

    fn visit_none<E>(self) -> Result<Json<T>, E> {
        Ok(Json::Other(Scalar::Null))
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Json<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(JsonVisitor(PhantomData))
    }
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match Json::<IgnoredAny>::deserialize(d)? {
            Json::Object(_) => Scalar::Compound,
            Json::Other(s) => s,
        })
    }
}

/// A JSON array read as a list of `T`; any other value reads as `None`.
#[derive(Clone, Debug, PartialEq)]
pub struct List<T>(pub Option<Vec<T>>);

impl<T> Default for List<T> {
    fn default() -> Self {
        List(None)
    }
}

struct ListVisitor<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for ListVisitor<T> {
    type Value = List<T>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<List<T>, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<T>()? {
            items.push(item);
        }
        Ok(List(Some(items)))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<List<T>, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(List(None))
    }

    fn visit_str<E>(self, _: &str) -> Result<List<T>, E> {
        Ok(List(None))
    }

    fn visit_bool<E>(self, _: bool) -> Result<List<T>, E> {
        Ok(List(None))
    }

    fn visit_u64<E>(self, _: u64) -> Result<List<T>, E> {
        Ok(List(None))
    }

    fn visit_i64<E>(self, _: i64) -> Result<List<T>, E> {
        Ok(List(None))
    }

    fn visit_f64<E>(self, _: f64) -> Result<List<T>, E> {
        Ok(List(None))
    }

    fn visit_unit<E>(self) -> Result<List<T>, E> {
        Ok(List(None))
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for List<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ListVisitor(PhantomData))
    }
}

/// Read an answer's body: a JSON object as `T`, any other JSON value as an empty `T`.
pub fn parse<T: serde::de::DeserializeOwned + Default>(
    bytes: &[u8],
) -> Result<T, serde_json::Error> {
    serde_json::from_slice::<Json<T>>(bytes).map(Json::into_object)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[derive(Debug, Default, serde::Deserialize)]
    struct Probe {
        a: Option<Scalar>,
        #[serde(default, deserialize_with = "present")]
        b: Option<Scalar>,
        c: Option<List<Scalar>>,
    }

    #[test]
    fn fields_of_any_type_read_without_failing() {
        let p: Probe = serde_json::from_value(json!({"a": [1], "b": null, "c": "x"})).unwrap();
        assert_eq!(p.a, Some(Scalar::Compound));
        assert_eq!(p.b, Some(Scalar::Null));
        assert_eq!(p.c, Some(List(None)));
        let p: Json<Probe> = serde_json::from_value(json!(["a", "b"])).unwrap();
        assert!(p.object().is_none());
        let p: Probe = serde_json::from_value(json!({"a": 1.5, "c": [true]})).unwrap();
        assert_eq!(text(&p.a).as_deref(), Some("1.5"));
        assert_eq!(p.b, None);
        assert_eq!(p.c.unwrap().0, Some(vec![Scalar::Bool(true)]));
    }
}
