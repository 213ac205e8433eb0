//! The Dockerfile and compose parsers (and the whole analysis over them) never panic, whatever
//! the input: they return a value or an error naming the file and line.

use std::collections::BTreeMap;

use persys_analyzer::{analyze_tree, compose, dockerfile, tree::SourceTree};
use persys_proto::analyzer::v1::AnalyzeMetadata;
use proptest::prelude::*;

/// Dockerfile-shaped text: real keywords, flags, quotes, variables, continuations, heredocs.
fn dockerfile_text() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        Just("FROM".to_owned()),
        Just("from".to_owned()),
        Just("AS".to_owned()),
        Just("ARG".to_owned()),
        Just("ENV".to_owned()),
        Just("EXPOSE".to_owned()),
        Just("HEALTHCHECK".to_owned()),
        Just("CMD".to_owned()),
        Just("NONE".to_owned()),
        Just("USER".to_owned()),
        Just("WORKDIR".to_owned()),
        Just("VOLUME".to_owned()),
        Just("SHELL".to_owned()),
        Just("ONBUILD".to_owned()),
        Just("RUN".to_owned()),
        Just("COPY".to_owned()),
        Just("<<EOF".to_owned()),
        Just("<<-'X'".to_owned()),
        Just("EOF".to_owned()),
        Just("--interval=".to_owned()),
        Just("${A:-${B}}".to_owned()),
        Just("$".to_owned()),
        Just("${".to_owned()),
        Just("\"".to_owned()),
        Just("'".to_owned()),
        Just("\\".to_owned()),
        Just("`".to_owned()),
        Just("# escape=`".to_owned()),
        Just("[\"a\",".to_owned()),
        Just("=".to_owned()),
        Just("80/udp".to_owned()),
        Just("1-65535".to_owned()),
        Just("\n".to_owned()),
        Just(" ".to_owned()),
        "[ -~]{0,8}",
        "\\PC{0,4}",
    ];
    prop::collection::vec(token, 0..60).prop_map(|t| t.join(" "))
}

/// Compose-shaped text: keys of the spec, YAML punctuation, anchors, indentation.
fn compose_text() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        Just("services:".to_owned()),
        Just("web:".to_owned()),
        Just("image:".to_owned()),
        Just("build:".to_owned()),
        Just("ports:".to_owned()),
        Just("- \"8080:80/udp\"".to_owned()),
        Just("- target:".to_owned()),
        Just("environment:".to_owned()),
        Just("depends_on:".to_owned()),
        Just("healthcheck:".to_owned()),
        Just("test:".to_owned()),
        Just("volumes:".to_owned()),
        Just("deploy:".to_owned()),
        Just("replicas:".to_owned()),
        Just("profiles:".to_owned()),
        Just("x-a: &a".to_owned()),
        Just("<<: *a".to_owned()),
        Just("*a".to_owned()),
        Just("${X:?e}".to_owned()),
        Just("[".to_owned()),
        Just("{".to_owned()),
        Just("\n  ".to_owned()),
        Just("\n    ".to_owned()),
        Just("\n".to_owned()),
        Just("~".to_owned()),
        "[ -~]{0,8}",
        "\\PC{0,4}",
    ];
    prop::collection::vec(token, 0..60).prop_map(|t| t.join(" "))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn dockerfile_parser_never_panics(text in dockerfile_text()) {
        if let Err(e) = dockerfile::parse(&text, "Dockerfile") {
            prop_assert!(e.line >= 1);
            prop_assert!(!e.message.is_empty());
        }
    }

    #[test]
    fn dockerfile_parser_never_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let text = String::from_utf8_lossy(&bytes);
        let _ = dockerfile::parse(&text, "Dockerfile");
    }

    #[test]
    fn compose_parser_never_panics(text in compose_text()) {
        if let Err(e) = compose::parse(&text, "compose.yaml", BTreeMap::new()) {
            prop_assert!(e.line >= 1);
            prop_assert!(!e.message.is_empty());
        }
    }

    #[test]
    fn compose_parser_never_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let text = String::from_utf8_lossy(&bytes);
        let _ = compose::parse(&text, "compose.yaml", BTreeMap::new());
    }

    #[test]
    fn analysis_of_arbitrary_files_never_panics(dockerfile in dockerfile_text(), compose in compose_text(), with_compose: bool) {
        let mut tree = SourceTree::new();
        tree.insert("Dockerfile", dockerfile.into_bytes()).unwrap();
        if with_compose {
            tree.insert("compose.yaml", compose.into_bytes()).unwrap();
        }
        let _ = analyze_tree(&tree, &AnalyzeMetadata::default());
    }
}
