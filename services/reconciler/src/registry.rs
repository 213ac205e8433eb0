//! The Registry controller (Kapsa's `kapsa-project.io/v1alpha1` `Registry`, cluster-scoped):
//! verifies each registry's reachability and credentials through the registry v2 API
//! (`GET /v2/`, answering a Basic or Bearer challenge with the credentials of the referenced
//! Secret), and writes `status.verified`, `lastVerified` and the `Ready` condition under the
//! field manager [`MANAGER`]. It checks again every [`Options::interval`], on every change of
//! the Registry, and on every change of a Secret in the credentials namespace.
//!
//! Least privilege: credentials are read only from one namespace (the chart's release
//! namespace); a Registry pointing at a Secret elsewhere is reported (`SecretNotPermitted`),
//! not read. Secret values are never logged or written anywhere.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use futures::StreamExt;
use http::{Request, StatusCode, header};
use http_body_util::Full;
use k8s_openapi::{api::core::v1::Secret, jiff::Timestamp};
use kube::{
    Api, Client, ResourceExt,
    api::{Patch, PatchParams},
    runtime::{
        Controller, PredicateConfig, WatchStreamExt, controller::Action, predicates, reflector, reflector::ObjectRef,
        watcher,
    },
};
use persys_crds::kapsa::{Registry, RegistryStatus};
use persys_kit::shutdown::Shutdown;

use crate::decide::{
    registry::{self, Challenge, Credentials, Verdict},
    status,
};

/// The field manager of Registry statuses.
pub const MANAGER: &str = "persys-reconciler-registry";

/// Settings of the controller.
#[derive(Clone, Debug)]
pub struct Options {
    /// The one namespace registry credentials are read from.
    pub credentials_namespace: String,
    /// Check every registry at least this often.
    pub interval: Duration,
    /// Per HTTP call.
    pub timeout: Duration,
}

impl Options {
    /// Every 5 minutes, 10 s a call.
    pub fn new(credentials_namespace: impl Into<String>) -> Self {
        Self {
            credentials_namespace: credentials_namespace.into(),
            interval: Duration::from_secs(300),
            timeout: Duration::from_secs(10),
        }
    }
}

struct Context {
    client: Client,
    http: persys_kit::http::Client,
    options: Options,
}

#[derive(Debug, thiserror::Error)]
enum Error {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
}

fn get(url: &str, authorization: Option<&str>) -> Result<Request<Full<Bytes>>, String> {
    let mut request = Request::get(url).header(header::ACCEPT, "application/json");
    if let Some(value) = authorization {
        request = request.header(header::AUTHORIZATION, value);
    }
    request.body(Full::new(Bytes::new())).map_err(|e| format!("{url}: {e}"))
}

fn header_text<'a>(response: &'a persys_kit::http::Response, name: &str) -> Option<&'a str> {
    response.headers.get(name).and_then(|v| v.to_str().ok())
}

