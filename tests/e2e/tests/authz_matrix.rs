//! The authorization matrix: every RPC of every service the gateway exposes on its public
//! port, called by each kind of caller, answers exactly what `docs/security.md` ("What each
//! role may do") says.
//!
//! The callers are an admin, a member, a viewer and another member, each with a session token
//! from `Login`; nobody (no token); and an API key of the admin, of the member and of the
//! viewer, which act with their owner's role. The deployment is the compose file's and the
//! Helm chart's: a gateway routing `persys.scheduler.v1.*` to a real scheduler,
//! `persys.analyzer.v1.*` to a real analyzer, `persys.metrics.v1.*` to a real metrics pipeline
//! (on the bench's PostgreSQL, in a schema of its own, following the scheduler) and
//! `persys.reconciler.v1.*` to a real reconciler (on the bench's kube-apiserver, with the
//! chart's CRDs), with real agents running real containers on a real Docker engine and
//! shipping their metrics.
//!
//! [`rows`] is the table: per RPC (and per case, where one RPC has several answers, e.g.
//! `CreateWorkload` with the host's network), the outcome for each caller in [`CALLERS`]
//! order. Resources acted on belong to the member, so the other member's column is the
//! ownership check (`NOT_FOUND`, or absent from lists and watches). Every allowed call is made
//! with a request that succeeds, and its answer is checked (the owner of a created workload,
//! the output of an exec, ...); calls that change or delete something get a fresh target per
//! caller. The RPCs are not listed by hand: they come from the descriptor set compiled into
//! `persys-proto`, for every package the gateway routes, so a new RPC without a row fails
//! `every_public_rpc_has_exactly_its_rows`, and so does a row naming an RPC that is gone, or a
//! new package nobody decided to route or not.

use std::{
    collections::{BTreeMap, BTreeSet},
    future::Future,
    pin::Pin,
    sync::atomic::{AtomicU32, Ordering},
    time::Duration,
};

use persys_client::testing::{expect_log, expect_workload};
use persys_e2e::{
    bin, certs_init,
    cluster::start_agent,
    gateway_args,
    kubectl::Kubectl,
    process::Service,
    stack::{ADMIN, ADMIN_PASSWORD},
    tls_args,
};
use persys_kit::{
    client::{ClientOptions, TracedChannel, plain_channel},
    testing::require_env,
};
use persys_proto::{
    analyzer::v1::{
        AnalyzeMetadata, AnalyzeRepositoryRequest, AnalyzeRequest, ApplicationPersonaSpec, FileChunk, ManifestFile,
        SourceFile, ValidateManifestsRequest, analyze_request, analyzer_service_client::AnalyzerServiceClient,
    },
    common::v1::{PageRequest, Role, TimeRange, WatchEventType},
    gateway::v1::{
        ChangePasswordRequest, CreateApiKeyRequest, CreateUserRequest, DeleteUserRequest, GetUserRequest,
        ListApiKeysRequest, ListAuditEventsRequest, ListUsersRequest, LoginRequest, LoginResponse, LogoutRequest,
        RefreshRequest, RevokeApiKeyRequest, UpdateUserRequest, WhoAmIRequest,
        api_key_service_client::ApiKeyServiceClient, auth_service_client::AuthServiceClient,
        user_service_client::UserServiceClient,
    },
    metrics::v1::{
        self as mpb, alert_service_client::AlertServiceClient, command_service_client::CommandServiceClient,
        dora_service_client::DoraServiceClient, metrics_ingest_service_client::MetricsIngestServiceClient,
        metrics_query_service_client::MetricsQueryServiceClient,
    },
    reconciler::v1::{
        self as rpb, persona_service_client::PersonaServiceClient, project_service_client::ProjectServiceClient,
    },
    scheduler::v1::{
        self as pb, agent_service_client::AgentServiceClient, bootstrap_service_client::BootstrapServiceClient,
        node_command_service_client::NodeCommandServiceClient, scheduler_service_client::SchedulerServiceClient,
    },
};
use prost::Message;
use tonic::{
    Code, Status,
    metadata::{Ascii, MetadataValue},
    service::{Interceptor, interceptor::InterceptedService},
};

/// Who calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Caller {
    /// The bootstrap admin, with a session token.
    Admin,
    /// A member, with a session token; every resource the table acts on is theirs.
    Member,
    /// A viewer, with a session token.
    Viewer,
    /// A second member, with a session token.
    OtherMember,
    /// No `authorization` header at all.
    NoToken,
    /// An API key of the admin.
    AdminKey,
    /// An API key of the member.
    MemberKey,
    /// An API key of the viewer.
    ViewerKey,
}

/// The columns of the table, in order.
const CALLERS: [Caller; 8] = [
    Caller::Admin,
    Caller::Member,
    Caller::Viewer,
    Caller::OtherMember,
    Caller::NoToken,
    Caller::AdminKey,
    Caller::MemberKey,
    Caller::ViewerKey,
];

/// What a call must answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    /// It succeeds (and its answer is what was asked for).
    Ok,
    /// `PERMISSION_DENIED`: the role may not.
    Denied,
    /// `UNAUTHENTICATED`: no credentials.
    Unauthenticated,
    /// Someone else's: `NOT_FOUND`, or absent from a list or a watch's snapshot.
    Hidden,
    /// `INVALID_ARGUMENT`: the role may call, but not with this spec.
    Invalid,
    /// `UNIMPLEMENTED`: the gateway does not carry the call (client and bidirectional streams),
    /// or nothing serves it yet.
    NotCarried,
}

use Outcome::{Denied as DEN, Hidden as HID, Invalid as INV, NotCarried as NCA, Ok as OK, Unauthenticated as UNA};

impl Outcome {
    fn code(self) -> Code {
        match self {
            Outcome::Ok => Code::Ok,
            Outcome::Denied => Code::PermissionDenied,
            Outcome::Unauthenticated => Code::Unauthenticated,
            Outcome::Hidden => Code::NotFound,
            Outcome::Invalid => Code::InvalidArgument,
            Outcome::NotCarried => Code::Unimplemented,
        }
    }
}

// The recurring columns. Order: admin, member, viewer, other member, no token, admin's key,
// member's key, viewer's key.
/// Open calls (they create credentials): anyone.
const OPEN: [Outcome; 8] = [OK, OK, OK, OK, OK, OK, OK, OK];
/// Users from a login session (an API key may not change its owner's password).
const SESSIONS: [Outcome; 8] = [OK, OK, OK, OK, UNA, DEN, DEN, DEN];
/// Any signed-in user.
const USERS: [Outcome; 8] = [OK, OK, OK, OK, UNA, OK, OK, OK];
/// Admins only.
const ADMINS: [Outcome; 8] = [OK, DEN, DEN, DEN, UNA, OK, DEN, DEN];
/// Admins and members (creating workloads).
const WRITERS: [Outcome; 8] = [OK, OK, DEN, OK, UNA, OK, OK, DEN];
/// A spec only admins may ask for: members are refused the spec, viewers the call.
const ADMIN_SPEC: [Outcome; 8] = [OK, INV, DEN, INV, UNA, OK, INV, DEN];
/// Reading the member's workload: admins, its owner and viewers.
const READ_OWN: [Outcome; 8] = [OK, OK, OK, HID, UNA, OK, OK, OK];
/// Changing the member's workload (or running commands in it): admins and its owner.
const CHANGE_OWN: [Outcome; 8] = [OK, OK, DEN, HID, UNA, OK, OK, DEN];
/// Asking by the member's id for the member's workloads: members may name only themselves.
const FILTER_OWN: [Outcome; 8] = [OK, OK, OK, DEN, UNA, OK, OK, OK];
/// Revoking the member's API key: admins and the member.
const REVOKE_KEY: [Outcome; 8] = [OK, OK, HID, HID, UNA, OK, OK, HID];
/// Seeing the member's API key in a list: the member only (everyone lists their own keys).
const LIST_KEY: [Outcome; 8] = [HID, OK, HID, HID, UNA, HID, OK, HID];
/// Client and bidirectional streams, and agents' and services' own calls: signed-in users learn
/// the gateway does not carry them from its public port.
const NOT_CARRIED: [Outcome; 8] = [NCA, NCA, NCA, NCA, UNA, NCA, NCA, NCA];
/// The host-wide figures of a metrics sample (CPU, memory, disks, ...): admins only; members and
/// viewers get samples without them (or none), never a refusal.
const HOST_WIDE: [Outcome; 8] = [OK, HID, HID, HID, UNA, OK, HID, HID];

/// The packages the gateway routes on its public port (its own and its upstreams', as in
/// `deploy/compose/docker-compose.yml` and the Helm chart), with where they go.
const ROUTED: [(&str, &str); 5] = [
    ("persys.gateway.v1", "served by the gateway itself"),
    ("persys.scheduler.v1", "--upstream scheduler"),
    ("persys.analyzer.v1", "--upstream analyzer"),
    ("persys.metrics.v1", "--upstream metrics (MetricsIngestService is for agents: not carried)"),
    ("persys.reconciler.v1", "--upstream reconciler (PersonaService; ProjectService with Kapsa projects on)"),
];

/// The packages with services the gateway does not route, and why.
const NOT_ROUTED: [(&str, &str); 1] = [("persys.agent.v1", "the agent's local admin API, on the node's loopback only")];

const AUTH: &str = "persys.gateway.v1.AuthService";
const USER_SERVICE: &str = "persys.gateway.v1.UserService";
const API_KEYS: &str = "persys.gateway.v1.ApiKeyService";
const SCHEDULER: &str = "persys.scheduler.v1.SchedulerService";
const AGENTS: &str = "persys.scheduler.v1.AgentService";
const BOOTSTRAP: &str = "persys.scheduler.v1.BootstrapService";
const NODE_COMMANDS: &str = "persys.scheduler.v1.NodeCommandService";
const ANALYZER: &str = "persys.analyzer.v1.AnalyzerService";
const QUERY: &str = "persys.metrics.v1.MetricsQueryService";
const ALERTS: &str = "persys.metrics.v1.AlertService";
const COMMANDS: &str = "persys.metrics.v1.CommandService";
const DORA: &str = "persys.metrics.v1.DoraService";
const INGEST: &str = "persys.metrics.v1.MetricsIngestService";
const PERSONAS: &str = "persys.reconciler.v1.PersonaService";
const PROJECTS: &str = "persys.reconciler.v1.ProjectService";

type Answer<'a> = Pin<Box<dyn Future<Output = Result<(), Status>> + 'a>>;

/// One line of the table.
struct Row {
    /// Full service name, e.g. `persys.scheduler.v1.SchedulerService`.
    service: &'static str,
    /// Method name, e.g. `GetWorkload`.
    method: &'static str,
    /// What distinguishes this row from others of the same method; empty for most.
    case: &'static str,
    /// The outcome per caller, in [`CALLERS`] order.
    expect: [Outcome; 8],
    /// Makes the call as a caller: setup with the owners' own credentials, then the one call.
    call: for<'a> fn(&'a World, Caller) -> Answer<'a>,
}

macro_rules! row {
    ($service:expr, $method:literal, $expect:expr, $call:ident) => {
        row!($service, $method, "", $expect, $call)
    };
    ($service:expr, $method:literal, $case:literal, $expect:expr, $call:ident) => {
        Row { service: $service, method: $method, case: $case, expect: $expect, call: |w, c| Box::pin($call(w, c)) }
    };
}

