use super::*;

/// The one app of a tree of `(path, content)` files, and the analysis warnings.
fn app_of(files: &[(&str, &str)]) -> (App, Vec<String>) {
    let mut tree = crate::tree::SourceTree::new();
    for (path, text) in files {
        tree.insert(path, text.as_bytes().to_vec()).unwrap();
    }
    let analysis = crate::analysis::analyze(&tree, &crate::analysis::Options::default()).unwrap();
    (analysis.apps[analysis.primary].clone(), analysis.warnings)
}

fn http(path: &str, port: u16) -> Probe {
    Probe::Http { path: path.into(), readiness: path.into(), port }
}

#[test]
fn healthcheck_variables_come_from_the_container_environment() {
    let dockerfile = "FROM python:3.12-slim\nENV PORT=8080\nUSER 1000\nEXPOSE 8080\n\
        HEALTHCHECK CMD curl -fsS http://localhost:$PORT/status || exit 1\n";
    let (app, warnings) = app_of(&[("Dockerfile", dockerfile)]);
    assert_eq!(app.probe, http("/status", 8080));
    assert!(warnings.iter().all(|w| !w.contains("build argument")), "{warnings:?}");
    // compose `environment` is what the container runs with, so it wins over the image's ENV.
    let compose = "services:\n  app:\n    build: .\n    environment:\n      PORT: \"7001\"\n    ports: [\"7001\"]\n";
    let (app, _) = app_of(&[("Dockerfile", dockerfile), ("compose.yaml", compose)]);
    assert_eq!(app.probe, http("/status", 7001));
    // The image still EXPOSEs 8080, a well-known HTTP port: second in line, so it is renamed.
    let names: Vec<_> = app.ports.iter().map(|p| (p.name.as_str(), p.port)).collect();
    assert_eq!(names, [("http", 7001), ("http-8080", 8080)]);
}

#[test]
fn a_build_argument_in_a_healthcheck_is_used_with_a_warning() {
    let dockerfile = "FROM alpine\nARG ADMIN_PORT=9000\nUSER 1000\nEXPOSE 9000\n\
        HEALTHCHECK CMD wget -qO- http://127.0.0.1:${ADMIN_PORT}/ready\n";
    let (app, warnings) = app_of(&[("Dockerfile", dockerfile)]);
    assert_eq!(app.probe, http("/ready", 9000));
    assert!(warnings.iter().any(|w| w.contains("$ADMIN_PORT, a build argument")), "{warnings:?}");
}

#[test]
fn unresolvable_or_secret_healthcheck_urls_stay_commands() {
    for check in
        ["curl -f http://localhost:$UNSET/status", "curl -f \"http://localhost:8080/health?token=$HEALTH_TOKEN\""]
    {
        let dockerfile =
            format!("FROM alpine\nENV HEALTH_TOKEN=s3cr3t-value\nUSER 1000\nEXPOSE 8080\nHEALTHCHECK CMD {check}\n");
        let (app, _) = app_of(&[("Dockerfile", &dockerfile)]);
        assert_eq!(app.probe, Probe::Exec(vec!["/bin/sh".into(), "-c".into(), check.into()]), "{check}");
    }
}

#[test]
fn a_code_health_route_is_probed_over_http_only_on_an_http_port() {
    let app_py =
        "from flask import Flask\napp = Flask(__name__)\n@app.route(\"/health\")\ndef h():\n    return \"ok\"\n";
    let source = [("requirements.txt", "flask==3.0.3\n"), ("app.py", app_py)];
    // Two TCP ports, neither the framework's: no evidence which one serves HTTP.
    let dockerfile = "FROM python:3.12-slim\nUSER 1000\nEXPOSE 7000 7001\n";
    let (app, _) = app_of(&[source[0], source[1], ("Dockerfile", dockerfile)]);
    assert_eq!(app.probe, Probe::Tcp(7000));
    assert!(app.notes.iter().any(|n| n.contains("has shown no sign of HTTP")), "{:?}", app.notes);
    // The only TCP port of a Flask app, beside a UDP one: HTTP there, never on the UDP port.
    let dockerfile = "FROM python:3.12-slim\nUSER 1000\nEXPOSE 8125/udp 7000\n";
    let (app, _) = app_of(&[source[0], source[1], ("Dockerfile", dockerfile)]);
    assert_eq!(app.probe, http("/health", 7000));
}

#[test]
fn an_app_serving_udp_only_gets_no_probe() {
    let (app, _) = app_of(&[("Dockerfile", "FROM alpine\nUSER 1000\nEXPOSE 53/udp\n")]);
    assert_eq!(app.probe, Probe::None);
    assert!(app.notes.iter().any(|n| n.contains("UDP only")), "{:?}", app.notes);
}

fn mentions_host(value: &str, host: &str) -> bool {
    hosts_in(value, host.len()).contains(&host)
}

#[test]
fn host_mentions() {
    assert!(mentions_host("postgres://db:5432/app", "db"));
    assert!(mentions_host("cache:6379", "cache"));
    assert!(mentions_host("http://api/", "api"));
    assert!(mentions_host("DB=db", "db"));
    assert!(!mentions_host("postgres://dbhost:5432", "db"));
    assert!(!mentions_host("mydb", "db"));
    assert!(!mentions_host("db=x", "db"));
}

