//! DORA: deployments in, commits resolved, DevLake fed exactly once, the four keys computed.
//!
//! `RecordDeployment` stores a deployment at once (idempotent per component, cluster,
//! environment and revision) and wakes the worker, which, for each PENDING deployment it
//! claims (`FOR UPDATE SKIP LOCKED` with a lease, so replicas share the work and a crash is
//! picked up after the lease):
//! 1. resolves commits: the GitOps revision's commit, and for each image whose tag is a SHA
//!    the commits since the previous successful deployment's tag of the same image (GitHub's
//!    compare API), or that one commit when there is none; commits without a date are dropped
//!    with a warning. GitHub failures and rate limits delay it; past the attempts it goes on
//!    with what it has and says why in `warnings`.
//! 2. sends it to DevLake, once per DevLake id (`<component>:<environment>:<revision>`): the
//!    first deployment to claim the id in the database (and in Redis, across pipelines with
//!    their own databases, or in the process on SQLite: [`dedupe`]) posts it to each connection until each accepted;
//!    the others are SKIPPED once it is sent. Network errors, 5xx and 429 are retried with
//!    backoff, other 4xx fail at once; `RetryDevlakePush` starts a FAILED one again.
//!
//! [`keys`] computes the four keys from what is stored, with or without DevLake.

pub mod dedupe;
pub mod devlake;
pub mod github;
pub mod github_app;
pub mod image;
pub mod keys;
pub mod rollouts;
pub mod store;

use std::{collections::HashMap, sync::Arc, time::Duration};

use persys_kit::{
    ApiError, Caller, FieldViolation, Identity, config::Secret, error::Violations, identity::Role, shutdown::Shutdown,
};
use persys_proto::{
    common::v1::PageResponse,
    metrics::v1::{
        DeployedImage, Deployment, DeploymentCommit, DeploymentEnvironment, DeploymentStatus, DevlakePush,
        DevlakePushState, GetDeploymentRequest, GetDeploymentResponse, GetDoraMetricsRequest, GetDoraMetricsResponse,
        ListDeploymentsRequest, ListDeploymentsResponse, RecordDeploymentRequest, RecordDeploymentResponse,
        RetryDevlakePushRequest, RetryDevlakePushResponse, dora_service_server::DoraService,
    },
};
use tokio::sync::Mutex;
use tonic::{Request, Response, Status};

use self::{
    dedupe::{Claim, Claims},
    devlake::{Devlake, Outcome},
    github::{Github, GithubError},
    store::{Claimed, Deployments, Filter},
};
use crate::{
    clock::{millis, now_ms, timestamp},
    store::{Store, StoreError},
};

/// Most images one deployment may name.
pub const MAX_IMAGES: usize = 64;
/// Most deployments one worker pass claims.
const CLAIM: i64 = 128;
/// Longest window of the four keys.
const MAX_WINDOW_MS: i64 = 366 * 86_400_000;

/// How the DORA pipeline reaches GitHub, DevLake and Redis, and retries.
#[derive(Clone, Debug)]
pub struct Options {
    /// GitHub API base URL.
    pub github_api: String,
    /// GitHub token (read-only contents access suffices).
    pub github_token: Option<Secret>,
    /// A GitHub App installation to authenticate as instead of a token.
    pub github_app: Option<github_app::AppCredentials>,
    /// Image repository prefix → source repository URL.
    pub image_repos: Vec<(String, String)>,
    /// DevLake base URL; no DevLake when unset.
    pub devlake_url: Option<String>,
    /// DevLake webhook API key.
    pub devlake_token: Option<Secret>,
    /// DevLake webhook connection ids every deployment is sent to.
    pub devlake_connections: Vec<String>,
    /// Redis URL for claims across pipelines; PostgreSQL alone when unset.
    pub redis_url: Option<Secret>,
    /// Key prefix in Redis.
    pub redis_prefix: String,
    /// How long a sent mark stays in Redis.
    pub dedupe_ttl: Duration,
    /// How long a claim in Redis holds without being marked sent.
    pub claim_lease: Duration,
    /// First retry delay, doubled per attempt.
    pub backoff: Duration,
    /// Attempts before a push (or GitHub resolution) gives up.
    pub attempts: i32,
    /// Bound on one call to GitHub or DevLake.
    pub timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            github_api: "https://api.github.com".into(),
            github_token: None,
            github_app: None,
            image_repos: Vec::new(),
            devlake_url: None,
            devlake_token: None,
            devlake_connections: Vec::new(),
            redis_url: None,
            redis_prefix: "persys:dora".into(),
            dedupe_ttl: Duration::from_secs(30 * 86_400),
            claim_lease: Duration::from_secs(600),
            backoff: Duration::from_secs(1),
            attempts: 6,
            timeout: Duration::from_secs(10),
        }
    }
}

