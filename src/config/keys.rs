//! Every key path the configuration file accepts, read off the serde schema itself (the `Raw*`
//! structs here and in `crate::pool::config`), so the configuration reference in
//! `docs/src/reference/configuration.md` can be checked against it (`tests/docs.rs`).
//!
//! A tiny [`serde::Deserializer`] walks the schema without any input: a struct hands it its
//! field names, an `Option`/list/newtype is stepped into, and a table keyed by a user-chosen
//! name (`[providers.NAME]`) is walked with the placeholder `NAME`. A list of tables is written
//! `routes[]`. A key is listed when its value is not a table of fixed keys.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor};

use super::raw::{RawHeaders, RawLog, RawProvider, RawRoute, RawServer, RawSession};

/// The top level of the file. `validate` reads these keys one by one; the unit test below
/// checks this list against the keys `validate` accepts.
#[derive(Deserialize)]
#[allow(dead_code)]
struct RawTop {
    public_url: Option<String>,
    data_dir: Option<String>,
    allowed_redirect_origins: Option<Vec<String>>,
    server: Option<RawServer>,
    session: Option<RawSession>,
    headers: Option<RawHeaders>,
    providers: Option<BTreeMap<String, RawProvider>>,
    routes: Option<Vec<RawRoute>>,
    target_groups: Option<BTreeMap<String, super::target_groups::RawTargetGroup>>,
    tracing: Option<super::tracing::RawTracing>,
    log: Option<RawLog>,
    pool: Option<crate::pool::config::raw::RawPool>,
}

/// Every key path of the configuration file, sorted: `server.listen`, `providers.NAME.issuer`,
/// `routes[].path`, `pool.clients[].client_id`, …
/// An error names the key path of a type the walker cannot read.
#[doc(hidden)]
pub fn key_paths() -> Result<Vec<String>, String> {
    let mut keys = BTreeSet::new();
    let walker = Walker {
        at: String::new(),
        keys: &mut keys,
    };
    RawTop::deserialize(walker).map_err(|e| e.to_string())?;
    Ok(keys.into_iter().collect())
}

#[derive(Debug)]
struct WalkError(String);

impl std::fmt::Display for WalkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for WalkError {}

impl de::Error for WalkError {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        WalkError(msg.to_string())
    }
}

/// Walks the value at key path `at`.
struct Walker<'k> {
    at: String,
    keys: &'k mut BTreeSet<String>,
}

impl Walker<'_> {
    fn child(&mut self, at: String) -> Walker<'_> {
        Walker {
            at,
            keys: self.keys,
        }
    }
}

macro_rules! leaf {
    ($($method:ident => $visit:ident($($value:expr)?)),* $(,)?) => {
        $(fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, WalkError> {
            visitor.$visit($($value)?)
        })*
    };
}

impl<'de> de::Deserializer<'de> for Walker<'_> {
    type Error = WalkError;

    leaf! {
        deserialize_any => visit_str(""),
        deserialize_bool => visit_bool(false),
        deserialize_i8 => visit_i64(0),
        deserialize_i16 => visit_i64(0),
        deserialize_i32 => visit_i64(0),
        deserialize_i64 => visit_i64(0),
        deserialize_u8 => visit_u64(0),
        deserialize_u16 => visit_u64(0),
        deserialize_u32 => visit_u64(0),
        deserialize_u64 => visit_u64(0),
        deserialize_f32 => visit_f64(0.0),
        deserialize_f64 => visit_f64(0.0),
        deserialize_char => visit_char('x'),
        deserialize_str => visit_str(""),
        deserialize_string => visit_str(""),
        deserialize_bytes => visit_bytes(&[]),
        deserialize_byte_buf => visit_bytes(&[]),
        deserialize_unit => visit_unit(),
        deserialize_identifier => visit_str(""),
        deserialize_ignored_any => visit_unit(),
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, WalkError> {
        visitor.visit_some(self)
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, WalkError> {
        visitor.visit_unit()
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, WalkError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(mut self, visitor: V) -> Result<V::Value, WalkError> {
        let at = format!("{}[]", self.at);
        visitor.visit_seq(One {
            walker: Some(self.child(at)),
        })
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, WalkError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, WalkError> {
        self.deserialize_seq(visitor)
    }

    /// A table keyed by names the user chooses: walked once with the key `NAME`. Its own path
    /// stays a key unless its values are tables of fixed keys.
    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, WalkError> {
        let at = self.at.clone();
        let inner = format!("{at}.NAME");
        let keys = self.keys;
        let value = visitor.visit_map(Fields {
            names: vec!["NAME"],
            at: at.clone(),
            keys: &mut *keys,
            next: None,
        })?;
        if keys.iter().any(|k| k.starts_with(&format!("{inner}."))) {
            keys.remove(&at);
        }
        Ok(value)
    }

    /// A table of fixed keys: every field is a key, and the table itself is not.
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, WalkError> {
        let keys = self.keys;
        let at = self.at;
        keys.remove(&at);
        // A list of tables (`routes[]`) is not a key itself either.
        if let Some(list) = at.strip_suffix("[]") {
            keys.remove(list);
        }
        visitor.visit_map(Fields {
            names: fields.to_vec(),
            at,
            keys,
            next: None,
        })
    }

    /// An enum is walked as its first variant: a unit variant (`store = "redis"`) is a value,
    /// a newtype or struct variant is walked like its content.
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, WalkError> {
        let Some(first) = variants.first() else {
            return Err(WalkError(format!(
                "{}: enum {name} has no variant",
                self.at
            )));
        };
        visitor.visit_enum(Variant {
            name: first,
            walker: self,
        })
    }
}

/// The variant an enum is walked as.
struct Variant<'k> {
    name: &'static str,
    walker: Walker<'k>,
}

impl<'de, 'k> de::EnumAccess<'de> for Variant<'k> {
    type Error = WalkError;
    type Variant = Walker<'k>;

    fn variant_seed<S: DeserializeSeed<'de>>(
        self,
        seed: S,
    ) -> Result<(S::Value, Walker<'k>), WalkError> {
        let name: de::value::StrDeserializer<'_, WalkError> = self.name.into_deserializer();
        Ok((seed.deserialize(name)?, self.walker))
    }
}

impl<'de> de::VariantAccess<'de> for Walker<'_> {
    type Error = WalkError;

    fn unit_variant(self) -> Result<(), WalkError> {
        Ok(())
    }

    fn newtype_variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<S::Value, WalkError> {
        seed.deserialize(self)
    }

    fn tuple_variant<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, WalkError> {
        de::Deserializer::deserialize_seq(self, visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, WalkError> {
        de::Deserializer::deserialize_struct(self, "", fields, visitor)
    }
}

/// The one element of a walked list: a list of scalars stays one key (`server.listen`), a
/// list of tables names its fields `routes[].path`.
struct One<'k> {
    walker: Option<Walker<'k>>,
}

impl<'de> SeqAccess<'de> for One<'_> {
    type Error = WalkError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, WalkError> {
        match self.walker.take() {
            None => Ok(None),
            Some(w) => seed.deserialize(w).map(Some),
        }
    }
}

