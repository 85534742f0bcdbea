//! What a catalog apply has to write (docs/operations.md, "Applying a
//! catalog"): each entry of the file is hashed as written, and an entry
//! whose hash is the one stored with it is skipped, so that an apply costs
//! what changed, not what exists. A false difference (the same entry
//! written with its keys in another order) only costs a rewrite of that
//! entry; a false sameness would need a sha256 collision.

use std::collections::{HashMap, HashSet};

use serde_json::Value;

use super::catalog_doc::CatalogDoc;
use sha2::{Digest, Sha256};

/// The hash of every entry of a catalog document, by section and key.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct EntryHashes {
    pub series: HashMap<String, Hash>,
    pub datasets: HashMap<String, Hash>,
    pub metrics: HashMap<String, Hash>,
}

/// The hashes stored with the entries last applied (`None`: never hashed,
/// e.g. adopted or written before hashes were kept).
pub type Stored = EntryHashes;

/// The first 16 bytes of an entry's sha256 (stored as 32 hex digits).
pub type Hash = [u8; 16];

fn hash(entry: &Value) -> Hash {
    truncated(Sha256::digest(entry.to_string().as_bytes()).as_slice())
}

/// The first 16 bytes of a digest.
pub fn truncated(digest: &[u8]) -> Hash {
    let mut out = [0; 16];
    out.copy_from_slice(&digest[..16]);
    out
}

/// How many entries of each section an apply skips.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Unchanged {
    pub series: usize,
    pub datasets: usize,
    pub metrics: usize,
}

/// Which entries of a document an apply writes: their hashes, and the
/// indexes of those it skips.
#[derive(Debug, Default)]
pub struct Plan {
    pub hashes: EntryHashes,
    pub unchanged: Unchanged,
    skip: HashMap<&'static str, Vec<bool>>,
}

impl Plan {
    /// Whether entry `index` of `section` is to be validated and written.
    pub fn keeps(&self, section: &str, index: usize) -> bool {
        !self
            .skip
            .get(section)
            .is_some_and(|s| s.get(index).copied().unwrap_or(false))
    }
}

/// Hashes every entry of `doc` and skips those stored with the same hash.
/// A section in which a key appears twice skips nothing: its whole
/// validation reports the duplicate.
pub fn plan(doc: &CatalogDoc<'_>, stored: &Stored) -> Plan {
    let mut out = Plan::default();
    for (name, key) in [("series", "code"), ("datasets", "id")] {
        let entries = doc.skeleton().get(name).and_then(Value::as_array);
        let keyed = entries
            .into_iter()
            .flatten()
            .enumerate()
            .filter_map(|(i, e)| {
                let k = e.get(key).and_then(Value::as_str)?;
                Some((i, k.to_string(), None, hash(e)))
            });
        section(&mut out, name, keyed.collect(), stored);
    }
    let keyed = doc.metrics.iter().enumerate().filter_map(|(i, e)| {
        let keys = e.keys();
        Some((i, keys.id?, keys.code, e.hash()))
    });
    section(&mut out, "metrics", keyed.collect(), stored);
    out
}

type Keyed = Vec<(usize, String, Option<String>, Hash)>;

fn section(out: &mut Plan, name: &'static str, entries: Keyed, stored: &Stored) {
    let mut codes = HashSet::new();
    let mut duplicated = false;
    let mut skip = Vec::new();
    let mut skipped = 0;
    let mut hashes = HashMap::with_capacity(entries.len());
    for (i, id, code, h) in entries {
        duplicated |= code.is_some_and(|c| !codes.insert(c));
        if stored.section(name).get(&id) == Some(&h) {
            if skip.len() <= i {
                skip.resize(i + 1, false);
            }
            skip[i] = true;
            skipped += 1;
        }
        duplicated |= hashes.insert(id, h).is_some();
    }
    if duplicated {
        (skip, skipped) = (Vec::new(), 0);
    }
    match name {
        "series" => (out.hashes.series, out.unchanged.series) = (hashes, skipped),
        "datasets" => (out.hashes.datasets, out.unchanged.datasets) = (hashes, skipped),
        _ => (out.hashes.metrics, out.unchanged.metrics) = (hashes, skipped),
    }
    out.skip.insert(name, skip);
}

