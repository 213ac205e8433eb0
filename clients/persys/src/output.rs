//! Output: aligned tables for people, JSON and YAML for scripts.

use std::fmt::{self, Write as _};

use clap::ValueEnum;
use prost_types::Timestamp;
use serde::Serialize;

/// How read commands print.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned columns.
    Table,
    /// The full object as JSON.
    Json,
    /// The full object as YAML.
    Yaml,
}

/// Prints `value` as JSON or YAML, or the text `table` makes.
pub fn emit<T: Serialize>(format: Format, value: &T, table: impl FnOnce() -> String) -> anyhow::Result<()> {
    match format {
        Format::Table => print!("{}", table()),
        Format::Json => println!("{}", serde_json::to_string_pretty(value)?),
        Format::Yaml => print!("{}", yaml(value)?),
    }
    Ok(())
}

/// Prints one item of a stream: one JSON line, or one YAML document.
pub fn emit_line<T: Serialize>(format: Format, value: &T) -> anyhow::Result<()> {
    match format {
        Format::Json => println!("{}", serde_json::to_string(value)?),
        Format::Yaml => print!("---\n{}", yaml(value)?),
        Format::Table => unreachable!("tables print rows"),
    }
    Ok(())
}

/// Returns `value` as YAML that YAML 1.1 readers (kubectl, PyYAML) read back unchanged: the
/// platform's one YAML writer.
fn yaml<T: Serialize>(value: &T) -> anyhow::Result<String> {
    Ok(persys_kit::yaml::to_string(value)?)
}

/// Rows under headers, printed with aligned columns.
pub struct Table {
    headers: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// Returns an empty table with `headers`.
    pub fn new(headers: &[&'static str]) -> Self {
        Self { headers: headers.to_vec(), rows: Vec::new() }
    }

    /// Appends a row.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Returns the widths of each column.
    pub fn widths(&self) -> Vec<usize> {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.len()).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        widths
    }
}

/// Formats one line of cells padded to `widths` (the last cell is not padded).
pub fn line(cells: &[impl AsRef<str>], widths: &[usize]) -> String {
    let mut out = String::new();
    for (i, cell) in cells.iter().enumerate() {
        let cell = cell.as_ref();
        if i + 1 == cells.len() {
            out.push_str(cell);
        } else {
            let pad = widths.get(i).copied().unwrap_or(0).saturating_sub(cell.chars().count());
            let _ = write!(out, "{cell}{}   ", " ".repeat(pad));
        }
    }
    out.trim_end().to_owned()
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let widths = self.widths();
        writeln!(f, "{}", line(&self.headers, &widths))?;
        for row in &self.rows {
            writeln!(f, "{}", line(row, &widths))?;
        }
        Ok(())
    }
}

/// Prints `key: value` lines with the values aligned, skipping empty values.
pub fn describe(pairs: &[(&str, String)]) -> String {
    let width = pairs.iter().filter(|(_, v)| !v.is_empty()).map(|(k, _)| k.len()).max().unwrap_or(0) + 1;
    let mut out = String::new();
    for (k, v) in pairs.iter().filter(|(_, v)| !v.is_empty()) {
        let _ = writeln!(out, "{:width$} {v}", format!("{k}:"));
    }
    out
}

/// Returns the current Unix time in seconds.
pub fn now_secs() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// Returns how long ago `then` was, like `45s`, `12m`, `3h`, `5d`; `-` when unknown.
pub fn age(then: Option<&Timestamp>, now: i64) -> String {
    match then {
        Some(t) if t.seconds > 0 => duration((now - t.seconds).max(0)),
        _ => "-".into(),
    }
}