/// The DORA service and its worker.
#[derive(Clone)]
pub struct Dora {
    inner: Arc<Inner>,
}

struct Inner {
    deployments: Deployments,
    github: Github,
    devlake: Option<Devlake>,
    /// Claims on DevLake ids beyond this database: Redis when configured, else in the
    /// process on SQLite (the single-process stack), else none.
    dedupe: Option<Box<dyn Claims>>,
    options: Options,
    wake: tokio::sync::Notify,
    /// Image repositories whose source repository commit search found.
    found_repos: Mutex<HashMap<String, String>>,
    /// DevLake push attempts by outcome.
    pushes: crate::outcomes::Outcomes,
    /// Deployments recorded (new ones only).
    recorded: prometheus_client::metrics::counter::Counter,
}

/// Derives the environment from an ArgoCD source path, PRODUCTION when nothing matches.
pub fn environment_of_path(path: &str) -> DeploymentEnvironment {
    let segments: Vec<String> = path.split('/').map(str::to_ascii_lowercase).collect();
    let has = |names: &[&str]| segments.iter().any(|s| names.contains(&s.as_str()));
    if has(&["production", "prod"]) {
        DeploymentEnvironment::Production
    } else if has(&["staging", "stage"]) {
        DeploymentEnvironment::Staging
    } else if has(&["testing", "test"]) {
        DeploymentEnvironment::Testing
    } else if has(&["development", "dev"]) {
        DeploymentEnvironment::Development
    } else {
        DeploymentEnvironment::Production
    }
}

/// Derives success or failure from ArgoCD's statuses: health Degraded, or OutOfSync with
/// health Missing, is a failure.
pub fn status_of(sync: &str, health: &str) -> DeploymentStatus {
    let failed = health.eq_ignore_ascii_case("degraded")
        || (sync.eq_ignore_ascii_case("outofsync") && health.eq_ignore_ascii_case("missing"));
    if failed { DeploymentStatus::Failed } else { DeploymentStatus::Success }
}

fn env_word(e: i32) -> String {
    devlake::environment_name(e).to_ascii_lowercase()
}

fn id_part_ok(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.chars().all(|c| c.is_ascii_alphanumeric() || "._-/".contains(c))
}

/// Checks a request and builds the deployment it describes (commits not resolved yet).
pub fn deployment_of(r: &RecordDeploymentRequest, now: i64) -> Result<Deployment, ApiError> {
    let mut v = Violations::new();
    v.check(!id_part_ok(&r.application), "application", "required: letters, digits, '.', '_', '-' (at most 253)");
    v.check(!id_part_ok(&r.cluster), "cluster", "required: letters, digits, '.', '_', '-' (at most 253)");
    v.check(!r.component.is_empty() && !id_part_ok(&r.component), "component", "letters, digits, '.', '_', '-' only");
    let revision_ok = (4..=64).contains(&r.revision.len())
        && r.revision.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    v.check(!revision_ok, "revision", "required: the synced revision (a commit SHA or tag, 4-64 characters)");
    v.check(r.deployed_at.is_none(), "deployed_at", "required: when ArgoCD deployed the revision");
    v.check(
        r.deployed_at.as_ref().is_some_and(|t| millis(t) > now + 300_000),
        "deployed_at",
        "is more than 5 minutes in the future",
    );
    v.check(
        DeploymentEnvironment::try_from(r.environment).is_err(),
        "environment",
        format!("unknown environment {}", r.environment),
    );
    v.check(DeploymentStatus::try_from(r.status).is_err(), "status", format!("unknown status {}", r.status));
    v.check(r.images.len() > MAX_IMAGES, "images", format!("at most {MAX_IMAGES} images"));
    v.check(r.images.iter().any(|i| i.len() > 1024), "images", "an image reference longer than 1024 characters");
    v.finish()?;
    let component = if r.component.is_empty() {
        r.application.strip_suffix(&format!("-{}", r.cluster)).unwrap_or(&r.application).to_owned()
    } else {
        r.component.clone()
    };
    let environment = match DeploymentEnvironment::try_from(r.environment) {
        Ok(DeploymentEnvironment::Unspecified) | Err(_) => environment_of_path(&r.source_path),
        Ok(e) => e,
    } as i32;
    let status = match DeploymentStatus::try_from(r.status) {
        Ok(DeploymentStatus::Unspecified) | Err(_) => status_of(&r.sync_status, &r.health_status),
        Ok(s) => s,
    } as i32;
    let revision = r.revision.to_ascii_lowercase();
    let mut seen = std::collections::HashSet::new();
    let images: Vec<DeployedImage> =
        r.images.iter().filter(|i| seen.insert(i.as_str())).map(|i| image::deployed(i)).collect();
    Ok(Deployment {
        id: format!("{component}:{}:{}:{revision}", r.cluster, env_word(environment)),
        devlake_id: format!("{component}:{}:{revision}", env_word(environment)),
        application: r.application.clone(),
        argocd_namespace: r.argocd_namespace.clone(),
        component,
        cluster: r.cluster.clone(),
        environment,
        revision,
        source_repo_url: r.source_repo_url.clone(),
        source_path: r.source_path.clone(),
        images,
        status,
        sync_status: r.sync_status.clone(),
        health_status: r.health_status.clone(),
        deployed_at: r.deployed_at,
        recorded_at: Some(timestamp(now)),
        devlake: Some(DevlakePush { state: DevlakePushState::Pending as i32, ..DevlakePush::default() }),
        resolving: true,
        ..Deployment::default()
    })
}

