//! [`Kv`] on etcd (3.4+) through etcd-client.

use std::{collections::HashMap, sync::Arc, time::Duration};

use etcd_client::{
    Client, Compare, CompareOp, EventType, GetOptions, LeaseKeepAliveStream, LeaseKeeper, PutOptions, Txn, TxnOp,
    WatchOptions,
};
use tokio::sync::Mutex;

use super::{Cmp, Entry, Event, Kv, KvError, LeaseId, Op, Revision, TxnOutcome, WatchStream};

fn unavailable(e: etcd_client::Error) -> KvError {
    KvError::Unavailable(e.to_string())
}

/// Maps a transaction's error, telling a refused request (a caller's bug) apart from an outage.
fn txn_error(e: etcd_client::Error) -> KvError {
    match e {
        etcd_client::Error::GRpcStatus(status) if status.code() == tonic::Code::InvalidArgument => {
            KvError::Refused(status.message().to_owned())
        }
        other => unavailable(other),
    }
}

/// Maps a lease call's error, telling an expired or revoked lease apart from an outage.
fn lease_error(lease: LeaseId, e: etcd_client::Error) -> KvError {
    if e.to_string().contains("lease not found") { KvError::LeaseNotFound(lease) } else { unavailable(e) }
}

fn entry(kv: &etcd_client::KeyValue) -> Entry {
    Entry {
        key: String::from_utf8_lossy(kv.key()).into_owned(),
        value: kv.value().to_vec(),
        mod_revision: kv.mod_revision(),
        create_revision: kv.create_revision(),
        lease: kv.lease(),
    }
}

type Keeper = Arc<Mutex<(LeaseKeeper, LeaseKeepAliveStream)>>;

/// Batches of events a watch holds for a reader that is slower than etcd.
const WATCH_BUFFER: usize = 4096;

/// etcd, with one keep-alive stream per lease kept open.
#[derive(Clone)]
pub struct EtcdKv {
    client: Client,
    /// One keep-alive stream per lease, each behind its own lock so a thousand nodes'
    /// heartbeats renew in parallel.
    keepers: Arc<std::sync::Mutex<HashMap<LeaseId, Keeper>>>,
}

impl std::fmt::Debug for EtcdKv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EtcdKv")
    }
}

impl EtcdKv {
    /// Connects to the endpoints (`http://127.0.0.1:2379`, ...).
    pub async fn connect(endpoints: &[String]) -> Result<Self, KvError> {
        let options = etcd_client::ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(5))
            .with_timeout(Duration::from_secs(10))
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5));
        let client = Client::connect(endpoints, Some(options)).await.map_err(unavailable)?;
        Ok(Self { client, keepers: Arc::default() })
    }

    /// The leases this client holds a keep-alive stream for.
    pub fn kept_alive(&self) -> Vec<LeaseId> {
        self.keepers.lock().expect("keepers lock").keys().copied().collect()
    }
}

impl Kv for EtcdKv {
    async fn get(&self, key: &str) -> Result<Option<Entry>, KvError> {
        let resp = self.client.clone().get(key, None).await.map_err(unavailable)?;
        Ok(resp.kvs().first().map(entry))
    }

    async fn range(&self, prefix: &str) -> Result<(Vec<Entry>, Revision), KvError> {
        let resp = self.client.clone().get(prefix, Some(GetOptions::new().with_prefix())).await.map_err(unavailable)?;
        let revision = resp.header().map_or(0, |h| h.revision());
        Ok((resp.kvs().iter().map(entry).collect(), revision))
    }

    async fn txn(&self, cmps: Vec<Cmp>, ops: Vec<Op>) -> Result<TxnOutcome, KvError> {
        let compares: Vec<Compare> = cmps
            .into_iter()
            .map(|c| match c {
                Cmp::ModRevision(key, rev) => Compare::mod_revision(key, CompareOp::Equal, rev),
            })
            .collect();
        let ops: Vec<TxnOp> = ops
            .into_iter()
            .map(|op| match op {
                Op::Put { key, value, lease } => TxnOp::put(key, value, lease.map(|l| PutOptions::new().with_lease(l))),
                Op::Delete(key) => TxnOp::delete(key, None),
            })
            .collect();
        let resp = self.client.clone().txn(Txn::new().when(compares).and_then(ops)).await.map_err(txn_error)?;
        Ok(TxnOutcome { succeeded: resp.succeeded(), revision: resp.header().map_or(0, |h| h.revision()) })
    }

    async fn grant(&self, ttl: Duration) -> Result<LeaseId, KvError> {
        let resp = self.client.clone().lease_grant(ttl.as_secs().max(1) as i64, None).await.map_err(unavailable)?;
        Ok(resp.id())
    }