/// Formats seconds the short way: `45s`, `12m`, `3h`, `5d`.
pub fn duration(secs: i64) -> String {
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 2 * 3600 => format!("{}m", s / 60),
        s if s < 2 * 86400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

/// Returns a timestamp as RFC 3339 (UTC), or `None` when unset.
pub fn rfc3339(t: Option<&Timestamp>) -> Option<String> {
    let t = t?;
    let nanos = i128::from(t.seconds) * 1_000_000_000 + i128::from(t.nanos);
    let dt = time::OffsetDateTime::from_unix_timestamp_nanos(nanos).ok()?;
    dt.format(&time::format_description::well_known::Rfc3339).ok()
}

/// Returns the short form of an id for tables: the last 8 characters of a UUID (time-ordered
/// UUIDs share their first characters, their random part is at the end); other ids whole.
pub fn short(id: &str) -> String {
    if uuid::Uuid::parse_str(id).is_ok() { id[id.len() - 8..].to_owned() } else { id.to_owned() }
}

/// Returns `-` for an empty string.
pub fn dash(s: &str) -> String {
    if s.is_empty() { "-".into() } else { s.to_owned() }
}

/// Turns a protobuf enum name into its short PascalCase form:
/// `WORKLOAD_PHASE_PENDING` with prefix `WORKLOAD_PHASE_` becomes `Pending`.
pub fn enum_name(full: &str, prefix: &str) -> String {
    let rest = full.strip_prefix(prefix).unwrap_or(full);
    rest.split('_')
        .map(|w| {
            let mut c = w.chars();
            c.next().map(|f| f.to_ascii_uppercase().to_string() + &c.as_str().to_ascii_lowercase()).unwrap_or_default()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_output_quotes_what_yaml_1_1_readers_would_misread() {
        let workload =
            serde_json::json!({"command": ["serve", "--tls", "on", "--umask", "0755"], "env": {"DEBUG": "no"}});
        assert_eq!(
            yaml(&workload).unwrap(),
            "command:\n- serve\n- --tls\n- \"on\"\n- --umask\n- \"0755\"\nenv:\n  DEBUG: \"no\"\n"
        );
    }

    #[test]
    fn tables_align_columns() {
        let mut t = Table::new(&["ID", "NAME", "PHASE"]);
        t.row(vec!["1".into(), "a-long-name".into(), "Running".into()]);
        t.row(vec!["22".into(), "b".into(), "Pending".into()]);
        assert_eq!(t.to_string(), "ID   NAME          PHASE\n1    a-long-name   Running\n22   b             Pending\n");
    }

    #[test]
    fn ages_and_times_read_well() {
        let t = Timestamp { seconds: 1_000, nanos: 0 };
        assert_eq!(age(Some(&t), 1_045), "45s");
        assert_eq!(age(Some(&t), 1_000 + 600), "10m");
        assert_eq!(age(Some(&t), 1_000 + 3 * 3600), "3h");
        assert_eq!(age(Some(&t), 1_000 + 5 * 86400), "5d");
        assert_eq!(age(None, 5), "-");
        assert_eq!(rfc3339(Some(&Timestamp { seconds: 0, nanos: 0 })).unwrap(), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn short_ids_keep_the_random_part() {
        assert_eq!(short("01a200fd-d302-73d7-90f4-7c1aaf93665c"), "af93665c");
        assert_eq!(short("node-7"), "node-7");
        assert_eq!(short(""), "");
    }

    #[test]
    fn enum_names_are_short() {
        assert_eq!(enum_name("WORKLOAD_PHASE_PENDING", "WORKLOAD_PHASE_"), "Pending");
        assert_eq!(enum_name("NODE_STATE_NOT_READY", "NODE_STATE_"), "NotReady");
        assert_eq!(enum_name("RESTART_POLICY_ON_FAILURE", "RESTART_POLICY_"), "OnFailure");
    }

    #[test]
    fn describe_skips_empty_values() {
        let text = describe(&[("ID", "abc".into()), ("Reason", String::new()), ("Phase", "Running".into())]);
        assert_eq!(text, "ID:    abc\nPhase: Running\n");
    }
}
