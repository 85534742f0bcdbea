//! The dependency rules of docs/architecture.md ("Dependency rules"), kept
//! true: every module of the crate a file of `core/src` reaches must be
//! allowed by the table for the file's top module, and every top module must
//! be in the table. Files are read as Rust (syn): `crate::`, `self::` and
//! `super::` paths, grouped imports, and names another module re-exports
//! (reaching through a re-export reaches what it re-exports); paths inside
//! macro calls, which syn leaves as tokens, are found by a scan of the text.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use syn::visit::{self, Visit};

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

/// The crate's module a file is: `a/b.rs` → `a::b`, `a/mod.rs` → `a`.
fn module_of(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| {
            c.as_os_str()
                .to_string_lossy()
                .trim_end_matches(".rs")
                .to_string()
        })
        .collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
        parts.pop();
    }
    parts
}

/// A path of the crate, made absolute from the module it is written in;
/// `None` for a path that does not start at `crate`, `self` or `super`.
fn resolve(here: &[String], segments: &[String]) -> Option<Vec<String>> {
    let mut base = match segments.first()?.as_str() {
        "crate" => return Some(segments[1..].to_vec()),
        "self" | "super" => here.to_vec(),
        _ => return None,
    };
    let mut rest = segments;
    while let Some(first) = rest.first() {
        match first.as_str() {
            "super" => {
                base.pop()?;
            }
            "self" => {}
            _ => break,
        }
        rest = &rest[1..];
    }
    base.extend(rest.iter().cloned());
    Some(base)
}

/// What one file names of the crate, and what it re-exports.
#[derive(Debug, Default)]
struct Scan {
    /// Absolute paths named (in `use` items and in code).
    paths: Vec<Vec<String>>,
    /// A public `use`: the path it makes (module + name, `*` for a glob)
    /// and the absolute path it names.
    reexports: Vec<(Vec<String>, Vec<String>)>,
    /// Module stack: the file's module, then inline `mod` blocks.
    here: Vec<String>,
}

impl Scan {
    fn use_tree(&mut self, tree: &syn::UseTree, prefix: Vec<String>, public: bool) {
        let named = |prefix: Vec<String>, name: String, s: &mut Scan| {
            if let Some(abs) = resolve(&s.here, &prefix) {
                if public {
                    let mut made = s.here.clone();
                    made.push(name);
                    s.reexports.push((made, abs.clone()));
                }
                s.paths.push(abs);
            }
        };
        match tree {
            syn::UseTree::Path(p) => {
                let mut next = prefix;
                next.push(p.ident.to_string());
                self.use_tree(&p.tree, next, public);
            }
            syn::UseTree::Name(n) if n.ident == "self" => {
                let name = prefix.last().cloned().unwrap_or_default();
                named(prefix, name, self);
            }
            syn::UseTree::Name(n) => {
                let mut full = prefix;
                full.push(n.ident.to_string());
                named(full, n.ident.to_string(), self);
            }
            syn::UseTree::Rename(r) => {
                let mut full = prefix;
                full.push(r.ident.to_string());
                named(full, r.rename.to_string(), self);
            }
            syn::UseTree::Glob(_) => named(prefix, "*".into(), self),
            syn::UseTree::Group(g) => {
                for t in &g.items {
                    self.use_tree(t, prefix.clone(), public);
                }
            }
        }
    }
}

impl<'ast> Visit<'ast> for Scan {
    fn visit_item_mod(&mut self, m: &'ast syn::ItemMod) {
        self.here.push(m.ident.to_string());
        visit::visit_item_mod(self, m);
        self.here.pop();
    }

    fn visit_item_use(&mut self, u: &'ast syn::ItemUse) {
        let public = !matches!(u.vis, syn::Visibility::Inherited);
        self.use_tree(&u.tree, Vec::new(), public);
    }

    fn visit_path(&mut self, p: &'ast syn::Path) {
        let segments: Vec<String> = p.segments.iter().map(|s| s.ident.to_string()).collect();
        if let Some(abs) = resolve(&self.here, &segments) {
            self.paths.push(abs);
        }
        visit::visit_path(self, p);
    }
}

/// Reads one file of module `module`; `Err` when it is not Rust.
fn scan(module: &[String], source: &str) -> Result<Scan, syn::Error> {
    let file = syn::parse_file(source)?;
    let mut s = Scan {
        here: module.to_vec(),
        ..Scan::default()
    };
    s.visit_file(&file);
    s.here.clear();
    // Paths in macro calls (`tokio::try_join!(crate::store::…)`) are tokens
    // to syn.
    for line in source.lines() {
        for top in named(line) {
            s.paths.push(vec![top]);
        }
    }
    Ok(s)
}

