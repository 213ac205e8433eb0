//! The validating admission webhook for Deployments and StatefulSets (`admission.k8s.io/v1`),
//! served over HTTPS with rustls on every replica (no leadership needed).
//!
//! It finds the persona describing the workload with the controller's resolution (the persona
//! whose chain resolves to this workload among the namespace's workloads, the incoming version
//! in place of the stored one), checks it with the same rules, and answers per
//! [`decide::admission`]: advisory allows with warnings, enforcing denies on errors. It lists
//! live objects rather than trusting a cache, as Linkerd's policy webhook does. A request it
//! cannot read gets a well-formed denial; a failure to look personas up follows
//! `--webhook-failure-policy` (ignore: allow with a warning; fail: deny), matching the
//! `failurePolicy` registered with the API server.

use std::sync::Arc;

use axum::{
    Json, Router,
    body::Bytes,
    extract::State,
    routing::{get, post},
};
use k8s_openapi::api::{
    apps::v1::{Deployment, StatefulSet},
    core::v1::Namespace,
};
use kube::{
    Api, Client, ResourceExt,
    api::ListParams,
    core::{
        DynamicObject,
        admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation},
    },
};
use persys_analyzer::{persona::convert, validate};
use persys_crds::persona::ApplicationPersona;

use crate::{
    decide::{
        admission::{self, Mode, Verdict},
        resolve::{self, Resolution},
    },
    persona::Workload,
    workload::Cached,
};

/// The webhook's settings and client.
pub struct Webhook {
    client: Client,
    default_mode: Mode,
    fail_open: bool,
}

impl Webhook {
    /// A webhook answering in `default_mode` unless a persona or namespace says otherwise;
    /// `fail_open` allows (with a warning) when personas cannot be looked up.
    pub fn new(client: Client, default_mode: Mode, fail_open: bool) -> Arc<Self> {
        Arc::new(Self { client, default_mode, fail_open })
    }

    /// `POST /validate` and `GET /healthz`.
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/validate", post(validate_handler))
            .route("/healthz", get(|| async { "ok" }))
            .with_state(self.clone())
    }

    /// Answers one AdmissionReview body. Never fails: whatever the body, the answer is a
    /// well-formed AdmissionReview.
    pub async fn review(&self, body: &[u8]) -> AdmissionReview<DynamicObject> {
        let review: AdmissionReview<DynamicObject> = match serde_json::from_slice(body) {
            Ok(r) => r,
            Err(e) => {
                return AdmissionResponse::invalid(format!("not an admission.k8s.io/v1 AdmissionReview: {e}"))
                    .into_review();
            }
        };
        let request: AdmissionRequest<DynamicObject> = match review.try_into() {
            Ok(r) => r,
            Err(_) => return AdmissionResponse::invalid("the AdmissionReview has no request").into_review(),
        };
        let response = AdmissionResponse::from(&request);
        if !matches!(request.operation, Operation::Create | Operation::Update) {
            return response.into_review();
        }
        let Some(object) = request.object.as_ref() else { return response.into_review() };
        let value = serde_json::to_value(object).unwrap_or_default();
        let workload = match request.kind.kind.as_str() {
            "Deployment" => Cached::<Deployment>::from_value(value).map(|d| Workload::Deployment(Arc::new(d))),
            "StatefulSet" => Cached::<StatefulSet>::from_value(value).map(|s| Workload::StatefulSet(Arc::new(s))),
            _ => return response.into_review(),
        };
        let workload = match workload {
            Ok(w) => w,
            Err(e) => return response.deny(format!("the {} cannot be read: {e}", request.kind.kind)).into_review(),
        };
        let namespace = request.namespace.clone().or_else(|| object.namespace()).unwrap_or_else(|| "default".into());
        let (kind, name) = {
            let c = workload.candidate();
            (c.kind, if c.name.is_empty() { request.name.clone() } else { c.name })
        };
        let verdict = match self.check(&namespace, workload).await {
            Ok(v) => v,
            Err(e) if self.fail_open => Verdict {
                allowed: true,
                message: String::new(),
                warnings: vec![format!("persona check of {kind} {name} skipped: {e}")],
            },
            Err(e) => Verdict {
                allowed: false,
                message: format!("persona check of {kind} {name} failed: {e}"),
                warnings: vec![],
            },
        };
        tracing::info!(%namespace, %kind, %name, allowed = verdict.allowed, warnings = verdict.warnings.len(), "admission");
        let mut response = if verdict.allowed { response } else { response.deny(verdict.message) };
        if !verdict.warnings.is_empty() {
            response.warnings = Some(verdict.warnings);
        }
        response.into_review()
    }

    async fn check(&self, namespace: &str, incoming: Workload) -> Result<Verdict, kube::Error> {
        let personas =
            Api::<ApplicationPersona>::namespaced(self.client.clone(), namespace).list(&ListParams::default()).await?;
        let allow = |warnings: Vec<String>| Verdict { allowed: true, message: String::new(), warnings };
        if personas.items.is_empty() {
            return Ok(allow(vec![]));
        }
        let me = incoming.candidate();
        let mut candidates = vec![me.clone()];
        let deployments =
            Api::<Cached<Deployment>>::namespaced(self.client.clone(), namespace).list(&ListParams::default()).await?;
        candidates.extend(deployments.items.iter().map(Cached::candidate));
        let statefulsets =
            Api::<Cached<StatefulSet>>::namespaced(self.client.clone(), namespace).list(&ListParams::default()).await?;
        candidates.extend(statefulsets.items.iter().map(Cached::candidate));
        // The stored version of the incoming object is replaced by the incoming one.
        let others: Vec<_> =
            candidates.iter().skip(1).filter(|c| !(c.kind == me.kind && c.name == me.name)).cloned().collect();
        candidates.truncate(1);
        candidates.extend(others);

        let describing: Vec<&ApplicationPersona> = personas
            .items
            .iter()
            .filter(|p| matches!(resolve::resolve(&p.spec.name, &candidates), Resolution::Found { index: 0, .. }))
            .collect();
        let persona = match describing.as_slice() {
            [] => return Ok(allow(vec![])),
            [one] => *one,
            many => {
                let names: Vec<String> = many.iter().map(|p| p.name_any()).collect();
                return Ok(allow(vec![format!(
                    "{} {} is described by several ApplicationPersonas ({}); none was applied",
                    me.kind,
                    me.name,
                    names.join(", ")
                )]));
            }
        };
        let spec = match convert::from_crd(&persona.spec) {
            Ok(s) => s,
            Err(e) => {
                return Ok(allow(vec![format!(
                    "ApplicationPersona {} cannot be read ({e}); not applied",
                    persona.name_any()
                )]));
            }
        };
        let findings = validate::validate_deployment(&incoming.as_deployment(), &spec);
        let namespace_mode = Api::<Namespace>::all(self.client.clone())
            .get_opt(namespace)
            .await?
            .and_then(|n| n.labels().get(admission::MODE_KEY).cloned());
        let mode = admission::mode(
            persona.annotations().get(admission::MODE_KEY).map(String::as_str),
            namespace_mode.as_deref(),
            self.default_mode,
        );
        Ok(admission::decide(mode, &me.kind, &me.name, &persona.name_any(), &findings))
    }
}

async fn validate_handler(State(webhook): State<Arc<Webhook>>, body: Bytes) -> Json<AdmissionReview<DynamicObject>> {
    Json(webhook.review(&body).await)
}
