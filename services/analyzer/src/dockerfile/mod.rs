//! The Dockerfile parser: the full instruction set, multi-stage builds (the final stage
//! decides), ARG and ENV substitution with their scoping rules, heredocs, parser directives and
//! line continuations. Errors name the file and the line.

mod lexer;
mod words;

use std::collections::BTreeMap;

pub use lexer::{Directives, Heredoc, RawInstruction, lex};
pub(crate) use words::variable;
pub use words::{expand, key_values, split_words};

/// A malformed Dockerfile: where and what.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct DockerfileError {
    /// File path, relative to the application root.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl DockerfileError {
    fn new(file: &str, line: usize, message: impl Into<String>) -> Self {
        Self { file: file.to_owned(), line, message: message.into() }
    }
}

/// A port from EXPOSE.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ExposedPort {
    /// Port number.
    pub port: u16,
    /// `true` for UDP.
    pub udp: bool,
    /// The 1-based line of the EXPOSE (the first one, when several name the port).
    pub line: usize,
}

/// A HEALTHCHECK.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Healthcheck {
    /// The test command in exec form (shell form becomes `/bin/sh -c ...`); empty with NONE.
    pub command: Vec<String>,
    /// `HEALTHCHECK NONE`: checks inherited from the base image are disabled.
    pub disabled: bool,
    /// `--interval`, in seconds.
    pub interval_secs: Option<u64>,
    /// `--timeout`, in seconds.
    pub timeout_secs: Option<u64>,
    /// `--start-period`, in seconds.
    pub start_period_secs: Option<u64>,
    /// `--retries`.
    pub retries: Option<u32>,
    /// The 1-based line of the HEALTHCHECK instruction.
    pub line: usize,
}

/// One build stage.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stage {
    /// `AS` name, lower-cased; empty if unnamed.
    pub name: String,
    /// Image of the FROM line after substitution (may name an earlier stage).
    pub from: String,
    /// Line of the FROM.
    pub line: usize,
    /// Environment (inherited from a parent stage, then ENV).
    pub env: BTreeMap<String, String>,
    /// The 1-based line of the ENV that set each variable of `env` last.
    pub env_lines: BTreeMap<String, usize>,
    /// Build arguments declared in this stage, with their values; unlike `env`, the running
    /// container does not see them.
    pub args: BTreeMap<String, String>,
    /// Ports from EXPOSE, sorted, de-duplicated.
    pub exposed: Vec<ExposedPort>,
    /// WORKDIR, absolute; empty if never set.
    pub workdir: String,
    /// USER; empty if never set.
    pub user: String,
    /// The 1-based line of the USER; 0 if never set.
    pub user_line: usize,
    /// ENTRYPOINT in exec form.
    pub entrypoint: Vec<String>,
    /// The 1-based line of the ENTRYPOINT; 0 if never set.
    pub entrypoint_line: usize,
    /// CMD in exec form.
    pub cmd: Vec<String>,
    /// The 1-based line of the CMD; 0 if never set (or reset by an ENTRYPOINT).
    pub cmd_line: usize,
    /// HEALTHCHECK.
    pub healthcheck: Option<Healthcheck>,
    /// VOLUME paths.
    pub volumes: Vec<String>,
    /// LABELs.
    pub labels: BTreeMap<String, String>,
    /// STOPSIGNAL.
    pub stop_signal: String,
    /// SHELL in exec form.
    pub shell: Vec<String>,
}

/// A parsed Dockerfile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dockerfile {
    /// Path relative to the application root.
    pub path: String,
    /// Parser directives.
    pub directives: Directives,
    /// Global ARG defaults (before the first FROM), with the automatic platform ARGs.
    pub global_args: BTreeMap<String, String>,
    /// Stages in order; the last one is what runs.
    pub stages: Vec<Stage>,
}

impl Dockerfile {
    /// Returns the final stage, the one that becomes the image.
    pub fn final_stage(&self) -> &Stage {
        self.stages.last().expect("a parsed Dockerfile has at least one stage")
    }

    /// Returns the external base image of the final stage, following `FROM <stage>` chains.
    pub fn base_image(&self) -> String {
        let mut stage = self.final_stage();
        for _ in 0..self.stages.len() {
            match self.stages.iter().find(|s| !s.name.is_empty() && s.name == stage.from.to_ascii_lowercase()) {
                Some(parent) if !std::ptr::eq(parent, stage) => stage = parent,
                _ => break,
            }
        }
        stage.from.clone()
    }