impl EntryHashes {
    fn section(&self, name: &str) -> &HashMap<String, Hash> {
        match name {
            "series" => &self.series,
            "datasets" => &self.datasets,
            _ => &self.metrics,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::catalog::validate_entries;
    use serde_json::json;

    fn doc(scale: i64, unit: &str) -> Value {
        json!({
            "series": [{"code": "S1"}, {"code": "S2", "unit": unit}],
            "datasets": [{"id": "d1", "bucket": "b", "series": ["S1", "S2"]}],
            "metrics": [
                {"id": "m1", "code": "m.one", "expression_type": "series_math",
                 "expression_json": {"op": "ratio", "left": {"seriesCode": "S1"},
                                     "right": {"seriesCode": "S2"}, "scale": scale}},
                {"id": "m2", "code": "m.two", "expression_type": "composite",
                 "expression_json": {"op": "sum", "operands": [{"seriesCode": "S1"}]}}
            ]
        })
    }

    /// The stored hashes after applying `doc` whole.
    fn applied(doc: &Value) -> Stored {
        plan(&CatalogDoc::from_value(doc.clone()), &Stored::default()).hashes
    }

    fn kept(new: &Value, stored: &Value) -> (Vec<String>, Unchanged) {
        let p = plan(&CatalogDoc::from_value(new.clone()), &applied(stored));
        // As an apply does: the file's series are known, changed or not.
        let known: HashSet<String> = new["series"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| s["code"].as_str().unwrap().to_string())
            .collect();
        let cat = validate_entries(new, &known, &|s, i| p.keeps(s, i));
        let cat = cat.expect("valid");
        let mut names: Vec<String> = cat.series.iter().map(|s| s.code.clone()).collect();
        names.extend(cat.datasets.iter().map(|d| d.id.clone()));
        names.extend(cat.metrics.iter().map(|m| m.id.clone()));
        (names, p.unchanged)
    }

    #[test]
    fn only_entries_written_differently_are_applied() {
        // (new document, stored document, entries applied)
        let cases: Vec<(Value, Value, Vec<&str>)> = vec![
            (doc(100, "pct"), doc(100, "pct"), vec![]),
            (doc(1000, "pct"), doc(100, "pct"), vec!["m1"]),
            (doc(100, "bps"), doc(100, "pct"), vec!["S2"]),
            (doc(1000, "bps"), doc(100, "pct"), vec!["S2", "m1"]),
            // Nothing stored yet: everything.
            (
                doc(100, "pct"),
                json!({}),
                vec!["S1", "S2", "d1", "m1", "m2"],
            ),
        ];
        for (i, (new, stored, want)) in cases.into_iter().enumerate() {
            let (got, unchanged) = kept(&new, &stored);
            assert_eq!(got, want, "case {i}");
            assert_eq!(
                unchanged.series + unchanged.datasets + unchanged.metrics + got.len(),
                5,
                "case {i}"
            );
        }
    }

    #[test]
    fn a_dataset_whose_series_list_changed_is_applied() {
        let old = doc(100, "pct");
        let mut new = doc(100, "pct");
        new["datasets"][0]["series"] = json!(["S1"]);
        let (got, _) = kept(&new, &old);
        assert_eq!(got, ["d1"]);
    }

    #[test]
    fn a_duplicated_key_skips_nothing_so_that_validation_reports_it() {
        let old = doc(100, "pct");
        let mut new = doc(100, "pct");
        let copy = new["metrics"][0].clone();
        new["metrics"].as_array_mut().unwrap().push(copy);
        let p = plan(&CatalogDoc::from_value(new.clone()), &applied(&old));
        assert_eq!(p.unchanged.metrics, 0);
        let problems = validate_entries(&new, &HashSet::new(), &|s, i| p.keeps(s, i))
            .expect_err("a duplicate id");
        assert!(problems.to_string().contains("metrics[2].id"), "{problems}");
    }
}