/// The table. Rows run in this order; a row's targets never depend on an earlier row.
fn rows() -> Vec<Row> {
    vec![
        row!(AUTH, "Login", OPEN, login),
        row!(AUTH, "Refresh", OPEN, refresh),
        row!(AUTH, "Logout", OPEN, logout),
        row!(AUTH, "WhoAmI", USERS, who_am_i),
        row!(USER_SERVICE, "CreateUser", ADMINS, create_user),
        row!(USER_SERVICE, "GetUser", ADMINS, get_user),
        row!(USER_SERVICE, "ListUsers", ADMINS, list_users),
        row!(USER_SERVICE, "UpdateUser", "promote a user to admin", ADMINS, update_user),
        row!(USER_SERVICE, "DeleteUser", ADMINS, delete_user),
        row!(USER_SERVICE, "ListAuditEvents", ADMINS, list_audit_events),
        row!(API_KEYS, "CreateApiKey", USERS, create_api_key),
        row!(API_KEYS, "ListApiKeys", "lists the member's key", LIST_KEY, list_api_keys),
        row!(API_KEYS, "RevokeApiKey", "a key of the member", REVOKE_KEY, revoke_api_key),
        row!(SCHEDULER, "CreateWorkload", WRITERS, create_workload),
        row!(SCHEDULER, "CreateWorkload", "on the host's network", ADMIN_SPEC, create_on_host_network),
        row!(SCHEDULER, "CreateWorkload", "in another container's network", ADMIN_SPEC, create_in_container_network),
        row!(SCHEDULER, "CreateWorkload", "on a network not allowed", ADMIN_SPEC, create_on_other_network),
        row!(SCHEDULER, "CreateWorkload", "as a host process", ADMIN_SPEC, create_host_process),
        row!(SCHEDULER, "GetWorkload", READ_OWN, get_workload),
        row!(SCHEDULER, "ListWorkloads", "lists the member's workload", READ_OWN, list_workloads),
        row!(SCHEDULER, "ListWorkloads", "filtered by the member's id", FILTER_OWN, list_member_workloads),
        row!(SCHEDULER, "StopWorkload", CHANGE_OWN, stop_workload),
        row!(SCHEDULER, "StartWorkload", CHANGE_OWN, start_workload),
        row!(SCHEDULER, "RestartWorkload", CHANGE_OWN, restart_workload),
        row!(SCHEDULER, "DeleteWorkload", CHANGE_OWN, delete_workload),
        row!(SCHEDULER, "WatchWorkloads", "snapshot holds the member's workload", READ_OWN, watch_workloads),
        row!(SCHEDULER, "WatchWorkloads", "filtered by the member's id", FILTER_OWN, watch_member_workloads),
        row!(SCHEDULER, "StreamLogs", READ_OWN, stream_logs),
        row!(SCHEDULER, "ExecWorkload", CHANGE_OWN, exec_workload),
        row!(SCHEDULER, "GetNode", USERS, get_node),
        row!(SCHEDULER, "ListNodes", USERS, list_nodes),
        row!(SCHEDULER, "WatchNodes", USERS, watch_nodes),
        row!(SCHEDULER, "CordonNode", ADMINS, cordon_node),
        row!(SCHEDULER, "DrainNode", ADMINS, drain_node),
        row!(SCHEDULER, "UncordonNode", ADMINS, uncordon_node),
        row!(SCHEDULER, "DeleteNode", ADMINS, delete_node),
        row!(SCHEDULER, "CreateJoinToken", ADMINS, create_join_token),
        row!(SCHEDULER, "ListJoinTokens", ADMINS, list_join_tokens),
        row!(SCHEDULER, "RevokeJoinToken", ADMINS, revoke_join_token),
        row!(AGENTS, "Connect", NOT_CARRIED, agent_connect),
        row!(BOOTSTRAP, "Join", NOT_CARRIED, join),
        row!(BOOTSTRAP, "RenewCertificate", NOT_CARRIED, renew_certificate),
        row!(NODE_COMMANDS, "RunHostCommand", NOT_CARRIED, run_host_command),
        row!(NODE_COMMANDS, "RunContainerAction", NOT_CARRIED, run_container_action),
        row!(ANALYZER, "Analyze", USERS, analyze),
        row!(ANALYZER, "AnalyzeRepository", USERS, analyze_repository),
        row!(ANALYZER, "ValidateManifests", USERS, validate_manifests),
        row!(QUERY, "QueryRange", "container metrics of the member's workload", READ_OWN, query_container_metrics),
        row!(QUERY, "QueryRange", "host metrics", ADMINS, query_host_metrics),
        row!(QUERY, "LatestHostMetrics", "holds the member's container", READ_OWN, latest_container),
        row!(QUERY, "LatestHostMetrics", "holds host-wide figures", HOST_WIDE, latest_host_wide),
        row!(QUERY, "WatchHostMetrics", "snapshot holds the member's container", READ_OWN, watch_container),
        row!(QUERY, "WatchHostMetrics", "snapshot holds host-wide figures", HOST_WIDE, watch_host_wide),
        row!(ALERTS, "CreateAlertRule", ADMINS, create_alert_rule),
        row!(ALERTS, "GetAlertRule", ADMINS, get_alert_rule),
        row!(ALERTS, "ListAlertRules", ADMINS, list_alert_rules),
        row!(ALERTS, "UpdateAlertRule", ADMINS, update_alert_rule),
        row!(ALERTS, "DeleteAlertRule", ADMINS, delete_alert_rule),
        row!(ALERTS, "ListAlerts", ADMINS, list_alerts),
        row!(ALERTS, "GetAlert", ADMINS, get_alert),
        row!(ALERTS, "WatchAlerts", "snapshot holds a firing alert", ADMINS, watch_alerts),
        row!(ALERTS, "AcknowledgeAlert", "a firing alert", ADMINS, acknowledge_alert),
        row!(ALERTS, "CreateSilence", ADMINS, create_silence),
        row!(ALERTS, "ListSilences", ADMINS, list_silences),
        row!(ALERTS, "ExpireSilence", ADMINS, expire_silence),
        row!(COMMANDS, "RunCommand", "a command the node allows", ADMINS, run_command),
        row!(COMMANDS, "DockerAction", "logs of the member's container", ADMINS, docker_logs),
        row!(COMMANDS, "ListContainers", ADMINS, list_containers),
        row!(COMMANDS, "ListCommandHistory", ADMINS, list_command_history),
        row!(DORA, "RecordDeployment", ADMINS, record_deployment),
        row!(DORA, "GetDeployment", "the member's rollout", READ_OWN, get_rollout),
        row!(DORA, "GetDeployment", "recorded from ArgoCD, without an owner", USERS, get_unowned_deployment),
        row!(DORA, "ListDeployments", "lists the member's rollout", READ_OWN, list_deployments),
        row!(DORA, "RetryDevlakePush", "a failed push", ADMINS, retry_devlake_push),
        row!(DORA, "GetDoraMetrics", "counts the member's rollout", READ_OWN, get_dora_metrics),
        row!(INGEST, "Ingest", NOT_CARRIED, ingest),
        // The personas and the project live in a namespace that names the member
        // (`persys.io/members`), the environment and the build in the project's namespace.
        row!(PERSONAS, "ListApplicationPersonas", "in the member's namespace", FILTER_OWN, list_application_personas),
        row!(
            PERSONAS,
            "ListApplicationPersonas",
            "every namespace: lists the member's persona",
            READ_OWN,
            list_every_persona
        ),
        row!(PERSONAS, "GetApplicationPersona", READ_OWN, get_application_persona),
        row!(PERSONAS, "GetClusterPersona", USERS, get_cluster_persona),
        row!(
            PERSONAS,
            "WatchPersonaEvents",
            "in the member's namespace: snapshot holds the persona",
            FILTER_OWN,
            watch_persona_events
        ),
        row!(
            PERSONAS,
            "WatchPersonaEvents",
            "every namespace: snapshot holds the member's persona",
            READ_OWN,
            watch_every_persona
        ),
        row!(PROJECTS, "ListProjects", "in the member's namespace: lists the project", FILTER_OWN, list_projects),
        row!(PROJECTS, "ListProjects", "every namespace: lists the member's project", READ_OWN, list_every_project),
        row!(PROJECTS, "GetProject", READ_OWN, get_project),
        row!(
            PROJECTS,
            "WatchProjects",
            "in the member's namespace: snapshot holds the project",
            FILTER_OWN,
            watch_projects
        ),
        row!(PROJECTS, "ListEnvironments", "of the member's project", FILTER_OWN, list_environments),
        row!(
            PROJECTS,
            "ListEnvironments",
            "every namespace: lists the member's environment",
            READ_OWN,
            list_every_environment
        ),
        row!(PROJECTS, "GetEnvironment", READ_OWN, get_environment),
        row!(
            PROJECTS,
            "WatchEnvironments",
            "of the member's project: snapshot holds its environment",
            FILTER_OWN,
            watch_environments
        ),
        row!(PROJECTS, "ListBuilds", "of the member's project", FILTER_OWN, list_builds),
        row!(PROJECTS, "ListBuilds", "every namespace: lists the member's build", READ_OWN, list_every_build),
        row!(PROJECTS, "GetBuild", READ_OWN, get_build),
        row!(PROJECTS, "WatchBuilds", "of the member's project: snapshot holds its build", FILTER_OWN, watch_builds),
        // Last: it ends every session of the users who call it (clean-up then uses a key).
        row!(AUTH, "ChangePassword", "the caller's own", SESSIONS, change_password),
    ]
}

/// Returns every (service, method) the gateway routes, from the compiled descriptor set;
/// panics on a package with services that is neither in [`ROUTED`] nor in [`NOT_ROUTED`].
fn public_methods() -> BTreeSet<(String, String)> {
    let set = prost_types::FileDescriptorSet::decode(persys_proto::FILE_DESCRIPTOR_SET).expect("descriptor set");
    let mut methods = BTreeSet::new();
    let mut unclassified = BTreeSet::new();
    for file in set.file.iter().filter(|f| !f.service.is_empty()) {
        let package = file.package();
        if ROUTED.iter().any(|(p, _)| *p == package) {
            for service in &file.service {
                for method in &service.method {
                    methods.insert((format!("{package}.{}", service.name()), method.name().to_owned()));
                }
            }
        } else if !NOT_ROUTED.iter().any(|(p, _)| *p == package) {
            unclassified.insert(package.to_owned());
        }
    }
    assert!(
        unclassified.is_empty(),
        "packages with services that are neither ROUTED nor NOT_ROUTED: {unclassified:?}; decide whether the \
         gateway exposes them, and give their RPCs rows if it does"
    );
    methods
}

/// Checks that the table covers every public RPC, names no other, and has no duplicate row.
fn check_table() {
    let public = public_methods();
    let mut seen = BTreeSet::new();
    let mut covered = BTreeSet::new();
    for row in rows() {
        assert!(
            seen.insert((row.service, row.method, row.case)),
            "duplicate row {}/{} {:?}",
            row.service,
            row.method,
            row.case
        );
        covered.insert((row.service.to_owned(), row.method.to_owned()));
    }
    let missing: Vec<String> = public.difference(&covered).map(|(s, m)| format!("{s}/{m}")).collect();
    let unknown: Vec<String> = covered.difference(&public).map(|(s, m)| format!("{s}/{m}")).collect();
    assert!(
        missing.is_empty() && unknown.is_empty(),
        "public RPCs without a row in the authorization matrix: {missing:?}; rows naming RPCs the gateway does \
         not expose (renamed? removed?): {unknown:?}"
    );
}