/// Who may read: everyone with a verified identity; a member sees only their own rollouts and
/// the deployments without an owner (the user id to filter by is returned).
fn may_read<T>(request: &Request<T>) -> Result<Option<String>, ApiError> {
    let caller = Caller::of(request).ok_or_else(|| ApiError::Unauthenticated("no caller identity".into()))?;
    match (&caller.identity, &caller.user) {
        (Identity::Service(s), None) if s == "gateway" => {
            Err(ApiError::Unauthenticated("this call needs a user; call it through the gateway".into()))
        }
        (_, Some(user)) if user.role == Role::Member => Ok(Some(user.id.clone())),
        _ => Ok(None),
    }
}

/// Recording and retrying: the reconciler (its ArgoCD watcher), the stack, or an admin.
fn may_write<T>(request: &Request<T>, what: &str) -> Result<(), ApiError> {
    may_read(request)?;
    let caller = Caller::of(request).ok_or_else(|| ApiError::Unauthenticated("no caller identity".into()))?;
    match (&caller.identity, &caller.user) {
        (_, Some(u)) if u.role == Role::Admin => Ok(()),
        (_, Some(u)) => {
            Err(ApiError::PermissionDenied(format!("{what} is for admins, and {} is a {:?}", u.name, u.role)))
        }
        (Identity::Service(s), None) if s == "reconciler" || s == "stack" || s == "scheduler" => Ok(()),
        (id, None) => Err(ApiError::PermissionDenied(format!("{what} is not for {id}"))),
    }
}

impl Dora {
    /// The service over `store`.
    pub fn new(store: &Store, options: Options) -> Result<Self, String> {
        let auth = match (&options.github_app, &options.github_token) {
            (Some(app), _) => github::Auth::App(app.clone()),
            (None, Some(token)) => github::Auth::Token(token.clone()),
            (None, None) => github::Auth::Anonymous,
        };
        let github =
            Github::new(&options.github_api, auth, options.timeout).map_err(|e| format!("GitHub client: {e}"))?;
        let devlake = match &options.devlake_url {
            Some(url) => Some(
                Devlake::new(url, options.devlake_token.clone(), options.timeout)
                    .map_err(|e| format!("DevLake client: {e}"))?,
            ),
            None => None,
        };
        let dedupe = dedupe::choose(&options, store.db())?;
        Ok(Self {
            inner: Arc::new(Inner {
                deployments: Deployments::new(store),
                github,
                devlake,
                dedupe,
                options,
                wake: tokio::sync::Notify::new(),
                found_repos: Mutex::default(),
                pushes: Default::default(),
                recorded: Default::default(),
            }),
        })
    }

    /// Puts the counters on `metrics`: `persys_dora_devlake_pushes_total{outcome}` and
    /// `persys_dora_deployments_recorded_total`.
    pub fn register_metrics(&self, metrics: &persys_kit::metrics::Metrics) {
        crate::outcomes::register(
            metrics,
            "dora_devlake_pushes",
            "DevLake push attempts by outcome",
            &self.inner.pushes,
        );
        metrics.with_registry(|r| {
            r.register(
                "dora_deployments_recorded",
                "Deployments recorded (repeats not counted)",
                self.inner.recorded.clone(),
            )
        });
    }

    /// The deployments, for tests' invariants.
    pub fn deployments(&self) -> &Deployments {
        &self.inner.deployments
    }

