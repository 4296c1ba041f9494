//! Fuzz target: see `portcullis::fuzzing::front`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    portcullis::fuzzing::front(data);
});
