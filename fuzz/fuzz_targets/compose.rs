#![no_main]
//! The compose parser returns a file or a file:line error, never panics.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Err(e) = persys_analyzer::compose::parse(text, "compose.yaml", Default::default())
    {
        assert!(e.line >= 1);
    }
});
