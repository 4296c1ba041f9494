//! Fuzz target: see `portcullis::fuzzing::plugin_output`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    portcullis::fuzzing::plugin_output(data);
});
