use super::*;

fn tree(files: &[(&str, &str)]) -> SourceTree {
    let mut t = SourceTree::new();
    for (p, c) in files {
        t.insert(p, c.as_bytes().to_vec()).unwrap();
    }
    t
}

#[test]
fn express_port_health_env_and_services() {
    let t = tree(&[
        (
            "package.json",
            r#"{"scripts":{"start":"node server.js"},"dependencies":{"express":"4","pg":"8","ioredis":"5"}}"#,
        ),
        (
            "server.js",
            "const port = process.env.PORT || 4000;\napp.get('/healthz', h);\nconst u = process.env['DATABASE_URL'];\napp.listen(port);",
        ),
        ("test/app.test.js", "request(app).get('/health'); app.listen(9999)"),
    ]);
    let f = detect(&t);
    assert_eq!((f.language.as_str(), f.framework.as_str()), ("javascript", "express"));
    assert_eq!(f.ports, [4000]);
    assert_eq!(f.health_path.as_deref(), Some("/healthz"));
    assert_eq!(f.env_reads.keys().collect::<Vec<_>>(), ["DATABASE_URL", "PORT"]);
    assert_eq!(f.dependencies.iter().collect::<Vec<_>>(), ["postgresql", "redis"]);
    assert_eq!(f.start_command, ["npm", "start"]);
}

#[test]
fn health_is_only_what_the_code_declares() {
    let t = tree(&[
        ("go.mod", "module example.com/svc\n\ngo 1.22\n"),
        ("main.go", "import \"net/http\"\nhttp.ListenAndServe(\":9000\", nil)"),
    ]);
    let f = detect(&t);
    assert_eq!((f.framework.as_str(), f.ports.as_slice()), ("net/http", &[9000][..]));
    assert_eq!(f.health_path, None);
}