/// Checks the registry at `base` with `credentials` (and, for the message, where they came
/// from).
async fn verify(ctx: &Context, base: &str, credentials: Option<(&Credentials, &str)>) -> Verdict {
    let v2 = format!("{base}/v2/");
    let send = |authorization: Option<String>, url: String| async move {
        let request = get(&url, authorization.as_deref())?;
        persys_kit::http::send(&ctx.http, request, ctx.options.timeout).await
    };
    let first = match send(None, v2.clone()).await {
        Ok(r) => r,
        Err(e) => return Verdict::failed("Unreachable", format!("GET {v2}: {e}")),
    };
    let accepted = |r: &persys_kit::http::Response, how: String| {
        if registry::speaks_v2(header_text(r, "docker-distribution-api-version")) {
            Verdict::passed(how)
        } else {
            Verdict::failed(
                "NotARegistry",
                format!(
                    "GET {v2} answered {} without Docker-Distribution-API-Version: registry/2.0; is spec.endpoint the registry's v2 API?",
                    r.status
                ),
            )
        }
    };
    match first.status {
        StatusCode::OK => {
            return accepted(&first, format!("{v2} answers without credentials"));
        }
        StatusCode::UNAUTHORIZED => {}
        other => return Verdict::failed("Unreachable", format!("GET {v2} answered {other}")),
    }
    let challenge = registry::challenge(header_text(&first, "www-authenticate").unwrap_or_default());
    let Some((creds, source)) = credentials else {
        return Verdict::failed(
            "CredentialsRequired",
            format!("{v2} asks for credentials: set spec.auth.secretRef to a Secret holding them"),
        );
    };
    let refused = |status: StatusCode| {
        Verdict::failed(
            "Unauthorized",
            format!(
                "{v2} refused user `{}` from Secret {source} ({status}); fix the Secret's credentials",
                creds.username
            ),
        )
    };
    match challenge {
        Challenge::Basic => match send(Some(creds.basic()), v2.clone()).await {
            Ok(r) if r.status == StatusCode::OK => {
                accepted(&r, format!("authenticated as `{}` (Basic)", creds.username))
            }
            Ok(r) if matches!(r.status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) => refused(r.status),
            Ok(r) => Verdict::failed("Unreachable", format!("GET {v2} with credentials answered {}", r.status)),
            Err(e) => Verdict::failed("Unreachable", format!("GET {v2}: {e}")),
        },
        Challenge::Bearer { realm, service, scope } => {
            let url = registry::token_url(&realm, service.as_deref(), scope.as_deref());
            let token = match send(Some(creds.basic()), url.clone()).await {
                Ok(r) if r.status == StatusCode::OK => {
                    let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
                    match body["token"].as_str().or_else(|| body["access_token"].as_str()) {
                        Some(t) => t.to_owned(),
                        None => {
                            return Verdict::failed("Unauthorized", format!("the token service {realm} sent no token"));
                        }
                    }
                }
                Ok(r) if matches!(r.status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) => {
                    return refused(r.status);
                }
                Ok(r) => {
                    return Verdict::failed("Unreachable", format!("the token service {realm} answered {}", r.status));
                }
                Err(e) => return Verdict::failed("Unreachable", format!("the token service {realm}: {e}")),
            };
            match send(Some(format!("Bearer {token}")), v2.clone()).await {
                Ok(r) if r.status == StatusCode::OK => {
                    accepted(&r, format!("authenticated as `{}` (token)", creds.username))
                }
                Ok(r) => refused(r.status),
                Err(e) => Verdict::failed("Unreachable", format!("GET {v2}: {e}")),
            }
        }
        Challenge::Other(scheme) => Verdict::failed(
            "UnsupportedAuth",
            format!("{v2} asks for `{scheme}` authentication; only Basic and Bearer tokens are supported"),
        ),
    }
}

/// The verdict on `reg`: its Secret read, then the registry checked.
async fn check(reg: &Registry, ctx: &Context) -> Result<Verdict, Error> {
    let base = match registry::base_url(&reg.spec.endpoint) {
        Ok(b) => b,
        Err(message) => return Ok(Verdict::failed("InvalidEndpoint", message)),
    };
    let Some(auth) = &reg.spec.auth else { return Ok(verify(ctx, &base, None).await) };
    let want = &ctx.options.credentials_namespace;
    let ns = if auth.secret_ref.namespace.is_empty() { want } else { &auth.secret_ref.namespace };
    let source = format!("{ns}/{}", auth.secret_ref.name);
    if ns != want {
        return Ok(Verdict::failed(
            "SecretNotPermitted",
            format!("the reconciler reads registry credentials only from namespace {want}; move Secret {source} there"),
        ));
    }
    let secret = match Api::<Secret>::namespaced(ctx.client.clone(), ns).get_opt(&auth.secret_ref.name).await? {
        Some(s) => s,
        None => return Ok(Verdict::failed("SecretNotFound", format!("Secret {source} does not exist"))),
    };
    let data = secret.data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)).collect();
    match registry::credentials(&data, &base) {
        Ok(creds) => Ok(verify(ctx, &base, Some((&creds, &source))).await),
        Err(why) => Ok(Verdict::failed("InvalidSecret", format!("Secret {source}: {why}"))),
    }
}

