//! Dockerfile lexing: parser directives, comments, line continuations and heredocs, turning
//! physical lines into logical instructions that remember the line they started on.

use super::DockerfileError;

/// One instruction as written: keyword, raw arguments (continuations joined) and the bodies of
/// its heredocs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawInstruction {
    /// 1-based line the instruction starts on.
    pub line: usize,
    /// Keyword, upper-cased.
    pub keyword: String,
    /// Everything after the keyword, with continuations joined.
    pub args: String,
    /// Heredoc bodies, in the order their markers appear.
    pub heredocs: Vec<Heredoc>,
}

/// A heredoc body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Heredoc {
    /// The delimiter word.
    pub delimiter: String,
    /// The body, lines joined with `\n`.
    pub body: String,
    /// Whether variables expand in the body (unquoted delimiter).
    pub expand: bool,
}

/// The parser directives of a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Directives {
    /// The escape character, `\` or `` ` ``.
    pub escape: char,
    /// The `syntax` directive, if any.
    pub syntax: Option<String>,
}

/// Reads the parser directives: `# key=value` lines at the very top, before any blank line,
/// other comment or instruction.
fn directives(lines: &[&str], file: &str) -> Result<(Directives, usize), DockerfileError> {
    let mut d = Directives { escape: '\\', syntax: None };
    let mut seen = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(rest) = line.trim_start().strip_prefix('#') else { return Ok((d, i)) };
        let Some((key, value)) = rest.split_once('=') else { return Ok((d, i)) };
        let key = key.trim().to_ascii_lowercase();
        if key.is_empty() || key.contains(char::is_whitespace) {
            return Ok((d, i));
        }
        let value = value.trim();
        if seen.contains(&key) {
            return Err(DockerfileError::new(file, i + 1, format!("parser directive `{key}` is set twice")));
        }
        match key.as_str() {
            "escape" => {
                d.escape = match value {
                    "\\" => '\\',
                    "`" => '`',
                    other => {
                        return Err(DockerfileError::new(
                            file,
                            i + 1,
                            format!("invalid escape directive `{other}`: use `\\` or `` ` ``"),
                        ));
                    }
                }
            }
            "syntax" => d.syntax = Some(value.to_owned()),
            // Unknown directives are comments for the classic parser; `check` is a BuildKit one.
            _ => {}
        }
        seen.push(key);
    }
    Ok((d, lines.len()))
}

/// Returns the heredoc markers (`<<EOF`, `<<-EOF`, `<<"EOF"`, `<<'EOF'`) of an argument string,
/// as (delimiter, strip leading tabs, expand).
fn heredoc_markers(args: &str) -> Vec<(String, bool, bool)> {
    let mut out = Vec::new();
    let bytes = args.as_bytes();
    let mut i = 0;
    let mut quote: Option<u8> = None;
    while i + 1 < bytes.len() {
        let b = bytes[i];
        match quote {
            Some(q) if b == q => quote = None,
            Some(_) => {}
            None if b == b'"' || b == b'\'' => quote = Some(b),
            None if b == b'<' && bytes[i + 1] == b'<' && bytes.get(i + 2) != Some(&b'<') => {
                let mut j = i + 2;
                let strip = bytes.get(j) == Some(&b'-');
                if strip {
                    j += 1;
                }
                let (expand, open) = match bytes.get(j) {
                    Some(b'"') => (false, Some(b'"')),
                    Some(b'\'') => (false, Some(b'\'')),
                    _ => (true, None),
                };
                if open.is_some() {
                    j += 1;
                }
                let start = j;
                while j < bytes.len() && (bytes[j].is_ascii_alphanumeric() || bytes[j] == b'_' || bytes[j] == b'-') {
                    j += 1;
                }
                if j > start && (open.is_none() || bytes.get(j) == open.as_ref()) {
                    out.push((args[start..j].to_owned(), strip, expand));
                    i = if open.is_some() { j + 1 } else { j };
                    continue;
                }
            }
            None => {}
        }
        i += 1;
    }
    out
}

/// Instructions whose arguments may hold heredocs.
fn takes_heredocs(keyword: &str) -> bool {
    matches!(keyword, "RUN" | "COPY" | "ADD")
}

