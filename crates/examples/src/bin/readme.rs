//! The README's quick start `main.rs`, as `build.rs` extracted it from README.md:
//! `cargo run -p threadline-examples --bin readme -- 3001`.

include!(concat!(env!("OUT_DIR"), "/readme_main.rs"));
