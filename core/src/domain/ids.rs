//! Typed identifiers: a run id is never passed where a metric id is meant.
//! All are text in the store (`store::ids` maps them to SQL), and new run and
//! update ids are time-ordered UUIDs (v7).

use std::borrow::Borrow;
use std::fmt;

macro_rules! id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default, serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn new(id: impl Into<String>) -> Self {
                Self(id.into())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_string(self) -> String {
                self.0
            }
        }

        // Debug-prints as the quoted text, like the `String` it replaces, so
        // that messages listing ids read the same.
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                Self(s)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self(s.to_string())
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        // Lets maps keyed by the id be looked up with a plain `&str`.
        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<String> for $name {
            fn eq(&self, other: &String) -> bool {
                &self.0 == other
            }
        }

        impl From<&String> for $name {
            fn from(s: &String) -> Self {
                Self(s.clone())
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }
    };
}

id!(
    /// `metric_runs.id`.
    RunId
);
id!(
    /// `metrics.id`.
    MetricId
);
id!(
    /// `datasets.id`, as producers name datasets.
    DatasetId
);
id!(
    /// `dataset_updates.id`.
    UpdateId
);
id!(
    /// `backfills.id`.
    BackfillId
);

/// `outbox.id`: a run request committed and waiting to be published.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OutboxId(i64);

impl OutboxId {
    pub fn new(id: i64) -> Self {
        Self(id)
    }

    pub fn get(self) -> i64 {
        self.0
    }
}

impl fmt::Display for OutboxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl RunId {
    /// A new time-ordered run id.
    pub fn generate() -> Self {
        Self(uuid::Uuid::now_v7().to_string())
    }
}

impl BackfillId {
    /// A new backfill id: `bf-` and a time-ordered UUID.
    pub fn generate() -> Self {
        Self(format!("bf-{}", uuid::Uuid::now_v7().simple()))
    }
}

impl UpdateId {
    /// A new time-ordered update id.
    pub fn generate() -> Self {
        Self(uuid::Uuid::now_v7().to_string())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn ids_read_and_print_as_their_text() {
        let r = RunId::new("r-1");
        assert_eq!(r.to_string(), "r-1");
        assert_eq!(r.as_str(), "r-1");
        assert_eq!(serde_json::to_value(&r).unwrap(), serde_json::json!("r-1"));
        let back: RunId = serde_json::from_str("\"r-1\"").unwrap();
        assert_eq!(back, r);
        assert_eq!(r, "r-1");
        assert_eq!(format!("{:?}", [r]), r#"["r-1"]"#);
    }

    #[test]
    fn maps_keyed_by_an_id_are_looked_up_by_text() {
        let m: HashMap<DatasetId, i32> = [(DatasetId::new("d1"), 1)].into();
        assert_eq!(m.get("d1"), Some(&1));
    }

    #[test]
    fn generated_ids_are_distinct_and_ordered() {
        let (a, b) = (RunId::generate(), RunId::generate());
        assert_ne!(a, b);
        assert!(a < b, "UUID v7 ids sort by creation");
        assert_eq!(UpdateId::generate().as_str().len(), 36);
    }
}
