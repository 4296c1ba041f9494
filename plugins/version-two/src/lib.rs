//! `version-two`: the hot-reload fixture in its version "two" (source: `../../versioned.rs`).

const VERSION: &str = "two";

include!("../../versioned.rs");
