//! What the admission webhook answers, from the persona that describes the workload and the
//! findings of the shared rules.

use persys_proto::analyzer::v1::{Finding, FindingSeverity};

/// Advisory (always allow, findings as warnings) or enforcing (deny on errors).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Allow, with every error and warning as an admission warning.
    Advisory,
    /// Deny when the workload has validation errors; warnings still go back as warnings.
    Enforcing,
}

impl Mode {
    /// Reads `advisory` or `enforcing` (a persona annotation or namespace label).
    pub fn parse(value: &str) -> Option<Self> {
        match value.trim().to_ascii_lowercase().as_str() {
            "advisory" => Some(Self::Advisory),
            "enforcing" => Some(Self::Enforcing),
            _ => None,
        }
    }
}

/// The annotation (on a persona) or label (on a namespace) choosing the mode.
pub const MODE_KEY: &str = "dorgu.io/webhook-mode";

/// The mode for a workload: the persona's annotation, else the namespace's label, else the
/// default. A value that is neither mode is ignored.
pub fn mode(persona: Option<&str>, namespace: Option<&str>, default: Mode) -> Mode {
    persona.and_then(Mode::parse).or_else(|| namespace.and_then(Mode::parse)).unwrap_or(default)
}

/// The answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// Admit the object.
    pub allowed: bool,
    /// Why it was denied (empty when allowed).
    pub message: String,
    /// Warnings for the client, each at most [`WARNING_LEN`] characters.
    pub warnings: Vec<String>,
}

/// Longest warning sent: the API server advises 120 characters and may cut past 256.
pub const WARNING_LEN: usize = 200;
/// Most warnings sent.
pub const MAX_WARNINGS: usize = 10;

fn clip(s: String) -> String {
    if s.chars().count() <= WARNING_LEN {
        return s;
    }
    let mut out: String = s.chars().take(WARNING_LEN - 1).collect();
    out.push('…');
    out
}

fn line(f: &Finding) -> String {
    if f.field.is_empty() { f.message.clone() } else { format!("{}: {}", f.field, f.message) }
}

/// Decides on a `kind`/`name` checked against the persona `persona` with `findings`.
pub fn decide(mode: Mode, kind: &str, name: &str, persona: &str, findings: &[Finding]) -> Verdict {
    let errors: Vec<&Finding> = findings.iter().filter(|f| f.severity == FindingSeverity::Error as i32).collect();
    let warnings: Vec<&Finding> = findings.iter().filter(|f| f.severity == FindingSeverity::Warning as i32).collect();
    let prefix = format!("ApplicationPersona {persona}");
    let mut out: Vec<String> = Vec::new();
    if mode == Mode::Advisory {
        out.extend(errors.iter().map(|f| clip(format!("{prefix} (error, advisory): {}", line(f)))));
    }
    out.extend(warnings.iter().map(|f| clip(format!("{prefix}: {}", line(f)))));
    out.truncate(MAX_WARNINGS);
    if mode == Mode::Enforcing && !errors.is_empty() {
        let reasons: Vec<String> = errors.iter().map(|f| line(f)).collect();
        return Verdict {
            allowed: false,
            message: format!("{kind} {name} violates {prefix}: {}", reasons.join("; ")),
            warnings: out,
        };
    }
    Verdict { allowed: true, message: String::new(), warnings: out }
}

#[cfg(test)]
mod tests {
    use persys_analyzer::validate::finding;
    use persys_proto::analyzer::v1::RuleGroup;

    use super::*;

    fn findings() -> Vec<Finding> {
        vec![
            finding(FindingSeverity::Error, RuleGroup::Replicas, "r", "1 replica(s), below 2", "", "spec.replicas"),
            finding(FindingSeverity::Warning, RuleGroup::Resources, "w", "no requests", "", ""),
            finding(FindingSeverity::Info, RuleGroup::Health, "i", "path differs", "", ""),
        ]
    }

    #[test]
    fn enforcing_denies_on_errors_and_still_warns() {
        let v = decide(Mode::Enforcing, "Deployment", "shop", "shop", &findings());
        assert!(!v.allowed);
        assert_eq!(v.message, "Deployment shop violates ApplicationPersona shop: spec.replicas: 1 replica(s), below 2");
        assert_eq!(v.warnings, ["ApplicationPersona shop: no requests"]);
        let ok = decide(Mode::Enforcing, "Deployment", "shop", "shop", &findings()[1..]);
        assert!(ok.allowed && ok.message.is_empty());
    }

    #[test]
    fn advisory_allows_with_errors_as_warnings_and_no_info() {
        let v = decide(Mode::Advisory, "Deployment", "shop", "shop", &findings());
        assert!(v.allowed);
        assert_eq!(v.warnings.len(), 2);
        assert!(v.warnings[0].contains("(error, advisory)") && v.warnings[0].contains("spec.replicas"));
    }

    #[test]
    fn warnings_are_clipped_and_capped() {
        let long = "x".repeat(500);
        let many: Vec<Finding> =
            (0..30).map(|_| finding(FindingSeverity::Warning, RuleGroup::Resources, "w", &long, "", "")).collect();
        let v = decide(Mode::Advisory, "Deployment", "a", "a", &many);
        assert_eq!(v.warnings.len(), MAX_WARNINGS);
        assert!(v.warnings.iter().all(|w| w.chars().count() == WARNING_LEN && w.ends_with('…')));
    }

    #[test]
    fn the_persona_annotation_wins_over_the_namespace_label() {
        assert_eq!(mode(Some("enforcing"), Some("advisory"), Mode::Advisory), Mode::Enforcing);
        assert_eq!(mode(None, Some("Enforcing"), Mode::Advisory), Mode::Enforcing);
        assert_eq!(mode(Some("strict"), None, Mode::Advisory), Mode::Advisory, "unknown values are ignored");
        assert_eq!(mode(None, None, Mode::Enforcing), Mode::Enforcing);
    }
}
