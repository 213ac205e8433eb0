//! The global config: `$DORGU_CONFIG_DIR/config.yaml`, else `$XDG_CONFIG_HOME/dorgu/config.yaml`,
//! else `~/.config/dorgu/config.yaml` (Dorgu's location and keys). The directory is created
//! 0700 and the file written 0600: it may hold an API key, which is never printed in full.

use std::path::PathBuf;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

/// The global config.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct GlobalConfig {
    /// Schema version.
    pub version: String,
    /// Defaults for every application.
    pub defaults: Defaults,
    /// Language model.
    pub llm: Llm,
}

/// `defaults:`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Defaults {
    /// Namespace.
    pub namespace: String,
    /// Image registry.
    pub registry: String,
    /// Organisation name.
    pub org_name: String,
}

/// `llm:`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Llm {
    /// openai, anthropic, gemini, ollama or empty.
    pub provider: String,
    /// OpenAI-compatible endpoint up to `/chat/completions`, an https:// or http:// URL (with an
    /// API key, http:// only to this machine); empty means Ollama's local address for provider
    /// ollama.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub endpoint: String,
    /// Model.
    pub model: String,
    /// API key (masked when printed).
    pub api_key: String,
    /// PEM file of the CA behind an https:// endpoint with a private CA, an absolute path;
    /// empty means the system's roots.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub ca_file: String,
}

/// Every settable key.
pub const KEYS: &[&str] = &[
    "defaults.namespace",
    "defaults.registry",
    "defaults.org_name",
    "llm.provider",
    "llm.endpoint",
    "llm.model",
    "llm.api_key",
    "llm.ca_file",
];

/// Returns the config file's path.
pub fn path() -> anyhow::Result<PathBuf> {
    let dir = if let Some(d) = std::env::var_os("DORGU_CONFIG_DIR").filter(|d| !d.is_empty()) {
        PathBuf::from(d)
    } else if let Some(x) = std::env::var_os("XDG_CONFIG_HOME").filter(|d| !d.is_empty()) {
        PathBuf::from(x).join("dorgu")
    } else {
        let home = std::env::var_os("HOME").context("HOME is not set; set DORGU_CONFIG_DIR")?;
        PathBuf::from(home).join(".config").join("dorgu")
    };
    Ok(dir.join("config.yaml"))
}

/// Loads the config; a missing file is the default config.
pub fn load() -> anyhow::Result<GlobalConfig> {
    let p = path()?;
    match std::fs::read_to_string(&p) {
        Ok(text) if text.trim().is_empty() => Ok(GlobalConfig::default()),
        Ok(text) => persys_analyzer::yaml::from_str(&text).with_context(|| format!("reading {}", p.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(GlobalConfig::default()),
        Err(e) => Err(e).with_context(|| format!("reading {}", p.display())),
    }
}

fn save(config: &GlobalConfig) -> anyhow::Result<PathBuf> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
    let p = path()?;
    let dir = p.parent().context("config path has no directory")?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    let body = format!("# dorgu global config; see `dorgu config list`\n{}", persys_analyzer::yaml::to_string(config)?);
    let tmp = p.with_extension("yaml.tmp");
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
        f.write_all(body.as_bytes())?;
        f.sync_all()?;
    }
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
    std::fs::rename(&tmp, &p).with_context(|| format!("writing {}", p.display()))?;
    Ok(p)
}

/// Masks a secret as Dorgu does: first 4 and last 4 characters, all stars when short.
pub fn mask(secret: &str) -> String {
    let n = secret.chars().count();
    if n == 0 {
        String::new()
    } else if n <= 8 {
        "*".repeat(n)
    } else {
        let first: String = secret.chars().take(4).collect();
        let last: String = secret.chars().skip(n - 4).collect();
        format!("{first}****{last}")
    }
}