/// Splits a Dockerfile into its directives and raw instructions.
pub fn lex(text: &str, file: &str) -> Result<(Directives, Vec<RawInstruction>), DockerfileError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let lines: Vec<&str> = text.lines().collect();
    let (directives, mut i) = directives(&lines, file)?;
    let escape = directives.escape;
    let mut out = Vec::new();
    while i < lines.len() {
        let line = lines[i];
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            i += 1;
            continue;
        }
        let start = i + 1;
        let mut logical = String::new();
        let mut current = trimmed.to_owned();
        loop {
            let body = current.trim_end();
            if let Some(stripped) = body.strip_suffix(escape) {
                logical.push_str(stripped);
                i += 1;
                // Comment and blank lines inside a continuation are dropped.
                while i < lines.len() {
                    let t = lines[i].trim_start();
                    if t.starts_with('#') || t.is_empty() {
                        i += 1;
                    } else {
                        break;
                    }
                }
                if i >= lines.len() {
                    break;
                }
                current = lines[i].to_owned();
            } else {
                logical.push_str(&current);
                i += 1;
                break;
            }
        }
        let (keyword, args) = match logical.find(char::is_whitespace) {
            Some(pos) => (&logical[..pos], logical[pos..].trim()),
            None => (logical.as_str(), ""),
        };
        let keyword = keyword.to_ascii_uppercase();
        let mut heredocs = Vec::new();
        if takes_heredocs(&keyword) {
            for (delimiter, strip, expand) in heredoc_markers(args) {
                let mut body = Vec::new();
                let mut closed = false;
                while i < lines.len() {
                    let raw = lines[i];
                    i += 1;
                    let l = if strip { raw.trim_start_matches('\t') } else { raw };
                    if l == delimiter {
                        closed = true;
                        break;
                    }
                    body.push(l);
                }
                if !closed {
                    return Err(DockerfileError::new(
                        file,
                        start,
                        format!("heredoc `<<{delimiter}` of {keyword} is never closed: add a line `{delimiter}`"),
                    ));
                }
                heredocs.push(Heredoc { delimiter, body: body.join("\n"), expand });
            }
        }
        out.push(RawInstruction { line: start, keyword, args: args.to_owned(), heredocs });
    }
    Ok((directives, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continuations_comments_and_lines() {
        let text = "# syntax=docker/dockerfile:1\n\nFROM alpine\n# note\nRUN a \\\n  # inside\n  && b\nCMD c";
        let (d, ins) = lex(text, "Dockerfile").unwrap();
        assert_eq!(d.syntax.as_deref(), Some("docker/dockerfile:1"));
        let got: Vec<_> = ins.iter().map(|i| (i.line, i.keyword.as_str(), i.args.as_str())).collect();
        assert_eq!(got, [(3, "FROM", "alpine"), (5, "RUN", "a   && b"), (8, "CMD", "c")]);
    }

    #[test]
    fn escape_directive_switches_to_backtick() {
        let (d, ins) = lex("# escape=`\nFROM x\nRUN dir c:\\ `\n  /w", "Dockerfile").unwrap();
        assert_eq!(d.escape, '`');
        assert_eq!(ins[1].args, "dir c:\\   /w");
    }

    #[test]
    fn heredocs_are_collected() {
        let text = "FROM x\nRUN <<EOF\necho hi\nEOF\nCOPY <<-\"A\" /a <<B /b\n\tone\n\tA\ntwo\nB\nCMD [\"x\"]";
        let (_, ins) = lex(text, "Dockerfile").unwrap();
        assert_eq!(ins[1].heredocs[0].body, "echo hi");
        assert_eq!(ins[2].heredocs.len(), 2);
        assert_eq!(ins[2].heredocs[0], Heredoc { delimiter: "A".into(), body: "one".into(), expand: false });
        assert_eq!(ins[2].heredocs[1].body, "two");
        assert_eq!(ins[3].line, 10);
    }

    #[test]
    fn unclosed_heredoc_names_its_line() {
        let err = lex("FROM x\nRUN <<EOF\necho", "Dockerfile").unwrap_err();
        assert_eq!(err.line, 2);
        assert!(err.message.contains("never closed"));
    }
}
