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

/// Validation checks the objects the generator keeps instead of reading its YAML back: for
/// every fixture, the findings are the ones reading each app's own files back gives.
#[test]
fn typed_validation_matches_reading_the_yaml_back() {
    use persys_analyzer::{analysis, persona, result::options, validate};
    for name in corpus::names() {
        let tree = corpus::tree(&name);
        let meta = corpus::metadata(&name);
        let result = analyze_tree(&tree, &meta).unwrap();
        let a = analysis::analyze(&tree, &options(&meta)).unwrap();
        let mut read_back = Vec::new();
        for app in &a.apps {
            let prefix = if a.is_multi() { format!("{}/", app.name) } else { String::new() };
            let own: Vec<_> = result
                .manifests
                .iter()
                .filter(|m| m.path.starts_with(&prefix) && (a.is_multi() || !m.path.contains('/')))
                .cloned()
                .collect();
            read_back.extend(validate::validate_files(&own, &persona::spec_for(&a, app), &meta.namespace));
        }
        validate::sort(&mut read_back);
        assert!(!read_back.is_empty(), "{name}: no findings to compare");
        assert_eq!(result.findings, read_back, "{name}");
    }
}