/// The fields of a table, each visited once; every field path is recorded as a key.
struct Fields<'k> {
    names: Vec<&'static str>,
    at: String,
    keys: &'k mut BTreeSet<String>,
    next: Option<String>,
}

impl<'de> MapAccess<'de> for Fields<'_> {
    type Error = WalkError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, WalkError> {
        if self.names.is_empty() {
            return Ok(None);
        }
        let name = self.names.remove(0);
        let path = if self.at.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.at)
        };
        self.next = Some(path);
        seed.deserialize(name.into_deserializer()).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, WalkError> {
        let path = self.next.take().unwrap_or_default();
        if !path.ends_with(".NAME") {
            self.keys.insert(path.clone());
        }
        seed.deserialize(Walker {
            at: path,
            keys: &mut *self.keys,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The walker's top level is the top level `validate` accepts: its "unknown key" message
    /// lists them all.
    #[test]
    fn top_level_is_what_validate_accepts() {
        let err = crate::config::load_str("zz_not_a_key = 1\n", std::path::Path::new("t.toml"))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        let listed = err
            .split("expected one of ")
            .nth(1)
            .and_then(|rest| rest.split(')').next())
            .unwrap_or_default();
        let mut accepted: Vec<&str> = listed.split(", ").collect();
        accepted.sort_unstable();
        let paths = key_paths().unwrap_or_default();
        let mut walked: Vec<&str> = paths
            .iter()
            .map(|k| k.split(['.', '[']).next().unwrap_or_default())
            .collect();
        walked.sort_unstable();
        walked.dedup();
        assert_eq!(walked, accepted, "{err}");
    }

    #[test]
    fn walks_tables_lists_and_named_tables() {
        let keys = key_paths().unwrap_or_else(|e| panic!("{e}"));
        for k in [
            "public_url",
            "server.listen",
            "providers.NAME.issuer",
            "providers.NAME.extra_auth_params",
            "routes[].allow_claims",
            "pool.clients[].client_id",
            "pool.smtp.host",
        ] {
            assert!(keys.iter().any(|x| x == k), "{k} missing from {keys:?}");
        }
        for table in [
            "server",
            "providers",
            "routes",
            "pool",
            "pool.smtp",
            "pool.clients",
        ] {
            assert!(
                !keys.iter().any(|x| x == table),
                "{table} is a table, not a key"
            );
        }
    }

    /// Enums (typed values, tagged tables) are walked too, for when the schema grows them.
    #[test]
    fn walks_enums() {
        #[derive(Deserialize)]
        #[allow(dead_code)]
        enum Store {
            Cookie,
            Redis { url: String },
        }
        #[derive(Deserialize)]
        #[allow(dead_code)]
        enum Target {
            Upstream { url: String, weight: Option<u32> },
        }
        #[derive(Deserialize)]
        #[allow(dead_code)]
        struct Top {
            store: Option<Store>,
            target: Target,
        }
        let mut keys = BTreeSet::new();
        let walker = Walker {
            at: String::new(),
            keys: &mut keys,
        };
        assert!(Top::deserialize(walker).is_ok());
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        assert_eq!(keys, ["store", "target.url", "target.weight"]);
    }
}
