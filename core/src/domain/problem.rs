//! A validation problem located by a path into the input document.

use std::fmt;

/// One thing wrong with an input, e.g.
/// `metrics[3].expression_json.left.window: must be an integer >= 1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: String,
    pub message: String,
}

impl Problem {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Records a problem for each key of `obj` that is not in `known`, naming
/// the nearest known key when one is close enough to be a typo: an operator
/// who writes `requried_days` must hear about it instead of getting the
/// default.
pub fn unknown_keys<'a>(
    keys: impl IntoIterator<Item = &'a String>,
    path: &str,
    known: &[&str],
    p: &mut Vec<Problem>,
) {
    for key in keys {
        if known.contains(&key.as_str()) {
            continue;
        }
        let at = if path.is_empty() {
            key.clone()
        } else {
            format!("{path}.{key}")
        };
        let message = match nearest(key, known) {
            Some(k) => format!("unknown key; did you mean {k}?"),
            None => format!("unknown key (known: {})", known.join(", ")),
        };
        p.push(Problem::new(at, message));
    }
}

/// The known key nearest to `key` by edit distance (transpositions count
/// once), when at most a third of it differs.
fn nearest<'k>(key: &str, known: &[&'k str]) -> Option<&'k str> {
    let lower = key.to_ascii_lowercase();
    known
        .iter()
        .map(|k| (strsim::damerau_levenshtein(&lower, k), *k))
        .filter(|(d, k)| *d <= (k.len().max(3) / 3).max(1))
        .min()
        .map(|(_, k)| k)
}

/// A list of problems, displayed one per line.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Problems(pub Vec<Problem>);

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Problems {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_name_the_nearest_known_one() {
        let known = ["required_days", "max_attempts", "enabled", "id"];
        let cases: &[(&str, &str)] = &[
            (
                "requried_days",
                "m.requried_days: unknown key; did you mean required_days?",
            ),
            (
                "max_atempts",
                "m.max_atempts: unknown key; did you mean max_attempts?",
            ),
            ("Enabled", "m.Enabled: unknown key; did you mean enabled?"),
            ("ids", "m.ids: unknown key; did you mean id?"),
            (
                "colour",
                "m.colour: unknown key (known: required_days, max_attempts, enabled, id)",
            ),
            (
                "xy",
                "m.xy: unknown key (known: required_days, max_attempts, enabled, id)",
            ),
        ];
        for (key, want) in cases {
            let mut p = Vec::new();
            unknown_keys([&key.to_string()], "m", &known, &mut p);
            assert_eq!(Problems(p).to_string(), *want, "{key}");
        }
        let mut p = Vec::new();
        unknown_keys([&"enabled".to_string()], "m", &known, &mut p);
        assert!(p.is_empty(), "a known key is no problem");
    }
}