#[test]
fn every_public_rpc_has_exactly_its_rows() {
    check_table();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_caller_gets_exactly_what_its_role_allows() {
    check_table();
    let Some(docker_host) = require_env("DOCKER_HOST", "a Docker engine") else { return };
    let Some(image) = require_env("PERSYS_TEST_IMAGE", "a local test image") else { return };
    let Some(database_url) = require_env("PERSYS_TEST_DATABASE_URL", "PostgreSQL") else { return };
    let Some(kube) = Kubectl::from_env() else { return };
    let deployment = Deployment::start(&docker_host, &database_url, kube).await;
    let world = World::prepare(&deployment, image).await;

    let rows = rows();
    let mut failures = Vec::new();
    let mut calls = 0;
    for row in &rows {
        for (caller, want) in CALLERS.iter().zip(row.expect) {
            let got = match tokio::time::timeout(Duration::from_secs(30), (row.call)(&world, *caller)).await {
                Ok(got) => got,
                Err(_) => Err(Status::deadline_exceeded("no answer within 30 s")),
            };
            calls += 1;
            let code = got.as_ref().err().map_or(Code::Ok, Status::code);
            if code != want.code() {
                let case = if row.case.is_empty() { String::new() } else { format!(" ({})", row.case) };
                let message = got.err().map(|s| format!(": {}", s.message())).unwrap_or_default();
                failures.push(format!(
                    "{}/{}{case} as {caller:?}: want {want:?} ({:?}), got {code:?}{message}",
                    row.service,
                    row.method,
                    want.code()
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {calls} calls break the authorization matrix:\n{}\n\ngateway log:\n{}",
        failures.len(),
        failures.join("\n"),
        tail(&deployment.gateway.log(), 40),
    );
    eprintln!(
        "authorization matrix: {} rows x {} callers = {calls} calls, all as documented",
        rows.len(),
        CALLERS.len()
    );

    world.clean_up().await;
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The processes: a scheduler (in-memory store), an analyzer, a metrics pipeline, a reconciler,
/// the gateway routing to all four, and four agents on Docker: `main` runs the member's
/// workload and ships its metrics, the spares are for the node calls that change nodes.
struct Deployment {
    dir: tempfile::TempDir,
    scheduler: Service,
    gateway: Service,
    _analyzer: Service,
    metrics: Service,
    _reconciler: Service,
    docker_host: String,
    kube: Kubectl,
    /// The namespace of the reconciler's Lease and of the persona the rows read.
    namespace: String,
    /// The ClusterPersona the rows read (cluster-scoped).
    cluster_persona: String,
}

impl Deployment {
    async fn start(docker_host: &str, database_url: &str, kube: Kubectl) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let certs = dir.path().join("certs");
        certs_init(&certs).unwrap();
        let timeout = Duration::from_secs(60);
        let strings = |args: &[&str]| args.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let unique = format!("{:x}", std::time::SystemTime::UNIX_EPOCH.elapsed().unwrap().as_nanos() % (1 << 40));
        let (namespace, cluster_persona) = (format!("authz-matrix-{unique}"), format!("authz-matrix-{unique}"));
        let kube = {
            let (namespace, cluster_persona) = (namespace.clone(), cluster_persona.clone());
            tokio::task::spawn_blocking(move || {
                prepare(&kube, &namespace, &cluster_persona);
                kube
            })
        };

        let mut args = strings(&["--listen", "127.0.0.1:0", "--bootstrap-listen", "127.0.0.1:0", "--etcd", "memory"]);
        args.extend(["--ca-key".into(), certs.join("ca-key.pem").display().to_string()]);
        args.extend(tls_args(&certs, "scheduler"));
        let scheduler = Service::start("scheduler", bin("scheduler").unwrap(), &args, &[], dir.path(), timeout);
        let mut args = strings(&["--listen", "127.0.0.1:0"]);
        args.extend(tls_args(&certs, "analyzer"));
        let analyzer = Service::start("analyzer", bin("analyzer").unwrap(), &args, &[], dir.path(), timeout);
        let (scheduler, analyzer) = tokio::try_join!(scheduler, analyzer).unwrap();
        let kube = kube.await.unwrap();

        // The pipeline follows the scheduler (owners of workloads, rollouts as DORA deployments)
        // and resolves commits from GitHub and pushes to DevLake, both faked (`fake_saas`).
        let saas = format!("http://{}", fake_saas().await);
        let mut args = strings(&["--listen", "127.0.0.1:0", "--database-url", database_url]);
        args.extend(strings(&["--database-schema", &format!("e2e_authz_{unique}")]));
        args.extend(strings(&["--scheduler", &format!("https://localhost:{}", scheduler.addr("grpc").port())]));
        args.extend(strings(&["--github-api-url", &saas, "--devlake-url", &saas, "--devlake-connection", "1"]));
        args.extend(tls_args(&certs, "metrics"));
        let metrics = Service::start("metrics", bin("metrics-pipeline").unwrap(), &args, &[], dir.path(), timeout);
        // Cluster-wide, as the chart installs it, with Kapsa projects on, but a follower: its
        // Lease is held by another replica (`prepare`), so it serves PersonaService and
        // ProjectService from its caches and runs no controller on the shared API server.
        let mut args = strings(&["run", "--kubeconfig", &kube.kubeconfig, "--listen", "127.0.0.1:0"]);
        args.extend(strings(&["--projects", "true"]));
        args.extend(strings(&["--allowed-caller", "gateway", "--lease-namespace", &namespace]));
        args.extend(strings(&["--lease-name", LEASE, "--cluster-discovery", "false", "--cluster-persona", ""]));
        args.extend(tls_args(&certs, "reconciler"));
        let reconciler = Service::start("reconciler", bin("reconciler").unwrap(), &args, &[], dir.path(), timeout);
        let (metrics, reconciler) = tokio::try_join!(metrics, reconciler).unwrap();

        let secret_file = dir.path().join("jwt-secret");
        std::fs::write(&secret_file, b"authz-matrix-secret-0123456789abcdef-0123456789").unwrap();
        let upstreams = [
            format!("scheduler=https://localhost:{}", scheduler.addr("grpc").port()),
            format!("analyzer=https://localhost:{}", analyzer.addr("grpc").port()),
            format!("metrics=https://localhost:{}", metrics.addr("grpc").port()),
            format!("reconciler=https://localhost:{}", reconciler.addr("grpc").port()),
        ];
        let mut args = gateway_args(dir.path(), &secret_file, &upstreams);
        // The table logs in a few dozen times from one address within the minute.
        args.extend(strings(&["--login-per-user", "1000", "--login-per-peer", "1000"]));
        let env = [("PERSYS_GATEWAY_ADMIN_PASSWORD", ADMIN_PASSWORD.to_string())];
        let gateway =
            Service::start("gateway", bin("gateway").unwrap(), &args, &env, dir.path(), timeout).await.unwrap();
        Self {
            dir,
            scheduler,
            gateway,
            _analyzer: analyzer,
            metrics,
            _reconciler: reconciler,
            docker_host: docker_host.to_owned(),
            kube,
            namespace,
            cluster_persona,
        }
    }

    fn channel(&self) -> TracedChannel {
        plain_channel(&format!("http://{}", self.gateway.addr("public")), &ClientOptions::default()).unwrap()
    }
}

impl Drop for Deployment {
    /// Deletes what the deployment made on the API server, whether the test passed or not.
    fn drop(&mut self) {
        let projects = project_namespace(&self.namespace);
        for (kind, name) in [
            ("namespace", &self.namespace),
            ("namespace", &projects),
            ("clusterpersonas.dorgu.io", &self.cluster_persona),
        ] {
            let deleted = self.kube.command(&["delete", kind, name, "--wait=false"]).output();
            if !deleted.is_ok_and(|out| out.status.success()) {
                eprintln!("could not delete {kind} {name} from the test bench's API server");
            }
        }
    }
}

/// The reconciler's Lease, held by another replica for the whole test.
const LEASE: &str = "authz-matrix";
/// The ApplicationPersona the rows read, in the deployment's namespace.
const PERSONA: &str = "authz-app";
/// The Kapsa Project the rows read, in the deployment's namespace.
const PROJECT: &str = "authz-project";
/// Its Environment and its build (a kpack Image), in the project's namespace.
const ENVIRONMENT: &str = "dev";
const BUILD: &str = "build-main";

/// The namespace of [`PROJECT`]'s environments and builds, `<namespace>-<project>`, as the
/// Project controller names it (`decide::project::namespace`; short enough here to need no
/// hash).
fn project_namespace(namespace: &str) -> String {
    format!("{namespace}-{PROJECT}")
}

/// Installs the chart's CRDs and kpack's Image kind (and waits until they are served),
/// then makes `namespace` with the reconciler's Lease held by another replica until 2099,
/// the persona and the Kapsa project the rows read, the ClusterPersona `cluster_persona`,
/// and the project's namespace with its environment and build (as the Project controller
/// would make them).
fn prepare(kube: &Kubectl, namespace: &str, cluster_persona: &str) {
    kube.install_crds();
    kube.install_kpack_standin();
    kube.run(&["create", "namespace", namespace], None);
    let projects = project_namespace(namespace);
    kube.run(&["create", "namespace", &projects], None);
    // The member reads the namespace (its annotation names them) and the project's namespace
    // (made for a project of it, labelled as the Project controller labels it).
    let objects = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": namespace, "annotations": {"persys.io/members": MEMBER}}},
        {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": projects, "labels": {"app.kubernetes.io/managed-by": "persys-reconciler",
                "kapsa-project.io/project": PROJECT, "kapsa-project.io/project-namespace": namespace}}},
        {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": LEASE, "namespace": namespace},
            "spec": {"holderIdentity": "another-replica", "leaseDurationSeconds": 3600,
                "renewTime": "2099-01-01T00:00:00.000000Z"}},
        {"apiVersion": "dorgu.io/v1", "kind": "ApplicationPersona",
            "metadata": {"name": PERSONA, "namespace": namespace},
            "spec": {"name": PERSONA, "type": "api"}},
        {"apiVersion": "dorgu.io/v1", "kind": "ClusterPersona", "metadata": {"name": cluster_persona},
            "spec": {"name": cluster_persona, "environment": "development"}},
        {"apiVersion": "kapsa-project.io/v1alpha1", "kind": "Project",
            "metadata": {"name": PROJECT, "namespace": namespace},
            "spec": {"repository": {"url": "https://git.example.com/app.git"}, "build": {"strategy": "buildpack"},
                "registry": {"name": "harbor", "imageRepository": "team/app"},
                "domain": {"subdomain": "app", "domainPoolRef": "apps"}}},
        {"apiVersion": "kapsa-project.io/v1alpha1", "kind": "Environment",
            "metadata": {"name": ENVIRONMENT, "namespace": projects,
                "labels": {"kapsa-project.io/project": PROJECT, "kapsa-project.io/project-namespace": namespace}},
            "spec": {"projectRef": {"name": PROJECT, "namespace": namespace}, "type": "permanent", "branch": "main"}},
        {"apiVersion": "kpack.io/v1alpha2", "kind": "Image",
            "metadata": {"name": BUILD, "namespace": projects,
                "labels": {"kapsa-project.io/project": PROJECT, "kapsa-project.io/project-namespace": namespace,
                    "kapsa-project.io/branch": "main"},
                "annotations": {"kapsa-project.io/branch-name": "main", "kapsa-project.io/commit": "abc1234"}},
            "spec": {"tag": "harbor/team/app:abc1234",
                "source": {"git": {"url": "https://git.example.com/app.git", "revision": "abc1234"}}}},
    ]});
    kube.apply(&objects);
}

/// GitHub and DevLake as the DORA pipeline calls them, on one local port: GitHub knows every
/// commit (`GET /repos/{owner}/{repo}/commits/{sha}`, dated 2026-01-01) and nothing else;
/// DevLake refuses every deployment with 401, as after a key rotation, so a deployment with a
/// commit ends with its push FAILED (what `RetryDevlakePush` retries).
async fn fake_saas() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            tokio::spawn(answer_saas(socket));
        }
    });
    addr
}