    /// Records the deployment `r` describes, owned by `owner` (a rollout's workload owner, or
    /// empty); returns it and whether it is new. With `resync`, the same revision deployed again
    /// later is a deployment of its own (an ArgoCD re-sync); without, it is a repeat.
    pub async fn record(
        &self,
        r: &RecordDeploymentRequest,
        resync: bool,
        owner: &str,
    ) -> Result<(Deployment, bool), ApiError> {
        let now = now_ms();
        let mut d = deployment_of(r, now)?;
        d.owner_id = owner.to_owned();
        let store = &self.inner.deployments;
        let (stored, new) = store.insert(&d, now).await.map_err(ApiError::internal)?;
        let later = stored.deployed_at.as_ref().map_or(0, millis) < d.deployed_at.as_ref().map_or(0, millis);
        let (stored, new) = if !new && resync && later {
            let secs = d.deployed_at.as_ref().map_or(0, |t| t.seconds);
            d.id = format!("{}:{secs}", d.id);
            d.devlake_id = format!("{}:{secs}", d.devlake_id);
            store.insert(&d, now).await.map_err(ApiError::internal)?
        } else {
            (stored, new)
        };
        if new {
            self.inner.recorded.inc();
            tracing::info!(deployment = %stored.id, status = stored.status, "deployment recorded");
            self.inner.wake.notify_one();
        }
        Ok((stored, new))
    }

