//! The YAML writer every manifest, persona, kustomization and CLI `-o yaml` goes through: any
//! string, written inside a map or a list, reads back as the same string — with our own reader,
//! and with a YAML 1.1 reader (PyYAML's `safe_load`, which resolves `on`, `no`, `0755` and
//! `1:30` as kubectl's client-go YAML does).

use std::{
    collections::BTreeMap,
    io::Write as _,
    process::{Command, Stdio},
};

mod corpus;

use persys_analyzer::{analyze_tree, yaml};
use proptest::{prelude::*, test_runner::TestCaseError};
use serde_json::{Value, json};

/// Strings that a YAML 1.1 reader takes for something else when they are written plain.
const TRAPS: &[&str] = &[
    "y",
    "Y",
    "n",
    "N",
    "yes",
    "Yes",
    "YES",
    "no",
    "No",
    "NO",
    "on",
    "On",
    "ON",
    "off",
    "Off",
    "OFF",
    "true",
    "True",
    "TRUE",
    "false",
    "False",
    "FALSE",
    "~",
    "null",
    "Null",
    "NULL",
    "",
    " ",
    "  ",
    "0755",
    "0o17",
    "0x1F",
    "0b101",
    "1e3",
    "1E3",
    "1.5e-3",
    ".5",
    "-.5",
    "+1",
    "-0",
    "1_000",
    "0_7",
    "1:30",
    "190:20:30.15",
    "-1:30",
    ".inf",
    "-.inf",
    "+.INF",
    ".nan",
    ".NaN",
    "nan",
    "inf",
    "2001-12-14",
    "2001-12-14t21:59:43.10-05:00",
    "2001-12-14 21:59:43.10 -5",
    "<<",
    "=",
    "-",
    "?",
    ":",
    "- a",
    "? a",
    ": a",
    "a: b",
    "a:",
    "a #b",
    "#a",
    "&a",
    "*a",
    "!a",
    "!!str",
    "|",
    ">",
    "|-",
    "'a",
    "\"a",
    "%a",
    "@a",
    "`a",
    "[a]",
    "{a: b}",
    ",a",
    "---",
    "...",
    "--- a",
    "... a",
    " a",
    "a ",
    "\ta",
    "a\t",
    "a\nb",
    "a\n",
    "\n",
    "\n\na",
    "a\n\n",
    " \n a",
    "a\r\nb",
    "\u{85}",
    "a\u{2028}b",
    "\u{feff}a",
    "\u{0}",
    "\u{7f}",
    "\u{1b}[0m",
];

/// Strings that are safe plain, to read back as well.
const PLAIN: &[&str] = &["é", "日本語", "🦀", "a'b\"c\\d", "two words", "http://x:8080/a#b", "a-b", "-a", "?a", "a:b"];

/// The words a YAML 1.1 reader resolves, with random capitalisation.
fn cased_words() -> impl Strategy<Value = String> {
    let words = prop::sample::select(&["y", "n", "yes", "no", "on", "off", "true", "false", "null", "nan", "inf"][..]);
    (words, prop::collection::vec(any::<bool>(), 5)).prop_map(|(w, upper)| {
        w.chars().zip(upper.iter().cycle()).map(|(c, u)| if *u { c.to_ascii_uppercase() } else { c }).collect()
    })
}

/// Strings weighted toward the forms YAML readers resolve, plus arbitrary unicode.
fn yaml_string() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(TRAPS).prop_map(str::to_owned),
        1 => prop::sample::select(PLAIN).prop_map(str::to_owned),
        2 => cased_words(),
        3 => "[-+]?(0[0-7_]{1,4}|0[xX][0-9a-fA-F_]{1,4}|0[oO][0-7_]{1,3}|0[bB][01_]{1,5}|[0-9_]{0,3}\\.[0-9_.]{0,3}([eE][-+]?[0-9]{1,2})?|[0-9]{1,3}[eE][-+]?[0-9]{1,2}|[0-9][0-9_]{0,2}(:[0-9]{1,2}){1,3}(\\.[0-9_]{0,2})?|\\.(inf|Inf|INF|nan|NaN|NAN)|[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}([Tt ][0-9]{1,2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{0,3})?( ?(Z|[-+][0-9]{1,2}(:[0-9]{2})?))?)?)",
        2 => "[ \t]{0,2}[a-z0-9:#=<-]{0,6}[ \t]{0,2}",
        2 => "[-?:,\\[\\]{}#&*!|>'\"%@`=<~.]{1,3}[ a-z0-9:#-]{0,4}",
        2 => "\\PC{0,24}",
        1 => any::<String>(),
        1 => "[a-z ]{60,160}",
    ]
}

/// A document shaped like the manifests: a list (container args), a map whose keys and values
/// are the strings (ConfigMap data, labels), and strings nested in a list of maps (env).
fn document(strings: &[String]) -> Value {
    let keyed: BTreeMap<&str, &str> =
        strings.iter().filter(|s| s.chars().count() <= 100).map(|s| (s.as_str(), s.as_str())).collect();
    let env: Vec<Value> = strings.iter().map(|s| json!({"name": "X", "value": s})).collect();
    json!({"args": strings, "data": keyed, "env": env})
}