#[test]
fn backend_marker_wins_over_package_json() {
    let t = tree(&[("package.json", r#"{"dependencies":{"express":"4"}}"#), ("Gemfile", "gem 'rails', '~> 7.1'\n")]);
    assert_eq!(detect(&t).framework, "rails");
}

#[test]
fn nothing_recognised() {
    assert!(!detect(&tree(&[("README.md", "hello")])).recognised());
}

fn need(f: &SourceFacts, name: &str) -> (Need, String) {
    let r = f.env_reads.get(name).unwrap_or_else(|| panic!("{name} not read: {:?}", f.env_reads));
    (r.need.clone(), r.location())
}

fn default(v: &str) -> Need {
    Need::Default(Some(v.into()))
}

#[test]
fn spring_placeholders_are_required_or_defaulted() {
    let t = tree(&[
        ("pom.xml", "<artifactId>spring-boot-starter-web</artifactId>"),
        (
            "src/main/resources/application.yml",
            "spring:\n  datasource:\n    url: ${DB_URL}\n    username: \"${DB_USER:app}\"\napp:\n  name: ${spring.application.name}\n  region: ${REGION:${FALLBACK_REGION:eu}}\n",
        ),
        ("src/main/resources/application-dev.properties", "cache.ttl=${CACHE_TTL:60s}\n"),
    ]);
    let f = detect(&t);
    assert_eq!(need(&f, "DB_URL"), (Need::Required, "src/main/resources/application.yml:3".into()));
    assert_eq!(need(&f, "DB_USER").0, default("app"));
    assert_eq!(need(&f, "REGION").0, Need::Default(None));
    assert_eq!(need(&f, "CACHE_TTL"), (default("60s"), "src/main/resources/application-dev.properties:1".into()));
    assert!(!f.env_reads.contains_key("spring.application.name"));
}

#[test]
fn rails_reads_through_erb_configs_and_fetch() {
    let t = tree(&[
        ("Gemfile", "gem 'rails', '~> 7.1'\n"),
        (
            "config/database.yml",
            "production:\n  url: <%= ENV['DATABASE_URL'] %>\n  pool: <%= ENV.fetch(\"RAILS_MAX_THREADS\") { 5 } %>\n",
        ),
        (
            "config/initializers/s3.rb",
            "BUCKET = ENV.fetch('S3_BUCKET')\nREGION = ENV.fetch('AWS_REGION', 'eu-west-1')\nHOST = ENV['APP_HOST'] || 'localhost'\n",
        ),
    ]);
    let f = detect(&t);
    assert_eq!(need(&f, "DATABASE_URL"), (Need::Optional, "config/database.yml:2".into()));
    assert_eq!(need(&f, "RAILS_MAX_THREADS"), (default("5"), "config/database.yml:3".into()));
    assert_eq!(need(&f, "S3_BUCKET"), (Need::Required, "config/initializers/s3.rb:1".into()));
    assert_eq!(need(&f, "AWS_REGION").0, default("eu-west-1"));
    assert_eq!(need(&f, "APP_HOST").0, default("localhost"));
}

#[test]
fn laravel_config_defaults_win_over_env_example() {
    let t = tree(&[
        ("composer.json", r#"{"require":{"laravel/framework":"^11.0"}}"#),
        (
            "config/database.php",
            "<?php\nreturn ['host' => env('DB_HOST', '127.0.0.1'),\n 'password' => env('DB_PASSWORD'),\n 'port' => env(\"DB_PORT\", 5432)];\n",
        ),
        (".env.example", "APP_NAME=Laravel\nDB_HOST=db\n"),
    ]);
    let f = detect(&t);
    assert_eq!(need(&f, "DB_HOST"), (default("127.0.0.1"), "config/database.php:2".into()));
    assert_eq!(need(&f, "DB_PASSWORD").0, Need::Optional);
    assert_eq!(need(&f, "DB_PORT").0, default("5432"));
    assert_eq!(need(&f, "APP_NAME"), (Need::Optional, ".env.example:1".into()));
}

#[test]
fn django_settings_index_get_and_environ_libraries() {
    let t = tree(&[
        ("requirements.txt", "django\n"),
        (
            "mysite/settings.py",
            "import os\nSECRET_KEY = os.environ[\"DJANGO_SECRET_KEY\"]\nDEBUG = os.getenv('DEBUG', 'False')\nHOST = os.environ.get('HOST')\nTZ = os.environ.get('TZ', None)\nREDIS = env('REDIS_URL', default='redis://cache:6379')\nWORKERS = config('WORKERS', cast=int)\nNAME = os.environ.get('APP_NAME') or 'shop'\n",
        ),
    ]);
    let f = detect(&t);
    assert_eq!(need(&f, "DJANGO_SECRET_KEY"), (Need::Required, "mysite/settings.py:2".into()));
    assert_eq!(need(&f, "DEBUG").0, default("False"));
    assert_eq!(need(&f, "HOST").0, Need::Optional);
    assert_eq!(need(&f, "TZ").0, Need::Optional);
    assert_eq!(need(&f, "REDIS_URL").0, default("redis://cache:6379"));
    assert_eq!(need(&f, "WORKERS").0, Need::Required);
    assert_eq!(need(&f, "APP_NAME").0, default("shop"));
}

#[test]
fn node_fallbacks_nest_config_and_the_config_package() {
    let t = tree(&[
        ("package.json", r#"{"dependencies":{"express":"4","config":"3"}}"#),
        (
            "src/app.ts",
            "const level = process.env.LOG_LEVEL ?? 'info';\nconst key = this.config.getOrThrow<string>('SIGNING_KEY');\nconst url = process.env['UPSTREAM_URL'];\n",
        ),
        (
            "config/custom-environment-variables.json",
            "{\n  \"db\": {\n    \"host\": \"DB_HOST\",\n    \"port\": {\"__name\": \"DB_PORT\", \"__format\": \"number\"}\n  }\n}\n",
        ),
        ("config/default.json", r#"{"db":{"host":"localhost","port":5432}}"#),
    ]);
    let f = detect(&t);
    assert_eq!(need(&f, "LOG_LEVEL"), (default("info"), "src/app.ts:1".into()));
    assert_eq!(need(&f, "SIGNING_KEY").0, Need::Required);
    assert_eq!(need(&f, "UPSTREAM_URL").0, Need::Optional);
    assert_eq!(need(&f, "DB_HOST"), (default("localhost"), "config/custom-environment-variables.json:3".into()));
    assert_eq!(need(&f, "DB_PORT").0, default("5432"));
}

#[test]
fn go_getenv_and_viper_bindings() {
    let t = tree(&[
        ("go.mod", "module example.com/svc\n\ngo 1.22\n"),
        (
            "config.go",
            "v := viper.New()\nv.SetEnvPrefix(\"svc\")\nv.SetDefault(\"listen\", \":8080\")\nv.BindEnv(\"listen\")\nv.BindEnv(\"db.url\", \"DATABASE_URL\")\n_ = os.Getenv(\"LOG_LEVEL\")\n",
        ),
    ]);
    let f = detect(&t);
    assert_eq!(need(&f, "SVC_LISTEN"), (default(":8080"), "config.go:4".into()));
    assert_eq!(need(&f, "DATABASE_URL"), (Need::Optional, "config.go:5".into()));
    assert_eq!(need(&f, "LOG_LEVEL").0, Need::Optional);
}

#[test]
fn rust_var_follow_ups_decide_the_need() {
    let t = tree(&[
        ("Cargo.toml", "[package]\nname = \"svc\"\n[dependencies]\naxum = \"0.7\"\n"),
        (
            "src/main.rs",
            "let a = env::var(\"DATABASE_URL\").expect(\"set it\");\nlet b = env::var(\"BIND\").unwrap_or(\"0.0.0.0:8080\".into());\nlet c = std::env::var(\"RUST_LOG\").ok();\n",
        ),
    ]);
    let f = detect(&t);
    assert_eq!(need(&f, "DATABASE_URL").0, Need::Required);
    assert_eq!(need(&f, "BIND").0, Need::Default(None));
    assert_eq!(need(&f, "RUST_LOG").0, Need::Optional);
}

#[test]
fn spring_actuator_probe_groups_base_path_and_management_port() {
    let pom = |v: &str| {
        format!(
            "<parent><artifactId>spring-boot-starter-parent</artifactId>\n<version>{v}</version></parent>\n<artifactId>spring-boot-starter-actuator</artifactId>"
        )
    };
    let props = "src/main/resources/application.properties";
    let f = detect(&tree(&[("pom.xml", &pom("3.3.0"))]));
    assert_eq!(
        (f.health_path.as_deref(), f.readiness_path.as_deref(), f.health_port),
        (Some("/actuator/health/liveness"), Some("/actuator/health/readiness"), None)
    );
    let f = detect(&tree(&[("pom.xml", &pom("2.2.13.RELEASE"))]));
    assert_eq!((f.health_path.as_deref(), f.readiness_path.as_deref()), (Some("/actuator/health"), None));
    let f = detect(&tree(&[("pom.xml", &pom("3.3.0")), (props, "management.endpoint.health.probes.enabled=false\n")]));
    assert_eq!(f.health_path.as_deref(), Some("/actuator/health"));
    let f = detect(&tree(&[
        ("pom.xml", &pom("3.3.0")),
        (props, "server.servlet.context-path=/billing/\nmanagement.endpoints.web.base-path=/manage\n"),
    ]));
    assert_eq!(f.health_path.as_deref(), Some("/billing/manage/health/liveness"));
    let f = detect(&tree(&[
        (
            "build.gradle.kts",
            "plugins { id(\"org.springframework.boot\") version \"3.2.1\" }\nimplementation(\"org.springframework.boot:spring-boot-starter-actuator\")",
        ),
        (
            "src/main/resources/application.yml",
            "server:\n  servlet:\n    context-path: /billing\nmanagement:\n  server:\n    port: ${MANAGEMENT_PORT:8081}\n",
        ),
    ]));
    assert_eq!((f.health_path.as_deref(), f.health_port), (Some("/actuator/health/liveness"), Some(8081)));
}

#[test]
fn startup_follows_the_stack() {
    let go = detect(&tree(&[("go.mod", "module a\n")]));
    let spring = detect(&tree(&[("pom.xml", "spring-boot-starter-web")]));
    let rails = detect(&tree(&[("Gemfile", "gem 'rails'\n")]));
    assert!(go.startup_secs < rails.startup_secs && rails.startup_secs < spring.startup_secs);
    assert!(spring.notes.iter().any(|n| n.starts_with("startup allowed 90s: Spring Boot")), "{:?}", spring.notes);
}

#[test]
fn routes_and_ports_name_their_line() {
    let t = tree(&[
        ("go.mod", "module example.com/svc\n"),
        (
            "main.go",
            "import \"net/http\"\n\nfunc main() {\n\thttp.HandleFunc(\"/healthz\", h)\n\thttp.ListenAndServe(\":9000\", nil)\n}\n",
        ),
    ]);
    let f = detect(&t);
    assert!(f.notes.contains(&"health endpoint /healthz: route declared in main.go:4".to_owned()), "{:?}", f.notes);
    assert!(f.notes.contains(&"port 9000: listen address at main.go:5".to_owned()), "{:?}", f.notes);
}
