//! `version-one`: the hot-reload fixture in its version "one" (source: `../../versioned.rs`).

const VERSION: &str = "one";

include!("../../versioned.rs");
