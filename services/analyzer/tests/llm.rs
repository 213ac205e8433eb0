//! The optional language-model enhancement against a local fake of the OpenAI chat
//! completions API: a valid answer refines the analysis; a malformed answer, an error status
//! or a timeout leaves the rule-based result untouched, with a warning.

mod corpus;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use persys_analyzer::{
    analyze_tree, analyze_tree_with,
    llm::{Client, LlmConfig},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};

/// How the fake answers.
#[derive(Clone)]
enum Reply {
    Content(&'static str),
    Status(u16),
    Hang,
}

/// A minimal HTTP/1.1 server answering `POST /v1/chat/completions` like OpenAI does; records
/// the request bodies it receives.
async fn fake(reply: Reply) -> (String, Arc<Mutex<Vec<serde_json::Value>>>) {
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

fn client(endpoint: String, timeout: Duration) -> Client {
    Client::new(LlmConfig { endpoint, model: "fake-model".into(), api_key: Some("k".into()), timeout })
}

const GOOD: &str = r#"{"description":"Takes payments for the shop and records them in PostgreSQL.","type":"api","tier":"critical","min_replicas":3,"max_replicas":8,"target_cpu":60}"#;

#[tokio::test]
async fn a_valid_answer_refines_the_analysis() {
    let (endpoint, seen) = fake(Reply::Content(GOOD)).await;
    let (tree, meta) = (corpus::tree("go-gin"), corpus::metadata("go-gin"));
    let result = analyze_tree_with(&tree, &meta, Some(&client(endpoint, Duration::from_secs(5)))).await.unwrap();
    assert!(result.facts.as_ref().unwrap().llm_enhanced);
    let persona = result.persona.unwrap();
    assert_eq!(persona.technical.unwrap().description, "Takes payments for the shop and records them in PostgreSQL.");
    assert_eq!((persona.scaling.as_ref().unwrap().min_replicas, persona.scaling.unwrap().max_replicas), (3, 8));
    let hpa = result.manifests.iter().find(|m| m.kind == "HorizontalPodAutoscaler").unwrap();
    assert!(hpa.content.contains("minReplicas: 3") && hpa.content.contains("averageUtilization: 60"));
    let request = seen.lock().unwrap()[0].clone();
    assert_eq!(request["model"], "fake-model");
    assert_eq!(request["response_format"]["type"], "json_schema");
    assert_eq!(request["response_format"]["json_schema"]["strict"], true);
    assert_eq!(request["response_format"]["json_schema"]["schema"]["additionalProperties"], false);
}

#[tokio::test]
async fn any_failure_falls_back_to_the_rules() {
    let (tree, meta) = (corpus::tree("go-gin"), corpus::metadata("go-gin"));
    let rules = analyze_tree(&tree, &meta).unwrap();
    let bad_json =
        r#"{"description":"x","type":"database","tier":"critical","min_replicas":3,"max_replicas":8,"target_cpu":60}"#;
    for (reply, timeout, why) in [
        (Reply::Content("I think it is an API."), Duration::from_secs(5), "answer is not the schema"),
        (Reply::Content(bad_json), Duration::from_secs(5), "not api, web or worker"),
        (Reply::Status(503), Duration::from_secs(5), "503"),
        (Reply::Hang, Duration::from_millis(300), "no answer within"),
    ] {
        let (endpoint, _) = fake(reply).await;
        let result = analyze_tree_with(&tree, &meta, Some(&client(endpoint, timeout))).await.unwrap();
        let facts = result.facts.clone().unwrap();
        assert!(!facts.llm_enhanced, "{why}");
        assert!(
            facts.warnings.iter().any(|w| w.contains("language model not used") && w.contains(why)),
            "{why}: {:?}",
            facts.warnings
        );
        assert_eq!(result.manifests, rules.manifests, "{why}: the fallback must be the rule-based output");
    }
}
