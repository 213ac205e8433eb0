//! A TCP proxy the test controls, to cut one process's connections to a backing service (etcd)
//! while everything else keeps its own: [`TcpProxy::cut`] drops every live connection and
//! refuses new ones (accepted and closed at once), [`TcpProxy::heal`] lets them through again;
//! [`TcpProxy::redirect`] moves every client to another upstream (another replica).

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
};

use tokio::{
    net::{TcpListener, TcpStream},
    sync::watch,
};

/// A proxy on a loopback port forwarding to one upstream address.
pub struct TcpProxy {
    addr: SocketAddr,
    upstream: Arc<Mutex<SocketAddr>>,
    cut: Arc<AtomicBool>,
    generation: watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl TcpProxy {
    /// Listens on `127.0.0.1:0` and forwards every connection to `upstream`.
    pub async fn start(upstream: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let cut = Arc::new(AtomicBool::new(false));
        let (generation, _) = watch::channel(0u64);
        let upstream = Arc::new(Mutex::new(upstream));
        let task = tokio::spawn(accept_loop(listener, upstream.clone(), cut.clone(), generation.clone()));
        Ok(Self { addr, upstream, cut, generation, task })
    }

    /// Returns the address to give the client instead of the upstream's.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Returns the proxy's address as an `http://` URL (what `--etcd` takes).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Drops every live connection and refuses new ones until [`TcpProxy::heal`].
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
    }

    /// Lets connections through again.
    pub fn heal(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }

    /// Drops every live connection and forwards new ones to `upstream` from now on.
    pub fn redirect(&self, upstream: SocketAddr) {
        *self.upstream.lock().expect("upstream lock") = upstream;
        self.generation.send_modify(|g| *g += 1);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.task.abort();
        self.generation.send_modify(|g| *g += 1);
    }
}

async fn accept_loop(
    listener: TcpListener,
    upstream: Arc<Mutex<SocketAddr>>,
    cut: Arc<AtomicBool>,
    generation: watch::Sender<u64>,
) {
    loop {
        let Ok((mut inbound, _)) = listener.accept().await else { continue };
        if cut.load(Ordering::SeqCst) {
            drop(inbound);
            continue;
        }
        let mut cancelled = generation.subscribe();
        let upstream = *upstream.lock().expect("upstream lock");
        tokio::spawn(async move {
            let Ok(mut outbound) = TcpStream::connect(upstream).await else { return };
            let _ = inbound.set_nodelay(true);
            let _ = outbound.set_nodelay(true);
            tokio::select! {
                _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                _ = cancelled.changed() => {}
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn forwards_until_cut_and_again_after_heal() {
        let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let up = upstream.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = upstream.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut buf = [0u8; 64];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        let proxy = TcpProxy::start(up).await.unwrap();
        let echo = |mut s: TcpStream| async move {
            s.write_all(b"ping").await?;
            let mut buf = [0u8; 4];
            s.read_exact(&mut buf).await?;
            Ok::<_, std::io::Error>((s, buf))
        };
        let (mut live, buf) = echo(TcpStream::connect(proxy.addr()).await.unwrap()).await.unwrap();
        assert_eq!(&buf, b"ping");

        proxy.cut();
        let mut buf = [0u8; 4];
        assert!(matches!(live.read(&mut buf).await, Ok(0) | Err(_)), "a live connection is dropped");
        let refused = echo(TcpStream::connect(proxy.addr()).await.unwrap()).await;
        assert!(refused.is_err(), "a new connection is closed at once");

        proxy.heal();
        let (_, buf) = echo(TcpStream::connect(proxy.addr()).await.unwrap()).await.unwrap();
        assert_eq!(&buf, b"ping");
    }
}
