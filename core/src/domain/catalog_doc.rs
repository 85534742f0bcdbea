//! A catalog document as `catalog apply` holds it (docs/operations.md,
//! "Applying a catalog"): its metrics kept as the text the file gives for
//! each (a JSON file) or as parsed values (YAML, or a document built in
//! code), so that an apply parses only the entries it writes, a chunk at a
//! time, and its memory stays bounded whatever the catalog's size.

use serde_json::value::RawValue;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::catalog_hash::{truncated, Hash};

/// One metric entry of the document.
#[derive(Debug)]
pub enum Entry<'a> {
    Text(&'a RawValue),
    Parsed(Value),
}

/// The keys an entry is known by before it is validated.
#[derive(Debug, Default, serde::Deserialize)]
pub struct Keys {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub code: Option<String>,
}

impl Entry<'_> {
    /// sha256 of the entry's text with the whitespace between tokens left
    /// out (a parsed entry: of its compact serialization).
    pub fn hash(&self) -> Hash {
        let mut h = Sha256::new();
        match self {
            Entry::Text(raw) => minified(raw.get(), |run| h.update(run)),
            Entry::Parsed(v) => h.update(v.to_string().as_bytes()),
        }
        truncated(h.finalize().as_slice())
    }

    /// Its `id` and `code`, when it is an object that has them.
    pub fn keys(&self) -> Keys {
        match self {
            Entry::Text(raw) => serde_json::from_str(raw.get()).unwrap_or_default(),
            Entry::Parsed(v) => Keys {
                id: v.get("id").and_then(Value::as_str).map(str::to_string),
                code: v.get("code").and_then(Value::as_str).map(str::to_string),
            },
        }
    }

    pub fn to_value(&self) -> Value {
        match self {
            // The text is valid JSON: the whole document was checked.
            Entry::Text(raw) => serde_json::from_str(raw.get()).unwrap_or(Value::Null),
            Entry::Parsed(v) => v.clone(),
        }
    }
}

/// JSON text without the whitespace outside strings, given as the runs of
/// bytes between whitespace (no copy).
fn minified(text: &str, mut run: impl FnMut(&[u8])) {
    let bytes = text.as_bytes();
    let (mut in_string, mut escaped) = (false, false);
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
        } else if b.is_ascii_whitespace() {
            if start < i {
                run(&bytes[start..i]);
            }
            start = i + 1;
        } else if b == b'"' {
            in_string = true;
        }
    }
    if start < bytes.len() {
        run(&bytes[start..]);
    }
}

/// A catalog document: everything but the metrics as values, the metrics
/// entry by entry.
#[derive(Debug)]
pub struct CatalogDoc<'a> {
    /// The root with `metrics` as an array of nulls (one per entry), or the
    /// root as given when it is not an object or `metrics` not an array
    /// (validation reports it).
    skeleton: Value,
    pub metrics: Vec<Entry<'a>>,
}

