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
    assert_eq!(f.env_reads.iter().collect::<Vec<_>>(), ["DATABASE_URL", "PORT"]);
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
