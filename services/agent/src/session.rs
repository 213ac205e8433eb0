//! The control stream: connect, hello with the full inventory, Welcome, then heartbeats,
//! status events and command traffic until the stream breaks; then reconnect with jittered
//! backoff (1 s doubling to `max_backoff`) and start over with a fresh hello.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};

use persys_kit::{client::TracedChannel, shutdown::Shutdown};
use persys_proto::scheduler::v1::{
    AgentHello, ConnectRequest, Heartbeat, agent_service_client::AgentServiceClient, connect_request::Payload,
    connect_response,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

use crate::{
    commands::{Commands, Drivers},
    host::{Host, backoff},
    outbox::Outbox,
};

/// How long the scheduler may take to answer the hello.
const WELCOME_TIMEOUT: Duration = Duration::from_secs(15);
/// Messages queued towards the scheduler before senders wait.
const SEND_QUEUE: usize = 256;

/// The session's settings.
#[derive(Clone, Debug)]
pub struct SessionConfig {
    /// This node's id.
    pub node_id: String,
    /// Node labels.
    pub labels: HashMap<String, String>,
    /// Addresses to advertise.
    pub addresses: Vec<String>,
    /// Heartbeat interval until the Welcome says otherwise.
    pub heartbeat_interval: Duration,
    /// Longest wait between reconnects.
    pub max_backoff: Duration,
}

/// What the admin API shows about the stream.
#[derive(Clone, Debug, Default)]
pub struct Connection {
    /// Whether the stream is open (Welcome received).
    pub connected: bool,
    /// When it opened.
    pub connected_since: Option<SystemTime>,
    /// Last error.
    pub last_error: String,
    /// Failed attempts since the last success.
    pub attempts: u32,
    /// Last heartbeat sent.
    pub last_heartbeat: Option<SystemTime>,
}

/// The agent's side of `AgentService.Connect`.
pub struct Session {
    config: SessionConfig,
    channel: TracedChannel,
    host: Arc<Host>,
    drivers: Arc<Drivers>,
    commands: Arc<Commands>,
    outbox: Arc<Outbox>,
    connection: Arc<Mutex<Connection>>,
}

enum End {
    Shutdown,
    Broken(String),
}

impl Session {
    /// Returns a session over `channel` (mTLS to the scheduler).
    pub fn new(
        config: SessionConfig,
        channel: TracedChannel,
        host: Arc<Host>,
        drivers: Arc<Drivers>,
        outbox: Arc<Outbox>,
    ) -> Self {
        let commands = Commands::new(drivers.clone());
        Self { config, channel, host, drivers, commands, outbox, connection: Arc::default() }
    }

    /// Returns the shared connection state.
    pub fn connection(&self) -> Arc<Mutex<Connection>> {
        self.connection.clone()
    }

    /// Keeps the stream up until shutdown.
    pub async fn run(self, shutdown: Shutdown) {
        let mut attempt = 0u32;
        loop {
            let (end, welcomed) = self.connect_once(&shutdown).await;
            let error = match end {
                End::Shutdown => return,
                End::Broken(error) => error,
            };
            attempt = if welcomed { 1 } else { attempt + 1 };
            let wait = backoff(attempt, self.config.max_backoff, rand::random());
            {
                let mut c = self.connection.lock().expect("connection lock");
                c.connected = false;
                c.connected_since = None;
                c.last_error = error.clone();
                c.attempts = attempt;
            }
            tracing::warn!(%error, attempt, retry_in = ?wait, "scheduler stream down");
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.clone().wait() => return,
            }
        }
    }

    async fn hello(&self) -> (AgentHello, SystemTime, HashSet<String>) {
        let snapshot = SystemTime::now();
        let instances = self.drivers.inventory().await;
        let listed = instances.iter().filter_map(|e| e.status.as_ref().map(|s| s.instance_id.clone())).collect();
        let (drivers, _) = self.drivers.available().await;
        let mut info = self.host.info.clone();
        if let Some(docker) = &self.drivers.docker {
            info.container_runtime = "docker".into();
            info.container_runtime_version = docker.version();
        }
        let hello = AgentHello {
            node_id: self.config.node_id.clone(),
            info: Some(info),
            addresses: self.config.addresses.clone(),
            capacity: Some(self.host.capacity),
            allocatable: Some(self.host.allocatable),
            drivers,
            labels: self.config.labels.clone(),
            instances,
        };
        (hello, snapshot, listed)
    }

    /// One stream from dial to break; returns how it ended and whether a Welcome came.
    async fn connect_once(&self, shutdown: &Shutdown) -> (End, bool) {
        let (tx, rx) = mpsc::channel::<ConnectRequest>(SEND_QUEUE);
        let (hello, snapshot, listed) = self.hello().await;
        let count = hello.instances.len();
        let _ = tx.send(ConnectRequest { payload: Some(Payload::Hello(hello)) }).await;
        let mut client = AgentServiceClient::new(self.channel.clone());
        let connect = tokio::select! {
            r = client.connect(ReceiverStream::new(rx)) => r,
            _ = shutdown.clone().wait() => return (End::Shutdown, false),
        };
        let mut inbound = match connect {
            Ok(response) => response.into_inner(),
            Err(status) => return (End::Broken(format!("connect: {}: {}", status.code(), status.message())), false),
        };
        let first = tokio::select! {
            r = tokio::time::timeout(WELCOME_TIMEOUT, inbound.message()) => r,
            _ = shutdown.clone().wait() => return (End::Shutdown, false),
        };
        let welcome = match first {
            Ok(Ok(Some(m))) => match m.payload {
                Some(connect_response::Payload::Welcome(w)) => w,
                _ => return (End::Broken("the scheduler's first message was not a Welcome".into()), false),
            },
            Ok(Ok(None)) => return (End::Broken("the scheduler closed the stream before Welcome".into()), false),
            Ok(Err(status)) => return (End::Broken(format!("{}: {}", status.code(), status.message())), false),
            Err(_) => return (End::Broken("no Welcome in time".into()), false),
        };
        let interval = welcome
            .heartbeat_interval
            .and_then(|d| Duration::try_from(d).ok())
            .filter(|d| !d.is_zero())
            .unwrap_or(self.config.heartbeat_interval);
        {
            let mut c = self.connection.lock().expect("connection lock");
            c.connected = true;
            c.connected_since = Some(SystemTime::now());
            c.attempts = 0;
            c.last_error.clear();
        }
        tracing::info!(node_id = %welcome.node_id, instances = count, heartbeat = ?interval, "connected to the scheduler");

        let (backlog, dropped) = self.outbox.drain_after(snapshot, &listed);
        if dropped > 0 {
            tracing::warn!(dropped, "status events were dropped while disconnected; the hello inventory covers them");
        }
        if self.send_events(&tx, backlog).await.is_err() {
            return (End::Broken("stream closed".into()), true);
        }

        let session = CancellationToken::new();
        let _cancel_streaming = session.clone().drop_guard();
        let mut heartbeat = tokio::time::interval(interval);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.clone().wait() => return (End::Shutdown, true),
                message = inbound.message() => match message {
                    Ok(Some(m)) => self.commands.dispatch(m, tx.clone(), &session),
                    Ok(None) => return (End::Broken("the scheduler closed the stream".into()), true),
                    Err(status) => return (End::Broken(format!("{}: {}", status.code(), status.message())), true),
                },
                _ = heartbeat.tick() => {
                    let (drivers, drivers_message) = self.drivers.available().await;
                    let beat = Heartbeat {
                        sent_at: Some(SystemTime::now().into()),
                        usage: Some(self.host.usage()),
                        drivers,
                        drivers_message,
                    };
                    if tx.send(ConnectRequest { payload: Some(Payload::Heartbeat(beat)) }).await.is_err() {
                        return (End::Broken("stream closed".into()), true);
                    }
                    self.connection.lock().expect("connection lock").last_heartbeat = Some(SystemTime::now());
                }
                _ = self.outbox.notified() => {
                    let events = self.outbox.drain();
                    if self.send_events(&tx, events).await.is_err() {
                        return (End::Broken("stream closed".into()), true);
                    }
                }
            }
        }
    }

    async fn send_events(
        &self,
        tx: &mpsc::Sender<ConnectRequest>,
        events: Vec<crate::outbox::Pending>,
    ) -> Result<(), ()> {
        let mut events = events.into_iter();
        while let Some(pending) = events.next() {
            let message = ConnectRequest { payload: Some(Payload::WorkloadStatus(pending.event.clone())) };
            if tx.send(message).await.is_err() {
                let mut unsent = vec![pending];
                unsent.extend(events);
                self.outbox.requeue(unsent);
                return Err(());
            }
        }
        Ok(())
    }
}