    /// Runs the worker until `shutdown`.
    pub fn spawn(&self, shutdown: Shutdown) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            let stop = shutdown.wait();
            tokio::pin!(stop);
            loop {
                let wait = match this.work().await {
                    Ok(wait) => wait,
                    Err(error) => {
                        tracing::warn!(%error, "deployments unreadable; trying again in 5 s");
                        Duration::from_secs(5)
                    }
                };
                tokio::select! {
                    _ = &mut stop => return,
                    _ = this.inner.wake.notified() => {}
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        })
    }

    /// Works every due deployment; returns how long until the next is due (at most 5 s).
    pub async fn work(&self) -> Result<Duration, StoreError> {
        let lease = 4 * self.inner.options.timeout.as_millis() as i64 + 10_000;
        loop {
            let claimed = self.inner.deployments.claim(now_ms(), now_ms() + lease, CLAIM).await?;
            let full = claimed.len() as i64 == CLAIM;
            let results = futures::future::join_all(claimed.into_iter().map(|c| self.advance(c))).await;
            for r in results {
                r?;
            }
            if !full {
                break;
            }
        }
        let next: Option<i64> = crate::on_db!(self.inner.deployments.db(), pool => {
            sqlx::query_scalar("SELECT min(due_ms) FROM deployments WHERE push_state = $1")
                .bind(DevlakePushState::Pending as i16)
                .fetch_one(pool)
                .await?
        });
        Ok(Duration::from_millis(next.map_or(5_000, |due| (due - now_ms()).clamp(0, 5_000)) as u64))
    }

    fn backoff(&self, attempts: i32) -> i64 {
        let first = self.inner.options.backoff.as_millis() as i64;
        (first << attempts.clamp(1, 20).saturating_sub(1)).min(300_000)
    }

    /// Moves one claimed deployment as far as it goes now.
    async fn advance(&self, c: Claimed) -> Result<(), StoreError> {
        let Claimed { mut deployment, attempts, mut accepted, resolved } = c;
        let d = &mut deployment;
        let now = now_ms();
        if !resolved {
            let give_up = attempts >= self.inner.options.attempts;
            if let Err(why) = self.resolve(d, give_up).await {
                let until = match &why {
                    GithubError::RateLimited { until_ms } => *until_ms,
                    _ => now + self.backoff(attempts),
                };
                tracing::warn!(deployment = %d.id, attempts, error = %why, "resolving commits failed; retrying");
                push_of(d).last_error = format!("resolving commits: {why}");
                return self.inner.deployments.finish(d, until, &accepted, false, false).await;
            }
            d.resolving = false;
        }
        let (due, state, retried) = self.push(d, attempts, &mut accepted, now).await;
        let push = push_of(d);
        push.state = state as i32;
        push.attempts = attempts;
        push.last_attempt_at = Some(timestamp(now));
        if state == DevlakePushState::Sent {
            push.sent_at = Some(timestamp(now));
            push.last_error.clear();
        }
        push.connection_ids = self.inner.options.devlake_connections.clone();
        let outcome = match state {
            DevlakePushState::Sent => "sent",
            DevlakePushState::Skipped => "skipped",
            DevlakePushState::Failed => "failed",
            _ if retried => "retried",
            _ => "waiting",
        };
        crate::outcomes::count(&self.inner.pushes, outcome);
        self.inner.deployments.finish(d, due, &accepted, !resolved, state == DevlakePushState::Sent).await
    }

    /// Sends `d` to DevLake unless another deployment did or is: when to look again, the state it
    /// ends in, and whether DevLake itself asked for a retry (rather than waiting on a claim).
    async fn push(
        &self,
        d: &mut Deployment,
        attempts: i32,
        accepted: &mut Vec<String>,
        now: i64,
    ) -> (i64, DevlakePushState, bool) {
        let Some(devlake) = &self.inner.devlake else {
            push_of(d).last_error = "DevLake is not configured (--devlake-url)".into();
            return (now, DevlakePushState::Skipped, false);
        };
        let Some(body) = devlake::payload(d) else {
            push_of(d).last_error = "no commit with a date was found, and DevLake needs at least one".into();
            return (now, DevlakePushState::Skipped, false);
        };
        // Waiting for another sender or for Redis is not a failure: it never gives up, and
        // looks again at least every 10 s.
        let wait = now + self.backoff(attempts).min(10_000);
        match self.inner.deployments.claim_devlake_id(&d.devlake_id, &d.id).await {
            Err(e) => {
                push_of(d).last_error = format!("claiming {}: {e}", d.devlake_id);
                return (wait, DevlakePushState::Pending, false);
            }
            Ok(Some((other, true))) => {
                push_of(d).last_error = format!("sent already as {} by deployment {other}", d.devlake_id);
                return (now, DevlakePushState::Skipped, false);
            }
            Ok(Some((other, false))) => {
                push_of(d).last_error = format!("deployment {other} is sending {} first", d.devlake_id);
                return (wait, DevlakePushState::Pending, false);
            }
            Ok(None) => {}
        }
        let owner = format!("{}@{}", d.id, d.recorded_at.as_ref().map_or(0, millis));
        let token = match &self.inner.dedupe {
            None => None,
            Some(redis) => match redis.claim(&d.devlake_id, &owner).await {
                Ok(Claim::Won(token)) => Some(token),
                Ok(Claim::Sent(by)) => {
                    let _ = self.inner.deployments.devlake_id_sent(&d.devlake_id, &d.id).await;
                    push_of(d).last_error = format!("sent already as {} by {by}", d.devlake_id);
                    return (now, DevlakePushState::Skipped, false);
                }
                Ok(Claim::Held(by)) => {
                    push_of(d).last_error = format!("{by} is sending {} first", d.devlake_id);
                    return (wait, DevlakePushState::Pending, false);
                }
                Err(e) => {
                    tracing::warn!(deployment = %d.id, error = %e, "no DevLake claim: waiting for Redis");
                    push_of(d).last_error = format!("waiting for Redis: {e}");
                    return (wait, DevlakePushState::Pending, false);
                }
            },
        };
        let mut retry = None;
        for connection in &self.inner.options.devlake_connections {
            if accepted.contains(connection) {
                continue;
            }
            match devlake.post(connection, &body).await {
                Outcome::Accepted => accepted.push(connection.clone()),
                Outcome::Retry(why) => retry = Some(why),
                Outcome::Refused(why) => {
                    tracing::warn!(deployment = %d.id, error = %why, "DevLake refused the deployment");
                    self.release(d, &owner, token).await;
                    push_of(d).last_error = why;
                    return (now, DevlakePushState::Failed, false);
                }
            }
        }
        if let Some(why) = retry {
            if attempts >= self.inner.options.attempts {
                tracing::warn!(deployment = %d.id, attempts, error = %why, "DevLake push given up");
                self.release(d, &owner, token).await;
                push_of(d).last_error = why;
                return (now, DevlakePushState::Failed, false);
            }
            tracing::info!(deployment = %d.id, attempts, error = %why, "DevLake push failed; retrying");
            push_of(d).last_error = why;
            return (now + self.backoff(attempts), DevlakePushState::Pending, true);
        }
        if let (Some(redis), Some(token)) = (&self.inner.dedupe, token) {
            match redis.mark_sent(&d.devlake_id, &owner, token).await {
                Ok(true) => {}
                Ok(false) => {
                    tracing::warn!(deployment = %d.id, "another pipeline's claim superseded this one after DevLake accepted it")
                }
                Err(e) => {
                    push_of(d).last_error = format!("sent; marking it in Redis: {e}");
                    return (wait, DevlakePushState::Pending, false);
                }
            }
        }
        tracing::info!(deployment = %d.id, devlake_id = %d.devlake_id, attempts, "sent to DevLake");
        (now, DevlakePushState::Sent, false)
    }

    async fn release(&self, d: &Deployment, owner: &str, token: Option<i64>) {
        if let (Some(redis), Some(token)) = (&self.inner.dedupe, token)
            && let Err(e) = redis.release(&d.devlake_id, owner, token).await
        {
            tracing::warn!(deployment = %d.id, error = %e, "could not release the DevLake claim; it lapses by itself");
        }
    }

    /// The source repository of image repository `image_repo` holding `sha`.
    async fn repo_for(&self, image_repo: &str, sha: &str) -> Result<Option<String>, GithubError> {
        let mapped = self
            .inner
            .options
            .image_repos
            .iter()
            .filter(|(prefix, _)| {
                image_repo == prefix || image_repo.strip_prefix(prefix.as_str()).is_some_and(|r| r.starts_with('/'))
            })
            .max_by_key(|(prefix, _)| prefix.len());
        if let Some((_, repo)) = mapped {
            return Ok(Some(repo.clone()));
        }
        if let Some(found) = self.inner.found_repos.lock().await.get(image_repo) {
            return Ok(Some(found.clone()));
        }
        let found = self.inner.github.find_repo(sha).await?;
        if let Some(repo) = &found {
            self.inner.found_repos.lock().await.insert(image_repo.to_owned(), repo.clone());
        }
        Ok(found)
    }

    /// Resolves the commits of `d`. With `give_up`, GitHub failures become warnings instead
    /// of an error that delays it.
    async fn resolve(&self, d: &mut Deployment, give_up: bool) -> Result<(), GithubError> {
        let mut commits: Vec<github::Commit> = Vec::new();
        let mut warnings = Vec::new();
        let mut truncated = false;
        let tolerate = |e: GithubError, warnings: &mut Vec<String>, what: String| match e {
            GithubError::Refused(why) => {
                warnings.push(format!("{what}: {why}"));
                Ok(())
            }
            e if give_up => {
                warnings.push(format!("{what}: gave up: {e}"));
                Ok(())
            }
            e => Err(e),
        };
        if !d.source_repo_url.is_empty() {
            match github::normalise_repo_url(&d.source_repo_url) {
                None => warnings.push(format!("source repository {:?} is not a repository URL", d.source_repo_url)),
                Some(repo) => match self.inner.github.commit(&repo, &d.revision).await {
                    Ok(Some(c)) => commits.push(c),
                    Ok(None) => warnings.push(format!("GitHub knows no commit {} in {repo}", d.revision)),
                    Err(e) => tolerate(e, &mut warnings, format!("revision {} in {repo}", d.revision))?,
                },
            }
        }
        let deployed = d.deployed_at.as_ref().map_or(0, millis);
        let previous = self
            .inner
            .deployments
            .previous(d, deployed, DeploymentStatus::Success as i32)
            .await
            .map_err(|e| GithubError::Retry(format!("previous deployment: {e}")))?;
        for image in &mut d.images {
            if image.commit_sha.is_empty() || !image.skip_reason.is_empty() {
                continue;
            }
            let sha = image.commit_sha.clone();
            let repo = match self.repo_for(&image.repository, &sha).await {
                Ok(Some(repo)) => repo,
                Ok(None) => {
                    image.skip_reason = format!(
                        "no source repository for {} (map it with --dora-image-repo {}=<repository URL>)",
                        image.repository, image.repository
                    );
                    continue;
                }
                Err(e) => {
                    tolerate(e, &mut warnings, format!("finding the repository of {}", image.repository))?;
                    continue;
                }
            };
            let before = previous
                .as_ref()
                .and_then(|p| p.images.iter().find(|i| i.repository == image.repository && !i.commit_sha.is_empty()));
            if let Some(old) = before {
                if sha.starts_with(&old.commit_sha) || old.commit_sha.starts_with(&sha) {
                    // Unchanged image: it delivers nothing new.
                    image.commit_sha = old.commit_sha.clone();
                    continue;
                }
                match self.inner.github.compare(&repo, &old.commit_sha, &sha).await {
                    Ok(Some((list, cut))) if !list.is_empty() => {
                        truncated |= cut;
                        image.commit_sha = list.last().map(|c| c.sha.clone()).unwrap_or(sha);
                        commits.extend(list);
                        continue;
                    }
                    Ok(_) => {} // not comparable (force-push, other branch): the commit alone
                    Err(e) => {
                        tolerate(e, &mut warnings, format!("comparing {} in {repo}", image.repository))?;
                        continue;
                    }
                }
            }
            match self.inner.github.commit(&repo, &sha).await {
                Ok(Some(c)) => {
                    image.commit_sha = c.sha.clone();
                    commits.push(c);
                }
                Ok(None) => {
                    image.skip_reason = format!("GitHub knows no commit {sha} in {repo}");
                    image.commit_sha.clear();
                }
                Err(e) => tolerate(e, &mut warnings, format!("commit {sha} of {}", image.repository))?,
            }
        }
        let mut seen = std::collections::HashSet::new();
        let mut kept = Vec::new();
        for c in commits {
            if !seen.insert((c.repo_url.clone(), c.sha.clone())) {
                continue;
            }
            match c.authored_ms {
                Some(ms) => kept.push(DeploymentCommit {
                    repo_url: c.repo_url,
                    sha: c.sha,
                    message: c.message,
                    author: c.author,
                    authored_at: Some(timestamp(ms)),
                    ref_name: String::new(),
                }),
                None => warnings.push(format!("commit {} of {} has no date; left out", c.sha, c.repo_url)),
            }
        }
        let started = kept.iter().filter_map(|c| c.authored_at.as_ref().map(millis)).min();
        d.started_at = started.map(timestamp);
        d.lead_time = started.map(|s| {
            let ms = (deployed - s).max(0);
            prost_types::Duration { seconds: ms / 1000, nanos: ((ms % 1000) * 1_000_000) as i32 }
        });
        d.commits = kept;
        d.commits_truncated = truncated;
        d.warnings.extend(warnings);
        Ok(())
    }
}

