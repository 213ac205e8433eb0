//! YAML in and out, for every file the platform writes (manifests, personas, kustomizations,
//! `.dorgu.yaml`, the dorgu config, `persys -o yaml`) and every YAML it reads (compose files,
//! `.dorgu.yaml`, manifests to validate). The analyzer (which re-exports it as
//! `persys_analyzer::yaml`) and both CLIs call this module, so there is one writer and one
//! reader.
//!
//! Writing is safe for YAML 1.1 readers: kubectl (client-go's YAML), PyYAML and Ansible still
//! resolve plain `yes`, `on`, `n`, `0755`, `1:30`, `.inf`, `2024-01-01` or `~` to booleans,
//! numbers, timestamps or null, so a string like that is quoted, as a value and as a key.
//! serde-saphyr's emitter does this in its default (YAML 1.1-compatible) mode;
//! `services/analyzer/tests/yaml.rs` holds it to that against PyYAML.
//!
//! Reading follows the YAML 1.2 core schema, as compose (Go yaml.v3) does and as serde_yaml did
//! before: `on`, `yes`, `0755`, `1_000` and `1:30` stay strings; only `true`/`false` are booleans.
//! Anchors, aliases and merge keys (`<<`) are resolved while reading; alias expansion is bounded.
//! Errors say where (line, column) and under which key (`services.web.ports[0]`).

use serde::{Serialize, de::DeserializeOwned};

pub use serde_saphyr::SerializeError;

/// A YAML document that could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}{}", self.position.map(|(l, c)| format!(" at line {l} column {c}")).unwrap_or_default())]
pub struct ReadError {
    /// What is wrong, after the path of the key it is under (`services.web.ports[0]: ...`).
    pub message: String,
    /// 1-based line and column, when known.
    pub position: Option<(usize, usize)>,
}

impl ReadError {
    fn new(e: &serde_saphyr::Error, path: Option<String>) -> Self {
        let position = e.location().and_then(|l| {
            let line = usize::try_from(l.line()).ok().filter(|l| *l > 0)?;
            Some((line, usize::try_from(l.column()).unwrap_or(1).max(1)))
        });
        let mut message = e.to_string();
        // The position is a field of its own (callers report it as FILE:LINE).
        if let Some(at) = message.rfind(" at line ")
            && let Some((line, column)) = message[at + " at line ".len()..].split_once(", column ")
            && [line, column].iter().all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        {
            message.truncate(at);
        }
        let message = match path {
            Some(path) => format!("{path}: {message}"),
            None => message,
        };
        Self { message, position }
    }
}

/// The writer's settings: block style, two-space indent, lists at their key's indentation (as
/// kubectl writes them), multi-line strings as literal blocks; long one-line strings stay on one
/// line (no folding), so a command or an annotation reads as written.
fn writer_options() -> serde_saphyr::SerializerOptions {
    serde_saphyr::ser_options! {
        folded_wrap_chars: usize::MAX,
    }
}

/// The reader's settings (see the module docs).
fn reader_options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        strict_booleans: true,
        leading_zero_numbers_as_strings: true,
        underscored_numbers_as_strings: true,
        non_finite_float_policy: serde_saphyr::NonFiniteFloatPolicy::AsString,
        with_snippet: false,
    }
}

/// Returns `value` as one YAML document.
pub fn to_string<T: Serialize>(value: &T) -> Result<String, SerializeError> {
    serde_saphyr::to_string_with_options(value, writer_options())
}

/// Reads one YAML document.
pub fn from_str<T: DeserializeOwned>(text: &str) -> Result<T, ReadError> {
    let mut path = None;
    serde_saphyr::with_deserializer_from_str_with_options(text, reader_options(), |de| {
        serde_path_to_error::deserialize(de).map_err(|e| {
            if e.path().iter().next().is_some() {
                path = Some(e.path().to_string());
            }
            e.into_inner()
        })
    })
    .map_err(|e| ReadError::new(&e, path))
}

/// Reads every document of a YAML stream, each on its own: a document that does not match `T`
/// is an error in its place and the next one is still read; after a syntax error the stream
/// ends. Empty and null documents are skipped.
pub fn documents<T: DeserializeOwned>(text: &str) -> Vec<Result<T, ReadError>> {
    let mut bytes = text.as_bytes();
    serde_saphyr::read_with_options(&mut bytes, reader_options())
        .map(|r| r.map_err(|e| ReadError::new(&e, None)))
        .collect()
}
