//! Environment variables an application reads, from its code and from its framework's
//! configuration files, each with whether it must be set and where it is read.
//!
//! The language modules match the reading expressions (`os.environ["X"]`, `${X:8080}`,
//! `ENV.fetch("X") { 5 }`, `env('X', 'd')`, ...); this module holds what they share: how a
//! default is read from a call's arguments, the line of a match, and the rule that the
//! strictest read of a variable wins. Everything here is bounded: arguments are read at most
//! [`MAX_ARGS`] bytes ahead, lines are counted once per file, whatever the input.

use std::collections::BTreeMap;

use regex::{Captures, Regex};

use crate::model::is_secret;

/// How far past a variable's name a call's arguments are read.
pub const MAX_ARGS: usize = 512;

/// Whether the application can run without a variable.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Need {
    /// Read with no default (`process.env.X`, `os.Getenv("X")`): the code decides what unset
    /// means.
    Optional,
    /// Read with a default: the literal when one is written (`${X:8080}`), `None` when the
    /// default is an expression.
    Default(Option<String>),
    /// The application fails without it (`os.environ["X"]`, `ENV.fetch("X")`, Spring `${X}`).
    Required,
}

impl Need {
    /// Returns how strict the read is: a required read wins over a default, which wins over
    /// an optional read.
    fn rank(&self) -> u8 {
        match self {
            Self::Optional => 0,
            Self::Default(None) => 1,
            Self::Default(Some(_)) => 2,
            Self::Required => 3,
        }
    }

    /// Returns how a note introduces the read: `required by`, `defaulted by`, `read
    /// without a default by`.
    pub fn by(&self) -> &'static str {
        match self {
            Self::Optional => "read without a default by",
            Self::Default(_) => "defaulted by",
            Self::Required => "required by",
        }
    }

    /// Returns `required`, `optional` or `defaulted`.
    pub fn word(&self) -> &'static str {
        match self {
            Self::Optional => "optional",
            Self::Default(_) => "defaulted",
            Self::Required => "required",
        }
    }
}

/// One variable the application reads, at its strictest read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvRead {
    /// Whether it must be set.
    pub need: Need,
    /// The file that reads it.
    pub file: String,
    /// The 1-based line of the read.
    pub line: usize,
    /// The reading expression as written (at most 60 characters).
    pub expr: String,
}

impl EnvRead {
    /// Returns `file:line`.
    pub fn location(&self) -> String {
        format!("{}:{}", self.file, self.line)
    }
}

/// Variables by name.
pub type EnvReads = BTreeMap<String, EnvRead>;

/// Records a read, keeping the strictest read of each variable (the first one of that
/// strictness). Names that are not upper-case environment names are ignored.
pub fn record(reads: &mut EnvReads, name: &str, read: EnvRead) {
    if !super::is_env_name(name) {
        return;
    }
    match reads.get(name) {
        Some(old) if old.need.rank() >= read.need.rank() => {}
        _ => {
            reads.insert(name.to_owned(), read);
        }
    }
}

/// Counts lines forward through one text: matches arrive in order, so each byte is counted
/// once however many matches there are.
pub struct Lines<'t> {
    text: &'t str,
    offset: usize,
    line: usize,
}

impl<'t> Lines<'t> {
    /// Starts at the beginning of `text`.
    pub fn new(text: &'t str) -> Self {
        Self { text, offset: 0, line: 1 }
    }

    /// Returns the 1-based line of `offset` (a char boundary at or after the previous one;
    /// an earlier offset is counted from the start again).
    pub fn at(&mut self, offset: usize) -> usize {
        if offset < self.offset {
            (self.offset, self.line) = (0, 1);
        }
        let end = offset.min(self.text.len());
        self.line += self.text.as_bytes()[self.offset..end].iter().filter(|b| **b == b'\n').count();
        self.offset = end;
        self.line
    }
}

/// Returns the first [`MAX_ARGS`] bytes of `rest` (fewer, to end on a character boundary):
/// what a read's arguments and fallback are looked for in, so that no read looks further
/// ahead, whatever follows it.
pub fn bounded(rest: &str) -> &str {
    let mut end = rest.len().min(MAX_ARGS);
    while !rest.is_char_boundary(end) {
        end -= 1;
    }
    &rest[..end]
}

/// Returns the text of a match, shortened to 60 characters on one line.
pub fn excerpt(s: &str) -> String {
    let one_line: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut out: String = one_line.chars().take(60).collect();
    if one_line.chars().count() > 60 {
        out.push('…');
    }
    out
}

/// Returns the top-level arguments that follow a call's first argument, `rest` starting just
/// after it: `, "d", cast=int)` gives `["\"d\"", "cast=int"]`. Empty when the call ends there
/// or is not closed within [`MAX_ARGS`] bytes.
pub fn rest_args(rest: &str) -> Vec<&str> {
    let mut args = Vec::new();
    let mut depth = 0usize;
    let mut quote: Option<char> = None;
    let mut escaped = false;
    let mut start = None;
    for (i, c) in rest.char_indices() {
        if i > MAX_ARGS {
            return Vec::new();
        }
        if let Some(q) = quote {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == q {
                quote = None;
            }
            continue;
        }
        if start.is_none() {
            match c {
                ',' => start = Some(i + 1),
                ')' => return args,
                c if c.is_whitespace() => {}
                _ => return Vec::new(),
            }
            continue;
        }
        match c {
            '\'' | '"' | '`' => quote = Some(c),
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' if depth > 0 => depth -= 1,
            ')' => {
                if let Some(s) = start {
                    args.push(rest[s..i].trim());
                }
                return args;
            }
            ',' if depth == 0 => {
                if let Some(s) = start {
                    args.push(rest[s..i].trim());
                }
                start = Some(i + 1);
            }
            _ => {}
        }
    }
    Vec::new()
}