    /// Returns whether the final stage runs as root (USER unset, `root`, `0`, with any group).
    pub fn runs_as_root(&self) -> bool {
        let user = self.final_stage().user.split(':').next().unwrap_or("").trim();
        matches!(user, "" | "root" | "0")
    }
}

const INSTRUCTIONS: &[&str] = &[
    "ADD",
    "ARG",
    "CMD",
    "COPY",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "FROM",
    "HEALTHCHECK",
    "LABEL",
    "MAINTAINER",
    "ONBUILD",
    "RUN",
    "SHELL",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
];

fn suggestion(keyword: &str) -> String {
    // A one-edit typo of a real instruction is worth naming.
    let close = INSTRUCTIONS.iter().find(|k| edit_distance(k, keyword) <= 1 || sorted(k) == sorted(keyword));
    match close {
        Some(k) => format!(" (did you mean {k}?)"),
        None => String::new(),
    }
}

fn sorted(s: &str) -> Vec<char> {
    let mut v: Vec<char> = s.chars().collect();
    v.sort_unstable();
    v
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, &cb) in b.iter().enumerate() {
            cur.push((prev[j] + usize::from(ca != cb)).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Parses the JSON exec form `["a", "b"]`; `None` when the text is not a JSON string array.
fn exec_form(args: &str) -> Option<Vec<String>> {
    let t = args.trim();
    if !t.starts_with('[') {
        return None;
    }
    serde_json::from_str::<Vec<String>>(t).ok()
}

/// Parses a duration such as `30s`, `1m30s`, `500ms` or `1h`, in whole seconds (rounded up).
fn parse_duration_secs(s: &str) -> Option<u64> {
    let mut total_ms: u64 = 0;
    let mut num = String::new();
    let mut chars = s.chars().peekable();
    if s.is_empty() {
        return None;
    }
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let unit = if c == 'm' && chars.peek() == Some(&'s') {
            chars.next();
            "ms"
        } else {
            match c {
                'h' => "h",
                'm' => "m",
                's' => "s",
                _ => return None,
            }
        };
        let n: f64 = num.parse().ok()?;
        num.clear();
        let factor = match unit {
            "h" => 3_600_000.0,
            "m" => 60_000.0,
            "s" => 1_000.0,
            _ => 1.0,
        };
        total_ms = total_ms.checked_add((n * factor) as u64)?;
    }
    if !num.is_empty() {
        return None;
    }
    Some(total_ms.div_ceil(1000))
}

/// Parses a Dockerfile. `path` is only used in errors and facts.
pub fn parse(text: &str, path: &str) -> Result<Dockerfile, DockerfileError> {
    let (directives, instructions) = lex(text, path)?;
    let escape = directives.escape;
    let err = |line: usize, message: String| DockerfileError::new(path, line, message);
    let mut global_args: BTreeMap<String, String> = [
        ("TARGETPLATFORM", "linux/amd64"),
        ("TARGETOS", "linux"),
        ("TARGETARCH", "amd64"),
        ("TARGETVARIANT", ""),
        ("BUILDPLATFORM", "linux/amd64"),
        ("BUILDOS", "linux"),
        ("BUILDARCH", "amd64"),
        ("BUILDVARIANT", ""),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let automatic: Vec<String> = global_args.keys().cloned().collect();
    let mut stages: Vec<Stage> = Vec::new();
    // Variables visible to the current stage: its ARGs, then its ENV (ENV wins).
    let mut stage_args: BTreeMap<String, String> = BTreeMap::new();

    for ins in instructions {
        let line = ins.line;
        let keyword = ins.keyword.as_str();
        if !INSTRUCTIONS.contains(&keyword) {
            return Err(err(line, format!("unknown instruction `{}`{}", ins.keyword, suggestion(keyword))));
        }
        if stages.is_empty() && keyword != "FROM" && keyword != "ARG" {
            return Err(err(line, format!("{keyword} before the first FROM: only ARG may come before FROM")));
        }
        let vars = |stage: Option<&Stage>, args: &BTreeMap<String, String>| {
            let mut v = args.clone();
            if let Some(s) = stage {
                v.extend(s.env.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
            v
        };
        let current_vars =
            if stages.is_empty() || keyword == "FROM" { global_args.clone() } else { vars(stages.last(), &stage_args) };
        let expand_word = |w: &str| expand(w, &current_vars, escape).map_err(|m| err(line, format!("{keyword}: {m}")));
        let expanded_words = || -> Result<Vec<String>, DockerfileError> {
            split_words(&ins.args, escape).iter().map(|w| expand_word(w)).collect()
        };
        let need_args = || {
            if ins.args.trim().is_empty() && ins.heredocs.is_empty() {
                Err(err(line, format!("{keyword} needs arguments")))
            } else {
                Ok(())
            }
        };
        match keyword {
            "FROM" => {
                need_args()?;
                let words: Vec<String> = expanded_words()?;
                let words: Vec<&String> = words.iter().filter(|w| !w.starts_with("--")).collect();
                let (image, name) = match words.as_slice() {
                    [image] => ((*image).clone(), String::new()),
                    [image, as_kw, name] if as_kw.eq_ignore_ascii_case("as") => {
                        ((*image).clone(), name.to_ascii_lowercase())
                    }
                    _ => return Err(err(line, "FROM takes `IMAGE [AS NAME]`".into())),
                };
                if image.is_empty() {
                    return Err(err(line, "FROM names no image (an ARG it uses is empty)".into()));
                }
                if !name.is_empty() && stages.iter().any(|s| s.name == name) {
                    return Err(err(line, format!("stage name `{name}` is used twice")));
                }
                // A stage built FROM an earlier stage inherits its environment and settings.
                let parent = stages.iter().find(|s| !s.name.is_empty() && s.name == image.to_ascii_lowercase());
                let mut stage = match parent {
                    Some(p) => Stage { volumes: p.volumes.clone(), args: BTreeMap::new(), ..p.clone() },
                    None => Stage::default(),
                };
                stage.name = name;
                stage.from = image;
                stage.line = line;
                stages.push(stage);
                stage_args = automatic.iter().map(|k| (k.clone(), global_args[k].clone())).collect();
            }
            "ARG" => {
                need_args()?;
                let pairs = key_values(&ins.args, &current_vars, escape).map_err(|m| err(line, format!("ARG: {m}")))?;
                for (name, default) in pairs {
                    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                        return Err(err(line, format!("ARG: invalid name `{name}`")));
                    }
                    if stages.is_empty() {
                        global_args.insert(name, default.unwrap_or_default());
                    } else {
                        // Without a default, a stage ARG takes the global value of the same name.
                        let value = default.or_else(|| global_args.get(&name).cloned()).unwrap_or_default();
                        stages.last_mut().expect("checked above").args.insert(name.clone(), value.clone());
                        stage_args.insert(name, value);
                    }
                }
            }
            "ENV" => {
                need_args()?;
                let pairs = env_pairs(&ins.args, &current_vars, escape).map_err(|m| err(line, format!("ENV: {m}")))?;
                let stage = stages.last_mut().expect("checked above");
                for (k, v) in pairs {
                    stage.env_lines.insert(k.clone(), line);
                    stage.env.insert(k, v);
                }
            }
            "LABEL" => {
                need_args()?;
                let pairs =
                    key_values(&ins.args, &current_vars, escape).map_err(|m| err(line, format!("LABEL: {m}")))?;
                let stage = stages.last_mut().expect("checked above");
                for (k, v) in pairs {
                    let v = v.ok_or_else(|| err(line, format!("LABEL: `{k}` has no `=VALUE`")))?;
                    stage.labels.insert(k, v);
                }
            }
            "MAINTAINER" => {
                let v = ins.args.trim().to_owned();
                stages.last_mut().expect("checked above").labels.insert("maintainer".into(), v);
            }
            "EXPOSE" => {
                need_args()?;
                let mut ports = Vec::new();
                for w in expanded_words()? {
                    ports.extend(parse_expose(&w).map_err(|m| err(line, m))?);
                }
                let stage = stages.last_mut().expect("checked above");
                stage.exposed.extend(ports.into_iter().map(|p| ExposedPort { line, ..p }));
                stage.exposed.sort_unstable();
                stage.exposed.dedup_by_key(|p| (p.port, p.udp));
            }
            "WORKDIR" => {
                need_args()?;
                let dir = expand_word(ins.args.trim())?;
                let stage = stages.last_mut().expect("checked above");
                stage.workdir = if dir.starts_with('/') {
                    dir
                } else {
                    let base = if stage.workdir.is_empty() { "/" } else { stage.workdir.as_str() };
                    format!("{}/{}", base.trim_end_matches('/'), dir)
                };
            }
            "USER" => {
                need_args()?;
                let words = expanded_words()?;
                if words.len() != 1 {
                    return Err(err(line, "USER takes one `USER[:GROUP]`".into()));
                }
                let stage = stages.last_mut().expect("checked above");
                stage.user = words[0].clone();
                stage.user_line = line;
            }
            "VOLUME" => {
                need_args()?;
                let paths = match exec_form(&ins.args) {
                    Some(list) => list.iter().map(|w| expand_word(w)).collect::<Result<Vec<_>, _>>()?,
                    None => expanded_words()?,
                };
                let stage = stages.last_mut().expect("checked above");
                for p in paths {
                    if !stage.volumes.contains(&p) {
                        stage.volumes.push(p);
                    }
                }
            }
            "CMD" | "ENTRYPOINT" => {
                let stage = stages.last_mut().expect("checked above");
                let command = command_form(&ins.args, &stage.shell);
                if keyword == "CMD" {
                    stage.cmd = command;
                    stage.cmd_line = line;
                } else {
                    stage.entrypoint = command;
                    stage.entrypoint_line = line;
                    // An ENTRYPOINT resets the CMD inherited from a parent stage.
                    stage.cmd.clear();
                    stage.cmd_line = 0;
                }
            }
            "SHELL" => {
                let shell = exec_form(&ins.args)
                    .filter(|s| !s.is_empty())
                    .ok_or_else(|| err(line, "SHELL must be a JSON array, e.g. [\"/bin/bash\", \"-c\"]".into()))?;
                stages.last_mut().expect("checked above").shell = shell;
            }
            "HEALTHCHECK" => {
                need_args()?;
                let shell = stages.last().map(|s| s.shell.clone()).unwrap_or_default();
                let hc = parse_healthcheck(&ins.args, &shell).map_err(|m| err(line, m))?;
                stages.last_mut().expect("checked above").healthcheck = Some(Healthcheck { line, ..hc });
            }
            "STOPSIGNAL" => {
                need_args()?;
                let v = expand_word(ins.args.trim())?;
                stages.last_mut().expect("checked above").stop_signal = v;
            }
            "ONBUILD" => {
                let inner = ins.args.split_whitespace().next().unwrap_or("").to_ascii_uppercase();
                if inner.is_empty() {
                    return Err(err(line, "ONBUILD needs an instruction".into()));
                }
                if matches!(inner.as_str(), "ONBUILD" | "FROM" | "MAINTAINER") {
                    return Err(err(line, format!("ONBUILD may not trigger {inner}")));
                }
                if !INSTRUCTIONS.contains(&inner.as_str()) {
                    return Err(err(line, format!("ONBUILD: unknown instruction `{inner}`{}", suggestion(&inner))));
                }
            }
            // RUN, COPY and ADD change the filesystem, not the runtime settings the manifests need.
            _ => need_args()?,
        }
    }
    if stages.is_empty() {
        let line = text.lines().count().max(1);
        return Err(err(line, "no FROM instruction: a Dockerfile must start its build with FROM".into()));
    }
    Ok(Dockerfile { path: path.to_owned(), directives, global_args, stages })
}

/// ENV accepts `K=V K2=V2` and the legacy `K V with spaces`.
fn env_pairs(args: &str, vars: &BTreeMap<String, String>, escape: char) -> Result<Vec<(String, String)>, String> {
    let words = split_words(args, escape);
    let first_has_eq = words.first().is_some_and(|w| w.contains('='));
    if !first_has_eq {
        let (key, rest) = match args.trim().split_once(char::is_whitespace) {
            Some((k, r)) => (k, r.trim()),
            None => return Err(format!("`{}` has no value: use ENV KEY=VALUE", args.trim())),
        };
        return Ok(vec![(expand(key, vars, escape)?, expand(rest, vars, escape)?)]);
    }
    let mut out = Vec::new();
    for (k, v) in key_values(args, vars, escape)? {
        match v {
            Some(v) if !k.is_empty() => out.push((k, v)),
            _ => return Err(format!("`{k}` has no `=VALUE`; mix of KEY=VALUE and KEY VALUE forms")),
        }
    }
    Ok(out)
}

/// Returns a CMD/ENTRYPOINT in exec form; the shell form runs under the stage's SHELL.
fn command_form(args: &str, shell: &[String]) -> Vec<String> {
    if let Some(list) = exec_form(args) {
        return list;
    }
    let args = args.trim();
    if args.is_empty() {
        return Vec::new();
    }
    let mut out = if shell.is_empty() { vec!["/bin/sh".to_owned(), "-c".to_owned()] } else { shell.to_vec() };
    out.push(args.to_owned());
    out
}

/// Parses one EXPOSE word: `80`, `80/tcp`, `53/udp`, `8000-8002`.
fn parse_expose(word: &str) -> Result<Vec<ExposedPort>, String> {
    let (ports, proto) = word.split_once('/').unwrap_or((word, "tcp"));
    let udp = match proto.to_ascii_lowercase().as_str() {
        "tcp" => false,
        "udp" => true,
        "sctp" => return Err(format!("EXPOSE {word}: SCTP ports are not supported")),
        other => return Err(format!("EXPOSE {word}: unknown protocol `{other}` (use tcp or udp)")),
    };
    let parse = |s: &str| match s.parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(format!("EXPOSE {word}: `{s}` is not a port number (1-65535)")),
    };
    let (lo, hi) = match ports.split_once('-') {
        Some((a, b)) => (parse(a)?, parse(b)?),
        None => {
            let p = parse(ports)?;
            (p, p)
        }
    };
    if hi < lo || hi - lo > 100 {
        return Err(format!("EXPOSE {word}: invalid or too wide port range"));
    }
    Ok((lo..=hi).map(|port| ExposedPort { port, udp, line: 0 }).collect())
}

fn parse_healthcheck(args: &str, shell: &[String]) -> Result<Healthcheck, String> {
    let mut hc = Healthcheck::default();
    let mut rest = args.trim();
    while let Some(flag) = rest.strip_prefix("--") {
        let end = flag.find(char::is_whitespace).unwrap_or(flag.len());
        let (name, value) =
            flag[..end].split_once('=').ok_or_else(|| format!("HEALTHCHECK: `--{}` needs `=VALUE`", &flag[..end]))?;
        let duration = || {
            parse_duration_secs(value)
                .ok_or_else(|| format!("HEALTHCHECK --{name}: `{value}` is not a duration like 30s"))
        };
        match name {
            "interval" => hc.interval_secs = Some(duration()?),
            "timeout" => hc.timeout_secs = Some(duration()?),
            "start-period" => hc.start_period_secs = Some(duration()?),
            "start-interval" => {
                duration()?;
            }
            "retries" => {
                hc.retries =
                    Some(value.parse().map_err(|_| format!("HEALTHCHECK --retries: `{value}` is not a number"))?)
            }
            other => return Err(format!("HEALTHCHECK: unknown flag `--{other}`")),
        }
        rest = flag[end..].trim_start();
    }
    let (kind, cmd) = match rest.find(char::is_whitespace) {
        Some(i) => (&rest[..i], rest[i..].trim()),
        None => (rest, ""),
    };
    match kind.to_ascii_uppercase().as_str() {
        "NONE" if cmd.is_empty() => hc.disabled = true,
        "NONE" => return Err("HEALTHCHECK NONE takes no command".into()),
        "CMD" if !cmd.is_empty() => hc.command = command_form(cmd, shell),
        "CMD" => return Err("HEALTHCHECK CMD needs a command".into()),
        _ => return Err(format!("HEALTHCHECK: expected CMD or NONE, found `{kind}`")),
    }
    Ok(hc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_stage_final_stage_decides() {
        let text = r#"
ARG GO_VERSION=1.22
ARG PORT=8080
FROM golang:${GO_VERSION} AS build
WORKDIR /src
RUN go build -o /app
FROM gcr.io/distroless/static AS runtime
ARG PORT
ENV PORT=$PORT MODE="release mode"
EXPOSE ${PORT} 9090/udp
USER nonroot:nonroot
WORKDIR /srv
WORKDIR app
HEALTHCHECK --interval=1m30s --retries=2 CMD ["/app", "health"]
ENTRYPOINT ["/app"]
CMD --serve
"#;
        let d = parse(text, "Dockerfile").unwrap();
        assert_eq!(d.stages.len(), 2);
        assert_eq!(d.stages[0].from, "golang:1.22");
        let s = d.final_stage();
        assert_eq!(s.env["PORT"], "8080");
        assert_eq!(s.env["MODE"], "release mode");
        assert_eq!(s.args, BTreeMap::from([("PORT".to_owned(), "8080".to_owned())]));
        assert!(d.stages[0].args.is_empty(), "a stage sees only the ARGs it declares");
        let exposed: Vec<(u16, bool)> = s.exposed.iter().map(|e| (e.port, e.udp)).collect();
        assert_eq!(exposed, [(8080, false), (9090, true)]);
        assert_eq!(s.workdir, "/srv/app");
        assert_eq!(s.entrypoint, ["/app"]);
        assert_eq!(s.cmd, ["/bin/sh", "-c", "--serve"]);
        let hc = s.healthcheck.as_ref().unwrap();
        assert_eq!((hc.interval_secs, hc.retries), (Some(90), Some(2)));
        // Each setting knows the line of the instruction that made it.
        assert_eq!((s.line, s.user_line, hc.line, s.entrypoint_line, s.cmd_line), (7, 11, 14, 15, 16));
        assert_eq!((s.env_lines["PORT"], s.env_lines["MODE"]), (9, 9));
        assert_eq!(s.exposed.iter().map(|e| e.line).collect::<Vec<_>>(), [10, 10]);
        assert!(!d.runs_as_root());
        assert_eq!(d.base_image(), "gcr.io/distroless/static");
    }

    #[test]
    fn a_continued_instruction_takes_the_line_it_starts_on() {
        let text = "FROM x\nENV A=1 \\\n    B=2\n# note\nUSER \\\n  1000\nCMD [\"a\", \\\n  \"b\"]\nENV A=3\n";
        let s = parse(text, "Dockerfile").unwrap().final_stage().clone();
        assert_eq!((s.env_lines["A"], s.env_lines["B"], s.user_line, s.cmd_line), (9, 2, 5, 7));
        assert_eq!((s.user.as_str(), s.cmd.len()), ("1000", 2));
    }

    #[test]
    fn stage_inherits_from_parent_stage() {
        let d = parse("FROM node:20 AS base\nENV A=1\nUSER node\nFROM base\nEXPOSE 3000", "Dockerfile").unwrap();
        assert_eq!(d.final_stage().env["A"], "1");
        assert_eq!(d.final_stage().user, "node");
        assert_eq!(d.base_image(), "node:20");
    }

    #[test]
    fn legacy_env_form_and_root_user() {
        let d = parse("FROM x\nENV GREETING hello world\nUSER 0:0", "Dockerfile").unwrap();
        assert_eq!(d.final_stage().env["GREETING"], "hello world");
        assert!(d.runs_as_root());
    }

    #[test]
    fn errors_carry_file_and_line() {
        let cases = [
            ("FROM x\nFORM y", 2, "did you mean FROM?"),
            ("RUN x", 1, "before the first FROM"),
            ("FROM x\nEXPOSE http", 2, "not a port"),
            ("FROM x\nHEALTHCHECK --bogus=1 CMD true", 2, "unknown flag"),
            ("FROM x\nENV A=\"open", 2, "unterminated"),
            ("# a comment only", 1, "no FROM"),
            ("FROM a AS x\nFROM b AS x", 2, "used twice"),
            ("FROM x\nSHELL /bin/bash", 2, "JSON array"),
        ];
        for (text, line, needle) in cases {
            let e = parse(text, "app/Dockerfile").unwrap_err();
            assert_eq!((e.file.as_str(), e.line), ("app/Dockerfile", line), "{text}");
            assert!(e.message.contains(needle), "{text}: {}", e.message);
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_secs("1m30s"), Some(90));
        assert_eq!(parse_duration_secs("500ms"), Some(1));
        assert_eq!(parse_duration_secs("2h"), Some(7200));
        assert_eq!(parse_duration_secs("10"), None);
    }
}
