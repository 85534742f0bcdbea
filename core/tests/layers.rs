//! The dependency rules of docs/architecture.md ("Dependency rules"), kept
//! true: every `crate::<module>` a file of `core/src` names (outside
//! comments) must be allowed by the table for the file's top module, and
//! every top module must be in the table.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Module → the modules it may use (`None`: any).
fn rules() -> BTreeMap<String, Option<BTreeSet<String>>> {
    let doc = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/architecture.md"),
    )
    .expect("docs/architecture.md");
    let section = doc
        .split("## Dependency rules")
        .nth(1)
        .expect("a \"Dependency rules\" section in docs/architecture.md");
    let names = |cell: &str| -> Vec<String> {
        cell.split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect()
    };
    let mut out = BTreeMap::new();
    for line in section
        .lines()
        .skip_while(|l| !l.starts_with("| module"))
        .skip(2)
    {
        if !line.starts_with('|') {
            break;
        }
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let module = names(cells[1]).pop().expect("a module name");
        let allowed = (cells[2] != "any").then(|| names(cells[2]).into_iter().collect());
        out.insert(module, allowed);
    }
    assert!(out.len() > 5, "the table was not read: {out:?}");
    out
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The `crate::<name>` first segments a line of code names.
fn named(line: &str) -> Vec<String> {
    let code = line.split("//").next().unwrap_or("");
    code.match_indices("crate::")
        .filter(|(i, _)| !code[..*i].ends_with(|c: char| c.is_alphanumeric() || c == '_'))
        .map(|(i, m)| {
            code[i + m.len()..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect::<String>()
        })
        .filter(|n| !n.is_empty())
        // The transaction macro is exported at the root but is the store's.
        .map(|n| {
            if n == "in_transaction" {
                "store".to_string()
            } else {
                n
            }
        })
        .collect()
}

#[test]
fn every_module_uses_only_what_the_architecture_table_allows() {
    let rules = rules();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut wrong = Vec::new();
    for file in files {
        let rel = file.strip_prefix(&src).unwrap();
        let top = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        if top == "lib" {
            continue;
        }
        let Some(allowed) = rules.get(&top) else {
            wrong.push(format!(
                "{}: module {top} is not in the table",
                rel.display()
            ));
            continue;
        };
        let text = std::fs::read_to_string(&file).unwrap();
        for (n, line) in text.lines().enumerate() {
            for used in named(line) {
                // `doc_tables` exists in test builds only, for any module's
                // tests (docs/architecture.md).
                let ok = used == top
                    || used == "doc_tables"
                    || allowed.as_ref().is_none_or(|a| a.contains(&used));
                if !ok {
                    wrong.push(format!("{}:{}: {top} → {used}", rel.display(), n + 1));
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "arrows the table does not allow:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_scanner_sees_paths_in_use_lines_and_code_but_not_in_comments() {
    assert_eq!(named("use crate::store::{self, Pool};"), ["store"]);
    assert_eq!(
        named("let x = crate::relay::run(crate::in_transaction!(p));"),
        ["relay", "store"]
    );
    assert!(named("// see crate::api").is_empty());
    assert!(named("use other_crate::x;").is_empty());
}