fn push_of(d: &mut Deployment) -> &mut DevlakePush {
    d.devlake.get_or_insert_default()
}

fn page_of(page: Option<persys_proto::common::v1::PageRequest>) -> Result<(i64, i64), ApiError> {
    let page = page.unwrap_or_default();
    let size = if page.page_size <= 0 { 50 } else { i64::from(page.page_size.min(1000)) };
    let offset = if page.page_token.is_empty() {
        0
    } else {
        page.page_token.parse().map_err(|_| {
            ApiError::InvalidArgument(vec![FieldViolation::new("page.page_token", "not a token from this list")])
        })?
    };
    Ok((offset, size))
}

#[tonic::async_trait]
impl DoraService for Dora {
    async fn record_deployment(
        &self,
        request: Request<RecordDeploymentRequest>,
    ) -> Result<Response<RecordDeploymentResponse>, Status> {
        may_write(&request, "recording deployments")?;
        let (deployment, new) = self.record(request.get_ref(), true, "").await?;
        Ok(Response::new(RecordDeploymentResponse { deployment: Some(deployment), duplicate: !new }))
    }

    async fn get_deployment(
        &self,
        request: Request<GetDeploymentRequest>,
    ) -> Result<Response<GetDeploymentResponse>, Status> {
        let visible_to = may_read(&request)?;
        let id = request.into_inner().id;
        let d = self.inner.deployments.get(&id).await.map_err(ApiError::internal)?;
        // Another member's rollout reads as absent, as their workloads do.
        let d = d
            .filter(|d| visible_to.as_ref().is_none_or(|me| d.owner_id.is_empty() || &d.owner_id == me))
            .ok_or_else(|| ApiError::NotFound(format!("deployment {id:?}")))?;
        Ok(Response::new(GetDeploymentResponse { deployment: Some(d) }))
    }

