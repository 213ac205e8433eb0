#![no_main]
//! The framework readers (source detection, environment reads through framework configuration,
//! Actuator settings, node-config, viper) and the analysis over them never panic or hang: the
//! input, split at the unit separator, fills the files one stack's readers look at.

use libfuzzer_sys::fuzz_target;
use persys_analyzer::{analyze_tree, tree::SourceTree};

/// The files each stack's readers look at; the first is its marker. The same list as
/// `services/analyzer/tests/no_panic.rs`.
const STACKS: &[&[&str]] = &[
    &[
        "pom.xml",
        "src/main/resources/application.yml",
        "src/main/resources/application.properties",
        "src/main/java/A.java",
    ],
    &["build.gradle.kts", "src/main/resources/application.yaml", "src/main/kotlin/A.kt"],
    &["Gemfile", "config/database.yml", "config/puma.rb", "config/routes.rb", "app/models/a.rb"],
    &["composer.json", "config/database.php", ".env.example", "routes/web.php", "bootstrap/app.php"],
    &["requirements.txt", "mysite/settings.py", "mysite/urls.py", "Procfile", "gunicorn.conf.py"],
    &["package.json", "src/app.ts", "config/custom-environment-variables.json", "config/default.json"],
    &["go.mod", "main.go", "config.go"],
    &["Cargo.toml", "src/main.rs"],
    &["App.csproj", "Program.cs"],
];

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else { return };
    let stack = STACKS[usize::from(first) % STACKS.len()];
    let mut tree = SourceTree::new();
    for (i, part) in rest.split(|b| *b == 0x1f).enumerate().take(stack.len()) {
        tree.insert(stack[i], part.to_vec()).expect("a fixed, valid path");
    }
    if !tree.contains(stack[0]) {
        tree.insert(stack[0], Vec::new()).expect("a fixed, valid path");
    }
    let _ = analyze_tree(&tree, &Default::default());
});
