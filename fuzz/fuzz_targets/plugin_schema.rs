//! Fuzz target: see `portcullis::fuzzing::plugin_schema`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        portcullis::fuzzing::plugin_schema(text);
    }
});