    async fn list_deployments(
        &self,
        request: Request<ListDeploymentsRequest>,
    ) -> Result<Response<ListDeploymentsResponse>, Status> {
        let visible_to = may_read(&request)?;
        let r = request.into_inner();
        let (offset, size) = page_of(r.page)?;
        let mut v = Violations::new();
        v.check(
            DeploymentEnvironment::try_from(r.environment).is_err(),
            "environment",
            format!("unknown environment {}", r.environment),
        );
        v.check(DeploymentStatus::try_from(r.status).is_err(), "status", format!("unknown status {}", r.status));
        v.finish()?;
        let range = r.range.unwrap_or_default();
        let filter = Filter {
            application: r.application,
            component: r.component,
            cluster: r.cluster,
            environment: r.environment,
            status: r.status,
            from_ms: range.start.as_ref().map_or(0, millis),
            to_ms: range.end.as_ref().map_or(0, millis),
            visible_to,
        };
        let (deployments, total) =
            self.inner.deployments.list(&filter, offset, size).await.map_err(ApiError::internal)?;
        let next_page_token = if offset + size < total { (offset + size).to_string() } else { String::new() };
        Ok(Response::new(ListDeploymentsResponse {
            deployments,
            page: Some(PageResponse { next_page_token, total_size: Some(total) }),
        }))
    }

