//! A local fake of the OpenAI chat completions API (`POST /v1/chat/completions`), for the
//! tests of the language-model enhancement: the analyzer's own and dorgu's `--llm`. Shared by
//! path so there is one fake. It speaks plain http ([`fake`]) or https with a throwaway CA
//! ([`fake_https`]).

#![allow(dead_code)]

use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::TcpListener,
};

/// How the fake answers.
#[derive(Clone)]
pub enum Reply {
    /// A 200 answer whose message content is this.
    Content(&'static str),
    /// This error status.
    Status(u16),
    /// No answer for 30 seconds.
    Hang,
}

/// The request bodies received, in order.
pub type Seen = Arc<Mutex<Vec<serde_json::Value>>>;

/// A minimal HTTP/1.1 server answering `POST /v1/chat/completions` like OpenAI does; records
/// the request bodies it receives. Returns the base URL (`http://127.0.0.1:PORT/v1`).
pub async fn fake(reply: Reply) -> (String, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let recorded = Recorded::default();
    tokio::spawn(accept(listener, None, reply, recorded.clone()));
    (format!("http://{addr}/v1"), recorded.bodies)
}

/// The https fake: where it is, what it received, and the CA its certificate chains to.
pub struct Https {
    /// `https://127.0.0.1:PORT/v1`.
    pub endpoint: String,
    /// The request bodies received.
    pub seen: Seen,
    /// The `authorization` header of each request received (TLS handshakes that failed are
    /// not requests).
    pub authorization: Arc<Mutex<Vec<Option<String>>>>,
    /// PEM file of the throwaway CA that issued the server's certificate (for 127.0.0.1).
    pub ca_file: PathBuf,
    _dir: tempfile::TempDir,
}

/// The fake behind TLS: a CA made for this server alone issues its certificate, so only a
/// client given [`Https::ca_file`] can verify it.
pub async fn fake_https(reply: Reply) -> Https {
    let dir = tempfile::tempdir().unwrap();
    let ca = persys_kit::pki::Ca::generate("fake-llm-ca", Duration::from_secs(3600)).unwrap();
    let leaf = ca
        .issue(&persys_kit::pki::LeafRequest {
            identity: persys_kit::Identity::Service("fake-llm".into()),
            dns_names: vec!["localhost".into()],
            ips: vec!["127.0.0.1".parse().unwrap()],
            validity: Duration::from_secs(3600),
        })
        .unwrap();
    let paths = persys_kit::tls::TlsPaths {
        ca: dir.path().join("ca.pem"),
        cert: dir.path().join("fake-llm.pem"),
        key: dir.path().join("fake-llm.key"),
    };
    std::fs::write(&paths.ca, ca.cert_pem()).unwrap();
    std::fs::write(&paths.cert, leaf.cert_pem).unwrap();
    std::fs::write(&paths.key, leaf.key_pem).unwrap();
    let ca_file = paths.ca.clone();
    // A public endpoint: no client certificate asked for.
    let config = persys_kit::tls::Tls::load(paths).unwrap().server_config_with(&[b"http/1.1"], false);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let recorded = Recorded::default();
    tokio::spawn(accept(listener, Some(tokio_rustls::TlsAcceptor::from(config)), reply, recorded.clone()));
    Https {
        endpoint: format!("https://{addr}/v1"),
        seen: recorded.bodies,
        authorization: recorded.authorization,
        ca_file,
        _dir: dir,
    }
}

#[derive(Clone, Default)]
struct Recorded {
    bodies: Seen,
    authorization: Arc<Mutex<Vec<Option<String>>>>,
}

async fn accept(listener: TcpListener, tls: Option<tokio_rustls::TlsAcceptor>, reply: Reply, recorded: Recorded) {
    loop {
        let Ok((sock, _)) = listener.accept().await else { return };
        let (reply, recorded, tls) = (reply.clone(), recorded.clone(), tls.clone());
        tokio::spawn(async move {
            match tls {
                // A client that does not trust the certificate ends the handshake: no request.
                Some(acceptor) => {
                    if let Ok(stream) = acceptor.accept(sock).await {
                        answer(stream, reply, recorded).await;
                    }
                }
                None => answer(sock, reply, recorded).await,
            }
        });
    }
}

async fn answer(mut sock: impl AsyncRead + AsyncWrite + Unpin, reply: Reply, recorded: Recorded) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let (head_end, length) = loop {
        let n = sock.read(&mut chunk).await.unwrap();
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..i]).into_owned();
            assert!(head.to_ascii_lowercase().starts_with("post /v1/chat/completions "), "{head}");
            let header = |name: &str| {
                head.lines().find_map(|l| {
                    let (n, v) = l.split_once(':')?;
                    n.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
                })
            };
            recorded.authorization.lock().unwrap().push(header("authorization"));
            let len = header("content-length").map_or(0, |v| v.parse::<usize>().unwrap());
            break (i + 4, len);
        }
    };
    while buf.len() < head_end + length {
        let n = sock.read(&mut chunk).await.unwrap();
        assert!(n > 0, "the request body ended early");
        buf.extend_from_slice(&chunk[..n]);
    }
    recorded.bodies.lock().unwrap().push(serde_json::from_slice(&buf[head_end..head_end + length]).unwrap());
    let (status, body) = match reply {
        Reply::Hang => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            return;
        }
        Reply::Status(s) => (s, r#"{"error":{"message":"overloaded"}}"#.to_owned()),
        Reply::Content(c) => (
            200,
            serde_json::json!({
                "id": "chatcmpl-1", "object": "chat.completion", "model": "fake",
                "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": c}}]
            })
            .to_string(),
        ),
    };
    let response = format!(
        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = sock.write_all(response.as_bytes()).await;
    let _ = sock.shutdown().await;
}