    async fn keep_alive(&self, lease: LeaseId) -> Result<(), KvError> {
        let existing = self.keepers.lock().expect("keepers lock").get(&lease).cloned();
        let keeper = match existing {
            Some(k) => k,
            None => {
                let pair = self.client.clone().lease_keep_alive(lease).await.map_err(|e| lease_error(lease, e))?;
                let k: Keeper = Arc::new(Mutex::new(pair));
                self.keepers.lock().expect("keepers lock").entry(lease).or_insert(k).clone()
            }
        };
        let mut guard = keeper.lock().await;
        let (keeper, stream) = &mut *guard;
        let result = async {
            keeper.keep_alive().await.map_err(|e| lease_error(lease, e))?;
            match stream.message().await.map_err(|e| lease_error(lease, e))? {
                Some(resp) if resp.ttl() > 0 => Ok(()),
                Some(_) => Err(KvError::LeaseNotFound(lease)),
                None => Err(KvError::Unavailable("keep-alive stream closed".into())),
            }
        }
        .await;
        if result.is_err() {
            self.keepers.lock().expect("keepers lock").remove(&lease);
        }
        result
    }

    fn release(&self, lease: LeaseId) {
        self.keepers.lock().expect("keepers lock").remove(&lease);
    }

    async fn revoke(&self, lease: LeaseId) -> Result<(), KvError> {
        self.keepers.lock().expect("keepers lock").remove(&lease);
        match self.client.clone().lease_revoke(lease).await.map_err(|e| lease_error(lease, e)) {
            Ok(_) | Err(KvError::LeaseNotFound(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn watch(&self, prefix: &str, from: Revision) -> Result<WatchStream, KvError> {
        let mut options = WatchOptions::new().with_prefix().with_prev_key();
        if from > 0 {
            options = options.with_start_revision(from);
        }
        let mut stream = self.client.clone().watch(prefix, Some(options)).await.map_err(unavailable)?;
        // Every watch shares the client's one HTTP/2 connection with every other call: a
        // watch nobody reads must not hold up the connection's flow control (and with it the
        // leases, heartbeats and transactions). Its events are read at once into a buffer of
        // its own; a reader that falls `WATCH_BUFFER` batches behind loses the watch (and lists
        // again), never the connection.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Vec<Event>, KvError>>(WATCH_BUFFER);
        let fell_behind = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let behind = fell_behind.clone();
        tokio::spawn(async move {
            loop {
                let message = tokio::select! {
                    // The reader is gone: dropping the stream cancels the watch.
                    () = tx.closed() => return,
                    message = stream.message() => message,
                };
                let (item, last) = match message {
                    Ok(Some(resp)) if resp.compact_revision() > 0 => {
                        (Err(KvError::Compacted { requested: from, oldest: resp.compact_revision() }), true)
                    }
                    Ok(Some(resp)) if resp.canceled() => {
                        (Err(KvError::Unavailable(format!("watch canceled: {}", resp.cancel_reason()))), true)
                    }
                    Ok(Some(resp)) => {
                        let events: Vec<Event> = resp
                            .events()
                            .iter()
                            .filter_map(|ev| {
                                let kv = ev.kv()?;
                                Some(match ev.event_type() {
                                    EventType::Put => Event::Put(entry(kv)),
                                    EventType::Delete => Event::Delete {
                                        key: String::from_utf8_lossy(kv.key()).into_owned(),
                                        revision: kv.mod_revision(),
                                        prev: ev.prev_kv().map(|p| Box::new(entry(p))),
                                    },
                                })
                            })
                            .collect();
                        if events.is_empty() {
                            continue;
                        }
                        (Ok(events), false)
                    }
                    Ok(None) => (Err(KvError::Unavailable("watch stream ended".into())), true),
                    Err(e) => (Err(unavailable(e)), true),
                };
                match tx.try_send(item) {
                    Ok(()) if !last => {}
                    Ok(()) => return,
                    Err(tokio::sync::mpsc::error::TrySendError::Full(_)) => {
                        behind.store(true, std::sync::atomic::Ordering::Relaxed);
                        return;
                    }
                    Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => return,
                }
            }
        });
        let out = async_stream::stream! {
            while let Some(item) = rx.recv().await {
                yield item;
            }
            if fell_behind.load(std::sync::atomic::Ordering::Relaxed) {
                yield Err(KvError::Unavailable(format!(
                    "watch fell {WATCH_BUFFER} batches behind; list again"
                )));
            }
        };
        Ok(Box::pin(out))
    }
}
