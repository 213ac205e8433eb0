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

/// Every `why:` note and warning that names a Dockerfile instruction or a compose key with a
/// line (`USER at api/Dockerfile:5`, `services.api.expose at compose.yaml:17`) names a line
/// of that file that holds it; none falls back to an unplaced "compose ..." source.
#[test]
fn notes_name_lines_that_hold_what_they_cite() {
    let instruction =
        regex::Regex::new(r"\b(USER|ENV|CMD|ENTRYPOINT|EXPOSE|HEALTHCHECK)(?: [A-Z_]+)? at ([\w./-]+):(\d+)").unwrap();
    let key = regex::Regex::new(r"\bservices\.([\w.-]+?)(?:\.(\w+))? at ([\w./-]+):(\d+)").unwrap();
    let (mut dockerfile_lines, mut compose_lines) = (0, 0);
    for name in corpus::names() {
        let result = analyze_tree(&corpus::tree(&name), &corpus::metadata(&name)).unwrap();
        let facts = result.facts.unwrap_or_default();
        let line_of = |file: &str, line: &str| -> String {
            let text = std::fs::read_to_string(corpus::root().join(&name).join(file))
                .unwrap_or_else(|e| panic!("{name}: {file}: {e}"));
            let n: usize = line.parse().unwrap();
            text.lines().nth(n - 1).unwrap_or_else(|| panic!("{name}: {file} has no line {n}")).to_owned()
        };
        for note in facts.notes.iter().chain(&facts.warnings) {
            assert!(!note.contains("(compose ") && !note.contains("the compose "), "{name}: {note}");
            for c in instruction.captures_iter(note) {
                let held = line_of(&c[2], &c[3]);
                let first = held.split_whitespace().next().unwrap_or("").to_ascii_uppercase();
                assert_eq!(first, &c[1], "{name}: `{note}`: {}:{} is `{held}`", &c[2], &c[3]);
                dockerfile_lines += 1;
            }
            for c in key.captures_iter(note) {
                let held = line_of(&c[3], &c[4]);
                let k = c.get(2).map_or(&c[1], |k| k.as_str());
                assert!(held.contains(&format!("{k}:")), "{name}: `{note}`: {}:{} is `{held}`", &c[3], &c[4]);
                compose_lines += 1;
            }
        }
    }
    assert!(
        dockerfile_lines >= 20 && compose_lines >= 8,
        "{dockerfile_lines} Dockerfile and {compose_lines} compose lines"
    );
}
