//! Golden files: every fixture of the corpus, analysed and rendered, against its snapshot.
//! The snapshots are the reviewed expected output; `cargo insta review` updates them.

mod corpus;

use persys_analyzer::analyze_tree;

#[test]
fn corpus_matches_golden_files() {
    let names = corpus::names();
    assert!(names.len() >= 23, "the corpus shrank: {names:?}");
    for name in names {
        let result =
            analyze_tree(&corpus::tree(&name), &corpus::metadata(&name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        insta::assert_snapshot!(name.clone(), corpus::render(&result));
    }
}

#[test]
fn output_is_deterministic() {
    for name in corpus::names() {
        let tree = corpus::tree(&name);
        let meta = corpus::metadata(&name);
        let a = analyze_tree(&tree, &meta).unwrap();
        let b = analyze_tree(&tree.clone(), &meta).unwrap();
        assert_eq!(a, b, "{name} differs between two runs");
    }
}
