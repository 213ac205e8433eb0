#![no_main]
//! The YAML writer: any strings, written in a list and as the keys and values of a map, read
//! back identically (with the platform's own reader), and writing never fails or panics.

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use persys_analyzer::yaml;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    // The unit separator splits the input into several strings.
    let list: Vec<String> = text.split('\u{1f}').map(str::to_owned).collect();
    let map: BTreeMap<String, String> = list.iter().map(|s| (s.clone(), s.clone())).collect();
    let doc = (list, map);
    let written = yaml::to_string(&doc).expect("strings always serialize");
    let read: (Vec<String>, BTreeMap<String, String>) =
        yaml::from_str(&written).unwrap_or_else(|e| panic!("the writer's output does not read back: {e}\n{written}"));
    assert_eq!(read, doc, "read back differently:\n{written}");
});
