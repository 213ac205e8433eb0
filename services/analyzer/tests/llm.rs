//! The optional language-model enhancement against a local fake of the OpenAI chat
//! completions API, over http and https: a valid answer refines the analysis; a malformed
//! answer, an error status, a timeout or a certificate that does not verify leaves the
//! rule-based result untouched, with a warning; an API key is never sent over plain http to
//! another machine.

mod corpus;
#[path = "support/fake_llm.rs"]
mod fake_llm;

use std::{path::PathBuf, time::Duration};

use clap::Parser;
use fake_llm::{Reply, fake, fake_https};
use persys_analyzer::{
    analyze_tree, analyze_tree_with,
    config::Cli,
    llm::{Client, LlmConfig},
};

fn config(endpoint: String, ca_file: Option<PathBuf>, timeout: Duration) -> LlmConfig {
    LlmConfig { endpoint, model: "fake-model".into(), api_key: Some(KEY.into()), ca_file, timeout }
}

fn client(endpoint: String, timeout: Duration) -> Client {
    Client::new(config(endpoint, None, timeout))
}

const KEY: &str = "sk-test-0123456789";

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
        (Reply::Hang, Duration::from_millis(300), "no answer in 300ms"),
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

#[tokio::test]
async fn https_with_the_ca_file_refines_the_analysis() {
    let server = fake_https(Reply::Content(GOOD)).await;
    let (tree, meta) = (corpus::tree("go-gin"), corpus::metadata("go-gin"));
    let client =
        Client::try_new(config(server.endpoint.clone(), Some(server.ca_file.clone()), Duration::from_secs(5))).unwrap();
    let result = analyze_tree_with(&tree, &meta, Some(&client)).await.unwrap();
    let facts = result.facts.as_ref().unwrap();
    assert!(facts.llm_enhanced, "{:?}", facts.warnings);
    let persona = result.persona.unwrap();
    assert_eq!(persona.technical.unwrap().description, "Takes payments for the shop and records them in PostgreSQL.");
    assert_eq!(server.seen.lock().unwrap()[0]["model"], "fake-model");
    // The key went, inside TLS.
    assert_eq!(server.authorization.lock().unwrap().as_slice(), [Some(format!("Bearer {KEY}"))]);
}

#[tokio::test]
async fn https_without_the_ca_falls_back_to_the_rules_and_says_why() {
    let server = fake_https(Reply::Content(GOOD)).await;
    let (tree, meta) = (corpus::tree("go-gin"), corpus::metadata("go-gin"));
    let rules = analyze_tree(&tree, &meta).unwrap();
    // The system's roots do not know the fake's throwaway CA.
    let client = Client::try_new(config(server.endpoint.clone(), None, Duration::from_secs(5))).unwrap();
    let result = analyze_tree_with(&tree, &meta, Some(&client)).await.unwrap();
    let facts = result.facts.clone().unwrap();
    assert!(!facts.llm_enhanced);
    let host = server.endpoint.trim_start_matches("https://").trim_end_matches("/v1");
    let warning = facts.warnings.iter().find(|w| w.contains("language model not used")).expect("a warning");
    assert!(
        warning.contains(&format!("request to {host} failed"))
            && warning.contains("certificate")
            && warning.contains("UnknownIssuer")
            && warning.contains("--llm-ca-file"),
        "{warning}"
    );
    assert!(!warning.contains(KEY), "{warning}");
    assert_eq!(result.manifests, rules.manifests, "the fallback must be the rule-based output");
    assert!(server.seen.lock().unwrap().is_empty(), "no request may pass an unverified handshake");
    assert!(server.authorization.lock().unwrap().is_empty(), "the key went to an unverified server");
}

#[tokio::test]
async fn an_unusable_ca_file_says_which() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("missing.pem");
    let e = Client::try_new(config("https://127.0.0.1:1/v1".into(), Some(missing.clone()), Duration::from_secs(1)))
        .err()
        .expect("refused");
    assert!(e.contains(&missing.display().to_string()), "{e}");
    let not_pem = tmp.path().join("not.pem");
    std::fs::write(&not_pem, "not a certificate").unwrap();
    let e = Client::try_new(config("https://127.0.0.1:1/v1".into(), Some(not_pem.clone()), Duration::from_secs(1)))
        .err()
        .expect("refused");
    assert!(e.contains(&not_pem.display().to_string()) && e.contains("no CERTIFICATE"), "{e}");
}