fn value(config: &GlobalConfig, key: &str) -> anyhow::Result<String> {
    Ok(match key {
        "defaults.namespace" => config.defaults.namespace.clone(),
        "defaults.registry" => config.defaults.registry.clone(),
        "defaults.org_name" => config.defaults.org_name.clone(),
        "llm.provider" => config.llm.provider.clone(),
        "llm.endpoint" => config.llm.endpoint.clone(),
        "llm.model" => config.llm.model.clone(),
        "llm.api_key" => mask(&config.llm.api_key),
        "llm.ca_file" => config.llm.ca_file.clone(),
        _ => bail!("unknown key `{key}`; keys: {}", KEYS.join(", ")),
    })
}

/// `dorgu config get`.
pub fn get(key: &str, json: bool) -> anyhow::Result<()> {
    let v = value(&load()?, key)?;
    if json {
        println!("{}", serde_json::json!({ "key": key, "value": v }));
    } else {
        println!("{v}");
    }
    Ok(())
}

/// `dorgu config set`.
pub fn set(key: &str, v: &str, json: bool) -> anyhow::Result<()> {
    let mut config = load()?;
    match key {
        "defaults.namespace" => {
            if !v.is_empty() && persys_analyzer::model::dns_label(v, "") != v {
                bail!("defaults.namespace: `{v}` is not a DNS-1123 label");
            }
            config.defaults.namespace = v.into();
        }
        "defaults.registry" => config.defaults.registry = v.trim_end_matches('/').into(),
        "defaults.org_name" => config.defaults.org_name = v.into(),
        "llm.provider" => {
            if !matches!(v, "" | "openai" | "anthropic" | "gemini" | "ollama") {
                bail!("llm.provider: `{v}` is not openai, anthropic, gemini or ollama (or empty)");
            }
            config.llm.provider = v.into();
        }
        "llm.endpoint" => {
            // Whether a key may go with it is checked when the model is used, when both are known.
            if !v.is_empty()
                && let Err(e) = persys_analyzer::llm::check_endpoint(v, false)
            {
                bail!("llm.endpoint: {e}");
            }
            config.llm.endpoint = v.trim_end_matches('/').into();
        }
        "llm.model" => config.llm.model = v.into(),
        "llm.api_key" => config.llm.api_key = v.into(),
        "llm.ca_file" => {
            config.llm.ca_file = if v.is_empty() {
                String::new()
            } else {
                // Kept absolute: dorgu runs from any directory.
                let path = std::path::absolute(v).with_context(|| format!("llm.ca_file: `{v}`"))?;
                persys_kit::tls::parse_certs(
                    &std::fs::read(&path).with_context(|| format!("llm.ca_file: reading {}", path.display()))?,
                    &path,
                )
                .with_context(|| "llm.ca_file: not a PEM CA bundle")?;
                path.to_str().with_context(|| format!("llm.ca_file: {} is not UTF-8", path.display()))?.to_owned()
            };
        }
        _ => bail!("unknown key `{key}`; keys: {}", KEYS.join(", ")),
    }
    if config.version.is_empty() {
        config.version = "1".into();
    }
    let p = save(&config)?;
    if json {
        println!("{}", serde_json::json!({ "key": key, "value": value(&config, key)?, "path": p }));
    } else {
        println!("set {key} in {}", p.display());
    }
    Ok(())
}

/// `dorgu config list`.
pub fn list(json: bool) -> anyhow::Result<()> {
    let config = load()?;
    if json {
        let map: serde_json::Map<String, serde_json::Value> =
            KEYS.iter().map(|k| Ok(((*k).to_owned(), value(&config, k)?.into()))).collect::<anyhow::Result<_>>()?;
        println!("{}", serde_json::Value::Object(map));
    } else {
        for k in KEYS {
            println!("{k} = {}", value(&config, k)?);
        }
    }
    Ok(())
}

/// `dorgu config path`.
pub fn path_cmd(json: bool) -> anyhow::Result<()> {
    let p = path()?;
    if json {
        println!("{}", serde_json::json!({ "path": p }));
    } else {
        println!("{}", p.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masking() {
        assert_eq!(mask("sk-1234567890abcd"), "sk-1****abcd");
        assert_eq!(mask("short"), "*****");
        assert_eq!(mask(""), "");
    }
}
