//! A gateway in front of a real scheduler (in-memory store, no agents), started as processes
//! with certificates from `persys certs init`: what the `persys` CLI talks to in its tests.

use std::{path::PathBuf, time::Duration};

use tempfile::TempDir;

use crate::{bin, certs_init, gateway_args, process::Service, stack::ADMIN_PASSWORD, tls_args};

/// Options of a test cluster.
#[derive(Default, Clone)]
pub struct ClusterOptions {
    /// Extra gateway flags, e.g. `--access-ttl 1s` or `--public-tls`.
    pub gateway_args: Vec<String>,
    /// Scheduler flags replacing the defaults, e.g. `--etcd URL` (later flags win).
    pub scheduler_args: Vec<String>,
    /// Also run the metrics pipeline on this PostgreSQL database and schema, behind the
    /// gateway as upstream `metrics`; agents then ship host metrics to it every 200 ms.
    pub metrics: Option<(String, String)>,
    /// Also run the reconciler on this Kubernetes API server, restricted to one namespace, with
    /// PersonaService behind the gateway as upstream `reconciler`.
    pub reconciler: Option<ReconcilerOptions>,
}

/// Where a test cluster's reconciler works.
#[derive(Clone)]
pub struct ReconcilerOptions {
    /// Kubeconfig of the API server (the bench's `PERSYS_TEST_KUBECONFIG`).
    pub kubeconfig: String,
    /// The one namespace it reconciles (and holds its Lease in).
    pub namespace: String,
    /// Instead: cluster-wide with Kapsa projects on (ProjectService served), as the chart
    /// installs it, but a follower: the Lease [`FOLLOWER_LEASE`] in `namespace` must be held by
    /// another replica (the test makes it), so it serves from its caches and runs no controller
    /// on the shared API server.
    pub projects_follower: bool,
}

/// The Lease a `projects_follower` reconciler waits for.
pub const FOLLOWER_LEASE: &str = "persys-e2e-follower";

impl ReconcilerOptions {
    /// A cluster-wide follower (see `projects_follower`) on the bench's API server: first
    /// makes [`FOLLOWER_LEASE`] in `namespace`, held by another replica for good, so the
    /// reconciler serves what the test writes from its caches and no controller rewrites it.
    pub fn follower(kube: &crate::kubectl::Kubectl, namespace: &str) -> Self {
        let lease = serde_json::json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": FOLLOWER_LEASE, "namespace": namespace},
            "spec": {"holderIdentity": "another-replica", "leaseDurationSeconds": 3600,
                "renewTime": "2099-01-01T00:00:00.000000Z"}});
        kube.apply(&lease);
        Self { kubeconfig: kube.kubeconfig.clone(), namespace: namespace.to_owned(), projects_follower: true }
    }
}

/// A running scheduler and gateway.
pub struct Cluster {
    /// Temp dir with certs, database and logs.
    pub dir: TempDir,
    /// The gateway process.
    pub gateway: Service,
    /// The scheduler process; `None` once stopped.
    pub scheduler: Option<Service>,
    /// The metrics pipeline, when asked for.
    pub metrics: Option<Service>,
    /// The reconciler, when asked for.
    pub reconciler: Option<Service>,
}

impl Cluster {
    /// Starts the scheduler, then the gateway routing `scheduler` to it.
    pub async fn start(options: ClusterOptions) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let certs = dir.path().join("certs");
        certs_init(&certs)?;
        let timeout = Duration::from_secs(60);

        // Defaults first; a flag in `scheduler_args` replaces its default rather than repeating it
        // (repeated list flags such as --etcd would add up).
        let mut flags: Vec<(String, String)> = [
            ("--listen", "127.0.0.1:0".to_string()),
            ("--bootstrap-listen", "127.0.0.1:0".to_string()),
            ("--etcd", "memory".to_string()),
            ("--ca-key", certs.join("ca-key.pem").display().to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        for pair in options.scheduler_args.chunks(2) {
            let value = pair.get(1).cloned().unwrap_or_default();
            match flags.iter_mut().find(|(k, _)| *k == pair[0]) {
                Some(slot) => slot.1 = value,
                None => flags.push((pair[0].clone(), value)),
            }
        }
        let mut args: Vec<String> = flags.into_iter().flat_map(|(k, v)| [k, v]).collect();
        args.extend(tls_args(&certs, "scheduler"));
        let scheduler = Service::start("scheduler", bin("scheduler")?, &args, &[], dir.path(), timeout).await?;

        let metrics = match &options.metrics {
            Some((database_url, schema)) => {
                let scheduler_url = format!("https://localhost:{}", scheduler.addr("grpc").port());
                let mut args: Vec<String> = ["--listen", "127.0.0.1:0", "--database-url", database_url]
                    .into_iter()
                    .chain(["--database-schema", schema, "--scheduler", &scheduler_url])
                    .map(String::from)
                    .collect();
                args.extend(tls_args(&certs, "metrics"));
                Some(Service::start("metrics", bin("metrics-pipeline")?, &args, &[], dir.path(), timeout).await?)
            }
            None => None,
        };

        let reconciler = match &options.reconciler {
            Some(r) => {
                let mut args: Vec<String> = ["run", "--kubeconfig", &r.kubeconfig]
                    .into_iter()
                    .chain([
                        "--lease-namespace",
                        &r.namespace,
                        "--listen",
                        "127.0.0.1:0",
                        "--allowed-caller",
                        "gateway",
                    ])
                    .map(String::from)
                    .collect();
                if r.projects_follower {
                    args.extend(
                        ["--projects", "true", "--lease-name", FOLLOWER_LEASE, "--cluster-discovery", "false"]
                            .map(String::from),
                    );
                    args.extend(["--cluster-persona".to_owned(), String::new()]);
                } else {
                    args.extend(["--namespace".to_owned(), r.namespace.clone()]);
                }
                args.extend(tls_args(&certs, "reconciler"));
                Some(Service::start("reconciler", bin("reconciler")?, &args, &[], dir.path(), timeout).await?)
            }
            None => None,
        };

        let secret_file = dir.path().join("jwt-secret");
        std::fs::write(&secret_file, b"cli-test-secret-0123456789abcdef-0123456789")?;
        let mut upstreams = vec![format!("scheduler=https://localhost:{}", scheduler.addr("grpc").port())];
        if let Some(m) = &metrics {
            upstreams.push(format!("metrics=https://localhost:{}", m.addr("grpc").port()));
        }
        if let Some(r) = &reconciler {
            upstreams.push(format!("reconciler=https://localhost:{}", r.addr("grpc").port()));
        }
        let mut args = gateway_args(dir.path(), &secret_file, &upstreams);
        args.extend(options.gateway_args.iter().cloned());
        let env = [("PERSYS_GATEWAY_ADMIN_PASSWORD", ADMIN_PASSWORD.to_string())];
        let gateway = Service::start("gateway", bin("gateway")?, &args, &env, dir.path(), timeout).await?;
        Ok(Self { dir, gateway, scheduler: Some(scheduler), metrics, reconciler })
    }

    /// Returns the certificates directory.
    pub fn certs(&self) -> PathBuf {
        self.dir.path().join("certs")
    }

    /// Returns the gateway's public address as a plaintext URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.gateway.addr("public"))
    }

