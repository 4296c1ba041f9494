//! Fuzz target: see `portcullis::fuzzing::front`.
#![no_main]

libfuzzer_sys::fuzz_target!(
    init: portcullis::fuzzing::front_init(),
    |data: &[u8]| {
        portcullis::fuzzing::front(data);
    }
);
