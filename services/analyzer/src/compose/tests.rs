use super::*;

fn parse_ok(text: &str) -> ComposeFile {
    parse(text, "docker-compose.yml", BTreeMap::new()).unwrap_or_else(|e| panic!("{e}")).file
}

fn parse_err(text: &str) -> ComposeError {
    parse(text, "docker-compose.yml", BTreeMap::new()).unwrap_err()
}

#[test]
fn reads_the_spec_subset() {
    let text = r#"
x-common: &common
  restart: unless-stopped
name: shop
services:
  web:
    build:
      context: ./web
      dockerfile: Dockerfile.prod
      args: ["A=1"]
    ports:
      - "8080:80"
      - 9000-9001:3000-3001/udp
      - "127.0.0.1:5000:5000"
      - "[::1]:6001:6001"
      - target: 443
        published: "8443"
        protocol: tcp
        app_protocol: https
    environment:
      - MODE=prod
      - FROM_SHELL
    env_file:
      - .env.web
      - path: ./optional.env
        required: false
    depends_on:
      db:
        condition: service_healthy
      cache:
    healthcheck:
      test: ["CMD", "curl", "-f", "http://localhost:80/healthz"]
      interval: 1m30s
      retries: 3
    volumes:
      - static:/srv/static:ro
      - ./conf:/etc/conf
      - /scratch
      - type: tmpfs
        target: /tmp
    deploy:
      replicas: 3
      resources:
        limits: {cpus: "0.5", memory: 512M}
        reservations: {cpus: 0.25, memory: 128M}
    profiles: [default]
    x-note: ignored
    <<: *common
  db:
    image: postgres:16
    environment:
      POSTGRES_PASSWORD: secret
      PORT: 5432
    healthcheck:
      test: pg_isready -U app
  cache:
    image: redis:7
    privileged: true
volumes:
  static:
  data:
    driver: local
"#;
    let f = parse_ok(text);
    assert_eq!(f.name.as_deref(), Some("shop"));
    let web = &f.services["web"];
    let build = web.build.as_ref().unwrap();
    assert_eq!((build.context.as_str(), build.dockerfile.as_deref()), ("./web", Some("Dockerfile.prod")));
    let targets: Vec<_> = web.ports.iter().map(|p| (p.target, p.published.clone(), p.udp)).collect();
    assert_eq!(
        targets,
        [
            (80, Some("8080".into()), false),
            (3000, Some("9000".into()), true),
            (3001, Some("9001".into()), true),
            (5000, Some("5000".into()), false),
            (6001, Some("6001".into()), false),
            (443, Some("8443".into()), false),
        ]
    );
    assert_eq!(web.ports[3].host_ip.as_deref(), Some("127.0.0.1"));
    assert_eq!(web.ports[4].host_ip.as_deref(), Some("::1"));
    assert_eq!(web.environment["MODE"].as_deref(), Some("prod"));
    assert_eq!(web.environment["FROM_SHELL"], None);
    assert_eq!(
        web.env_files,
        [
            EnvFile { path: ".env.web".into(), required: true },
            EnvFile { path: "./optional.env".into(), required: false }
        ]
    );
    assert_eq!(web.depends_on["db"].condition, "service_healthy");
    assert_eq!(web.depends_on["cache"].condition, "service_started");
    let hc = web.healthcheck.as_ref().unwrap();
    assert_eq!(hc.test, HealthTest::Exec(vec!["curl".into(), "-f".into(), "http://localhost:80/healthz".into()]));
    assert_eq!(hc.interval_secs, Some(90));
    let kinds: Vec<_> =
        web.volumes.iter().map(|v| (v.kind.clone(), v.source.as_str(), v.target.as_str(), v.read_only)).collect();
    assert_eq!(
        kinds,
        [
            (VolumeKind::Volume, "static", "/srv/static", true),
            (VolumeKind::Bind, "./conf", "/etc/conf", false),
            (VolumeKind::Volume, "", "/scratch", false),
            (VolumeKind::Tmpfs, "", "/tmp", false),
        ]
    );
    let deploy = web.deploy.as_ref().unwrap();
    assert_eq!(deploy.replicas, Some(3));
    assert_eq!(deploy.limits.as_ref().unwrap().memory.as_ref().unwrap().0, "512M");
    assert_eq!(deploy.reservations.as_ref().unwrap().cpus.as_ref().unwrap().0, "0.25");
    assert_eq!(web.profiles, ["default"]);
    assert_eq!(f.services["db"].environment["PORT"].as_deref(), Some("5432"));
    assert_eq!(f.services["db"].healthcheck.as_ref().unwrap().test, HealthTest::Shell("pg_isready -U app".into()));
    assert_eq!(f.services["cache"].ignored, ["privileged"]);
    assert_eq!(f.volumes.keys().collect::<Vec<_>>(), ["data", "static"]);
}