    async fn retry_devlake_push(
        &self,
        request: Request<RetryDevlakePushRequest>,
    ) -> Result<Response<RetryDevlakePushResponse>, Status> {
        may_write(&request, "retrying DevLake pushes")?;
        let id = request.into_inner().id;
        match self.inner.deployments.retry(&id, now_ms()).await.map_err(ApiError::internal)? {
            None => Err(ApiError::NotFound(format!("deployment {id:?}")).into()),
            Some((d, false)) => Err(ApiError::FailedPrecondition(format!(
                "deployment {id:?} has DevLake state {:?}; only a FAILED push can be retried",
                d.devlake.map(|p| p.state).and_then(|s| DevlakePushState::try_from(s).ok()).unwrap_or_default()
            ))
            .into()),
            Some((d, true)) => {
                self.inner.wake.notify_one();
                Ok(Response::new(RetryDevlakePushResponse { deployment: Some(d) }))
            }
        }
    }

    async fn get_dora_metrics(
        &self,
        request: Request<GetDoraMetricsRequest>,
    ) -> Result<Response<GetDoraMetricsResponse>, Status> {
        let visible_to = may_read(&request)?;
        let r = request.into_inner();
        let now = now_ms();
        let range = r.range.unwrap_or_default();
        let mut v = Violations::new();
        v.check(range.start.is_none(), "range.start", "required");
        let from = range.start.as_ref().map_or(0, millis);
        let to = range.end.as_ref().map_or(now, millis);
        v.check(range.start.is_some() && to <= from, "range.end", "must be after range.start");
        v.check(to - from > MAX_WINDOW_MS, "range", "at most 366 days");
        v.check(
            DeploymentEnvironment::try_from(r.environment).is_err(),
            "environment",
            format!("unknown environment {}", r.environment),
        );
        v.finish()?;
        let environment = if r.environment == 0 { DeploymentEnvironment::Production as i32 } else { r.environment };
        let scope = keys::Scope {
            component: &r.component,
            cluster: &r.cluster,
            environment,
            from_ms: from,
            to_ms: to,
            visible_to: visible_to.as_deref(),
        };
        let metrics = keys::compute(self.inner.deployments.db(), &scope, now).await.map_err(ApiError::internal)?;
        Ok(Response::new(metrics))
    }
}

#[cfg(test)]
mod tests {
    use persys_proto::metrics::v1::{DeploymentEnvironment as Env, DeploymentStatus, RecordDeploymentRequest};

    use super::{deployment_of, environment_of_path, status_of};
    use crate::clock::timestamp;

    #[test]
    fn environments_come_from_path_segments() {
        assert_eq!(environment_of_path("apps/ui/overlays/production"), Env::Production);
        assert_eq!(environment_of_path("apps/ui/stage/"), Env::Staging);
        assert_eq!(environment_of_path("components/dev/ui"), Env::Development);
        assert_eq!(environment_of_path("clusters/test/ui"), Env::Testing);
        assert_eq!(environment_of_path("apps/devtools"), Env::Production, "whole segments only");
    }

    #[test]
    fn failures_follow_argocd_statuses() {
        assert_eq!(status_of("OutOfSync", "Missing"), DeploymentStatus::Failed);
        assert_eq!(status_of("Synced", "Degraded"), DeploymentStatus::Failed);
        assert_eq!(status_of("Synced", "Healthy"), DeploymentStatus::Success);
        assert_eq!(status_of("OutOfSync", "Healthy"), DeploymentStatus::Success);
    }

    #[test]
    fn requests_become_deployments_or_field_violations() {
        let r = RecordDeploymentRequest {
            application: "ui-east".into(),
            cluster: "east".into(),
            revision: "ABC1234".into(),
            source_path: "apps/ui/staging".into(),
            images: vec!["quay.io/acme/ui:3f9a1c2".into(), "quay.io/acme/ui:3f9a1c2".into(), "bad ref".into()],
            deployed_at: Some(timestamp(1_000)),
            ..RecordDeploymentRequest::default()
        };
        let d = deployment_of(&r, 2_000).unwrap();
        assert_eq!(d.id, "ui:east:staging:abc1234");
        assert_eq!(d.devlake_id, "ui:staging:abc1234");
        assert_eq!(d.images.len(), 2, "duplicates dropped");
        assert_eq!(d.images[0].commit_sha, "3f9a1c2");
        assert!(!d.images[1].skip_reason.is_empty());
        let bad = RecordDeploymentRequest { revision: String::new(), deployed_at: None, environment: 9, ..r };
        let status: tonic::Status = deployment_of(&bad, 2_000).unwrap_err().into();
        let details = tonic_types::StatusExt::get_details_bad_request(&status).unwrap();
        let fields: Vec<_> = details.field_violations.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(fields, ["revision", "deployed_at", "environment"]);
    }
}
