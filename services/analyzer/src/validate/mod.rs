//! Persona validation: Dorgu's rule groups (resources, replicas, probes, security) plus
//! scaling, networking, image, metadata and schema checks, each with a severity, a stable rule
//! id and a suggestion. Pure functions over typed objects, so the analyzer, the reconciler's
//! controller and webhook, and the dorgu CLI all apply the same rules. Nothing here panics on
//! bad input: an invalid quantity is a SCHEMA finding.

mod rules;

use k8s_openapi::api::{
    apps::v1::Deployment, autoscaling::v2::HorizontalPodAutoscaler, core::v1::Service, networking::v1::Ingress,
};
use persys_proto::{
    analyzer::v1::{ApplicationPersonaSpec, Finding, FindingSeverity, ManifestFile, RuleGroup},
    common::v1::ObjectReference,
};
pub use rules::{validate_deployment, validate_hpa, validate_ingress, validate_persona, validate_service};

/// Builds a finding.
pub fn finding(
    severity: FindingSeverity,
    group: RuleGroup,
    rule_id: &str,
    message: impl Into<String>,
    suggestion: impl Into<String>,
    field: &str,
) -> Finding {
    Finding {
        severity: severity as i32,
        rule_group: group as i32,
        rule_id: rule_id.into(),
        message: message.into(),
        suggestion: suggestion.into(),
        field: field.into(),
        resource: None,
        file: String::new(),
    }
}

/// Orders findings errors first, then warnings, then info, keeping discovery order within a
/// severity.
pub fn sort(findings: &mut [Finding]) {
    findings.sort_by_key(|f| std::cmp::Reverse(f.severity));
}

/// Counts of a set of findings: (errors, warnings, infos).
pub fn counts(findings: &[Finding]) -> (i32, i32, i32) {
    let count = |s: FindingSeverity| findings.iter().filter(|f| f.severity == s as i32).count() as i32;
    (count(FindingSeverity::Error), count(FindingSeverity::Warning), count(FindingSeverity::Info))
}

fn reference(api_version: &str, kind: &str, namespace: &str, name: &str) -> ObjectReference {
    ObjectReference {
        api_version: api_version.into(),
        kind: kind.into(),
        namespace: namespace.into(),
        name: name.into(),
        uid: String::new(),
    }
}

/// Validates manifest files against a persona. Files may hold several YAML documents; kinds
/// the rules do not cover are skipped; documents that do not parse are SCHEMA errors.
pub fn validate_files(files: &[ManifestFile], persona: &ApplicationPersonaSpec, namespace: &str) -> Vec<Finding> {
    let namespace = if namespace.is_empty() { "default" } else { namespace };
    let mut out = validate_persona(persona);
    let mut deployments = 0;
    for file in files {
        if !(file.path.ends_with(".yaml") || file.path.ends_with(".yml") || file.path.is_empty()) {
            continue;
        }
        for (i, document) in crate::yaml::documents::<serde_json::Value>(&file.content).into_iter().enumerate() {
            let value = match document {
                Ok(v) => v,
                Err(e) => {
                    let mut f = finding(
                        FindingSeverity::Error,
                        RuleGroup::Schema,
                        "schema.unparsable",
                        format!("document {} is not valid YAML: {e}", i + 1),
                        "fix the YAML syntax",
                        "",
                    );
                    f.file = file.path.clone();
                    out.push(f);
                    break;
                }
            };
            if value.is_null() {
                continue;
            }
            let kind = value.get("kind").and_then(|k| k.as_str()).unwrap_or("").to_owned();
            let api = value.get("apiVersion").and_then(|k| k.as_str()).unwrap_or("").to_owned();
            let name =
                value.get("metadata").and_then(|m| m.get("name")).and_then(|n| n.as_str()).unwrap_or("").to_owned();
            let ns = value
                .get("metadata")
                .and_then(|m| m.get("namespace"))
                .and_then(|n| n.as_str())
                .unwrap_or(namespace)
                .to_owned();
            let mut found = match (api.as_str(), kind.as_str()) {
                ("apps/v1", "Deployment") => {
                    deployments += 1;
                    typed::<Deployment>(value, |d| validate_deployment(d, persona))
                }
                ("autoscaling/v2", "HorizontalPodAutoscaler") => {
                    typed::<HorizontalPodAutoscaler>(value, |h| validate_hpa(h, persona))
                }
                ("v1", "Service") => typed::<Service>(value, |s| validate_service(s, persona)),
                ("networking.k8s.io/v1", "Ingress") => typed::<Ingress>(value, |i| validate_ingress(i, persona)),
                _ => Vec::new(),
            };
            for f in &mut found {
                f.file = file.path.clone();
                f.resource = Some(reference(&api, &kind, &ns, &name));
            }
            out.extend(found);
        }
    }
    if deployments == 0 {
        out.push(finding(
            FindingSeverity::Warning,
            RuleGroup::Metadata,
            "metadata.no-deployment",
            format!("no Deployment among the manifests for persona `{}`", persona.name),
            "include the application's Deployment",
            "",
        ));
    }
    sort(&mut out);
    out
}

use serde::Deserialize;

fn typed<T: for<'de> Deserialize<'de>>(value: serde_json::Value, check: impl Fn(&T) -> Vec<Finding>) -> Vec<Finding> {
    match serde_json::from_value::<T>(value) {
        Ok(obj) => check(&obj),
        Err(e) => vec![finding(
            FindingSeverity::Error,
            RuleGroup::Schema,
            "schema.invalid-object",
            format!("the object does not match its Kubernetes schema: {e}"),
            "fix the field named in the message",
            "",
        )],
    }
}