async fn reconcile(reg: Arc<Registry>, ctx: Arc<Context>) -> Result<Action, Error> {
    let verdict = check(&reg, &ctx).await?;
    let now = Timestamp::now();
    let previous = reg.status.clone().unwrap_or_default();
    let generation = reg.metadata.generation;
    let ready = status::condition(
        &previous.conditions,
        "Ready",
        verdict.verified,
        verdict.reason,
        verdict.message.clone(),
        generation,
        now,
    );
    let next = RegistryStatus {
        verified: verdict.verified,
        last_verified: Some(now.to_string()),
        observed_generation: generation,
        conditions: vec![ready],
    };
    let patch = serde_json::json!({
        "apiVersion": persys_crds::kapsa::API_VERSION, "kind": "Registry", "status": next,
    });
    Api::<Registry>::all(ctx.client.clone())
        .patch_status(&reg.name_any(), &PatchParams::apply(MANAGER).force(), &Patch::Apply(&patch))
        .await?;
    if previous.verified != verdict.verified
        || previous.conditions.first().map(|c| c.reason.as_str()) != Some(verdict.reason)
    {
        tracing::info!(registry = %reg.name_any(), verified = verdict.verified, reason = verdict.reason, message = %verdict.message, "registry checked");
    }
    Ok(Action::requeue(ctx.options.interval))
}

fn error_policy(reg: Arc<Registry>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(registry = %reg.name_any(), %error, "registry check failed; retrying");
    Action::requeue(Duration::from_secs(10))
}

/// Waits for the Registry CRD, then follows every Registry until `shutdown`.
pub async fn run(client: Client, options: Options, shutdown: Shutdown) -> anyhow::Result<()> {
    let http = persys_kit::http::client(None, "registries")?;
    let gvk = kube::api::GroupVersionKind::gvk("kapsa-project.io", "v1alpha1", "Registry");
    if crate::served(&client, &gvk, crate::argocd::RECHECK, &shutdown).await.is_none() {
        return Ok(());
    }
    tracing::info!(credentials_namespace = %options.credentials_namespace, "following Kapsa Registries");
    let secrets = Api::<Secret>::namespaced(client.clone(), &options.credentials_namespace);
    // Spec changes only (the generation): the controller's own status writes must not
    // trigger another check.
    let (registries, writer) = reflector::store();
    let changes = watcher(Api::<Registry>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .reflect(writer)
        .applied_objects()
        .predicate_filter(predicates::generation, PredicateConfig::default());
    let controller = Controller::for_stream(changes, registries.clone());
    let credentials_namespace = options.credentials_namespace.clone();
    controller
        // A Secret's change (rotated credentials) re-checks the registries that use it.
        .watches(secrets, watcher::Config::default(), move |secret: Secret| {
            let (name, ns) = (secret.name_any(), secret.namespace().unwrap_or_default());
            registries
                .state()
                .into_iter()
                .filter(|r| {
                    r.spec.auth.as_ref().is_some_and(|a| {
                        let ref_ns = if a.secret_ref.namespace.is_empty() {
                            &credentials_namespace
                        } else {
                            &a.secret_ref.namespace
                        };
                        a.secret_ref.name == name && *ref_ns == ns
                    })
                })
                .map(|r| ObjectRef::from_obj(&*r))
                .collect::<Vec<_>>()
        })
        .graceful_shutdown_on(shutdown.wait())
        .run(reconcile, error_policy, Arc::new(Context { client, http, options }))
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "registry reconcile");
            }
        })
        .await;
    Ok(())
}