    /// Starts a real agent that joins with `token`, named `node`, with the Docker driver on
    /// `docker_host` and containers on network `none`.
    pub async fn agent(&self, node: &str, token: &str, docker_host: &str) -> anyhow::Result<Service> {
        self.agent_with(node, token, docker_host, &[]).await
    }

    /// Like [`Cluster::agent`], with `flags` added (e.g. `--host-commands echo`).
    pub async fn agent_with(
        &self,
        node: &str,
        token: &str,
        docker_host: &str,
        flags: &[&str],
    ) -> anyhow::Result<Service> {
        let scheduler = self.scheduler.as_ref().ok_or_else(|| anyhow::anyhow!("scheduler stopped"))?;
        let mut extra: Vec<String> = match &self.metrics {
            Some(m) => ["--metrics-pipeline", &format!("https://localhost:{}", m.addr("grpc").port())]
                .into_iter()
                .chain(["--metrics-interval", "200ms"])
                .map(String::from)
                .collect(),
            None => Vec::new(),
        };
        extra.extend(flags.iter().map(|f| (*f).to_owned()));
        start_agent(self.dir.path(), &self.certs(), scheduler, node, token, docker_host, &extra).await
    }

    /// Stops the scheduler (the gateway keeps running and answers UNAVAILABLE for it).
    pub async fn stop_scheduler(&mut self) -> anyhow::Result<()> {
        if let Some(s) = self.scheduler.take() {
            s.stop().await?;
        }
        Ok(())
    }
}

/// Starts a real agent process that joins `scheduler` with `token` as `node`, with the Docker
/// driver on `docker_host`, containers on network `none`, its state and log under `dir`, and
/// `extra` flags.
pub async fn start_agent(
    dir: &std::path::Path,
    certs: &std::path::Path,
    scheduler: &Service,
    node: &str,
    token: &str,
    docker_host: &str,
    extra: &[String],
) -> anyhow::Result<Service> {
    let urls = AgentUrls {
        scheduler: format!("https://localhost:{}", scheduler.addr("grpc").port()),
        bootstrap: format!("https://localhost:{}", scheduler.addr("bootstrap").port()),
    };
    start_agent_at(dir, certs, &urls, node, token, docker_host, extra).await
}

/// Where an agent streams to and joins at.
pub struct AgentUrls {
    /// The scheduler's mTLS address (`--scheduler`), e.g. `https://localhost:PORT`.
    pub scheduler: String,
    /// The scheduler's bootstrap address (`--bootstrap`).
    pub bootstrap: String,
}

/// Like [`start_agent`], with the scheduler's addresses given as URLs (e.g. through a proxy).
pub async fn start_agent_at(
    dir: &std::path::Path,
    certs: &std::path::Path,
    urls: &AgentUrls,
    node: &str,
    token: &str,
    docker_host: &str,
    extra: &[String],
) -> anyhow::Result<Service> {
    let state = dir.join(format!("agent-{node}"));
    let mut args: Vec<String> = [
        "--scheduler",
        &urls.scheduler,
        "--bootstrap",
        &urls.bootstrap,
        "--join-token",
        token,
        "--ca-file",
        &certs.join("ca.pem").display().to_string(),
        "--state-dir",
        &state.display().to_string(),
        "--node-name",
        node,
        "--drivers",
        "docker",
        "--docker-host",
        docker_host,
        "--network-mode",
        "none",
        "--admin-api-listen",
        "127.0.0.1:0",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().cloned());
    Service::start(&format!("agent-{node}"), bin("agent")?, &args, &[], dir, Duration::from_secs(60)).await
}
