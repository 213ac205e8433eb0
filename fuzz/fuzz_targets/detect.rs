#![no_main]
//! The framework readers (source detection, environment reads through framework configuration,
//! Actuator settings, node-config, viper) and the analysis over them never panic or hang: the
//! input, split at the unit separator, fills the files one stack's readers look at.

use libfuzzer_sys::fuzz_target;
use persys_analyzer::{analyze_tree, detect::STACK_FILES as STACKS, tree::SourceTree};

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else { return };
    let stack = STACKS[usize::from(first) % STACKS.len()];
    let mut tree = SourceTree::new();
    for (i, part) in rest.split(|b| *b == 0x1f).enumerate().take(stack.len()) {
        tree.insert(stack[i], part.to_vec()).expect("a fixed, valid path");
    }
    if !tree.contains(stack[0]) {
        tree.insert(stack[0], Vec::new()).expect("a fixed, valid path");
    }
    let _ = analyze_tree(&tree, &Default::default());
});