#[test]
fn interpolates_from_dotenv() {
    let env = parse_dotenv("TAG=16\nWEB_PORT=8081");
    let text = "services:\n  db:\n    image: postgres:${TAG}\n    ports: [\"${WEB_PORT}:80\"]\n    environment: [\"X=${MISSING}\", \"Y=$$literal\"]\n";
    let parsed = parse(text, "compose.yaml", env).unwrap();
    let db = &parsed.file.services["db"];
    assert_eq!(db.image.as_deref(), Some("postgres:16"));
    assert_eq!(db.ports[0].published.as_deref(), Some("8081"));
    assert_eq!(db.environment["Y"].as_deref(), Some("$literal"));
    assert_eq!(parsed.unset_variables, ["MISSING"]);
}

#[test]
fn merge_keys_are_resolved() {
    let text = "x-base: &base\n  image: redis:7\n  ports: [\"6379\"]\nservices:\n  cache:\n    <<: *base\n";
    let f = parse_ok(text);
    assert_eq!(f.services["cache"].image.as_deref(), Some("redis:7"));
    assert_eq!(f.services["cache"].ports[0].target, 6379);
}

#[test]
fn errors_name_file_line_and_key() {
    let cases = [
        ("services:\n  web:\n    image: x\n    ports:\n      - \"80:http\"\n", 5, "services.web.ports[0]"),
        ("services:\n  web:\n    image: x\n    bogus: 1\n", 4, "unknown service attribute `bogus`"),
        (
            "services:\n  web:\n    image: x\n    deploy:\n      replicas: many\n",
            5,
            "services.web.deploy.replicas: `many` is not a whole number",
        ),
        ("services:\n  web:\n    image: [x\n", 3, ""),
        ("services:\n  web:\n    build: .\n    depends_on: [db]\n", 2, "`db` is not a service"),
        ("services:\n  web:\n    ports: [\"80\"]\n", 2, "neither `image` nor `build`"),
        ("servics:\n  web: {}\n", 2, "unknown top-level key `servics`"),
        ("services:\n  web:\n    image: x\n    healthcheck:\n      test: [\"BOGUS\"]\n", 5, "CMD, CMD-SHELL or NONE"),
        ("", 1, "empty"),
    ];
    for (text, line, needle) in cases {
        let e = parse_err(text);
        assert_eq!((e.file.as_str(), e.line), ("docker-compose.yml", line), "{text}: {e}");
        assert!(e.message.contains(needle), "{text}: {}", e.message);
    }
}

#[test]
fn yaml_11_words_and_octals_stay_the_strings_written() {
    // Compose reads YAML 1.2: none of these is a boolean or a number (serde_yaml agreed).
    let text = "services:\n  web:\n    image: x\n    command: [\"--tls\", on, no, 0755, 1:30, y]\n    environment:\n      A: on\n      B: 0755\n      C: 1_000\n      D: .inf\n      E: yes\n    privileged: false\n    cap_add: [NET_ADMIN]\nvolumes:\n  data:\n    external: {name: shared}\n  local: {}\n";
    let f = parse_ok(text);
    let web = &f.services["web"];
    let args: Vec<String> = ["--tls", "on", "no", "0755", "1:30", "y"].map(String::from).into();
    assert_eq!(web.command, Some(CommandLine::Exec(args)));
    let env: Vec<(&str, Option<&str>)> = web.environment.iter().map(|(k, v)| (k.as_str(), v.as_deref())).collect();
    assert_eq!(
        env,
        [("A", Some("on")), ("B", Some("0755")), ("C", Some("1_000")), ("D", Some(".inf")), ("E", Some("yes"))]
    );
    assert_eq!(web.ignored, ["cap_add"], "`privileged: false` changes nothing");
    assert!(f.volumes["data"].external.0 && !f.volumes["local"].external.0);
}

