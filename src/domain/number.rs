//! Integers in JSON bodies. To JSON (and to JSON Schema's `integer`) `3` and `3.0` are the
//! same number, so integer fields take both; `3.5` and numbers out of the field's range are
//! refused, with the range named.
//!
//! `#[serde(deserialize_with = "whole")]` on an integer field,
//! `#[serde(default, deserialize_with = "whole_or_null")]` on an `Option` of one.

use std::{fmt, marker::PhantomData};

use serde::{Deserializer, de};

/// An integer of type `T`, written with or without a zero fraction.
pub fn whole<'de, T, D>(deserializer: D) -> Result<T, D::Error>
where
    T: TryFrom<i64> + Bounded,
    D: Deserializer<'de>,
{
    deserializer.deserialize_any(Whole(PhantomData))
}

/// Like [`whole`], with `null` for none.
pub fn whole_or_null<'de, T, D>(deserializer: D) -> Result<Option<T>, D::Error>
where
    T: TryFrom<i64> + Bounded,
    D: Deserializer<'de>,
{
    struct OrNull<T>(PhantomData<T>);
    impl<'de, T: TryFrom<i64> + Bounded> de::Visitor<'de> for OrNull<T> {
        type Value = Option<T>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            write!(f, "an integer from {} to {}, or null", T::MIN, T::MAX)
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            whole(d).map(Some)
        }
    }
    deserializer.deserialize_option(OrNull(PhantomData))
}

/// The range of an integer type, for messages.
pub trait Bounded {
    const MIN: i64;
    const MAX: i64;
}

impl Bounded for i32 {
    const MIN: i64 = i32::MIN as i64;
    const MAX: i64 = i32::MAX as i64;
}

impl Bounded for u16 {
    const MIN: i64 = u16::MIN as i64;
    const MAX: i64 = u16::MAX as i64;
}

impl Bounded for i64 {
    const MIN: i64 = i64::MIN;
    const MAX: i64 = i64::MAX;
}

struct Whole<T>(PhantomData<T>);

impl<T: TryFrom<i64> + Bounded> Whole<T> {
    fn fit<E: de::Error>(&self, v: i64) -> Result<T, E> {
        T::try_from(v).map_err(|_| E::custom(self.out_of_range(v)))
    }
    fn out_of_range(&self, v: impl fmt::Display) -> String {
        format!("{v} is not an integer from {} to {}", T::MIN, T::MAX)
    }
}

impl<'de, T: TryFrom<i64> + Bounded> de::Visitor<'de> for Whole<T> {
    type Value = T;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "an integer from {} to {}", T::MIN, T::MAX)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        self.fit(v)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        let v = i64::try_from(v).map_err(|_| E::custom(self.out_of_range(v)))?;
        self.fit(v)
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<T, E> {
        // i64::MAX as f64 rounds up to 2^63, which does not fit: hence the strict bound
        if v.fract() != 0.0 || !(-(2f64.powi(63))..2f64.powi(63)).contains(&v) {
            return Err(E::custom(self.out_of_range(v)));
        }
        self.fit(v as i64)
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    struct T {
        #[serde(deserialize_with = "whole")]
        a: i32,
        #[serde(default, deserialize_with = "whole_or_null")]
        b: Option<i32>,
    }

    fn parse(json: &str) -> Result<T, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn integers_take_a_zero_fraction_and_nothing_else() {
        let t = parse(r#"{"a": 3, "b": -4.0}"#).unwrap();
        assert_eq!((t.a, t.b), (3, Some(-4)));
        assert_eq!(parse(r#"{"a": 2147483647.0}"#).unwrap().a, i32::MAX);
        assert_eq!(parse(r#"{"a": 1, "b": null}"#).unwrap().b, None);
        assert_eq!(parse(r#"{"a": 1}"#).unwrap().b, None);
        for bad in [
            r#"{"a": 3.5}"#,
            r#"{"a": 2147483648}"#,
            r#"{"a": 1e300}"#,
            r#"{"a": "3"}"#,
            r#"{"a": null}"#,
            r#"{"a": 1, "b": 0.5}"#,
        ] {
            let e = parse(bad).unwrap_err().to_string();
            assert!(e.contains("integer"), "{bad}: {e}");
        }
    }
}