/// The first string of `strings` whose copy in `read` differs, for the failure message.
fn first_difference(strings: &[String], read: &Value) -> String {
    for (i, s) in strings.iter().enumerate() {
        let back = &read["args"][i];
        if back.as_str() != Some(s.as_str()) {
            let written = yaml::to_string(&vec![s]).unwrap_or_default();
            return format!("{s:?} was written as {written:?} and read back as {back}");
        }
    }
    "the strings differ as map keys or nested values".into()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn written_strings_read_back_identically(strings in prop::collection::vec(yaml_string(), 0..24)) {
        let doc = document(&strings);
        let text = yaml::to_string(&doc).expect("a JSON value always serializes");
        let read: Value = yaml::from_str(&text).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        prop_assert!(read == doc, "{}\n{text}", first_difference(&strings, &read));
    }
}

#[test]
fn yaml_11_traps_are_written_quoted() {
    let quoted = |text: &str| text.starts_with(['"', '\'', '|']);
    for trap in TRAPS {
        let text = yaml::to_string(&json!({"k": trap, "l": [trap]})).unwrap();
        let value = text.strip_prefix("k: ").unwrap_or_default();
        let item = text.lines().find_map(|l| l.strip_prefix("- ")).unwrap_or_default();
        assert!(quoted(value) && quoted(item), "{trap:?} written as:\n{text}");
        let key = yaml::to_string(&json!({ *trap: 1 })).unwrap();
        assert!(key.starts_with(['"', '\'']), "{trap:?} as a key written as:\n{key}");
    }
    for plain in PLAIN {
        let text = yaml::to_string(&json!({"k": plain})).unwrap();
        assert_eq!(text, format!("k: {plain}\n"), "written plain, as people write it");
    }
}

/// Loads `yaml` with PyYAML's `safe_load` and returns it as JSON (non-JSON values, such as the
/// dates and timestamps YAML 1.1 resolves, become their Python `repr`, so they differ).
fn pyyaml_load(python: &str, yaml: &str) -> Result<Value, String> {
    pyyaml(python, "yaml.safe_load", yaml)
}

/// Runs `load` (`yaml.safe_load` or `yaml.safe_load_all`) on `yaml` and returns its JSON.
fn pyyaml(python: &str, load: &str, yaml: &str) -> Result<Value, String> {
    let script = format!(
        "import json, sys, yaml\n\
         data = {load}(sys.stdin.buffer.read().decode('utf-8'))\n\
         json.dump(list(data) if '{load}'.endswith('_all') else data, sys.stdout, default=repr)\n"
    );
    let mut child = Command::new(python)
        .args(["-c", script.as_str()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("starting {python}: {e}"))?;
    child.stdin.take().expect("piped").write_all(yaml.as_bytes()).map_err(|e| e.to_string())?;
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!("PyYAML could not read it: {}", String::from_utf8_lossy(&out.stderr)));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("PyYAML's answer is not JSON: {e}"))
}

#[test]
fn yaml_11_readers_read_written_strings_as_strings() {
    let Some(python) =
        persys_kit::testing::require_env("PERSYS_TEST_PYTHON", "a Python with PyYAML (scripts/test makes one)")
    else {
        return;
    };
    // The fixed traps first, then batches of generated strings: one Python run per batch.
    let traps: Vec<String> = TRAPS.iter().chain(PLAIN).map(|s| (*s).to_owned()).collect();
    let check = |strings: &Vec<String>| -> Result<(), TestCaseError> {
        let doc = document(strings);
        let text = yaml::to_string(&doc).expect("a JSON value always serializes");
        let read = pyyaml_load(&python, &text).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        if read != doc {
            return Err(TestCaseError::fail(format!("{}\n{text}", first_difference(strings, &read))));
        }
        Ok(())
    };
    check(&traps).unwrap_or_else(|e| panic!("{e}"));
    let config = ProptestConfig { cases: 32, max_shrink_iters: 256, ..ProptestConfig::default() };
    proptest::test_runner::TestRunner::new(config)
        .run(&prop::collection::vec(yaml_string(), 1..200), |strings| check(&strings))
        .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn the_reader_keeps_yaml_12_strings_and_resolves_merge_keys() {
    let text = "base: &base\n  mode: on\n  perms: 0755\nservice:\n  <<: *base\n  window: 1:30\n  answer: yes\n  big: 1_000\n  flag: true\n  count: 3\n";
    let read: Value = yaml::from_str(text).unwrap();
    assert_eq!(
        read["service"],
        json!({"mode": "on", "perms": "0755", "window": "1:30", "answer": "yes", "big": "1_000", "flag": true, "count": 3})
    );
}

#[test]
fn pyyaml_reads_every_generated_manifest_as_we_meant_it() {
    let Some(python) =
        persys_kit::testing::require_env("PERSYS_TEST_PYTHON", "a Python with PyYAML (scripts/test makes one)")
    else {
        return;
    };
    // The whole corpus as one stream, so PyYAML starts once.
    let mut stream = String::new();
    let mut meant = Vec::new();
    let mut names = Vec::new();
    for name in corpus::names() {
        let result = analyze_tree(&corpus::tree(&name), &corpus::metadata(&name)).unwrap();
        for m in result.manifests.iter().filter(|m| m.kind != "Markdown") {
            meant.push(yaml::from_str::<Value>(&m.content).unwrap_or_else(|e| panic!("{name}/{}: {e}", m.path)));
            names.push(format!("{name}/{}", m.path));
            stream.push_str("---\n");
            stream.push_str(&m.content);
        }
    }
    let read = pyyaml(&python, "yaml.safe_load_all", &stream).unwrap_or_else(|e| panic!("{e}"));
    let read = read.as_array().expect("a list of documents");
    assert_eq!(read.len(), meant.len(), "one document per manifest");
    for ((name, read), meant) in names.iter().zip(read).zip(&meant) {
        assert_eq!(read, meant, "{name} reads differently in PyYAML");
    }
}