/// The analyzer's flags with the required TLS ones (never read here).
fn serve_args(extra: &[&str]) -> persys_analyzer::config::ServeArgs {
    let mut args = vec!["analyzer", "--tls-ca", "ca.pem", "--tls-cert", "c.pem", "--tls-key", "k.pem"];
    args.extend(extra);
    Cli::try_parse_from(args).unwrap().serve
}

#[tokio::test]
async fn an_api_key_never_goes_over_plain_http_to_another_machine() {
    let tmp = tempfile::tempdir().unwrap();
    let key_file = tmp.path().join("key");
    std::fs::write(&key_file, format!("{KEY}\n")).unwrap();
    let key = key_file.to_str().unwrap();
    // 192.0.2.1 is a documentation address (TEST-NET-1): refused before any connection.
    let e = serve_args(&["--llm-endpoint", "http://192.0.2.1:11434/v1", "--llm-api-key-file", key])
        .llm()
        .unwrap_err()
        .to_string();
    assert!(e.contains("--llm-endpoint") && e.contains("clear text") && e.contains("https://"), "{e}");
    assert!(e.contains("proxy on this machine"), "{e}");
    assert!(!e.contains(KEY), "{e}");
    // Without a key, plain http to another machine (Ollama on a GPU box) is allowed.
    let config = serve_args(&["--llm-endpoint", "http://192.0.2.1:11434/v1"]).llm().unwrap().unwrap();
    assert!(config.api_key.is_none());
    // With a key: https anywhere, http to this machine.
    for endpoint in
        ["https://api.example.com/v1", "http://127.0.0.1:11434/v1", "http://localhost:1234/v1", "http://[::1]:8000/v1"]
    {
        let config =
            serve_args(&["--llm-endpoint", endpoint, "--llm-api-key-file", key]).llm().unwrap().expect("configured");
        assert_eq!(config.api_key.as_deref(), Some(KEY), "{endpoint}");
        assert!(!format!("{config:?}").contains(KEY));
    }
    // A client built anyway refuses the call, without the network, and the rules stand.
    let (tree, meta) = (corpus::tree("go-gin"), corpus::metadata("go-gin"));
    let client = Client::new(config_for("http://192.0.2.1:11434/v1"));
    let result = analyze_tree_with(&tree, &meta, Some(&client)).await.unwrap();
    let facts = result.facts.unwrap();
    assert!(!facts.llm_enhanced);
    assert!(facts.warnings.iter().any(|w| w.contains("language model not used") && w.contains("clear text")));
    assert!(!facts.warnings.iter().any(|w| w.contains(KEY)));
}

fn config_for(endpoint: &str) -> LlmConfig {
    config(endpoint.into(), None, Duration::from_secs(30))
}

#[test]
fn endpoint_and_ca_flags_say_what_to_fix() {
    let e = serve_args(&["--llm-endpoint", "ftp://models.example.com/v1"]).llm().unwrap_err().to_string();
    assert!(e.contains("--llm-endpoint") && e.contains("scheme `ftp`") && e.contains("https://HOST"), "{e}");
    let e = serve_args(&["--llm-endpoint", "api.openai.com/v1"]).llm().unwrap_err().to_string();
    assert!(e.contains("--llm-endpoint") && e.contains("https://HOST"), "{e}");
    let e = serve_args(&["--llm-endpoint", "https://models.internal/v1", "--llm-ca-file", "/nonexistent/ca.pem"])
        .llm()
        .unwrap_err()
        .to_string();
    assert!(e.contains("--llm-ca-file") && e.contains("/nonexistent/ca.pem"), "{e}");
    let config = serve_args(&["--llm-endpoint", "https://api.openai.com/v1"]).llm().unwrap().unwrap();
    assert_eq!((config.endpoint.as_str(), config.ca_file), ("https://api.openai.com/v1", None));
    assert!(serve_args(&[]).llm().unwrap().is_none());
}