/// Answers one HTTP/1.1 request on `socket`, then closes it.
async fn answer_saas(mut socket: tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut request, mut chunk) = (Vec::new(), [0u8; 4096]);
    let mut head_end = None;
    let mut length = 0;
    while head_end.is_none_or(|end| request.len() < end + length) {
        match socket.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&chunk[..n]),
        }
        if head_end.is_none()
            && let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
        {
            head_end = Some(end);
            length = String::from_utf8_lossy(&request[..end])
                .lines()
                .filter_map(|l| l.split_once(':'))
                .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                .and_then(|(_, v)| v.trim().parse().ok())
                .unwrap_or(0);
        }
    }
    let head = String::from_utf8_lossy(&request).into_owned();
    let mut words = head.split_whitespace();
    let (method, path) = (words.next().unwrap_or_default(), words.next().unwrap_or_default());
    let commit = path.strip_prefix("/repos/").and_then(|p| p.split_once("/commits/")).map(|(_, sha)| sha);
    let (status, body) = match (method, commit) {
        ("GET", Some(sha)) => (
            "200 OK",
            serde_json::json!({"sha": sha, "commit": {"message": "authz matrix",
                "author": {"name": "authz", "date": "2026-01-01T00:00:00Z"}}})
            .to_string(),
        ),
        ("POST", _) if path.starts_with("/api/rest/plugins/webhook/") => {
            ("401 Unauthorized", r#"{"message":"invalid API key"}"#.to_owned())
        }
        _ => ("404 Not Found", r#"{"message":"Not Found"}"#.to_owned()),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = socket.write_all(response.as_bytes()).await;
}

/// The label that pins workloads to nodes: `main`, `spare`, or (parked workloads) nothing.
const PIN: &str = "authz-matrix";
/// What the member's running workload prints.
const HELLO: &str = "hello-from-the-authz-matrix";
/// The member whose API key is the member's key and whose resources the table acts on.
const MEMBER: &str = "mia";
const VIEWER: &str = "vic";
const OTHER_MEMBER: &str = "otto";
/// A user who only logs in, for the open calls.
const PROBER: &str = "pat";
const PASSWORD: &str = "a-long-enough-password";

/// Adds the caller's credentials (a session token or an API key, both bearer) to every call.
#[derive(Clone)]
struct Credentials(Option<MetadataValue<Ascii>>);

impl Interceptor for Credentials {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        if let Some(value) = &self.0 {
            request.metadata_mut().insert("authorization", value.clone());
        }
        Ok(request)
    }
}

type Channel = InterceptedService<TracedChannel, Credentials>;

/// What the rows act on, and everyone's credentials.
struct World {
    channel: TracedChannel,
    /// Bearer credentials per caller, in [`CALLERS`] order.
    credentials: [Option<String>; 8],
    admin_id: String,
    member_id: String,
    viewer_id: String,
    other_id: String,
    /// A user the admins promote in `UpdateUser`.
    bystander_id: String,
    /// The id of the API key the member's key column uses.
    member_key_id: String,
    image: String,
    /// The member's workload, running on `main`.
    running: String,
    /// A workload of the member's that is never placed (its node selector matches no node).
    parked: String,
    main_node: String,
    /// Nodes for cordon, drain and uncordon (`[0]`), and to delete (`[1]` for the admin,
    /// `[2]` for the admin's key; other callers aim at `[0]`).
    spares: [String; 3],
    /// A join token nobody uses, for `Join` through the gateway.
    unused_join_token: String,
    /// An analysis of a tiny app, for `ValidateManifests`.
    persona: ApplicationPersonaSpec,
    manifest: ManifestFile,
    /// The running workload's name: its rollout's DORA component.
    running_name: String,
    /// The running workload's container on `main`, as the metrics samples name it.
    container_id: String,
    /// A rule firing on `main` (CPU at or above 0 %) and its open alert.
    firing_rule: String,
    firing_alert: String,
    /// Firing alerts to acknowledge: `[0]` for the admin, `[1]` for the admin's key.
    to_acknowledge: [String; 2],
    /// A disabled rule: changing it touches no alert.
    quiet_rule: String,
    /// A silence in force.
    silence: String,
    /// A command the admin ran on `main`, in the history.
    command: String,
    /// The DORA deployment of the running workload's rollout, owned by the member.
    rollout: String,
    /// Deployments recorded without an owner whose DevLake push FAILED: `[0]` for the admin,
    /// `[1]` for the admin's key.
    failed_pushes: [String; 2],
    namespace: String,
    cluster_persona: String,
    next: AtomicU32,
    _agents: Vec<Service>,
}

fn index(c: Caller) -> usize {
    CALLERS.iter().position(|x| *x == c).expect("every caller is a column")
}

impl World {
    async fn prepare(d: &Deployment, image: String) -> Self {
        let channel = d.channel();
        let login = |user: &'static str, password: &'static str| {
            let channel = channel.clone();
            async move { session(&channel, user, password).await.access_token }
        };
        let admin = login(ADMIN, ADMIN_PASSWORD).await;
        let with = |token: &str| InterceptedService::new(channel.clone(), bearer(token));
        let mut users = UserServiceClient::new(with(&admin));
        let mut ids = BTreeMap::new();
        for (name, role) in [(MEMBER, Role::Member), (VIEWER, Role::Viewer), (OTHER_MEMBER, Role::Member)]
            .into_iter()
            .chain([(PROBER, Role::Member), ("bystander", Role::Member)])
        {
            let user = users
                .create_user(CreateUserRequest { username: name.into(), password: PASSWORD.into(), role: role as i32 })
                .await
                .unwrap()
                .into_inner()
                .user
                .unwrap();
            ids.insert(name, user.id);
        }
        let (member, viewer, other) =
            (login(MEMBER, PASSWORD).await, login(VIEWER, PASSWORD).await, login(OTHER_MEMBER, PASSWORD).await);
        let key = |token: String| {
            let mut keys = ApiKeyServiceClient::new(with(&token));
            async move {
                keys.create_api_key(CreateApiKeyRequest { name: "authz-matrix".into(), expires_at: None })
                    .await
                    .unwrap()
                    .into_inner()
            }
        };
        let (admin_key, member_key, viewer_key) =
            (key(admin.clone()).await, key(member.clone()).await, key(viewer.clone()).await);
        let admin_id = user_id(&channel, &admin).await;

        // Four nodes: tokens pin them with a label, so the running workload lands on `main`.
        let mut scheduler = SchedulerServiceClient::new(with(&admin));
        let mut tokens = Vec::new();
        for (name, pin) in
            [("authz-main", "main"), ("authz-spare-0", "spare"), ("authz-spare-1", "spare"), ("authz-spare-2", "spare")]
        {
            let token = scheduler
                .create_join_token(pb::CreateJoinTokenRequest {
                    description: format!("agent {name}"),
                    node_labels: [(PIN.to_string(), pin.to_string())].into(),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner()
                .token;
            tokens.push((name, token));
        }
        let certs = d.dir.path().join("certs");
        // `main` ships its metrics every 200 ms and lets admins run `echo` on it.
        let pipeline = format!("https://localhost:{}", d.metrics.addr("grpc").port());
        let main_flags: Vec<String> =
            ["--metrics-pipeline", &pipeline, "--metrics-interval", "200ms", "--host-commands", "echo"]
                .map(String::from)
                .into();
        let agents = futures::future::try_join_all(tokens.iter().map(|(name, token)| {
            let extra = if *name == "authz-main" { &main_flags[..] } else { &[] };
            start_agent(d.dir.path(), &certs, &d.scheduler, name, token, &d.docker_host, extra)
        }))
        .await
        .unwrap();
        let names: Vec<String> = tokens.iter().map(|(n, _)| n.to_string()).collect();
        wait_nodes_ready(&mut scheduler, &names).await;

        let unused_join_token =
            scheduler.create_join_token(pb::CreateJoinTokenRequest::default()).await.unwrap().into_inner().token;
        let analysis = AnalyzerServiceClient::new(with(&admin))
            .analyze_repository(tiny_app())
            .await
            .unwrap()
            .into_inner()
            .result
            .unwrap();
        let manifest = analysis.manifests.iter().find(|m| m.kind == "Deployment").expect("a Deployment").clone();

        let credentials =
            [admin, member, viewer, other, String::new(), admin_key.secret, member_key.secret, viewer_key.secret]
                .map(|t| Some(t).filter(|t| !t.is_empty()));
        let mut world = World {
            channel,
            credentials,
            admin_id,
            member_id: ids[MEMBER].clone(),
            viewer_id: ids[VIEWER].clone(),
            other_id: ids[OTHER_MEMBER].clone(),
            bystander_id: ids["bystander"].clone(),
            member_key_id: member_key.api_key.unwrap().id,
            image,
            running: String::new(),
            parked: String::new(),
            main_node: names[0].clone(),
            spares: [names[1].clone(), names[2].clone(), names[3].clone()],
            unused_join_token,
            persona: analysis.persona.expect("a persona"),
            manifest,
            running_name: String::new(),
            container_id: String::new(),
            firing_rule: String::new(),
            firing_alert: String::new(),
            to_acknowledge: Default::default(),
            quiet_rule: String::new(),
            silence: String::new(),
            command: String::new(),
            rollout: String::new(),
            failed_pushes: Default::default(),
            namespace: d.namespace.clone(),
            cluster_persona: d.cluster_persona.clone(),
            next: AtomicU32::new(0),
            _agents: agents,
        };
        world.parked = world.parked_of_member().await;
        world.running = world.start_running_workload().await;
        world.prepare_metrics().await;
        world
    }

    /// Waits until the pipeline holds what the metrics rows read, and makes the alerts, the
    /// silence, the command and the deployments they act on.
    async fn prepare_metrics(&mut self) {
        let admin = Caller::Admin;
        self.running_name = self
            .scheduler(admin)
            .get_workload(pb::GetWorkloadRequest { id: self.running.clone() })
            .await
            .unwrap()
            .into_inner()
            .workload
            .unwrap()
            .name;
        // The member's container in `main`'s samples, and readable by the member: the pipeline
        // has learnt the workload's owner from the scheduler.
        self.container_id = eventually("the running workload's container in the samples", || async {
            let request = mpb::LatestHostMetricsRequest {
                node_ids: vec![self.main_node.clone()],
                include_containers: true,
                ..Default::default()
            };
            let r = MetricsQueryServiceClient::new(self.as_(admin)).latest_host_metrics(request).await.ok()?;
            let containers = r.into_inner().metrics.into_iter().flat_map(|m| m.containers);
            containers.into_iter().find(|c| c.workload_id == self.running).map(|c| c.container_id)
        })
        .await;
        eventually("the member's container metrics", || async {
            query_container_metrics(self, Caller::Member).await.ok()
        })
        .await;

        // Three rules that always hold on `main`: each opens one alert, which fires at once.
        let mut firing = Vec::new();
        for _ in 0..3 {
            let rule = Some(self.alert_rule(true));
            let rule = alerts(self, admin).create_alert_rule(mpb::CreateAlertRuleRequest { rule }).await.unwrap();
            firing.push(rule.into_inner().rule.unwrap().id);
        }
        let mut open = Vec::new();
        for rule in &firing {
            open.push(
                eventually("a firing alert", || async {
                    let request = mpb::ListAlertsRequest {
                        rule_id: rule.clone(),
                        states: vec![mpb::AlertState::Firing as i32],
                        ..Default::default()
                    };
                    let r = alerts(self, admin).list_alerts(request).await.ok()?;
                    r.into_inner().alerts.into_iter().next().map(|a| a.id)
                })
                .await,
            );
        }
        (self.firing_rule, self.firing_alert) = (firing[0].clone(), open[0].clone());
        self.to_acknowledge = [open[1].clone(), open[2].clone()];
        self.quiet_rule = self.new_quiet_rule().await;
        self.silence = self.new_silence().await;

        let mut commands = CommandServiceClient::new(self.as_(admin));
        let request = mpb::RunCommandRequest {
            node_id: self.main_node.clone(),
            argv: vec!["echo".into(), "authz-setup".into()],
            ..Default::default()
        };
        let (finished, _) = command_output(commands.run_command(request).await.unwrap().into_inner()).await.unwrap();
        assert_eq!(finished.status(), mpb::CommandStatus::Completed, "{finished:?}");
        self.command = finished.id;

        // The running workload's rollout, recorded once it ran; and two deployments from
        // "ArgoCD" whose pushes DevLake refused.
        self.rollout = eventually("the running workload's rollout", || async {
            let request = mpb::ListDeploymentsRequest { component: self.running_name.clone(), ..Default::default() };
            let r = dora(self, admin).list_deployments(request).await.ok()?;
            r.into_inner().deployments.into_iter().next()
        })
        .await
        .id;
        for i in 0..2 {
            let mut request = self.deployment_request();
            request.source_repo_url = "https://github.com/acme/authz".into();
            let id = dora(self, admin).record_deployment(request).await.unwrap().into_inner().deployment.unwrap().id;
            self.failed_pushes[i] = eventually("a failed DevLake push", || async {
                let r = dora(self, admin).get_deployment(mpb::GetDeploymentRequest { id: id.clone() }).await.ok()?;
                let d = r.into_inner().deployment?;
                (d.devlake?.state() == mpb::DevlakePushState::Failed).then(|| id.clone())
            })
            .await;
        }
    }

    /// Returns an alert rule on `main` that always holds: CPU at or above 0 %.
    fn alert_rule(&self, enabled: bool) -> mpb::AlertRule {
        mpb::AlertRule {
            name: self.fresh("authz-rule"),
            node_ids: vec![self.main_node.clone()],
            metric: mpb::Metric::CpuUsagePercent as i32,
            comparator: mpb::Comparator::GreaterThanOrEqual as i32,
            threshold: 0.0,
            severity: mpb::AlertSeverity::Info as i32,
            enabled,
            ..Default::default()
        }
    }

    /// Creates a disabled rule as the admin: a fresh target.
    async fn new_quiet_rule(&self) -> String {
        let rule = Some(self.alert_rule(false));
        let r = alerts(self, Caller::Admin).create_alert_rule(mpb::CreateAlertRuleRequest { rule }).await;
        r.expect("the admin creates a rule").into_inner().rule.unwrap().id
    }

    /// Creates a silence of the quiet rule for an hour as the admin: a fresh target.
    async fn new_silence(&self) -> String {
        let silence = Some(self.silence_of(&self.quiet_rule));
        let r = alerts(self, Caller::Admin).create_silence(mpb::CreateSilenceRequest { silence }).await;
        r.expect("the admin creates a silence").into_inner().silence.unwrap().id
    }

    fn silence_of(&self, rule: &str) -> mpb::Silence {
        mpb::Silence {
            matchers: vec![mpb::SilenceMatcher { name: "rule_id".into(), value: rule.into(), negate: false }],
            ends_at: Some(seconds_from_now(3600)),
            comment: "authz matrix".into(),
            ..Default::default()
        }
    }

    /// A deployment as the reconciler's ArgoCD watcher reports one, new each time.
    fn deployment_request(&self) -> mpb::RecordDeploymentRequest {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        mpb::RecordDeploymentRequest {
            application: format!("authz-app-{n}"),
            cluster: "authz".into(),
            revision: format!("{n:040x}"),
            deployed_at: Some(seconds_from_now(0)),
            ..Default::default()
        }
    }

    /// Returns a channel that calls as `c`.
    fn as_(&self, c: Caller) -> Channel {
        let value = self.credentials[index(c)].as_deref().map(|t| bearer(t).0.expect("token"));
        InterceptedService::new(self.channel.clone(), Credentials(value))
    }

    fn scheduler(&self, c: Caller) -> SchedulerServiceClient<Channel> {
        SchedulerServiceClient::new(self.as_(c))
    }

    /// Returns the id of the user `c` acts for, and how it authenticates.
    fn user_of(&self, c: Caller) -> (&str, &str) {
        match c {
            Caller::Admin => (&self.admin_id, "jwt"),
            Caller::Member => (&self.member_id, "jwt"),
            Caller::Viewer => (&self.viewer_id, "jwt"),
            Caller::OtherMember => (&self.other_id, "jwt"),
            Caller::NoToken => ("", ""),
            Caller::AdminKey => (&self.admin_id, "api_key"),
            Caller::MemberKey => (&self.member_id, "api_key"),
            Caller::ViewerKey => (&self.viewer_id, "api_key"),
        }
    }

    fn fresh(&self, prefix: &str) -> String {
        format!("{prefix}-{}", self.next.fetch_add(1, Ordering::Relaxed))
    }

    fn spec(&self, pin: &str, command: &str) -> pb::WorkloadSpec {
        pb::WorkloadSpec {
            image: self.image.clone(),
            command: vec!["sh".into(), "-c".into(), command.into()],
            restart_policy: pb::RestartPolicy::Never as i32,
            image_pull_policy: pb::ImagePullPolicy::Never as i32,
            stop_timeout: Some(prost_types::Duration { seconds: 1, nanos: 0 }),
            node_selector: [(PIN.to_string(), pin.to_string())].into(),
            ..Default::default()
        }
    }

    /// A spec no node matches: the workload stays Pending, so changing it touches no container.
    fn parked_spec(&self) -> pb::WorkloadSpec {
        self.spec("nowhere", "exec sleep 3600")
    }

    async fn create(&self, c: Caller, spec: pb::WorkloadSpec) -> Result<pb::Workload, Status> {
        let request = pb::CreateWorkloadRequest {
            name: self.fresh("authz"),
            spec: Some(spec),
            request_id: self.fresh("authz-request"),
        };
        Ok(self.scheduler(c).create_workload(request).await?.into_inner().workload.unwrap_or_default())
    }

    /// Creates a parked workload as the member: a fresh target.
    async fn parked_of_member(&self) -> String {
        self.create(Caller::Member, self.parked_spec()).await.expect("the member creates a workload").id
    }

    /// Creates the member's workload on `main` and waits until it runs and has logged.
    async fn start_running_workload(&self) -> String {
        let spec = self.spec("main", &format!("echo {HELLO}; exec sleep 3600"));
        let id = self.create(Caller::Member, spec).await.expect("the member creates a workload").id;
        let member = self.scheduler(Caller::Member);
        let running =
            |w: &pb::Workload| w.status.as_ref().is_some_and(|s| s.phase == pb::WorkloadPhase::Running as i32);
        expect_workload(&member, &id, Duration::from_secs(60), running).await;
        expect_log(&member, &id, HELLO, Duration::from_secs(30)).await;
        id
    }

    /// Creates a user as the admin: a fresh target.
    async fn new_user(&self) -> String {
        UserServiceClient::new(self.as_(Caller::Admin))
            .create_user(CreateUserRequest {
                username: self.fresh("authz-target"),
                password: PASSWORD.into(),
                role: Role::Member as i32,
            })
            .await
            .expect("the admin creates a user")
            .into_inner()
            .user
            .unwrap()
            .id
    }

    /// Deletes the running workload, so no container outlives the test.
    async fn clean_up(&self) {
        // With the member's key: the matrix's last row ended the member's login sessions.
        let mut member = self.scheduler(Caller::MemberKey);
        let mut watch = member
            .watch_workloads(pb::WatchWorkloadsRequest { workload_id: self.running.clone(), ..Default::default() })
            .await
            .unwrap()
            .into_inner();
        member
            .delete_workload(pb::DeleteWorkloadRequest { id: self.running.clone(), ..Default::default() })
            .await
            .unwrap();
        let gone = tokio::time::timeout(Duration::from_secs(30), async {
            while let Ok(Some(e)) = watch.message().await {
                if e.r#type == WatchEventType::Deleted as i32 {
                    return;
                }
            }
        })
        .await;
        if gone.is_err() {
            eprintln!("the member's workload was not removed within 30 s; its container may remain");
        }
    }
}

/// Returns the id of the user a token belongs to (the bootstrap admin's is not known otherwise).
async fn user_id(channel: &TracedChannel, token: &str) -> String {
    AuthServiceClient::new(InterceptedService::new(channel.clone(), bearer(token)))
        .who_am_i(WhoAmIRequest {})
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap()
        .id
}

fn bearer(token: &str) -> Credentials {
    Credentials(Some(MetadataValue::try_from(format!("Bearer {token}")).expect("ascii token")))
}

async fn session(channel: &TracedChannel, user: &str, password: &str) -> LoginResponse {
    AuthServiceClient::new(channel.clone())
        .login(LoginRequest { username: user.into(), password: password.into() })
        .await
        .unwrap_or_else(|e| panic!("{user} logs in: {e}"))
        .into_inner()
}

async fn wait_nodes_ready(admin: &mut SchedulerServiceClient<Channel>, names: &[String]) {
    let mut watch = admin.watch_nodes(pb::WatchNodesRequest { since_revision: 0 }).await.unwrap().into_inner();
    let mut ready = BTreeSet::new();
    tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(e) = watch.message().await.unwrap() {
            if let Some(n) = e.node.filter(|n| n.state() == pb::NodeState::Ready) {
                ready.insert(n.id);
            }
            if names.iter().all(|n| ready.contains(n)) {
                return;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("not every node became Ready: {ready:?} of {names:?}"));
}

fn tiny_app() -> AnalyzeRepositoryRequest {
    AnalyzeRepositoryRequest {
        metadata: Some(AnalyzeMetadata { name: "tiny".into(), ..Default::default() }),
        files: vec![SourceFile { path: "Dockerfile".into(), content: b"FROM alpine\nEXPOSE 8080\n".to_vec(), mode: 0 }],
    }
}

/// Turns a failed check of an allowed call's answer into a status the table reports.
fn check(ok: bool, what: impl FnOnce() -> String) -> Result<(), Status> {
    if ok { Ok(()) } else { Err(Status::internal(format!("wrong answer: {}", what()))) }
}

/// The answer for something the caller does not see in a list or a watch.
fn absent(what: &str) -> Status {
    Status::not_found(format!("{what} is not in the answer"))
}

/// Reads a watch's snapshot (up to its bookmark); returns the ids it holds.
async fn snapshot<T>(
    stream: tonic::Streaming<T>,
    read: impl Fn(&T) -> (i32, Option<String>),
) -> Result<Vec<String>, Status> {
    let messages = until_bookmark(stream, |m| read(m).0).await?;
    Ok(messages.iter().filter_map(|m| read(m).1).collect())
}

/// Reads a watch's snapshot: its messages up to the bookmark that ends it, which `kind` tells.
async fn until_bookmark<T>(mut stream: tonic::Streaming<T>, kind: impl Fn(&T) -> i32) -> Result<Vec<T>, Status> {
    let mut messages = Vec::new();
    while let Some(message) = stream.message().await? {
        if kind(&message) == WatchEventType::Bookmark as i32 {
            return Ok(messages);
        }
        messages.push(message);
    }
    Err(Status::internal("the watch ended before its snapshot's bookmark"))
}

/// Polls `probe` until it returns something, for at most 60 s; panics saying what was awaited.
async fn eventually<T, F: Future<Output = Option<T>>>(what: &str, probe: impl Fn() -> F) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(found) = probe().await {
            return found;
        }
        assert!(tokio::time::Instant::now() < deadline, "no {what} within 60 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Returns the time `seconds` from now (before it, when negative), in whole seconds.
fn seconds_from_now(seconds: i64) -> prost_types::Timestamp {
    let now = std::time::UNIX_EPOCH.elapsed().unwrap().as_secs() as i64;
    prost_types::Timestamp { seconds: now + seconds, nanos: 0 }
}

/// Reads a command's stream to its end: the final record and the output.
async fn command_output(
    mut stream: tonic::Streaming<mpb::RunCommandResponse>,
) -> Result<(mpb::CommandRecord, String), Status> {
    let (mut output, mut finished) = (String::new(), None);
    while let Some(m) = stream.message().await? {
        match m.payload {
            Some(mpb::run_command_response::Payload::Output(chunk)) => {
                output.push_str(&String::from_utf8_lossy(&chunk.data))
            }
            Some(mpb::run_command_response::Payload::Finished(record)) => finished = Some(record),
            _ => {}
        }
    }
    let finished = finished.ok_or_else(|| Status::internal("the command's stream ended without its record"))?;
    Ok((finished, output))
}

// ---- persys.gateway.v1.AuthService

async fn login(w: &World, c: Caller) -> Result<(), Status> {
    let r = AuthServiceClient::new(w.as_(c))
        .login(LoginRequest { username: PROBER.into(), password: PASSWORD.into() })
        .await?
        .into_inner();
    check(!r.access_token.is_empty() && r.user.as_ref().is_some_and(|u| u.username == PROBER), || format!("{r:?}"))
}

async fn refresh(w: &World, c: Caller) -> Result<(), Status> {
    let old = session(&w.channel, PROBER, PASSWORD).await.refresh_token;
    let r = AuthServiceClient::new(w.as_(c)).refresh(RefreshRequest { refresh_token: old.clone() }).await?.into_inner();
    check(!r.access_token.is_empty() && !r.refresh_token.is_empty() && r.refresh_token != old, || {
        "no new tokens".into()
    })
}

async fn logout(w: &World, c: Caller) -> Result<(), Status> {
    let refresh_token = session(&w.channel, PROBER, PASSWORD).await.refresh_token;
    AuthServiceClient::new(w.as_(c)).logout(LogoutRequest { refresh_token: refresh_token.clone() }).await?;
    // The session is over: its refresh token no longer works.
    let reuse = AuthServiceClient::new(w.channel.clone()).refresh(RefreshRequest { refresh_token }).await;
    check(reuse.is_err(), || "the refresh token still works after logout".into())
}

async fn who_am_i(w: &World, c: Caller) -> Result<(), Status> {
    let r = AuthServiceClient::new(w.as_(c)).who_am_i(WhoAmIRequest {}).await?.into_inner();
    let (id, method) = w.user_of(c);
    check(r.user.as_ref().is_some_and(|u| u.id == id) && r.auth_method == method, || format!("{r:?}"))
}

async fn change_password(w: &World, c: Caller) -> Result<(), Status> {
    let current = if c == Caller::Admin || c == Caller::AdminKey { ADMIN_PASSWORD } else { PASSWORD };
    let new_password = w.fresh("a-changed-password-for-the-matrix");
    let request = ChangePasswordRequest { current_password: current.into(), new_password };
    let r = AuthServiceClient::new(w.as_(c)).change_password(request).await?.into_inner();
    // The answer is a new session of the same user.
    let me = AuthServiceClient::new(InterceptedService::new(w.channel.clone(), bearer(&r.access_token)))
        .who_am_i(WhoAmIRequest {})
        .await?
        .into_inner();
    check(me.user.is_some_and(|u| u.id == w.user_of(c).0), || "the new session is another user's".into())
}

// ---- persys.gateway.v1.UserService

async fn create_user(w: &World, c: Caller) -> Result<(), Status> {
    let username = w.fresh("authz-new");
    let r = UserServiceClient::new(w.as_(c))
        .create_user(CreateUserRequest {
            username: username.clone(),
            password: PASSWORD.into(),
            role: Role::Member as i32,
        })
        .await?
        .into_inner();
    check(r.user.as_ref().is_some_and(|u| u.username == username), || format!("{r:?}"))
}

async fn get_user(w: &World, c: Caller) -> Result<(), Status> {
    let r = UserServiceClient::new(w.as_(c)).get_user(GetUserRequest { id: w.member_id.clone() }).await?.into_inner();
    check(r.user.as_ref().is_some_and(|u| u.username == MEMBER), || format!("{r:?}"))
}

async fn list_users(w: &World, c: Caller) -> Result<(), Status> {
    let page = Some(PageRequest { page_size: 1000, ..Default::default() });
    let r = UserServiceClient::new(w.as_(c)).list_users(ListUsersRequest { page }).await?.into_inner();
    check(r.users.iter().any(|u| u.id == w.member_id), || "the member is not listed".into())
}

async fn update_user(w: &World, c: Caller) -> Result<(), Status> {
    let request =
        UpdateUserRequest { id: w.bystander_id.clone(), role: Some(Role::Admin as i32), ..Default::default() };
    let r = UserServiceClient::new(w.as_(c)).update_user(request).await?.into_inner();
    check(r.user.as_ref().is_some_and(|u| u.role == Role::Admin as i32), || format!("{r:?}"))
}

async fn delete_user(w: &World, c: Caller) -> Result<(), Status> {
    let id = w.new_user().await;
    UserServiceClient::new(w.as_(c)).delete_user(DeleteUserRequest { id: id.clone() }).await?;
    let gone = UserServiceClient::new(w.as_(Caller::Admin)).get_user(GetUserRequest { id }).await;
    check(gone.is_err_and(|s| s.code() == Code::NotFound), || "the user is still there".into())
}

async fn list_audit_events(w: &World, c: Caller) -> Result<(), Status> {
    let r = UserServiceClient::new(w.as_(c)).list_audit_events(ListAuditEventsRequest::default()).await?.into_inner();
    check(r.events.iter().any(|e| e.action == "user.create"), || "no user.create event".into())
}

// ---- persys.gateway.v1.ApiKeyService

async fn create_api_key(w: &World, c: Caller) -> Result<(), Status> {
    let request = CreateApiKeyRequest { name: w.fresh("authz-key"), expires_at: None };
    let r = ApiKeyServiceClient::new(w.as_(c)).create_api_key(request).await?.into_inner();
    check(r.secret.starts_with("psk_") && r.api_key.is_some(), || "no key".into())
}

async fn list_api_keys(w: &World, c: Caller) -> Result<(), Status> {
    let page = Some(PageRequest { page_size: 1000, ..Default::default() });
    let r = ApiKeyServiceClient::new(w.as_(c)).list_api_keys(ListApiKeysRequest { page }).await?.into_inner();
    if r.api_keys.iter().any(|k| k.id == w.member_key_id) { Ok(()) } else { Err(absent("the member's key")) }
}

async fn revoke_api_key(w: &World, c: Caller) -> Result<(), Status> {
    let key = ApiKeyServiceClient::new(w.as_(Caller::Member))
        .create_api_key(CreateApiKeyRequest { name: w.fresh("authz-target"), expires_at: None })
        .await
        .expect("the member creates a key")
        .into_inner();
    let id = key.api_key.unwrap().id;
    ApiKeyServiceClient::new(w.as_(c)).revoke_api_key(RevokeApiKeyRequest { id }).await?;
    let mut with_key = AuthServiceClient::new(InterceptedService::new(w.channel.clone(), bearer(&key.secret)));
    let refused = with_key.who_am_i(WhoAmIRequest {}).await;
    check(refused.is_err_and(|s| s.code() == Code::Unauthenticated), || "the revoked key still works".into())
}

// ---- persys.scheduler.v1.SchedulerService: workloads

async fn create_workload(w: &World, c: Caller) -> Result<(), Status> {
    let created = w.create(c, w.parked_spec()).await?;
    let (owner, _) = w.user_of(c);
    check(created.owner_id == owner, || format!("owner {:?}, want {owner:?}", created.owner_id))
}

async fn create_with(w: &World, c: Caller, change: impl FnOnce(&mut pb::WorkloadSpec)) -> Result<(), Status> {
    let mut spec = w.parked_spec();
    change(&mut spec);
    w.create(c, spec).await.map(drop)
}

async fn create_on_host_network(w: &World, c: Caller) -> Result<(), Status> {
    create_with(w, c, |s| s.network = "host".into()).await
}

async fn create_in_container_network(w: &World, c: Caller) -> Result<(), Status> {
    create_with(w, c, |s| s.network = "container:authz-anything".into()).await
}

async fn create_on_other_network(w: &World, c: Caller) -> Result<(), Status> {
    create_with(w, c, |s| s.network = "authz-not-allowed".into()).await
}

async fn create_host_process(w: &World, c: Caller) -> Result<(), Status> {
    create_with(w, c, |s| s.image = "process://".into()).await
}

async fn get_workload(w: &World, c: Caller) -> Result<(), Status> {
    let r = w.scheduler(c).get_workload(pb::GetWorkloadRequest { id: w.running.clone() }).await?.into_inner();
    check(r.workload.as_ref().is_some_and(|x| x.id == w.running), || format!("{r:?}"))
}

async fn list(w: &World, c: Caller, owner_id: String) -> Result<(), Status> {
    let page = Some(PageRequest { page_size: 1000, ..Default::default() });
    let r = w.scheduler(c).list_workloads(pb::ListWorkloadsRequest { page, owner_id, ..Default::default() }).await?;
    let listed = r.into_inner().workloads.iter().any(|x| x.id == w.running);
    if listed { Ok(()) } else { Err(absent("the member's workload")) }
}

async fn list_workloads(w: &World, c: Caller) -> Result<(), Status> {
    list(w, c, String::new()).await
}

async fn list_member_workloads(w: &World, c: Caller) -> Result<(), Status> {
    list(w, c, w.member_id.clone()).await
}

async fn stop_workload(w: &World, c: Caller) -> Result<(), Status> {
    let id = w.parked_of_member().await;
    let r = w.scheduler(c).stop_workload(pb::StopWorkloadRequest { id, ..Default::default() }).await?.into_inner();
    let state = r.workload.map(|x| x.desired_state());
    check(state == Some(pb::DesiredState::Stopped), || format!("desired state {state:?}"))
}

async fn start_workload(w: &World, c: Caller) -> Result<(), Status> {
    let id = w.parked_of_member().await;
    w.scheduler(Caller::Member)
        .stop_workload(pb::StopWorkloadRequest { id: id.clone(), ..Default::default() })
        .await
        .expect("the member stops their workload");
    let r = w.scheduler(c).start_workload(pb::StartWorkloadRequest { id, ..Default::default() }).await?.into_inner();
    let state = r.workload.map(|x| x.desired_state());
    check(state == Some(pb::DesiredState::Running), || format!("desired state {state:?}"))
}

async fn restart_workload(w: &World, c: Caller) -> Result<(), Status> {
    // The parked workload has no instance to restart: the running one keeps its container.
    let request = pb::RestartWorkloadRequest { id: w.parked.clone(), ..Default::default() };
    let r = w.scheduler(c).restart_workload(request).await?.into_inner();
    check(r.workload.is_some_and(|x| x.id == w.parked), || "another workload".into())
}

async fn delete_workload(w: &World, c: Caller) -> Result<(), Status> {
    let id = w.parked_of_member().await;
    w.scheduler(c).delete_workload(pb::DeleteWorkloadRequest { id: id.clone(), ..Default::default() }).await?;
    let gone = w.scheduler(Caller::Member).get_workload(pb::GetWorkloadRequest { id }).await;
    check(gone.is_err_and(|s| s.code() == Code::NotFound), || "the workload is still there".into())
}

async fn watch(w: &World, c: Caller, request: pb::WatchWorkloadsRequest) -> Result<(), Status> {
    let stream = w.scheduler(c).watch_workloads(request).await?.into_inner();
    let ids = snapshot(stream, |e: &pb::WatchWorkloadsResponse| (e.r#type, e.workload.as_ref().map(|x| x.id.clone())))
        .await?;
    if ids.contains(&w.running) { Ok(()) } else { Err(absent("the member's workload")) }
}

async fn watch_workloads(w: &World, c: Caller) -> Result<(), Status> {
    watch(w, c, pb::WatchWorkloadsRequest { workload_id: w.running.clone(), ..Default::default() }).await
}

async fn watch_member_workloads(w: &World, c: Caller) -> Result<(), Status> {
    watch(w, c, pb::WatchWorkloadsRequest { owner_id: w.member_id.clone(), ..Default::default() }).await
}

async fn stream_logs(w: &World, c: Caller) -> Result<(), Status> {
    let request = pb::StreamLogsRequest { workload_id: w.running.clone(), follow: false, ..Default::default() };
    let mut stream = w.scheduler(c).stream_logs(request).await?.into_inner();
    let mut text = String::new();
    while let Some(m) = stream.message().await? {
        text.push_str(&String::from_utf8_lossy(&m.chunk.unwrap_or_default().data));
    }
    check(text.contains(HELLO), || format!("logs {text:?}"))
}

async fn exec_workload(w: &World, c: Caller) -> Result<(), Status> {
    let request = pb::ExecWorkloadRequest {
        workload_id: w.running.clone(),
        command: vec!["sh".into(), "-c".into(), "echo exec-ok".into()],
        ..Default::default()
    };
    let mut stream = w.scheduler(c).exec_workload(request).await?.into_inner();
    let (mut output, mut exit) = (String::new(), None);
    while let Some(m) = stream.message().await? {
        match m.payload {
            Some(pb::exec_workload_response::Payload::Output(chunk)) => {
                output.push_str(&String::from_utf8_lossy(&chunk.data))
            }
            Some(pb::exec_workload_response::Payload::Exit(e)) => exit = Some(e.exit_code),
            None => {}
        }
    }
    check(output.contains("exec-ok") && exit == Some(0), || format!("output {output:?}, exit {exit:?}"))
}

// ---- persys.scheduler.v1.SchedulerService: nodes and join tokens

async fn get_node(w: &World, c: Caller) -> Result<(), Status> {
    let r = w.scheduler(c).get_node(pb::GetNodeRequest { id: w.main_node.clone() }).await?.into_inner();
    check(r.node.is_some_and(|n| n.id == w.main_node), || "another node".into())
}

async fn list_nodes(w: &World, c: Caller) -> Result<(), Status> {
    let r = w.scheduler(c).list_nodes(pb::ListNodesRequest::default()).await?.into_inner();
    check(r.nodes.iter().any(|n| n.id == w.main_node), || "the node is not listed".into())
}

async fn watch_nodes(w: &World, c: Caller) -> Result<(), Status> {
    let stream = w.scheduler(c).watch_nodes(pb::WatchNodesRequest { since_revision: 0 }).await?.into_inner();
    let ids = snapshot(stream, |e: &pb::WatchNodesResponse| (e.r#type, e.node.as_ref().map(|n| n.id.clone()))).await?;
    check(ids.contains(&w.main_node), || format!("snapshot {ids:?}"))
}

async fn cordon_node(w: &World, c: Caller) -> Result<(), Status> {
    let request = pb::CordonNodeRequest { id: w.spares[0].clone(), reason: "authz matrix".into() };
    let r = w.scheduler(c).cordon_node(request).await?.into_inner();
    check(r.node.is_some_and(|n| n.cordoned), || "not cordoned".into())
}

async fn drain_node(w: &World, c: Caller) -> Result<(), Status> {
    let request = pb::DrainNodeRequest { id: w.spares[0].clone(), reason: "authz matrix".into(), ..Default::default() };
    let r = w.scheduler(c).drain_node(request).await?.into_inner();
    check(r.node.is_some_and(|n| n.state() == pb::NodeState::Draining), || "not draining".into())
}

async fn uncordon_node(w: &World, c: Caller) -> Result<(), Status> {
    let r = w.scheduler(c).uncordon_node(pb::UncordonNodeRequest { id: w.spares[0].clone() }).await?.into_inner();
    check(r.node.is_some_and(|n| !n.cordoned), || "still cordoned".into())
}

async fn delete_node(w: &World, c: Caller) -> Result<(), Status> {
    // A node can be deleted once: each caller who may gets one of their own.
    let id = match c {
        Caller::Admin => w.spares[1].clone(),
        Caller::AdminKey => w.spares[2].clone(),
        _ => w.spares[0].clone(),
    };
    w.scheduler(c).delete_node(pb::DeleteNodeRequest { id: id.clone(), force: false }).await?;
    let gone = w.scheduler(Caller::Admin).get_node(pb::GetNodeRequest { id }).await;
    check(gone.is_err_and(|s| s.code() == Code::NotFound), || "the node is still there".into())
}

async fn create_join_token(w: &World, c: Caller) -> Result<(), Status> {
    let r = w.scheduler(c).create_join_token(pb::CreateJoinTokenRequest::default()).await?.into_inner();
    check(!r.token.is_empty() && r.join_token.is_some(), || "no token".into())
}

async fn list_join_tokens(w: &World, c: Caller) -> Result<(), Status> {
    let r = w.scheduler(c).list_join_tokens(pb::ListJoinTokensRequest::default()).await?.into_inner();
    check(!r.join_tokens.is_empty(), || "no tokens listed".into())
}

async fn revoke_join_token(w: &World, c: Caller) -> Result<(), Status> {
    let id = w
        .scheduler(Caller::Admin)
        .create_join_token(pb::CreateJoinTokenRequest::default())
        .await
        .expect("the admin creates a join token")
        .into_inner()
        .join_token
        .unwrap()
        .id;
    w.scheduler(c).revoke_join_token(pb::RevokeJoinTokenRequest { id }).await.map(drop)
}

// ---- persys.scheduler.v1: the services of agents and services, through the gateway

async fn agent_connect(w: &World, c: Caller) -> Result<(), Status> {
    let requests = tokio_stream::iter(vec![pb::ConnectRequest::default()]);
    AgentServiceClient::new(w.as_(c)).connect(requests).await.map(drop)
}

async fn join(w: &World, c: Caller) -> Result<(), Status> {
    let request =
        pb::JoinRequest { token: w.unused_join_token.clone(), hostname: "authz-intruder".into(), ..Default::default() };
    BootstrapServiceClient::new(w.as_(c)).join(request).await.map(drop)
}

async fn renew_certificate(w: &World, c: Caller) -> Result<(), Status> {
    BootstrapServiceClient::new(w.as_(c)).renew_certificate(pb::RenewCertificateRequest::default()).await.map(drop)
}

async fn run_host_command(w: &World, c: Caller) -> Result<(), Status> {
    let request = pb::RunHostCommandRequest::default();
    NodeCommandServiceClient::new(w.as_(c)).run_host_command(request).await.map(drop)
}

async fn run_container_action(w: &World, c: Caller) -> Result<(), Status> {
    let request = pb::RunContainerActionRequest::default();
    NodeCommandServiceClient::new(w.as_(c)).run_container_action(request).await.map(drop)
}

// ---- persys.analyzer.v1.AnalyzerService

async fn analyze(w: &World, c: Caller) -> Result<(), Status> {
    let app = tiny_app();
    let mut requests = vec![AnalyzeRequest { payload: app.metadata.map(analyze_request::Payload::Metadata) }];
    requests.extend(app.files.into_iter().map(|f| AnalyzeRequest {
        payload: Some(analyze_request::Payload::Chunk(FileChunk { path: f.path, data: f.content, mode: 0 })),
    }));
    let r = AnalyzerServiceClient::new(w.as_(c)).analyze(tokio_stream::iter(requests)).await?.into_inner();
    check(r.result.is_some(), || "no result".into())
}

async fn analyze_repository(w: &World, c: Caller) -> Result<(), Status> {
    let r = AnalyzerServiceClient::new(w.as_(c)).analyze_repository(tiny_app()).await?.into_inner();
    check(r.result.is_some_and(|r| r.manifests.iter().any(|m| m.kind == "Deployment")), || "no Deployment".into())
}

async fn validate_manifests(w: &World, c: Caller) -> Result<(), Status> {
    let request = ValidateManifestsRequest {
        manifests: vec![w.manifest.clone()],
        persona: Some(w.persona.clone()),
        namespace: "apps".into(),
    };
    let r = AnalyzerServiceClient::new(w.as_(c)).validate_manifests(request).await?.into_inner();
    check(r.passed, || format!("findings {:?}", r.findings))
}

// ---- persys.metrics.v1.MetricsQueryService

async fn query(w: &World, c: Caller, metric: mpb::Metric, workload: Option<&str>) -> Result<(), Status> {
    let request = mpb::QueryRangeRequest {
        node_ids: vec![w.main_node.clone()],
        metrics: vec![metric as i32],
        range: Some(TimeRange { start: Some(seconds_from_now(-600)), end: None }),
        step: Some(prost_types::Duration { seconds: 5, nanos: 0 }),
        match_labels: workload.map(|id| [("workload_id".to_owned(), id.to_owned())].into()).unwrap_or_default(),
        ..Default::default()
    };
    let r = MetricsQueryServiceClient::new(w.as_(c)).query_range(request).await?.into_inner();
    let wanted = |s: &mpb::Series| workload.is_none_or(|id| s.labels.get("workload_id").is_some_and(|l| l == id));
    check(!r.series.is_empty() && r.series.iter().all(|s| wanted(s) && !s.points.is_empty()), || {
        format!("series {:?}", r.series.iter().map(|s| &s.labels).collect::<Vec<_>>())
    })
}

async fn query_container_metrics(w: &World, c: Caller) -> Result<(), Status> {
    query(w, c, mpb::Metric::ContainerCpuPercent, Some(&w.running)).await
}

async fn query_host_metrics(w: &World, c: Caller) -> Result<(), Status> {
    query(w, c, mpb::Metric::CpuUsagePercent, None).await
}

/// Returns the samples of `main` that `c` gets from LatestHostMetrics.
async fn latest(w: &World, c: Caller) -> Result<Vec<mpb::HostMetrics>, Status> {
    let request = mpb::LatestHostMetricsRequest {
        node_ids: vec![w.main_node.clone()],
        include_containers: true,
        ..Default::default()
    };
    Ok(MetricsQueryServiceClient::new(w.as_(c)).latest_host_metrics(request).await?.into_inner().metrics)
}

/// Returns the samples of `main` in the snapshot of `c`'s WatchHostMetrics.
async fn watched(w: &World, c: Caller) -> Result<Vec<mpb::HostMetrics>, Status> {
    let request = mpb::WatchHostMetricsRequest {
        node_ids: vec![w.main_node.clone()],
        include_containers: true,
        ..Default::default()
    };
    let stream = MetricsQueryServiceClient::new(w.as_(c)).watch_host_metrics(request).await?.into_inner();
    let events = until_bookmark(stream, |e: &mpb::WatchHostMetricsResponse| e.r#type).await?;
    Ok(events.into_iter().filter_map(|e| e.metrics).collect())
}

/// Whether `samples` hold the member's container on `main`.
fn holds_container(w: &World, samples: &[mpb::HostMetrics]) -> Result<(), Status> {
    let held =
        samples.iter().any(|m| m.node_id == w.main_node && m.containers.iter().any(|c| c.workload_id == w.running));
    if held { Ok(()) } else { Err(absent("the member's container")) }
}

/// Whether `samples` hold `main`'s host-wide figures.
fn holds_host_wide(w: &World, samples: &[mpb::HostMetrics]) -> Result<(), Status> {
    let held = samples.iter().any(|m| m.node_id == w.main_node && m.cpu.is_some() && m.memory.is_some());
    if held { Ok(()) } else { Err(absent("host-wide figures")) }
}

async fn latest_container(w: &World, c: Caller) -> Result<(), Status> {
    holds_container(w, &latest(w, c).await?)
}

async fn latest_host_wide(w: &World, c: Caller) -> Result<(), Status> {
    holds_host_wide(w, &latest(w, c).await?)
}

async fn watch_container(w: &World, c: Caller) -> Result<(), Status> {
    holds_container(w, &watched(w, c).await?)
}

async fn watch_host_wide(w: &World, c: Caller) -> Result<(), Status> {
    holds_host_wide(w, &watched(w, c).await?)
}

// ---- persys.metrics.v1.AlertService

fn alerts(w: &World, c: Caller) -> AlertServiceClient<Channel> {
    AlertServiceClient::new(w.as_(c))
}

async fn create_alert_rule(w: &World, c: Caller) -> Result<(), Status> {
    let rule = w.alert_rule(false);
    let r = alerts(w, c).create_alert_rule(mpb::CreateAlertRuleRequest { rule: Some(rule.clone()) }).await?;
    let created = r.into_inner().rule.unwrap_or_default();
    let (owner, _) = w.user_of(c);
    check(created.name == rule.name && created.owner_id == owner, || format!("{created:?}"))
}

async fn get_alert_rule(w: &World, c: Caller) -> Result<(), Status> {
    let r = alerts(w, c).get_alert_rule(mpb::GetAlertRuleRequest { id: w.firing_rule.clone() }).await?;
    check(r.into_inner().rule.is_some_and(|r| r.id == w.firing_rule), || "another rule".into())
}

async fn list_alert_rules(w: &World, c: Caller) -> Result<(), Status> {
    let r = alerts(w, c).list_alert_rules(mpb::ListAlertRulesRequest::default()).await?.into_inner();
    check(r.rules.iter().any(|r| r.id == w.firing_rule), || "the rule is not listed".into())
}

async fn update_alert_rule(w: &World, c: Caller) -> Result<(), Status> {
    let description = w.fresh("changed by the authz matrix");
    let rule = mpb::AlertRule { id: w.quiet_rule.clone(), description: description.clone(), ..Default::default() };
    let update_mask = Some(prost_types::FieldMask { paths: vec!["description".into()] });
    let request = mpb::UpdateAlertRuleRequest { rule: Some(rule), update_mask, expected_revision: 0 };
    let r = alerts(w, c).update_alert_rule(request).await?.into_inner();
    check(r.rule.is_some_and(|r| r.description == description && !r.enabled), || "not changed".into())
}

async fn delete_alert_rule(w: &World, c: Caller) -> Result<(), Status> {
    let id = w.new_quiet_rule().await;
    alerts(w, c).delete_alert_rule(mpb::DeleteAlertRuleRequest { id: id.clone() }).await?;
    let gone = alerts(w, Caller::Admin).get_alert_rule(mpb::GetAlertRuleRequest { id }).await;
    check(gone.is_err_and(|s| s.code() == Code::NotFound), || "the rule is still there".into())
}

async fn list_alerts(w: &World, c: Caller) -> Result<(), Status> {
    let request = mpb::ListAlertsRequest { rule_id: w.firing_rule.clone(), ..Default::default() };
    let r = alerts(w, c).list_alerts(request).await?.into_inner();
    check(r.alerts.iter().any(|a| a.id == w.firing_alert), || "the alert is not listed".into())
}

async fn get_alert(w: &World, c: Caller) -> Result<(), Status> {
    let r = alerts(w, c).get_alert(mpb::GetAlertRequest { id: w.firing_alert.clone() }).await?.into_inner();
    check(r.alert.is_some_and(|a| a.id == w.firing_alert && a.node_id == w.main_node), || "another alert".into())
}

async fn watch_alerts(w: &World, c: Caller) -> Result<(), Status> {
    let request = mpb::WatchAlertsRequest { node_id: w.main_node.clone(), ..Default::default() };
    let stream = alerts(w, c).watch_alerts(request).await?.into_inner();
    let ids =
        snapshot(stream, |e: &mpb::WatchAlertsResponse| (e.r#type, e.alert.as_ref().map(|a| a.id.clone()))).await?;
    check(ids.contains(&w.firing_alert), || format!("snapshot {ids:?}"))
}

async fn acknowledge_alert(w: &World, c: Caller) -> Result<(), Status> {
    // An alert is acknowledged once: each caller who may gets one of their own.
    let id = w.to_acknowledge[usize::from(c == Caller::AdminKey)].clone();
    let request = mpb::AcknowledgeAlertRequest { id, comment: "authz matrix".into() };
    let r = alerts(w, c).acknowledge_alert(request).await?.into_inner();
    check(r.alert.is_some_and(|a| a.state() == mpb::AlertState::Acknowledged && a.acknowledged_by == ADMIN), || {
        "not acknowledged by the admin".into()
    })
}

async fn create_silence(w: &World, c: Caller) -> Result<(), Status> {
    let request = mpb::CreateSilenceRequest { silence: Some(w.silence_of(&w.quiet_rule)) };
    let r = alerts(w, c).create_silence(request).await?.into_inner();
    check(r.silence.is_some_and(|s| !s.id.is_empty() && s.created_by == ADMIN), || "no silence".into())
}

async fn list_silences(w: &World, c: Caller) -> Result<(), Status> {
    let r = alerts(w, c).list_silences(mpb::ListSilencesRequest::default()).await?.into_inner();
    check(r.silences.iter().any(|s| s.id == w.silence), || "the silence is not listed".into())
}

async fn expire_silence(w: &World, c: Caller) -> Result<(), Status> {
    let id = w.new_silence().await;
    let r = alerts(w, c).expire_silence(mpb::ExpireSilenceRequest { id }).await?.into_inner();
    check(r.silence.is_some_and(|s| s.expired_at.is_some()), || "not expired".into())
}

// ---- persys.metrics.v1.CommandService

async fn run_command(w: &World, c: Caller) -> Result<(), Status> {
    let request = mpb::RunCommandRequest {
        node_id: w.main_node.clone(),
        argv: vec!["echo".into(), "authz-ok".into()],
        ..Default::default()
    };
    let stream = CommandServiceClient::new(w.as_(c)).run_command(request).await?.into_inner();
    let (finished, output) = command_output(stream).await?;
    check(finished.status() == mpb::CommandStatus::Completed && output.contains("authz-ok"), || {
        format!("{finished:?}, output {output:?}")
    })
}

async fn docker_logs(w: &World, c: Caller) -> Result<(), Status> {
    let request = mpb::DockerActionRequest {
        node_id: w.main_node.clone(),
        container_id: w.container_id.clone(),
        action: mpb::DockerActionType::Logs as i32,
        ..Default::default()
    };
    let mut stream = CommandServiceClient::new(w.as_(c)).docker_action(request).await?.into_inner();
    let (mut output, mut result) = (String::new(), None);
    while let Some(m) = stream.message().await? {
        match m.payload {
            Some(mpb::docker_action_response::Payload::Output(chunk)) => {
                output.push_str(&String::from_utf8_lossy(&chunk.data))
            }
            Some(mpb::docker_action_response::Payload::Result(r)) => result = Some(r),
            None => {}
        }
    }
    check(output.contains(HELLO) && result.is_some(), || format!("output {output:?}, result {result:?}"))
}

async fn list_containers(w: &World, c: Caller) -> Result<(), Status> {
    let request = mpb::ListContainersRequest { node_id: w.main_node.clone(), ..Default::default() };
    let r = CommandServiceClient::new(w.as_(c)).list_containers(request).await?.into_inner();
    check(r.containers.iter().any(|x| x.container_id == w.container_id), || "the container is not listed".into())
}

async fn list_command_history(w: &World, c: Caller) -> Result<(), Status> {
    let page = Some(PageRequest { page_size: 1000, ..Default::default() });
    let request = mpb::ListCommandHistoryRequest { page, node_id: w.main_node.clone(), ..Default::default() };
    let r = CommandServiceClient::new(w.as_(c)).list_command_history(request).await?.into_inner();
    check(r.commands.iter().any(|x| x.id == w.command), || "the admin's command is not listed".into())
}

// ---- persys.metrics.v1.DoraService

fn dora(w: &World, c: Caller) -> DoraServiceClient<Channel> {
    DoraServiceClient::new(w.as_(c))
}

async fn record_deployment(w: &World, c: Caller) -> Result<(), Status> {
    let request = w.deployment_request();
    let application = request.application.clone();
    let r = dora(w, c).record_deployment(request).await?.into_inner();
    check(!r.duplicate && r.deployment.is_some_and(|d| d.application == application), || "not recorded".into())
}

async fn get_deployment(w: &World, c: Caller, id: &str, owner: &str) -> Result<(), Status> {
    let r = dora(w, c).get_deployment(mpb::GetDeploymentRequest { id: id.into() }).await?.into_inner();
    let got = r.deployment.map(|d| (d.id, d.owner_id));
    check(got.as_ref().is_some_and(|(i, o)| i == id && o == owner), || format!("(id, owner) {got:?}"))
}

async fn get_rollout(w: &World, c: Caller) -> Result<(), Status> {
    get_deployment(w, c, &w.rollout, &w.member_id).await
}

async fn get_unowned_deployment(w: &World, c: Caller) -> Result<(), Status> {
    get_deployment(w, c, &w.failed_pushes[0], "").await
}

async fn list_deployments(w: &World, c: Caller) -> Result<(), Status> {
    let request = mpb::ListDeploymentsRequest { component: w.running_name.clone(), ..Default::default() };
    let r = dora(w, c).list_deployments(request).await?.into_inner();
    if r.deployments.iter().any(|d| d.id == w.rollout) { Ok(()) } else { Err(absent("the member's rollout")) }
}

async fn retry_devlake_push(w: &World, c: Caller) -> Result<(), Status> {
    // A push is retried once: each caller who may gets a failed one of their own.
    let id = w.failed_pushes[usize::from(c == Caller::AdminKey)].clone();
    let r = dora(w, c).retry_devlake_push(mpb::RetryDevlakePushRequest { id }).await?.into_inner();
    let state = r.deployment.and_then(|d| d.devlake).map(|p| p.state());
    check(state == Some(mpb::DevlakePushState::Pending), || format!("push state {state:?}"))
}

async fn get_dora_metrics(w: &World, c: Caller) -> Result<(), Status> {
    let request = mpb::GetDoraMetricsRequest {
        range: Some(TimeRange { start: Some(seconds_from_now(-86_400)), end: None }),
        component: w.running_name.clone(),
        ..Default::default()
    };
    let r = dora(w, c).get_dora_metrics(request).await?.into_inner();
    match r.deployments_total {
        1 => Ok(()),
        0 => Err(absent("the member's rollout")),
        n => Err(Status::internal(format!("wrong answer: {n} deployments of one rollout"))),
    }
}

// ---- persys.metrics.v1.MetricsIngestService: the agents' own, through the gateway

async fn ingest(w: &World, c: Caller) -> Result<(), Status> {
    let requests = tokio_stream::iter(vec![mpb::IngestRequest::default()]);
    MetricsIngestServiceClient::new(w.as_(c)).ingest(requests).await.map(drop)
}

// ---- persys.reconciler.v1.PersonaService

fn personas(w: &World, c: Caller) -> PersonaServiceClient<Channel> {
    PersonaServiceClient::new(w.as_(c))
}

fn persona_name(p: &rpb::ApplicationPersona) -> &str {
    p.metadata.as_ref().map_or("", |m| m.name.as_str())
}

async fn list_application_personas(w: &World, c: Caller) -> Result<(), Status> {
    let request = rpb::ListApplicationPersonasRequest { namespace: w.namespace.clone(), ..Default::default() };
    let r = personas(w, c).list_application_personas(request).await?.into_inner();
    check(r.personas.iter().any(|p| persona_name(p) == PERSONA), || "the persona is not listed".into())
}

async fn list_every_persona(w: &World, c: Caller) -> Result<(), Status> {
    let request = rpb::ListApplicationPersonasRequest {
        page: Some(PageRequest { page_size: 1000, ..Default::default() }),
        ..Default::default()
    };
    let r = personas(w, c).list_application_personas(request).await?.into_inner();
    let listed =
        r.personas.iter().filter_map(|p| p.metadata.as_ref()).any(|m| m.namespace == w.namespace && m.name == PERSONA);
    if listed { Ok(()) } else { Err(absent("the member's persona")) }
}

async fn get_application_persona(w: &World, c: Caller) -> Result<(), Status> {
    let request = rpb::GetApplicationPersonaRequest { namespace: w.namespace.clone(), name: PERSONA.into() };
    let r = personas(w, c).get_application_persona(request).await?.into_inner();
    check(r.persona.is_some_and(|p| p.spec.is_some_and(|s| s.name == PERSONA)), || "another persona".into())
}

async fn get_cluster_persona(w: &World, c: Caller) -> Result<(), Status> {
    let request = rpb::GetClusterPersonaRequest { name: w.cluster_persona.clone() };
    let r = personas(w, c).get_cluster_persona(request).await?.into_inner();
    let name = r.cluster_persona.and_then(|p| p.metadata).map(|m| m.name);
    check(name.as_ref() == Some(&w.cluster_persona), || format!("cluster persona {name:?}"))
}

async fn watch_persona_events(w: &World, c: Caller) -> Result<(), Status> {
    let request = rpb::WatchPersonaEventsRequest {
        kinds: vec![rpb::PersonaKind::Application as i32],
        namespace: w.namespace.clone(),
        name: PERSONA.into(),
        ..Default::default()
    };
    let stream = personas(w, c).watch_persona_events(request).await?.into_inner();
    let names = snapshot(stream, |e: &rpb::WatchPersonaEventsResponse| {
        let name = match &e.object {
            Some(rpb::watch_persona_events_response::Object::ApplicationPersona(p)) => Some(persona_name(p).to_owned()),
            _ => None,
        };
        (e.r#type, name)
    })
    .await?;
    check(names == [PERSONA], || format!("snapshot {names:?}"))
}

async fn watch_every_persona(w: &World, c: Caller) -> Result<(), Status> {
    let request =
        rpb::WatchPersonaEventsRequest { kinds: vec![rpb::PersonaKind::Application as i32], ..Default::default() };
    let stream = personas(w, c).watch_persona_events(request).await?.into_inner();
    let names = snapshot(stream, |e: &rpb::WatchPersonaEventsResponse| {
        let name = match &e.object {
            Some(rpb::watch_persona_events_response::Object::ApplicationPersona(p)) => {
                p.metadata.as_ref().map(|m| format!("{}/{}", m.namespace, m.name))
            }
            _ => None,
        };
        (e.r#type, name)
    })
    .await?;
    let ours = format!("{}/{PERSONA}", w.namespace);
    if names.contains(&ours) { Ok(()) } else { Err(absent("the member's persona")) }
}

// ---- persys.reconciler.v1.ProjectService (the reconciler runs with Kapsa projects on)

fn projects(w: &World, c: Caller) -> ProjectServiceClient<Channel> {
    ProjectServiceClient::new(w.as_(c))
}

fn meta_name(m: Option<&rpb::ObjectMeta>) -> &str {
    m.map_or("", |m| m.name.as_str())
}

/// `<namespace>/<project>`: exactly the deployment's project.
fn the_project(w: &World) -> String {
    format!("{}/{PROJECT}", w.namespace)
}

async fn list_projects(w: &World, c: Caller) -> Result<(), Status> {
    let request = rpb::ListProjectsRequest { namespace: w.namespace.clone(), ..Default::default() };
    let r = projects(w, c).list_projects(request).await?.into_inner();
    check(r.projects.iter().any(|p| meta_name(p.metadata.as_ref()) == PROJECT), || "the project is not listed".into())
}

/// Whether `metas` hold `name` in `namespace`.
fn holds<'a>(mut metas: impl Iterator<Item = Option<&'a rpb::ObjectMeta>>, namespace: &str, name: &str) -> bool {
    metas.any(|m| m.is_some_and(|m| m.namespace == namespace && m.name == name))
}

fn every_page() -> Option<PageRequest> {
    Some(PageRequest { page_size: 1000, ..Default::default() })
}

async fn list_every_project(w: &World, c: Caller) -> Result<(), Status> {
    let request = rpb::ListProjectsRequest { page: every_page(), ..Default::default() };
    let r = projects(w, c).list_projects(request).await?.into_inner();
    let listed = holds(r.projects.iter().map(|p| p.metadata.as_ref()), &w.namespace, PROJECT);
    if listed { Ok(()) } else { Err(absent("the member's project")) }
}

async fn list_every_environment(w: &World, c: Caller) -> Result<(), Status> {
    let request = rpb::ListEnvironmentsRequest { page: every_page(), ..Default::default() };
    let r = projects(w, c).list_environments(request).await?.into_inner();
    let listed =
        holds(r.environments.iter().map(|e| e.metadata.as_ref()), &project_namespace(&w.namespace), ENVIRONMENT);
    if listed { Ok(()) } else { Err(absent("the member's environment")) }
}

async fn list_every_build(w: &World, c: Caller) -> Result<(), Status> {
    let request = rpb::ListBuildsRequest { page: every_page(), ..Default::default() };
    let r = projects(w, c).list_builds(request).await?.into_inner();
    let listed = holds(r.builds.iter().map(|b| b.metadata.as_ref()), &project_namespace(&w.namespace), BUILD);
    if listed { Ok(()) } else { Err(absent("the member's build")) }
}

async fn get_project(w: &World, c: Caller) -> Result<(), Status> {
    let request = rpb::GetProjectRequest { namespace: w.namespace.clone(), name: PROJECT.into() };
    let r = projects(w, c).get_project(request).await?.into_inner();
    let name = r.project.map(|p| meta_name(p.metadata.as_ref()).to_owned());
    check(name.as_deref() == Some(PROJECT), || format!("project {name:?}"))
}

async fn watch_projects(w: &World, c: Caller) -> Result<(), Status> {
    let request =
        rpb::WatchProjectsRequest { namespace: w.namespace.clone(), name: PROJECT.into(), ..Default::default() };
    let stream = projects(w, c).watch_projects(request).await?.into_inner();
    let names = snapshot(stream, |e: &rpb::WatchProjectsResponse| {
        (e.r#type, e.project.as_ref().map(|p| meta_name(p.metadata.as_ref()).to_owned()))
    })
    .await?;
    check(names == [PROJECT], || format!("snapshot {names:?}"))
}

async fn list_environments(w: &World, c: Caller) -> Result<(), Status> {
    let request = rpb::ListEnvironmentsRequest { project: the_project(w), ..Default::default() };
    let r = projects(w, c).list_environments(request).await?.into_inner();
    let names: Vec<&str> = r.environments.iter().map(|e| meta_name(e.metadata.as_ref())).collect();
    check(names == [ENVIRONMENT], || format!("environments {names:?}"))
}

async fn get_environment(w: &World, c: Caller) -> Result<(), Status> {
    let request = rpb::GetEnvironmentRequest { namespace: project_namespace(&w.namespace), name: ENVIRONMENT.into() };
    let r = projects(w, c).get_environment(request).await?.into_inner();
    let project = r.environment.and_then(|e| e.spec).map(|s| s.project_ref);
    check(project.as_deref() == Some(PROJECT), || format!("an environment of {project:?}"))
}

async fn watch_environments(w: &World, c: Caller) -> Result<(), Status> {
    let request = rpb::WatchEnvironmentsRequest { project: the_project(w), ..Default::default() };
    let stream = projects(w, c).watch_environments(request).await?.into_inner();
    let names = snapshot(stream, |e: &rpb::WatchEnvironmentsResponse| {
        (e.r#type, e.environment.as_ref().map(|e| meta_name(e.metadata.as_ref()).to_owned()))
    })
    .await?;
    check(names == [ENVIRONMENT], || format!("snapshot {names:?}"))
}

async fn list_builds(w: &World, c: Caller) -> Result<(), Status> {
    let request = rpb::ListBuildsRequest { project: the_project(w), ..Default::default() };
    let r = projects(w, c).list_builds(request).await?.into_inner();
    let names: Vec<&str> = r.builds.iter().map(|b| meta_name(b.metadata.as_ref())).collect();
    check(names == [BUILD], || format!("builds {names:?}"))
}

async fn get_build(w: &World, c: Caller) -> Result<(), Status> {
    let request = rpb::GetBuildRequest { namespace: project_namespace(&w.namespace), name: BUILD.into() };
    let r = projects(w, c).get_build(request).await?.into_inner();
    let build = r.build.map(|b| (b.project, b.commit_sha));
    check(build == Some((PROJECT.into(), "abc1234".into())), || format!("build {build:?}"))
}

async fn watch_builds(w: &World, c: Caller) -> Result<(), Status> {
    let request = rpb::WatchBuildsRequest { project: the_project(w), ..Default::default() };
    let stream = projects(w, c).watch_builds(request).await?.into_inner();
    let names = snapshot(stream, |e: &rpb::WatchBuildsResponse| {
        (e.r#type, e.build.as_ref().map(|b| meta_name(b.metadata.as_ref()).to_owned()))
    })
    .await?;
    check(names == [BUILD], || format!("snapshot {names:?}"))
}
