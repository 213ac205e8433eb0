#![no_main]
//! The Dockerfile parser returns a Dockerfile or a file:line error, never panics.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Err(e) = persys_analyzer::dockerfile::parse(text, "Dockerfile")
    {
        assert!(e.line >= 1);
    }
});
