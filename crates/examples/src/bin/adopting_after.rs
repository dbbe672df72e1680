//! The `adopting_after` block of docs/adopting.md, as `build.rs` extracted it: built with the
//! workspace so the guide compiles as written.

include!(concat!(env!("OUT_DIR"), "/adopting_after.rs"));
