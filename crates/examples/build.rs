//! Extracts the code blocks that the docs promise compile: a fenced block right after
//! a `<!-- checked: NAME -->` line in README.md or docs/adopting.md is written to
//! `OUT_DIR/NAME.rs` (or `.toml`), where `src/bin/*.rs` include them (the workspace
//! build compiles them, clippy lints them) and `tests/readme.rs` reads them.

use std::path::Path;

const SOURCES: &[&str] = &["../../README.md", "../../docs/adopting.md"];

/// Every block a test or binary of this crate includes: missing one is an error here,
/// not a puzzling `include!` failure.
const EXPECTED: &[&str] = &[
    "readme_deps.toml",
    "readme_main.rs",
    "adopting_before.rs",
    "adopting_after.rs",
];

fn main() {
    let out = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    let mut written = Vec::new();
    for source in SOURCES {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(source);
        println!("cargo:rerun-if-changed={}", path.display());
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        for (name, lang, code) in checked_blocks(&text) {
            let file = format!("{name}.{}", if lang == "toml" { "toml" } else { "rs" });
            std::fs::write(Path::new(&out).join(&file), code)
                .unwrap_or_else(|e| panic!("cannot write {file}: {e}"));
            written.push(file);
        }
    }
    for want in EXPECTED {
        assert!(
            written.iter().any(|w| w == want),
            "no `<!-- checked: {} -->` block in {SOURCES:?}",
            want.rsplit_once('.').map_or(*want, |(n, _)| n)
        );
    }
}

/// `(name, language, code)` of each block marked `<!-- checked: name -->`.
fn checked_blocks(text: &str) -> Vec<(String, String, String)> {
    let mut blocks = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let Some(name) = line
            .trim()
            .strip_prefix("<!-- checked:")
            .and_then(|r| r.strip_suffix("-->"))
        else {
            continue;
        };
        let fence = lines.next().unwrap_or_default();
        let lang = fence
            .strip_prefix("```")
            .unwrap_or_else(|| panic!("`<!-- checked:{name}-->` is followed by a fenced block"));
        let mut code = String::new();
        for l in lines.by_ref() {
            if l.starts_with("```") {
                break;
            }
            code.push_str(l);
            code.push('\n');
        }
        blocks.push((name.trim().to_owned(), lang.to_owned(), code));
    }
    blocks
}
