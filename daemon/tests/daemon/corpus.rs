//! Every real-world Litestream config in `tests/corpus/litestream` is taken the way its `# expect` lines say.

use std::path::{Path, PathBuf};

use litecar::config::{self, LoadOptions};

/// Plausible values for the variables the configs use, by what their names say.
fn env_value(name: &str) -> String {
    let n = name.to_ascii_uppercase();
    let v = if n == "REPLICA_URL" {
        "s3://my-space.nyc3.digitaloceanspaces.com/pocketbase-db"
    } else if n.contains("BUCKET") {
        "my-bucket"
    } else if n.contains("ENDPOINT") || n.ends_with("_URL") {
        "https://objects.example.com"
    } else if n.contains("REGION") {
        "eu-central-1"
    } else if n.contains("RETENTION") {
        "72h"
    } else if n == "DB_PATH" {
        "/data/app.db"
    } else if n.contains("FOLDER") {
        "/data"
    } else if n.ends_with("PATH") {
        "app"
    } else if n.contains(":-") {
        // `${NAME:-default}` is not shell syntax to Litestream: the whole text is the (unset) variable's name.
        ""
    } else {
        "value-of-a-variable"
    };
    v.to_owned()
}

fn corpus() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/corpus/litestream");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("corpus directory")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml"))
        .collect();
    files.sort();
    files
}

#[test]
fn real_world_configs_are_taken_as_expected() {
    let files = corpus();
    assert!(files.len() >= 15, "corpus has {} files", files.len());
    let mut failures = vec![];
    for file in files {
        let raw = std::fs::read_to_string(&file).expect("read");
        assert!(raw.starts_with("# source: "), "{}: first line must name the source", file.display());
        let expects: Vec<&str> = raw.lines().filter_map(|l| l.strip_prefix("# expect: ")).collect();
        assert!(!expects.is_empty(), "{}: no `# expect:` line", file.display());
        let text = config::expand_with(&raw, |name| Some(env_value(name)));
        let result = config::parse(&file, &text, LoadOptions::default());
        for expect in expects {
            let ok = match (&result, expect) {
                (Ok(l), "ok") => l.warnings.is_empty(),
                (Ok(l), w) if w.starts_with("warning: ") => l.warnings.iter().any(|x| x.contains(&w[9..])),
                (Err(e), w) if w.starts_with("error: ") => e.to_string().contains(&w[7..]),
                _ => false,
            };
            if !ok {
                let got = match &result {
                    Ok(l) => format!("accepted, warnings {:?}", l.warnings),
                    Err(e) => format!("refused: {e}"),
                };
                failures.push(format!("{}: expected {expect:?}, {got}", file.display()));
            }
        }
        // Accepted configs resolve to replicas that can be connected to (no address the HTTP client refuses).
        if let Ok(l) = &result {
            for db in &l.settings.dbs {
                for r in &db.replicas {
                    if let Err(e) = litecar_replicate::backend::connect(&r.name, &r.backend) {
                        failures.push(format!("{}: replica {} does not connect: {e}", file.display(), r.name));
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
