//! Persona validation: Dorgu's rule groups (resources, replicas, probes, security) plus
//! scaling, networking, image, metadata and schema checks, each with a severity, a stable rule
//! id and a suggestion. Pure functions over typed objects, so the analyzer, the reconciler's
//! controller and webhook, and the dorgu CLI all apply the same rules. Nothing here panics on
//! bad input: an invalid quantity is a SCHEMA finding.

mod rules;

use k8s_openapi::{
    Resource,
    api::{apps::v1::Deployment, autoscaling::v2::HorizontalPodAutoscaler, core::v1::Service, networking::v1::Ingress},
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
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

/// A resource the rules check, typed: the generator keeps the ones it writes, so validating its
/// output needs no YAML reading; manifests from elsewhere are read into these.
#[derive(Clone, Debug, PartialEq)]
pub enum Object {
    /// An `apps/v1` Deployment.
    Deployment(Box<Deployment>),
    /// An `autoscaling/v2` HorizontalPodAutoscaler.
    HorizontalPodAutoscaler(Box<HorizontalPodAutoscaler>),
    /// A `v1` Service.
    Service(Box<Service>),
    /// A `networking.k8s.io/v1` Ingress.
    Ingress(Box<Ingress>),
}

impl Object {
    /// Reads `value` as the object of `api_version` and `kind`: `None` for a kind the rules do
    /// not cover, an error when the object does not match its schema.
    fn read(api_version: &str, kind: &str, value: serde_json::Value) -> Option<Result<Self, serde_json::Error>> {
        let read = match (api_version, kind) {
            (Deployment::API_VERSION, Deployment::KIND) => {
                serde_json::from_value(value).map(|o| Self::Deployment(Box::new(o)))
            }
            (HorizontalPodAutoscaler::API_VERSION, HorizontalPodAutoscaler::KIND) => {
                serde_json::from_value(value).map(|o| Self::HorizontalPodAutoscaler(Box::new(o)))
            }
            (Service::API_VERSION, Service::KIND) => serde_json::from_value(value).map(|o| Self::Service(Box::new(o))),
            (Ingress::API_VERSION, Ingress::KIND) => serde_json::from_value(value).map(|o| Self::Ingress(Box::new(o))),
            _ => return None,
        };
        Some(read)
    }

    fn metadata(&self) -> &ObjectMeta {
        match self {
            Self::Deployment(o) => &o.metadata,
            Self::HorizontalPodAutoscaler(o) => &o.metadata,
            Self::Service(o) => &o.metadata,
            Self::Ingress(o) => &o.metadata,
        }
    }

    fn api_version_kind(&self) -> (&'static str, &'static str) {
        match self {
            Self::Deployment(_) => (Deployment::API_VERSION, Deployment::KIND),
            Self::HorizontalPodAutoscaler(_) => (HorizontalPodAutoscaler::API_VERSION, HorizontalPodAutoscaler::KIND),
            Self::Service(_) => (Service::API_VERSION, Service::KIND),
            Self::Ingress(_) => (Ingress::API_VERSION, Ingress::KIND),
        }
    }

    fn check(&self, persona: &ApplicationPersonaSpec) -> Vec<Finding> {
        match self {
            Self::Deployment(d) => validate_deployment(d, persona),
            Self::HorizontalPodAutoscaler(h) => validate_hpa(h, persona),
            Self::Service(s) => validate_service(s, persona),
            Self::Ingress(i) => validate_ingress(i, persona),
        }
    }
}

/// One validation against a persona, fed objects in file order: the one place the findings of
/// typed objects and of YAML files are put together, so both give the same.
struct Run<'a> {
    persona: &'a ApplicationPersonaSpec,
    namespace: &'a str,
    out: Vec<Finding>,
    deployments: usize,
}

impl<'a> Run<'a> {
    fn new(persona: &'a ApplicationPersonaSpec, namespace: &'a str) -> Self {
        let namespace = if namespace.is_empty() { "default" } else { namespace };
        Self { persona, namespace, out: validate_persona(persona), deployments: 0 }
    }

    /// Adds the findings of one object (or of why it could not be read), each naming `file`
    /// and the object.
    fn add(
        &mut self,
        file: &str,
        api_version: &str,
        kind: &str,
        name: Option<&str>,
        namespace: Option<&str>,
        found: Vec<Finding>,
    ) {
        if (api_version, kind) == (Deployment::API_VERSION, Deployment::KIND) {
            self.deployments += 1;
        }
        let resource = reference(api_version, kind, namespace.unwrap_or(self.namespace), name.unwrap_or(""));
        self.out.extend(found.into_iter().map(|mut f| {
            f.file = file.to_owned();
            f.resource = Some(resource.clone());
            f
        }));
    }

    fn object(&mut self, file: &str, object: &Object) {
        let (api_version, kind) = object.api_version_kind();
        let meta = object.metadata();
        let found = object.check(self.persona);
        self.add(file, api_version, kind, meta.name.as_deref(), meta.namespace.as_deref(), found);
    }

    fn finish(mut self) -> Vec<Finding> {
        if self.deployments == 0 {
            self.out.push(finding(
                FindingSeverity::Warning,
                RuleGroup::Metadata,
                "metadata.no-deployment",
                format!("no Deployment among the manifests for persona `{}`", self.persona.name),
                "include the application's Deployment",
                "",
            ));
        }
        sort(&mut self.out);
        self.out
    }
}

/// Validates typed objects, each with the path of the file it is written to, against a persona:
/// the findings [`validate_files`] gives for the same objects written as YAML, without writing
/// or reading any.
pub fn validate_objects<'a>(
    objects: impl IntoIterator<Item = (&'a str, &'a Object)>,
    persona: &ApplicationPersonaSpec,
    namespace: &str,
) -> Vec<Finding> {
    let mut run = Run::new(persona, namespace);
    for (file, object) in objects {
        run.object(file, object);
    }
    run.finish()
}

/// Validates manifest files against a persona. Files may hold several YAML documents; kinds
/// the rules do not cover are skipped; documents that do not parse are SCHEMA errors.
pub fn validate_files(files: &[ManifestFile], persona: &ApplicationPersonaSpec, namespace: &str) -> Vec<Finding> {
    let mut run = Run::new(persona, namespace);
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
                    run.out.push(f);
                    break;
                }
            };
            if value.is_null() {
                continue;
            }
            let text = |v: Option<&serde_json::Value>| v.and_then(|v| v.as_str()).map(str::to_owned);
            let kind = text(value.get("kind")).unwrap_or_default();
            let api = text(value.get("apiVersion")).unwrap_or_default();
            let metadata = value.get("metadata");
            let name = text(metadata.and_then(|m| m.get("name")));
            let ns = text(metadata.and_then(|m| m.get("namespace")));
            match Object::read(&api, &kind, value) {
                None => {}
                Some(Ok(object)) => run.object(&file.path, &object),
                Some(Err(e)) => {
                    let invalid = finding(
                        FindingSeverity::Error,
                        RuleGroup::Schema,
                        "schema.invalid-object",
                        format!("the object does not match its Kubernetes schema: {e}"),
                        "fix the field named in the message",
                        "",
                    );
                    run.add(&file.path, &api, &kind, name.as_deref(), ns.as_deref(), vec![invalid]);
                }
            }
        }
    }
    run.finish()
}

#[cfg(test)]
mod tests;
