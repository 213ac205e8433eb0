//! `dorgu generate --llm` with the real binary against the analyzer's fake OpenAI server: off by
//! default, the model's answer refines the persona and manifests (over http, and over https
//! with `--llm-ca-file` or `llm.ca_file`), and any failure (an error status, no endpoint
//! configured, a certificate that does not verify, an API key that would go over plain http to
//! another machine) writes the static analysis and says so.

#[path = "../../../services/analyzer/tests/support/fake_llm.rs"]
mod fake_llm;

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

use fake_llm::{Reply, fake, fake_https};

const GOOD: &str = r#"{"description":"Signs and verifies the shop's payment tokens.","type":"api","tier":"critical","min_replicas":3,"max_replicas":8,"target_cpu":60}"#;

const KEY: &str = "sk-test-0123456789abcdef";

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
            .env_remove("DORGU_LLM_API_KEY")
            .env_remove("DORGU_LLM_CA_FILE")
            .env_remove("DORGU_LLM_TIMEOUT")
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
        (vec!["--llm", "--llm-endpoint", "ftp://api.example.com/v1", "--llm-model", "m"], "scheme `ftp`"),
        // A documentation address (TEST-NET-1): refused before any connection.
        (
            vec!["--llm", "--llm-endpoint", "http://192.0.2.1:11434/v1", "--llm-model", "m", "--llm-api-key", KEY],
            "clear text",
        ),
        (
            vec![
                "--llm",
                "--llm-endpoint",
                "https://127.0.0.1:1/v1",
                "--llm-model",
                "m",
                "--llm-ca-file",
                "/nonexistent/ca.pem",
            ],
            "/nonexistent/ca.pem",
        ),
    ];
    for (i, (flags, why)) in cases.into_iter().enumerate() {
        let dir = tmp.path().join(format!("case{i}")).display().to_string();
        let mut a = vec!["generate", app.as_str(), "-o", dir.as_str()];
        a.extend(flags);
        let out = stdout(&dorgu(tmp.path(), &a).await);
        assert!(out.contains("language model not used (") && out.contains(why), "{why}: {out}");
        assert!(!out.contains(KEY), "{why}: the key is printed: {out}");
        for f in ["deployment.yaml", "hpa.yaml", "persona.yaml"] {
            assert_eq!(
                file(Path::new(&dir), f),
                file(Path::new(&plain), f),
                "{why}: {f} differs from the static output"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn https_needs_the_private_ca_from_the_flag_or_the_config() {
    let server = fake_https(Reply::Content(GOOD)).await;
    let tmp = tempfile::tempdir().unwrap();
    let app = app().display().to_string();
    let ca = server.ca_file.display().to_string();
    let plain = tmp.path().join("plain").display().to_string();
    stdout(&dorgu(tmp.path(), &["generate", &app, "-o", &plain]).await);
    let llm = ["--llm", "--llm-endpoint", server.endpoint.as_str(), "--llm-model", "m", "--llm-api-key", KEY];
    let run = |name: &str, extra: &[&str]| {
        let dir = tmp.path().join(name).display().to_string();
        let mut a = vec!["generate".to_owned(), app.clone(), "-o".into(), dir];
        a.extend(llm.iter().chain(extra).map(|s| (*s).to_owned()));
        a
    };

    // Without the CA: the handshake fails, nothing is sent, the static output stands.
    let a = run("untrusted", &[]);
    let out = stdout(&dorgu(tmp.path(), &a.iter().map(String::as_str).collect::<Vec<_>>()).await);
    assert!(
        out.contains("language model not used (")
            && out.contains("invalid peer certificate")
            && out.contains("--llm-ca-file"),
        "{out}"
    );
    assert!(!out.contains(KEY), "{out}");
    assert!(server.authorization.lock().unwrap().is_empty(), "the key went to an unverified server");
    let untrusted = tmp.path().join("untrusted");
    assert_eq!(file(&untrusted, "hpa.yaml"), file(Path::new(&plain), "hpa.yaml"));

    // With --llm-ca-file: the key goes inside TLS and the answer is used.
    let a = run("flag", &["--llm-ca-file", &ca]);
    let out = stdout(&dorgu(tmp.path(), &a.iter().map(String::as_str).collect::<Vec<_>>()).await);
    assert!(out.contains("refined by the language model"), "{out}");
    assert!(file(&tmp.path().join("flag"), "persona.yaml").contains("Signs and verifies the shop's payment tokens."));
    assert_eq!(server.authorization.lock().unwrap().as_slice(), [Some(format!("Bearer {KEY}"))]);

    // With llm.ca_file in the global config: the same, from another directory.
    let not_pem = tmp.path().join("not.pem");
    std::fs::write(&not_pem, "not a certificate").unwrap();
    let refused = dorgu(tmp.path(), &["config", "set", "llm.ca_file", not_pem.to_str().unwrap()]).await;
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("llm.ca_file"), "{refused:?}");
    stdout(&dorgu(tmp.path(), &["config", "set", "llm.ca_file", &ca]).await);
    assert_eq!(stdout(&dorgu(tmp.path(), &["config", "get", "llm.ca_file"]).await).trim(), ca);
    let a = run("config", &[]);
    let out = stdout(&dorgu(tmp.path(), &a.iter().map(String::as_str).collect::<Vec<_>>()).await);
    assert!(out.contains("refined by the language model"), "{out}");
    assert_eq!(server.seen.lock().unwrap().len(), 2);
    // An empty value clears it.
    stdout(&dorgu(tmp.path(), &["config", "set", "llm.ca_file", ""]).await);
    assert_eq!(stdout(&dorgu(tmp.path(), &["config", "get", "llm.ca_file"]).await).trim(), "");
}
