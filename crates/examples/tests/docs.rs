//! Every public item of the crates users import most is linked from its crate-level
//! docs (a "types at a glance" table or the prose), so a reader who opens the crate
//! page finds it: `HeaderRule` once appeared in no crate-level doc. Rustdoc (`cargo
//! doc` with `-D warnings` in CI) checks that each link resolves; this checks that
//! each item has one.

const CRATES: &[(&str, &str)] = &[
    ("threadline", include_str!("../../threadline/src/lib.rs")),
    (
        "threadline-tower",
        include_str!("../../threadline-tower/src/lib.rs"),
    ),
    (
        "threadline-tracing",
        include_str!("../../threadline-tracing/src/lib.rs"),
    ),
];

/// The names a crate root makes public: `pub mod x`, `pub use a::{B, C as D}`,
/// `pub fn f`, `pub struct S`, ... (an item under `#[cfg(feature)]` counts too: the
/// docs are built with every feature).
fn public_names(lib: &str) -> Vec<String> {
    let code: String = lib
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let mut names = Vec::new();
    let mut rest = code.as_str();
    while let Some(i) = rest.find("\npub ") {
        rest = &rest[i + 5..];
        let (kind, after) = rest.split_once(' ').unwrap_or((rest, ""));
        match kind {
            "use" => {
                let stmt = &after[..after.find(';').expect("a use statement ends")];
                let list = match stmt.find('{') {
                    Some(open) => &stmt[open + 1..stmt.rfind('}').expect("a closed list")],
                    None => stmt.rsplit("::").next().unwrap_or(stmt),
                };
                for item in list.split(',') {
                    let item = item.trim();
                    if item.is_empty() {
                        continue;
                    }
                    let name = item.rsplit(" as ").next().unwrap_or(item).trim();
                    if name != "_" {
                        names.push(name.to_owned());
                    }
                }
            }
            "mod" | "fn" | "struct" | "enum" | "trait" | "type" | "const" | "static" => {
                let name: String = after
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                names.push(name);
            }
            _ => {}
        }
    }
    names
}

fn crate_docs(lib: &str) -> String {
    lib.lines()
        .filter_map(|l| l.trim_start().strip_prefix("//!"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn every_public_item_is_linked_from_the_crate_docs() {
    let mut missing = Vec::new();
    for (name, lib) in CRATES {
        let docs = crate_docs(lib);
        let items = public_names(lib);
        assert!(items.len() > 5, "{name}: read {items:?}");
        for item in items {
            let linked = docs.contains(&format!("[`{item}`]"))
                // A feature-gated module is named, unlinked, where docs without the
                // feature would not resolve it.
                || docs.contains(&format!("| `{item}` |"));
            if !linked {
                missing.push(format!("{name}::{item}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "public items no crate-level doc links (add them to the crate's \"at a glance\" \
         table): {missing:?}"
    );
}

#[test]
fn the_reader_sees_what_the_check_reads() {
    let names = public_names(
        "//! docs\n\npub mod a;\n#[cfg(x)]\npub use b::{C, D as E, _F as _};\npub use g::H;\n\
         pub fn layer<S>() {}\npub(crate) fn hidden() {}\n",
    );
    assert_eq!(names, ["a", "C", "E", "H", "layer"]);
}
