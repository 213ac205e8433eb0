//! A local fake of the OpenAI chat completions API (`POST /v1/chat/completions`), for the
//! tests of the language-model enhancement: the analyzer's own and dorgu's `--llm`. Shared by
//! path so there is one fake.

#![allow(dead_code)]

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
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

/// A minimal HTTP/1.1 server answering `POST /v1/chat/completions` like OpenAI does; records
/// the request bodies it receives. Returns the base URL (`http://127.0.0.1:PORT/v1`).
pub async fn fake(reply: Reply) -> (String, Arc<Mutex<Vec<serde_json::Value>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else { return };
            let reply = reply.clone();
            let record = record.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let (head_end, length) = loop {
                    let n = sock.read(&mut chunk).await.unwrap();
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..i]).to_ascii_lowercase();
                        assert!(head.starts_with("post /v1/chat/completions "), "{head}");
                        let len = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .map_or(0, |v| v.trim().parse::<usize>().unwrap());
                        break (i + 4, len);
                    }
                };
                while buf.len() < head_end + length {
                    let n = sock.read(&mut chunk).await.unwrap();
                    buf.extend_from_slice(&chunk[..n]);
                }
                record.lock().unwrap().push(serde_json::from_slice(&buf[head_end..head_end + length]).unwrap());
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
            });
        }
    });
    (format!("http://{addr}/v1"), seen)
}