#[test]
fn errors_in_merged_content_keep_a_line() {
    let text = "x-base: &base\n  image: x\n  ports: [\"80:http\"]\nservices:\n  web:\n    <<: *base\n";
    let e = parse_err(text);
    // The line that merges it in, and where the value is defined.
    assert_eq!(e.line, 6, "{e}");
    assert!(e.message.contains("services.web.ports[0]") && e.message.contains("line 3"), "{e}");
}

/// Asserts that every line an origin names holds its key in `text` (`key:`, maybe quoted).
fn assert_lines_hold_keys(text: &str, f: &ComposeFile) {
    let lines: Vec<&str> = text.lines().collect();
    let holds =
        |line: usize, key: &str| ["", "\"", "'"].iter().any(|q| lines[line - 1].contains(&format!("{key}{q}:")));
    for (name, s) in &f.services {
        if let Some(line) = s.origin.line() {
            assert!(holds(line, name), "services.{name} at line {line}: {}", lines[line - 1]);
        }
        for key in s.origin.keys.keys() {
            let line = s.origin.key_line(key).unwrap();
            assert!(holds(line, key), "services.{name}.{key} at line {line}: {}", lines[line - 1]);
        }
    }
}

#[test]
fn services_and_their_keys_know_their_lines() {
    let text = "# shop\nx-base: &base\n  restart: always\n  expose: [\"9000\"]\nservices:\n  web:\n    image: x\n    ports:\n      - \"8080:80\"\n    \"healthcheck\":\n      test: curl -f localhost\n    environment:\n      A: b\n  worker:\n    <<: *base\n    image: x\n    command: run\n  db: {image: postgres, user: \"999\"}\n";
    let f = parse(text, "deploy/compose.yaml", BTreeMap::new()).unwrap().file;
    assert_lines_hold_keys(text, &f);
    let web = &f.services["web"].origin;
    assert_eq!((web.file.as_str(), web.name.as_str(), web.line()), ("deploy/compose.yaml", "web", Some(6)));
    assert_eq!(
        [web.key_line("image"), web.key_line("ports"), web.key_line("healthcheck"), web.key_line("environment")],
        [Some(7), Some(8), Some(10), Some(12)]
    );
    assert_eq!(web.at("ports"), "services.web.ports at deploy/compose.yaml:8");
    assert_eq!(web.service_at(), "services.web at deploy/compose.yaml:6");
    let worker = &f.services["worker"].origin;
    assert_eq!((worker.line(), worker.key_line("command")), (Some(14), Some(17)));
    // A key brought in by a merge is written elsewhere: the note names the key, not a line.
    assert_eq!(worker.key_line("expose"), None);
    assert_eq!(worker.at("expose"), "services.worker.expose in deploy/compose.yaml");
    // Flow style: the line holds the key all the same.
    let db = &f.services["db"].origin;
    assert_eq!((db.line(), db.key_line("user")), (Some(18), Some(18)));
}

#[test]
fn fixture_lines_hold_their_keys() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut seen = 0;
    for entry in std::fs::read_dir(&root).unwrap() {
        let dir = entry.unwrap().path();
        for name in crate::analysis::COMPOSE_FILES {
            let Ok(text) = std::fs::read_to_string(dir.join(name)) else { continue };
            let f = parse(&text, name, BTreeMap::new()).unwrap_or_else(|e| panic!("{}: {e}", dir.display())).file;
            assert_lines_hold_keys(&text, &f);
            for s in f.services.values() {
                assert!(s.origin.line().is_some(), "{}: services.{}", dir.display(), s.origin.name);
                seen += s.origin.keys.len();
            }
        }
    }
    assert!(seen > 5, "the fixtures have compose files with keys");
}