/// Returns the value of a literal default: a quoted string without escapes or
/// interpolation, a number or a boolean; `None` for an expression.
pub fn literal(expr: &str) -> Option<String> {
    let e = expr.trim();
    for q in ['"', '\''] {
        if let Some(inner) = e.strip_prefix(q).and_then(|r| r.strip_suffix(q)) {
            let plain = !inner.contains(q) && !inner.contains('\\') && !inner.contains("#{") && !inner.contains('$');
            return plain.then(|| inner.to_owned());
        }
    }
    let number = !e.is_empty() && e.trim_start_matches('-').chars().all(|c| c.is_ascii_digit() || c == '.');
    let boolean = matches!(e, "true" | "false" | "True" | "False");
    (number || boolean).then(|| e.to_owned())
}

/// Returns the need of a call whose default is its next argument, or its `default=` keyword:
/// `base` without one, optional when the default is `None`/`nil`/`null`.
pub fn default_arg(args: &[&str], base: Need) -> Need {
    let keyword = args.iter().find_map(|a| a.strip_prefix("default").map(str::trim_start)?.strip_prefix('='));
    let positional = args.first().filter(|a| !a.contains('=') || a.starts_with(['"', '\'']));
    match keyword.or(positional.copied()).map(str::trim) {
        None => base,
        Some("None" | "nil" | "null" | "undefined") => Need::Optional,
        Some(expr) => Need::Default(literal(expr)),
    }
}

/// Scans `text` with `re` (the variable's name in the group `n`), deciding each read's need
/// with `need` (the captures and the text after the match).
pub fn scan(reads: &mut EnvReads, path: &str, text: &str, re: &Regex, need: impl Fn(&Captures<'_>, &str) -> Need) {
    let mut lines = Lines::new(text);
    for caps in re.captures_iter(text) {
        let (Some(whole), Some(name)) = (caps.get(0), caps.name("n")) else { continue };
        if !super::is_env_name(name.as_str()) {
            continue;
        }
        let rest = bounded(&text[whole.end()..]);
        let need = need(&caps, rest);
        // A call's excerpt runs to its closing parenthesis when that is near, on the same line.
        let open = whole.as_str().matches('(').count() > whole.as_str().matches(')').count();
        let close = rest.char_indices().take(80).take_while(|(_, c)| *c != '\n').find(|(_, c)| *c == ')');
        let end = match close {
            Some((i, _)) if open => whole.end() + i + 1,
            _ => whole.end(),
        };
        // The default of a secret-looking variable may be a real credential: the excerpt stops
        // at the name.
        let secret = match &need {
            Need::Default(Some(v)) => is_secret(name.as_str(), Some(v)),
            Need::Default(None) => is_secret(name.as_str(), None),
            Need::Required | Need::Optional => false,
        };
        let expr = if secret {
            format!("{}…", excerpt(&text[whole.start()..name.end()]))
        } else {
            excerpt(&text[whole.start()..end])
        };
        let read = EnvRead { need, file: path.to_owned(), line: lines.at(whole.start()), expr };
        record(reads, name.as_str(), read);
    }
}

/// Returns the default written after a read with `||`, `??`, `?:` or `or`
/// (`process.env.X || 'd'`, `ENV["X"] || "d"`, Kotlin's `System.getenv("X") ?: "d"`), if any.
pub fn fallback(rest: &str) -> Option<Need> {
    let rest = rest.trim_start_matches([' ', '\t']);
    let expr = bounded(["||", "??", "?:", "or "].iter().find_map(|op| rest.strip_prefix(op))?);
    let end = expr.find(['\n', ';', ',', ')', '}']).unwrap_or(expr.len());
    Some(Need::Default(literal(&expr[..end])))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_and_literals() {
        assert_eq!(rest_args(", \"d\", cast=int) + 1"), ["\"d\"", "cast=int"]);
        assert_eq!(rest_args(") {"), Vec::<&str>::new());
        assert_eq!(rest_args(", f(a, b))"), ["f(a, b)"]);
        assert_eq!(rest_args(", 'a)b')"), ["'a)b'"]);
        assert!(rest_args(", \"never closed").is_empty());
        assert_eq!(literal("'8080'").as_deref(), Some("8080"));
        assert_eq!(literal("5").as_deref(), Some("5"));
        assert_eq!(literal("\"#{x}\""), None);
        assert_eq!(literal("port + 1"), None);
        assert_eq!(default_arg(&["default='x'", "cast=str"], Need::Required), Need::Default(Some("x".into())));
        assert_eq!(default_arg(&["cast=bool"], Need::Required), Need::Required);
        assert_eq!(default_arg(&["None"], Need::Optional), Need::Optional);
    }

    #[test]
    fn the_strictest_read_wins_and_lines_count_forward() {
        let mut reads = EnvReads::new();
        let read = |need, line| EnvRead { need, file: "a".into(), line, expr: String::new() };
        record(&mut reads, "DB_URL", read(Need::Optional, 1));
        record(&mut reads, "DB_URL", read(Need::Required, 9));
        record(&mut reads, "DB_URL", read(Need::Default(Some("d".into())), 12));
        record(&mut reads, "lower", read(Need::Required, 1));
        assert_eq!(reads.len(), 1);
        assert_eq!((reads["DB_URL"].need.clone(), reads["DB_URL"].line), (Need::Required, 9));
        let mut lines = Lines::new("a\nb\nc\n");
        assert_eq!((lines.at(0), lines.at(2), lines.at(4), lines.at(2)), (1, 2, 3, 2));
    }
}
