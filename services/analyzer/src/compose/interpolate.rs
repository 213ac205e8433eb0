//! Compose variable interpolation (`${VAR}`, `${VAR:-default}`, `$$`), from the project's
//! `.env` file only: the analysis must not depend on the environment of whoever runs it.

use std::{
    cell::RefCell,
    collections::{BTreeMap, BTreeSet},
};

struct Context {
    vars: BTreeMap<String, String>,
    unset: BTreeSet<String>,
}

thread_local! {
    static CONTEXT: RefCell<Option<Context>> = const { RefCell::new(None) };
}

/// Installs the variables for the duration of one parse; dropping the guard removes them.
pub struct Scope;

impl Scope {
    /// Starts interpolating with `vars`.
    pub fn enter(vars: BTreeMap<String, String>) -> Self {
        CONTEXT.with(|c| *c.borrow_mut() = Some(Context { vars, unset: BTreeSet::new() }));
        Scope
    }

    /// Returns the variables that were referenced but not set, sorted.
    pub fn unset(&self) -> Vec<String> {
        CONTEXT.with(|c| c.borrow().as_ref().map(|c| c.unset.iter().cloned().collect()).unwrap_or_default())
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        CONTEXT.with(|c| *c.borrow_mut() = None);
    }
}

/// Interpolates one scalar. Outside a [`Scope`] the text is returned unchanged.
pub fn interpolate(text: &str) -> Result<String, String> {
    if !text.contains('$') {
        return Ok(text.to_owned());
    }
    CONTEXT.with(|cell| {
        let mut borrow = cell.borrow_mut();
        let Some(ctx) = borrow.as_mut() else { return Ok(text.to_owned()) };
        let chars: Vec<char> = text.chars().collect();
        let mut out = String::new();
        let mut i = 0;
        while i < chars.len() {
            if chars[i] != '$' {
                out.push(chars[i]);
                i += 1;
                continue;
            }
            if chars.get(i + 1) == Some(&'$') {
                out.push('$');
                i += 2;
                continue;
            }
            let rest = &chars[i + 1..];
            let name: String = rest
                .iter()
                .skip(usize::from(rest.first() == Some(&'{')))
                .take_while(|c| c.is_ascii_alphanumeric() || **c == '_')
                .collect();
            let has_default = rest.first() == Some(&'{')
                && rest.get(1 + name.len()).is_some_and(|c| matches!(c, ':' | '-' | '+' | '?'));
            if !name.is_empty() && !ctx.vars.contains_key(&name) && !has_default {
                ctx.unset.insert(name.clone());
            }
            // `\` is no escape in compose files; a character that never appears keeps it literal.
            let (value, used) = crate::dockerfile::variable(rest, &ctx.vars, '\u{0}')?;
            out.push_str(&value);
            i += used + 1;
        }
        Ok(out)
    })
}

/// Parses a `.env` file: `KEY=VALUE` lines, `#` comments, optional `export `, quoted values.
pub fn parse_dotenv(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((k, v)) = line.split_once('=') else { continue };
        let v = v.trim();
        let v = if (v.starts_with('"') && v.ends_with('"') && v.len() >= 2)
            || (v.starts_with('\'') && v.ends_with('\'') && v.len() >= 2)
        {
            &v[1..v.len() - 1]
        } else {
            // An unquoted value ends at an inline comment.
            v.split(" #").next().unwrap_or(v).trim_end()
        };
        out.insert(k.trim().to_owned(), v.to_owned());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpolates_within_a_scope_only() {
        assert_eq!(interpolate("${A}").unwrap(), "${A}");
        let scope = Scope::enter(parse_dotenv("A=1\nexport B=\"two\" \n# c\nC=x # note"));
        assert_eq!(interpolate("$A-${B}-${C}-$$A-${D:-d}-${E}").unwrap(), "1-two-x-$A-d-");
        assert!(interpolate("${F:?F is required}").unwrap_err().contains("F is required"));
        assert_eq!(scope.unset(), ["E"]);
        drop(scope);
        assert_eq!(interpolate("${A}").unwrap(), "${A}");
    }
}
