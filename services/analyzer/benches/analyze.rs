//! Analyze + generate timings: every fixture of the corpus, and a generated compose file with
//! 200 services (built and third-party, ports, healthchecks, volumes, depends_on). Prints the
//! median and p90 of repeated runs; it asserts nothing.
//!
//!   cargo bench -p persys-analyzer --bench analyze

use std::{
    path::Path,
    time::{Duration, Instant},
};

use persys_analyzer::{analyze_tree, tree::SourceTree};
use persys_proto::analyzer::v1::AnalyzeMetadata;

fn compose_200() -> SourceTree {
    let mut yaml = String::from("name: big\nservices:\n");
    let mut tree = SourceTree::new();
    for i in 0..200 {
        if i % 4 == 0 {
            yaml.push_str(&format!(
                "  db{i}:\n    image: postgres:16\n    environment:\n      POSTGRES_PASSWORD: pw\n    volumes:\n      - data{i}:/var/lib/postgresql/data\n    healthcheck:\n      test: [\"CMD-SHELL\", \"pg_isready\"]\n"
            ));
        } else {
            let dep = i - i % 4;
            yaml.push_str(&format!(
                "  svc{i}:\n    build: ./svc{i}\n    ports: [\"{}:8080\"]\n    environment:\n      DATABASE_URL: postgres://app:pw@db{dep}:5432/app\n      LOG_LEVEL: info\n    depends_on:\n      db{dep}:\n        condition: service_healthy\n    healthcheck:\n      test: [\"CMD\", \"curl\", \"-f\", \"http://localhost:8080/healthz\"]\n    deploy:\n      replicas: 2\n      resources:\n        limits: {{cpus: \"0.5\", memory: 256M}}\n",
                10000 + i
            ));
            tree.insert(
                &format!("svc{i}/Dockerfile"),
                b"FROM golang:1.22 AS build\nWORKDIR /src\nCOPY . .\nRUN go build -o /app .\nFROM gcr.io/distroless/static\nCOPY --from=build /app /app\nUSER 65532\nEXPOSE 8080\nENTRYPOINT [\"/app\"]\n".to_vec(),
            )
            .unwrap();
            tree.insert(
                &format!("svc{i}/go.mod"),
                b"module example.com/svc\n\ngo 1.22\n\nrequire github.com/gin-gonic/gin v1.10.0\n".to_vec(),
            )
            .unwrap();
            tree.insert(
                &format!("svc{i}/main.go"),
                b"package main\nimport \"github.com/gin-gonic/gin\"\nfunc main() { r := gin.Default(); r.GET(\"/healthz\", nil); r.Run(\":8080\") }\n".to_vec(),
            )
            .unwrap();
        }
    }
    yaml.push_str("volumes:\n");
    for i in (0..200).step_by(4) {
        yaml.push_str(&format!("  data{i}:\n"));
    }
    tree.insert("compose.yaml", yaml.into_bytes()).unwrap();
    tree
}

fn measure(tree: &SourceTree, meta: &AnalyzeMetadata, runs: usize) -> (Duration, Duration, usize) {
    let files = analyze_tree(tree, meta).expect("analysis").manifests.len();
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(analyze_tree(tree, meta).expect("analysis"));
            t.elapsed()
        })
        .collect();
    times.sort();
    (times[runs / 2], times[runs * 9 / 10], files)
}

fn main() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut names: Vec<String> = std::fs::read_dir(&fixtures)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    println!("analyze + generate (+ validation), in-memory files; median and p90 of repeated runs");
    println!("{:<24} {:>6} {:>10} {:>10}", "fixture", "files", "median", "p90");
    for name in names {
        let tree = SourceTree::from_dir(&fixtures.join(&name)).unwrap();
        let meta = AnalyzeMetadata { name: name.clone(), namespace: "apps".into(), ..AnalyzeMetadata::default() };
        let (median, p90, files) = measure(&tree, &meta, 200);
        println!("{name:<24} {files:>6} {:>8.2}ms {:>8.2}ms", median.as_secs_f64() * 1e3, p90.as_secs_f64() * 1e3);
    }
    let big = compose_200();
    let meta = AnalyzeMetadata { name: "big".into(), namespace: "apps".into(), ..AnalyzeMetadata::default() };
    let (median, p90, files) = measure(&big, &meta, 20);
    println!(
        "{:<24} {files:>6} {:>8.2}ms {:>8.2}ms",
        "compose, 200 services",
        median.as_secs_f64() * 1e3,
        p90.as_secs_f64() * 1e3
    );
}
