//! The Dockerfile and compose parsers, the framework configuration readers (and the whole
//! analysis over them) never panic or hang, whatever the input: they return a value or an error
//! naming the file and line.

use std::collections::BTreeMap;

use persys_analyzer::{analyze_tree, compose, detect::STACK_FILES as STACKS, dockerfile, tree::SourceTree};
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

/// Text shaped like the ways frameworks read the environment, and their configuration files.
fn framework_text() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        Just("${".to_owned()),
        Just("${DB_URL}".to_owned()),
        Just("${PORT:8080}".to_owned()),
        Just("}".to_owned()),
        Just(":".to_owned()),
        Just("ENV.fetch(".to_owned()),
        Just("ENV['A_B']".to_owned()),
        Just("<%= ".to_owned()),
        Just("os.environ[".to_owned()),
        Just("os.getenv(".to_owned()),
        Just("os.environ.get(".to_owned()),
        Just("env(".to_owned()),
        Just("config(".to_owned()),
        Just("default=".to_owned()),
        Just("process.env.".to_owned()),
        Just("process.env[".to_owned()),
        Just("configService.getOrThrow<string>(".to_owned()),
        Just("os.Getenv(".to_owned()),
        Just(".BindEnv(".to_owned()),
        Just(".SetDefault(".to_owned()),
        Just(".SetEnvPrefix(".to_owned()),
        Just("env::var(".to_owned()),
        Just(".unwrap_or(".to_owned()),
        Just("GetEnvironmentVariable(".to_owned()),
        Just("System.getenv(".to_owned()),
        Just("\"SECRET_KEY\"".to_owned()),
        Just("'API_TOKEN'".to_owned()),
        Just("||".to_owned()),
        Just("??".to_owned()),
        Just("?:".to_owned()),
        Just(" or ".to_owned()),
        Just("(".to_owned()),
        Just(")".to_owned()),
        Just(",".to_owned()),
        Just("{".to_owned()),
        Just("\"".to_owned()),
        Just("'".to_owned()),
        Just("\\".to_owned()),
        Just("{\"__name\": ".to_owned()),
        Just("management.server.port=".to_owned()),
        Just("management:\n  server:\n    port: ".to_owned()),
        Just("server.servlet.context-path=".to_owned()),
        Just("spring-boot-starter-actuator".to_owned()),
        Just("<artifactId>spring-boot-starter-parent</artifactId><version>".to_owned()),
        Just("gem 'rails'".to_owned()),
        Just("\"laravel/framework\"".to_owned()),
        Just("django".to_owned()),
        Just("Route::get('/up'".to_owned()),
        Just("\n".to_owned()),
        Just("\n  ".to_owned()),
        "[A-Z_]{1,8}",
        "[ -~]{0,8}",
        "\\PC{0,4}",
    ];
    prop::collection::vec(token, 0..80).prop_map(|t| t.join(""))
}

/// A tree holding `text` in every file a stack's readers look at.
fn stack_tree(stack: usize, texts: &[String]) -> SourceTree {
    let mut tree = SourceTree::new();
    for (i, path) in STACKS[stack % STACKS.len()].iter().enumerate() {
        tree.insert(path, texts[i % texts.len()].clone().into_bytes()).unwrap();
    }
    tree
}

#[test]
fn huge_and_unclosed_reads_finish() {
    // Reads whose arguments or fallback never end (unclosed calls, `||` chains, open blocks),
    // and 50,000 variables in one node-config file: each read looks a bounded distance ahead,
    // never to the end of the file, so this finishes instead of taking quadratic time.
    let unclosed = "X = os.environ.get(\"A_B\", f(\n".repeat(30_000);
    let placeholders = "a: ${A_B:".repeat(100_000);
    let binary: Vec<u8> = (0..=255u8).cycle().take(1 << 20).collect();
    let fallbacks = "process.env.A_B || ".repeat(50_000);
    let blocks = "ENV.fetch('A_B') { ".repeat(50_000);
    let defaults = "v.SetDefault(\"k\", v.BindEnv(\"k\", \"A_B\") ".repeat(20_000);
    let names: String = (0..50_000).map(|i| format!("\"k{i}\": \"V{i}\", ")).collect();
    let node_config = format!("{{{}\"last\": \"LAST\"}}", names);
    let cases = [
        (4, unclosed),
        (0, placeholders),
        (2, String::from_utf8_lossy(&binary).into_owned()),
        (5, fallbacks),
        (2, blocks),
        (6, defaults),
        (5, node_config),
    ];
    for (stack, text) in cases {
        let tree = stack_tree(stack, &[text]);
        let _ = analyze_tree(&tree, &AnalyzeMetadata::default());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn framework_readers_never_panic(stack in 0..STACKS.len(), texts in prop::collection::vec(framework_text(), 1..4)) {
        let tree = stack_tree(stack, &texts);
        let _ = analyze_tree(&tree, &AnalyzeMetadata::default());
    }

    #[test]
    fn dockerfile_parser_never_panics(text in dockerfile_text()) {
        match dockerfile::parse(&text, "Dockerfile") {
            Err(e) => {
                prop_assert!(e.line >= 1);
                prop_assert!(!e.message.is_empty());
            }
            // Every line a setting keeps starts with the instruction that made it.
            Ok(d) => {
                let lines: Vec<&str> = text.lines().collect();
                for s in &d.stages {
                    let mut cited: Vec<(&str, usize)> = vec![("FROM", s.line)];
                    cited.extend([("USER", s.user_line), ("CMD", s.cmd_line), ("ENTRYPOINT", s.entrypoint_line)]);
                    cited.extend(s.env_lines.values().map(|l| ("ENV", *l)));
                    cited.extend(s.exposed.iter().map(|e| ("EXPOSE", e.line)));
                    cited.extend(s.healthcheck.iter().map(|h| ("HEALTHCHECK", h.line)));
                    for (keyword, line) in cited.into_iter().filter(|(_, l)| *l > 0) {
                        let held = lines.get(line - 1).copied().unwrap_or_default();
                        let first = held.split_whitespace().next().unwrap_or_default().to_ascii_uppercase();
                        prop_assert_eq!(first, keyword, "line {}: {:?}", line, held);
                    }
                }
            }
        }
    }

    #[test]
    fn dockerfile_parser_never_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let text = String::from_utf8_lossy(&bytes);
        let _ = dockerfile::parse(&text, "Dockerfile");
    }

    #[test]
    fn compose_parser_never_panics(text in compose_text()) {
        match compose::parse(&text, "compose.yaml", BTreeMap::new()) {
            Err(e) => {
                prop_assert!(e.line >= 1);
                prop_assert!(!e.message.is_empty());
            }
            // Every line a service keeps for the notes holds the key it is kept for.
            Ok(parsed) => {
                let lines: Vec<&str> = text.lines().collect();
                for (name, s) in &parsed.file.services {
                    let cited = s.origin.line().map(|l| (name.as_str(), l)).into_iter().chain(s.origin.key_lines());
                    for (key, line) in cited {
                        let held = lines.get(line - 1).copied().unwrap_or_default();
                        prop_assert!(held.contains(key), "services.{}: {} at line {}: {:?}", name, key, line, held);
                    }
                }
            }
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