/// The top modules an absolute path reaches: its own, and through any
/// re-export it goes through, the re-exported item's.
fn tops_reached(path: &[String], reexports: &[(Vec<String>, Vec<String>)]) -> Vec<String> {
    let Some(first) = path.first() else {
        return Vec::new();
    };
    // The transaction macro is exported at the root but is the store's.
    let own = if first == "in_transaction" {
        "store"
    } else {
        first
    };
    let mut tops = vec![own.to_string()];
    for (made, target) in reexports {
        let through = match made.split_last() {
            Some((last, module)) if last == "*" => {
                path.len() > module.len() && path.starts_with(module)
            }
            _ => path.starts_with(made),
        };
        if through {
            if let Some(t) = target.first() {
                tops.push(t.clone());
            }
        }
    }
    tops
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
        .collect()
}

#[test]
fn every_module_uses_only_what_the_architecture_table_allows() {
    let rules = rules();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut scans = Vec::new();
    for file in &files {
        let rel = file.strip_prefix(&src).unwrap().to_path_buf();
        let text = std::fs::read_to_string(file).unwrap();
        let module = module_of(&rel);
        let found = scan(&module, &text).unwrap_or_else(|e| panic!("{}: {e}", rel.display()));
        scans.push((rel, module, found));
    }
    let reexports: Vec<_> = scans
        .iter()
        .flat_map(|(_, _, s)| s.reexports.iter().cloned())
        .collect();
    assert!(!reexports.is_empty(), "no re-export was read");
    let mut wrong = BTreeSet::new();
    for (rel, module, found) in &scans {
        let Some(top) = module.first() else {
            continue;
        };
        let Some(allowed) = rules.get(top) else {
            wrong.insert(format!(
                "{}: module {top} is not in the table",
                rel.display()
            ));
            continue;
        };
        for path in &found.paths {
            for used in tops_reached(path, &reexports) {
                // `doc_tables` exists in test builds only, for any module's
                // tests (docs/architecture.md).
                let ok = &used == top
                    || used == "doc_tables"
                    || allowed.as_ref().is_none_or(|a| a.contains(&used));
                if !ok {
                    wrong.insert(format!(
                        "{}: {top} → {used} (crate::{})",
                        rel.display(),
                        path.join("::")
                    ));
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "arrows the table does not allow:\n{}",
        wrong.into_iter().collect::<Vec<_>>().join("\n")
    );
}

fn tops(module: &[&str], source: &str) -> BTreeSet<String> {
    let module: Vec<String> = module.iter().map(|s| s.to_string()).collect();
    let s = scan(&module, source).unwrap();
    s.paths
        .iter()
        .flat_map(|p| tops_reached(p, &s.reexports))
        .collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

#[test]
fn the_scanner_sees_paths_in_use_lines_and_code_but_not_in_comments() {
    assert_eq!(named("use crate::store::{self, Pool};"), ["store"]);
    assert_eq!(
        named("let x = crate::outbox::run(crate::in_transaction!(p));"),
        ["outbox", "in_transaction"]
    );
    assert!(named("// see crate::api").is_empty());
    assert!(named("use other_crate::x;").is_empty());
    assert_eq!(
        tops(
            &["app", "x"],
            "// crate::api\nfn f() { let _ = crate::store::Pool::new(); }"
        ),
        set(&["store"])
    );
    assert_eq!(
        tops(
            &["app", "x"],
            "fn f() { tokio::join!(crate::outbox::go()); }"
        ),
        set(&["outbox"])
    );
}

#[test]
fn the_scanner_reads_grouped_imports_relative_paths_and_re_exports() {
    assert_eq!(
        tops(
            &["app", "x"],
            "use crate::{store::{self, Pool}, outbox::Relay};"
        ),
        set(&["store", "outbox"])
    );
    // `super::` climbs from the file's module, then from inline modules.
    assert_eq!(tops(&["app", "x"], "use super::lifecycle;"), set(&["app"]));
    assert_eq!(tops(&["app"], "use super::store::Pool;"), set(&["store"]));
    assert_eq!(
        tops(
            &["app", "x"],
            "mod t { use super::super::super::api::Router; }"
        ),
        set(&["api"])
    );
    assert_eq!(tops(&["app", "x"], "use self::y::Z;"), set(&["app"]));
    // A name re-exported from store by domain is store's.
    let scan_of = |m: &str, src: &str| {
        scan(&["domain".to_string(), m.to_string()], src)
            .unwrap()
            .reexports
    };
    let mut reexports = scan_of("m", "pub use crate::store::Pool;");
    reexports.extend(scan_of("g", "pub(crate) use crate::outbox::*;"));
    let reached = |p: &str| -> BTreeSet<String> {
        let path: Vec<String> = p.split("::").map(str::to_string).collect();
        tops_reached(&path, &reexports).into_iter().collect()
    };
    assert_eq!(reached("domain::m::Pool"), set(&["domain", "store"]));
    assert_eq!(reached("domain::g::Relay"), set(&["domain", "outbox"]));
    assert_eq!(reached("domain::other::Pool"), set(&["domain"]));
}
