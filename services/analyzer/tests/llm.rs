//! The optional language-model enhancement against a local fake of the OpenAI chat
//! completions API: a valid answer refines the analysis; a malformed answer, an error status
//! or a timeout leaves the rule-based result untouched, with a warning.

mod corpus;
#[path = "support/fake_llm.rs"]
mod fake_llm;

use std::time::Duration;

use fake_llm::{Reply, fake};
use persys_analyzer::{
    analyze_tree, analyze_tree_with,
    llm::{Client, LlmConfig},
};

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
