//! Word splitting, quote removal and `$VAR` / `${VAR:-default}` substitution, as the
//! Dockerfile frontend does them for ENV, ARG, LABEL, EXPOSE, FROM, USER, WORKDIR and friends.

use std::collections::BTreeMap;

/// Splits on unquoted whitespace, keeping quotes and escapes in the words.
pub fn split_words(input: &str, escape: char) -> Vec<String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut quote: Option<char> = None;
    let mut chars = input.chars();
    let mut in_word = false;
    while let Some(c) = chars.next() {
        match quote {
            Some(q) => {
                current.push(c);
                if c == escape && q == '"' {
                    if let Some(n) = chars.next() {
                        current.push(n);
                    }
                } else if c == q {
                    quote = None;
                }
            }
            None if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut current));
                    in_word = false;
                }
            }
            None => {
                in_word = true;
                current.push(c);
                if c == escape {
                    if let Some(n) = chars.next() {
                        current.push(n);
                    }
                } else if c == '"' || c == '\'' {
                    quote = Some(c);
                }
            }
        }
    }
    if in_word {
        words.push(current);
    }
    words
}

/// Expands variables and removes quotes and escapes from one word. Unset variables expand to
/// the empty string; `${VAR:?message}` on an unset variable is an error carrying the message.
pub fn expand(word: &str, vars: &BTreeMap<String, String>, escape: char) -> Result<String, String> {
    let chars: Vec<char> = word.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    let mut quote: Option<char> = None;
    while i < chars.len() {
        let c = chars[i];
        match (quote, c) {
            (Some('\''), '\'') => quote = None,
            (Some('\''), _) => out.push(c),
            (Some('"'), '"') => quote = None,
            (None, '\'') | (None, '"') => quote = Some(c),
            (q, e) if e == escape => {
                i += 1;
                if let Some(&n) = chars.get(i) {
                    // Inside double quotes only `"`, `$` and the escape itself are escapable.
                    if q == Some('"') && !matches!(n, '"' | '$') && n != escape {
                        out.push(e);
                    }
                    out.push(n);
                } else {
                    out.push(e);
                }
            }
            (_, '$') => {
                let (value, used) = variable(&chars[i + 1..], vars, escape)?;
                out.push_str(&value);
                i += used;
            }
            _ => out.push(c),
        }
        i += 1;
    }
    if let Some(q) = quote {
        return Err(format!("unterminated {q} quote in `{word}`"));
    }
    Ok(out)
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Reads a variable reference after `$`; returns its value and how many chars it used.
pub(crate) fn variable(
    rest: &[char],
    vars: &BTreeMap<String, String>,
    escape: char,
) -> Result<(String, usize), String> {
    match rest.first() {
        Some('{') => {
            let mut depth = 1;
            let mut end = 1;
            while end < rest.len() {
                match rest[end] {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    _ => {}
                }
                end += 1;
            }
            if end >= rest.len() {
                return Err("missing `}` in a ${...} variable".into());
            }
            let inner: String = rest[1..end].iter().collect();
            let name_len = inner.chars().take_while(|&c| is_name_char(c)).count();
            if name_len == 0 {
                return Err(format!("invalid variable `${{{inner}}}`"));
            }
            let name = &inner[..name_len];
            let op = &inner[name_len..];
            let value = vars.get(name);
            let set = value.is_some();
            let non_empty = value.is_some_and(|v| !v.is_empty());
            let word = |w: &str| expand(w, vars, escape);
            let result = if op.is_empty() {
                value.cloned().unwrap_or_default()
            } else if let Some(w) = op.strip_prefix(":-") {
                if non_empty { value.cloned().unwrap_or_default() } else { word(w)? }
            } else if let Some(w) = op.strip_prefix(":+") {
                if non_empty { word(w)? } else { String::new() }
            } else if let Some(w) = op.strip_prefix(":?") {
                if non_empty { value.cloned().unwrap_or_default() } else { return Err(missing(name, w)) }
            } else if let Some(w) = op.strip_prefix('-') {
                if set { value.cloned().unwrap_or_default() } else { word(w)? }
            } else if let Some(w) = op.strip_prefix('+') {
                if set { word(w)? } else { String::new() }
            } else if let Some(w) = op.strip_prefix('?') {
                if set { value.cloned().unwrap_or_default() } else { return Err(missing(name, w)) }
            } else {
                return Err(format!("unsupported modifier `{op}` in `${{{inner}}}`"));
            };
            Ok((result, end + 1))
        }
        Some(&c) if is_name_char(c) && !c.is_ascii_digit() => {
            let len = rest.iter().take_while(|&&c| is_name_char(c)).count();
            let name: String = rest[..len].iter().collect();
            Ok((vars.get(&name).cloned().unwrap_or_default(), len))
        }
        _ => Ok(("$".into(), 0)),
    }
}

fn missing(name: &str, message: &str) -> String {
    if message.is_empty() { format!("{name} is not set") } else { format!("{name}: {message}") }
}

/// Splits `KEY=VALUE` words (ENV, LABEL, ARG) into expanded pairs; a word without `=` is a key
/// with no value (`None`).
pub fn key_values(
    args: &str,
    vars: &BTreeMap<String, String>,
    escape: char,
) -> Result<Vec<(String, Option<String>)>, String> {
    let mut out = Vec::new();
    for word in split_words(args, escape) {
        match word.split_once('=') {
            Some((k, v)) => out.push((expand(k, vars, escape)?, Some(expand(v, vars, escape)?))),
            None => out.push((expand(&word, vars, escape)?, None)),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> BTreeMap<String, String> {
        [("A", "1"), ("E", ""), ("NAME", "web")].into_iter().map(|(k, v)| (k.into(), v.into())).collect()
    }

    #[test]
    fn words_respect_quotes_and_escapes() {
        assert_eq!(split_words(r#"a "b c" 'd e' f\ g"#, '\\'), [r#"a"#, r#""b c""#, "'d e'", r"f\ g"]);
    }

    #[test]
    fn substitution_forms() {
        let v = vars();
        let e = |s| expand(s, &v, '\\').unwrap();
        assert_eq!(e("$A-${NAME}"), "1-web");
        assert_eq!(e("${E:-d}/${E-d}/${U-d}/${A:+set}/${U:+set}/${E+x}"), "d//d/set//x");
        assert_eq!(e("'$A' \"$A\" \\$A"), "$A 1 $A");
        assert_eq!(e("${U:-${A}0}"), "10");
        assert_eq!(e("cost $5"), "cost $5");
        assert!(expand("${U:?needs U}", &v, '\\').unwrap_err().contains("needs U"));
        assert!(expand("${A", &v, '\\').is_err());
        assert!(expand("\"open", &v, '\\').is_err());
    }

    #[test]
    fn key_values_split_and_expand() {
        let got = key_values(r#"X=$A Y="two words" Z"#, &vars(), '\\').unwrap();
        assert_eq!(got, [("X".into(), Some("1".into())), ("Y".into(), Some("two words".into())), ("Z".into(), None)]);
    }
}
