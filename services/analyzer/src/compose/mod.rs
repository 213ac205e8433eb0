//! The compose parser: the subset of the compose spec that decides how services run
//! (services, image and build, ports in short and long syntax, environment as list or map,
//! env_file, depends_on, healthcheck, volumes, deploy resources and replicas, profiles) plus
//! extension fields, which are accepted and ignored. Malformed files are reported with file,
//! line, column and the path of the offending key.

mod de;
mod interpolate;
mod model;

use std::collections::BTreeMap;

use crate::yaml;

pub use de::{CommandLine, parse_seconds};
pub use interpolate::parse_dotenv;
pub use model::{
    Build, ComposeFile, DependsOn, Deploy, EnvFile, HealthTest, Healthcheck, Origin, Port, Resources, Service,
    TopVolume, VolumeKind, VolumeMount,
};

/// A malformed compose file.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{column}: {message}")]
pub struct ComposeError {
    /// File path, relative to the application root.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// What is wrong, with the path of the key, e.g. `services.web.ports[0]: ...`.
    pub message: String,
}

/// A parsed compose file and what interpolation could not resolve.
#[derive(Clone, Debug, PartialEq)]
pub struct Parsed {
    /// The file.
    pub file: ComposeFile,
    /// Variables referenced without a value in `.env` (they became empty strings).
    pub unset_variables: Vec<String>,
}

/// Parses a compose file; `dotenv` holds the variables of the project's `.env` file.
pub fn parse(text: &str, path: &str, dotenv: BTreeMap<String, String>) -> Result<Parsed, ComposeError> {
    let scope = interpolate::Scope::enter(dotenv);
    // One streaming pass: merge keys (`<<`) and aliases are resolved as the document is read, so
    // every error keeps its exact line.
    // Keys are read with their positions, for the notes; an error is reported by a second,
    // plain read, whose message names the key (see `model::next_key`).
    let file = match yaml::from_str::<model::Located>(text) {
        Ok(located) => Ok(located.0),
        Err(_) => yaml::from_str::<ComposeFile>(text),
    };
    let mut file = file.map_err(|e| to_error(&e, path, text))?;
    let unset_variables = scope.unset();
    drop(scope);
    file.path = path.to_owned();
    // Where each line starts, so every key's reported line is checked against the text once.
    let lines: Vec<usize> = std::iter::once(0).chain(text.match_indices('\n').map(|(i, _)| i + 1)).collect();
    for service in file.services.values_mut() {
        service.origin.file = path.to_owned();
        service.origin.verify(text, &lines);
    }
    for (name, service) in &file.services {
        if !valid_service_name(name) {
            return Err(ComposeError {
                file: path.to_owned(),
                line: line_of_key(text, name),
                column: 1,
                message: format!("services.{name}: invalid service name; use letters, digits, `.`, `_` and `-`"),
            });
        }
        if service.image.is_none() && service.build.is_none() {
            return Err(ComposeError {
                file: path.to_owned(),
                line: line_of_key(text, name),
                column: 1,
                message: format!("services.{name}: has neither `image` nor `build`"),
            });
        }
        for dep in service.depends_on.keys() {
            if !file.services.contains_key(dep) {
                return Err(ComposeError {
                    file: path.to_owned(),
                    line: line_of_key(text, name),
                    column: 1,
                    message: format!("services.{name}.depends_on: `{dep}` is not a service of this file"),
                });
            }
        }
    }
    Ok(Parsed { file, unset_variables })
}

fn valid_service_name(name: &str) -> bool {
    !name.is_empty()
        && name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// Returns the line of the first `<key>:` under `services:`, for errors found after parsing.
fn line_of_key(text: &str, key: &str) -> usize {
    let mut in_services = false;
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if line.starts_with("services:") {
            in_services = true;
            continue;
        }
        let indented = line.starts_with(' ') || line.starts_with('\t');
        if in_services && !indented && !trimmed.is_empty() && !trimmed.starts_with('#') {
            in_services = false;
        }
        let bare = trimmed.trim_start_matches(['"', '\'']);
        if in_services
            && indented
            && bare.starts_with(key)
            && bare[key.len()..].trim_start_matches(['"', '\'']).starts_with(':')
        {
            return i + 1;
        }
    }
    1
}

fn to_error(e: &yaml::ReadError, path: &str, text: &str) -> ComposeError {
    let (line, column) = e.position.unwrap_or((text.lines().count().max(1), 1));
    let mut message = e.message.clone();
    if text.trim().is_empty() {
        message = "the file is empty: a compose file needs a `services:` map".into();
    }
    ComposeError { file: path.to_owned(), line, column, message }
}

#[cfg(test)]
mod tests;