impl<'a> CatalogDoc<'a> {
    pub fn from_value(mut doc: Value) -> CatalogDoc<'static> {
        let entries = match doc.get_mut("metrics") {
            Some(Value::Array(items)) => std::mem::take(items),
            _ => Vec::new(),
        };
        let mut out = CatalogDoc::<'static> {
            skeleton: doc,
            metrics: entries.into_iter().map(Entry::Parsed).collect(),
        };
        out.set_placeholders();
        out
    }

    /// Parses a JSON document, keeping each metric as its text (one pass:
    /// no metric is parsed into a value here).
    pub fn from_json(text: &'a str) -> Result<CatalogDoc<'a>, serde_json::Error> {
        let Ok(top) =
            serde_json::from_str::<std::collections::BTreeMap<String, &'a RawValue>>(text)
        else {
            // Not an object: kept as it is for validation to report.
            let skeleton = serde_json::from_str::<Value>(text)?;
            return Ok(CatalogDoc {
                skeleton,
                metrics: Vec::new(),
            });
        };
        let mut root = Map::new();
        let mut metrics = Vec::new();
        for (key, raw) in top {
            if key == "metrics" {
                if let Ok(items) = serde_json::from_str::<Vec<&'a RawValue>>(raw.get()) {
                    metrics = items.into_iter().map(Entry::Text).collect();
                    root.insert(key, Value::Null);
                    continue;
                }
            }
            root.insert(key, serde_json::from_str(raw.get())?);
        }
        let mut out = CatalogDoc {
            skeleton: Value::Object(root),
            metrics,
        };
        out.set_placeholders();
        Ok(out)
    }

    fn set_placeholders(&mut self) {
        if !self.metrics.is_empty() || self.skeleton.get("metrics").is_some_and(Value::is_null) {
            if let Some(obj) = self.skeleton.as_object_mut() {
                obj.insert(
                    "metrics".into(),
                    Value::Array(vec![Value::Null; self.metrics.len()]),
                );
            }
        }
    }

    /// Everything but the metrics (`series`, `datasets`, unknown keys).
    pub fn skeleton(&self) -> &Value {
        &self.skeleton
    }

    /// The document one chunk of an apply validates: the metrics at
    /// `indexes` filled in and null elsewhere (so that paths keep each
    /// entry's index), with everything else when `head`, alone otherwise.
    pub fn chunk(&self, indexes: &[usize], head: bool) -> Value {
        // Slots up to the last entry of the chunk: the rest are absent.
        let len = indexes.iter().max().map_or(0, |m| m + 1);
        let mut slots = vec![Value::Null; len];
        for &i in indexes {
            if let (Some(slot), Some(entry)) = (slots.get_mut(i), self.metrics.get(i)) {
                *slot = entry.to_value();
            }
        }
        let metrics = (!indexes.is_empty()).then_some(Value::Array(slots));
        match (head, self.skeleton.as_object()) {
            (true, Some(root)) => {
                let mut root = root.clone();
                match metrics {
                    Some(m) => root.insert("metrics".into(), m),
                    // Every entry is skipped: none is shown.
                    None if !self.metrics.is_empty() => root.remove("metrics"),
                    None => None,
                };
                Value::Object(root)
            }
            (true, None) => self.skeleton.clone(),
            (false, _) => {
                let mut root = Map::new();
                if let Some(m) = metrics {
                    root.insert("metrics".into(), m);
                }
                Value::Object(root)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_entry_hashes_the_same_whatever_its_layout() {
        // Keys in the order a parsed value writes them (sorted), so that
        // the parsed entry's hash is the text's.
        let compact = r#"{"metrics":[{"code":"m.one","expression_json":{"op":"sum"},"id":"m1"}]}"#;
        let pretty = "{\n  \"metrics\": [\n    {\n      \"code\": \"m.one\",\n      \"expression_json\": {\"op\": \"sum\"},\n      \"id\": \"m1\"\n    }\n  ]\n}";
        let spaced =
            r#"{"metrics":[{"code":"m.one two","expression_json":{"op":"sum"},"id":"m1"}]}"#;
        let a = CatalogDoc::from_json(compact).unwrap();
        let b = CatalogDoc::from_json(pretty).unwrap();
        let c = CatalogDoc::from_json(spaced).unwrap();
        let parsed = CatalogDoc::from_value(serde_json::from_str(compact).unwrap());
        assert_eq!(a.metrics[0].hash(), b.metrics[0].hash());
        assert_eq!(a.metrics[0].hash(), parsed.metrics[0].hash());
        assert_ne!(
            a.metrics[0].hash(),
            c.metrics[0].hash(),
            "a space in a string counts"
        );
        assert_eq!(b.metrics[0].keys().code.as_deref(), Some("m.one"));
    }

    #[test]
    fn a_chunk_shows_its_metrics_and_nulls_elsewhere() {
        let text = json!({"series": [{"code": "S"}], "metrics": [{"id": "a"}, {"id": "b"}, 3]})
            .to_string();
        let doc = CatalogDoc::from_json(&text).unwrap();
        assert_eq!(doc.metrics.len(), 3);
        assert_eq!(
            doc.chunk(&[1], true),
            json!({"series": [{"code": "S"}], "metrics": [null, {"id": "b"}]})
        );
        assert_eq!(doc.chunk(&[0], false), json!({"metrics": [{"id": "a"}]}));
        assert_eq!(doc.chunk(&[], true), json!({"series": [{"code": "S"}]}));
        // An entry that is not an object has no keys; validation names it.
        assert!(doc.metrics[2].keys().id.is_none());
    }

    #[test]
    fn documents_that_are_not_catalogs_are_kept_for_validation_to_report() {
        for text in ["[1, 2]", r#"{"metrics": 5}"#, r#"{"series": []}"#] {
            let doc = CatalogDoc::from_json(text).unwrap();
            assert!(doc.metrics.is_empty(), "{text}");
            assert_eq!(
                doc.skeleton(),
                &serde_json::from_str::<Value>(text).unwrap(),
                "{text}"
            );
        }
        assert!(CatalogDoc::from_json("{").is_err());
    }
}
