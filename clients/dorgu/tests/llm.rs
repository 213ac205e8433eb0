//! `dorgu generate --llm` with the real binary against the analyzer's fake OpenAI server: off by
//! default, the model's answer refines the persona and manifests, and any failure (an error
//! status, no endpoint configured) writes the static analysis and says so.

#[path = "../../../services/analyzer/tests/support/fake_llm.rs"]
mod fake_llm;

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

use fake_llm::{Reply, fake};

const GOOD: &str = r#"{"description":"Signs and verifies the shop's payment tokens.","type":"api","tier":"critical","min_replicas":3,"max_replicas":8,"target_cpu":60}"#;

fn app() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../services/analyzer/tests/fixtures/go-gin")
}

/// Runs dorgu off the runtime's threads, so the fake keeps answering.
async fn dorgu(config_dir: &Path, args: &[&str]) -> Output {
    let (dir, args) = (config_dir.to_owned(), args.iter().map(|a| (*a).to_owned()).collect::<Vec<_>>());
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_dorgu"))
            .args(&args)
            .env("DORGU_CONFIG_DIR", &dir)
            .env_remove("DORGU_LLM")
            .env_remove("DORGU_LLM_ENDPOINT")
            .env_remove("DORGU_LLM_MODEL")
            .output()
            .expect("dorgu runs")
    })
    .await
    .unwrap()
}

fn stdout(out: &Output) -> String {
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn file(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_model_refines_the_output_only_when_asked() {
    let (endpoint, seen) = fake(Reply::Content(GOOD)).await;
    let tmp = tempfile::tempdir().unwrap();
    let app = app();
    stdout(&dorgu(tmp.path(), &["config", "set", "llm.endpoint", &endpoint]).await);
    stdout(&dorgu(tmp.path(), &["config", "set", "llm.model", "fake-model"]).await);
    let plain = tmp.path().join("plain");
    let args =
        |out: &Path| vec!["generate".to_owned(), app.display().to_string(), "-o".into(), out.display().to_string()];
    let a = args(&plain);
    stdout(&dorgu(tmp.path(), &a.iter().map(String::as_str).collect::<Vec<_>>()).await);
    assert!(seen.lock().unwrap().is_empty(), "the model was asked without --llm");

    let refined = tmp.path().join("refined");
    let mut a = args(&refined);
    a.push("--llm".into());
    let out = stdout(&dorgu(tmp.path(), &a.iter().map(String::as_str).collect::<Vec<_>>()).await);
    assert!(out.contains("refined by the language model"), "{out}");
    assert_eq!(seen.lock().unwrap()[0]["model"], "fake-model");
    assert!(file(&refined, "persona.yaml").contains("Signs and verifies the shop's payment tokens."));
    assert!(file(&refined, "hpa.yaml").contains("minReplicas: 3"));
    assert_ne!(file(&refined, "hpa.yaml"), file(&plain, "hpa.yaml"));
}

#[tokio::test(flavor = "multi_thread")]
async fn any_failure_writes_the_static_analysis_and_says_so() {
    let (endpoint, _) = fake(Reply::Status(503)).await;
    let tmp = tempfile::tempdir().unwrap();
    let app = app().display().to_string();
    let plain = tmp.path().join("plain").display().to_string();
    stdout(&dorgu(tmp.path(), &["generate", &app, "-o", &plain]).await);
    let cases = [
        (vec!["--llm", "--llm-endpoint", endpoint.as_str(), "--llm-model", "m"], "endpoint answered 503"),
        (vec!["--llm", "--llm-model", "m"], "no endpoint: give --llm-endpoint"),
        (vec!["--llm", "--llm-endpoint", "https://api.example.com/v1", "--llm-model", "m"], "not an http:// URL"),
    ];
    for (i, (flags, why)) in cases.into_iter().enumerate() {
        let dir = tmp.path().join(format!("case{i}")).display().to_string();
        let mut a = vec!["generate", app.as_str(), "-o", dir.as_str()];
        a.extend(flags);
        let out = stdout(&dorgu(tmp.path(), &a).await);
        assert!(out.contains("language model not used (") && out.contains(why), "{why}: {out}");
        for f in ["deployment.yaml", "hpa.yaml", "persona.yaml"] {
            assert_eq!(
                file(Path::new(&dir), f),
                file(Path::new(&plain), f),
                "{why}: {f} differs from the static output"
            );
        }
    }
}
