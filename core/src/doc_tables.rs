//! Test support: reads the tables of the contract documents, so that tests
//! can check that what a document lists is what the code does.

/// The first column's code spans (`` `x` ``) of the Markdown table whose
/// header row is `header`, in order.
pub fn first_column<'a>(doc: &'a str, header: &str) -> Vec<&'a str> {
    let table = doc
        .split(header)
        .nth(1)
        .unwrap_or_else(|| panic!("no table with the header {header:?}"));
    table
        .lines()
        .skip(2)
        .take_while(|l| l.starts_with("| `"))
        .filter_map(|l| l.split('`').nth(1))
        .collect()
}