/// What the wiring matched before it looked names up: every occurrence of the host searched
/// for, with a delimiter or nothing on each side.
fn mentions_host_by_search(value: &str, host: &str) -> bool {
    value == host
        || value.match_indices(host).any(|(i, _)| {
            let before = value[..i].chars().last();
            let after = value[i + host.len()..].chars().next();
            before.is_none_or(|c| matches!(c, '/' | '@' | ',' | ' ' | '='))
                && after.is_none_or(|c| matches!(c, ':' | '/' | ',' | ' '))
        })
}

proptest::proptest! {
    #[test]
    fn host_lookup_matches_searching_for_each_host(value in "[ab./:@,= é]{0,24}", host in "[ab.é]{0,4}") {
        proptest::prop_assert_eq!(mentions_host(&value, &host), mentions_host_by_search(&value, &host));
    }
}

#[test]
fn framework_environment_is_wired_by_need() {
    let settings = "import os\nREGION = os.environ['REGION']\nLOG = os.getenv('LOG_LEVEL', 'info')\n\
        DB = os.getenv('DATABASE_URL', 'postgres://dev:hunter2@localhost/dev')\nKEY = os.environ['API_TOKEN']\n\
        HOST = os.getenv('PUBLIC_HOST')\nBAKED = os.environ['BAKED']\n";
    let dockerfile = "FROM python:3.12-slim\nENV BAKED=yes\nUSER 1000\nEXPOSE 8000\n";
    let (app, warnings) =
        app_of(&[("requirements.txt", "flask\n"), ("app/settings.py", settings), ("Dockerfile", dockerfile)]);
    assert_eq!(app.env.get("REGION"), Some(&EnvValue::ConfigKey));
    assert!(warnings.iter().any(|w| w.contains("REGION is required (app/settings.py:2)")), "{warnings:?}");
    assert_eq!(app.env.get("LOG_LEVEL"), Some(&EnvValue::Plain("info".into())));
    // A default that holds credentials is never written: the Secret may hold the real value.
    assert_eq!(app.env.get("DATABASE_URL"), Some(&EnvValue::Secret { optional: true }));
    assert_eq!(app.env.get("API_TOKEN"), Some(&EnvValue::Secret { optional: false }));
    assert!(app.env_unset.contains("PUBLIC_HOST") && !app.env.contains_key("PUBLIC_HOST"));
    // The image sets it, so the Deployment leaves it alone.
    assert!(!app.env.contains_key("BAKED"));
    let dir = crate::generate::generate(&{
        let mut tree = crate::tree::SourceTree::new();
        for (p, t) in [("requirements.txt", "flask\n"), ("app/settings.py", settings), ("Dockerfile", dockerfile)] {
            tree.insert(p, t.as_bytes().to_vec()).unwrap();
        }
        crate::analysis::analyze(&tree, &crate::analysis::Options { name: "shop".into(), ..Default::default() })
            .unwrap()
    });
    let deployment = &dir.iter().find(|f| f.path == "deployment.yaml").unwrap().content;
    assert!(
        deployment.contains("configMapKeyRef:\n              key: REGION\n              name: shop-config"),
        "{deployment}"
    );
    let all: String = dir.iter().map(|f| f.content.as_str()).collect();
    assert!(!all.contains("hunter2"), "a default credential reached the output");
    let config = &dir.iter().find(|f| f.path == "configmap.yaml").unwrap().content;
    assert!(config.contains("LOG_LEVEL: info") && !config.contains("REGION"), "{config}");
}

#[test]
fn compose_notes_name_the_key_and_its_line() {
    // Lines: 6 `user`, 7 `environment`, 13 the api's `command`; the worker's comes from `x-w`.
    let compose = "x-w: &w\n  command: run\nservices:\n  web:\n    image: acme/web\n    user: \"1000\"\n    environment:\n      PORT: \"8000\"\n      API_URL: http://api:9000/v1\n    env_file: web.env\n  api:\n    image: acme/api\n    command: [\"serve\"]\n  worker:\n    <<: *w\n    image: acme/worker\n";
    let mut tree = crate::tree::SourceTree::new();
    tree.insert("compose.yaml", compose.as_bytes().to_vec()).unwrap();
    tree.insert("web.env", b"CACHE_URL=redis://worker:6379\n".to_vec()).unwrap();
    let analysis = crate::analysis::analyze(&tree, &crate::analysis::Options::default()).unwrap();
    let notes = |name: &str| analysis.apps.iter().find(|a| a.name == name).unwrap().notes.join("\n");
    let web = notes("web");
    assert!(web.contains("port 8000/tcp (PORT in services.web.environment at compose.yaml:7)"), "{web}");
    assert!(web.contains("runs as uid 1000: services.web.user at compose.yaml:6"), "{web}");
    assert!(
        web.contains("reaches api: the host name in API_URL, from services.web.environment at compose.yaml:7"),
        "{web}"
    );
    assert!(web.contains("reaches worker: the host name in CACHE_URL, from the env_file web.env"), "{web}");
    let api = notes("api");
    assert!(api.contains("no ports: services.api.command at compose.yaml:13 replaces"), "{api}");
    // A command merged in from `x-w` is written elsewhere: the key and the file, no line.
    let worker = notes("worker");
    assert!(worker.contains("no ports: services.worker.command in compose.yaml replaces"), "{worker}");
}
