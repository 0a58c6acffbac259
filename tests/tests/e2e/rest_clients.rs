//! The table API driven by a real PostgREST client: supabase's `postgrest` for Python (installed by
//! scripts/test). The client script compares every answer with the same query run directly on the database
//! and the whole table after each write (tests/clients/postgrest_py_suite.py).

use std::path::Path;
use std::time::Duration;

use litecar_e2e::{Proc, eventually, free_port, http_get, litecar_bin};

const SECRET: &str = "client-suite-shared-secret-0123456789";

const SCHEMA: &str = "
    CREATE TABLE customers (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        email TEXT UNIQUE,
        tier TEXT NOT NULL DEFAULT 'basic',
        score REAL
    );
    CREATE TABLE orders (
        id INTEGER PRIMARY KEY,
        customer_id INTEGER REFERENCES customers (id),
        status TEXT,
        total REAL
    );
    CREATE VIRTUAL TABLE docs USING fts5(title, body);
    INSERT INTO customers VALUES
        (1, 'Ann', 'ann@example.com', 'gold', 3.5),
        (2, 'Bob', 'bob@example.com', 'basic', NULL),
        (3, 'Cy', 'cy@example.com', 'basic', 1),
        (4, 'Dana', 'dana@example.com', 'gold', NULL),
        (5, 'bea', 'bea@example.com', 'basic', 2.5);
    INSERT INTO orders VALUES (10, 1, 'paid', 5), (11, 1, 'open', 2), (12, 2, 'paid', 1), (13, NULL, 'void', 0);
    INSERT INTO docs (title, body) VALUES
        ('Cats', 'the fat cat sat'), ('Rats', 'a fat rat ran'), ('Dogs', 'the sad dog and the cat');
";

fn serve(dir: &Path, port: u16) -> Proc {
    let db = dir.join("app.db");
    litecar_e2e::app_connection(&db).execute_batch(SCHEMA).expect("schema");
    std::fs::write(dir.join("jwt.secret"), SECRET).expect("secret");
    let cfg = dir.join("litecar.yml");
    std::fs::write(
        &cfg,
        format!(
            "dbs:\n  - path: {}\n    replicas:\n      - url: file:///unused\nrest:\n  addr: 127.0.0.1:{port}\n  allowed-tables: [customers, orders, docs]\n  \
             auth:\n    jwt-secret-file: {}\n",
            db.display(),
            dir.join("jwt.secret").display()
        ),
    )
    .expect("config");
    let lc = Proc::spawn(&litecar_bin(), &["serve", "-config", cfg.to_str().expect("utf8")], dir, &dir.join("log"));
    eventually(Duration::from_secs(10), "the API", || http_get(port, "/openapi.json").0 == 401);
    lc
}

#[test]
fn postgrest_py_agrees_with_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let mut lc = serve(dir.path(), port);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/postgrest_py_suite.py");
    let out = std::process::Command::new("python3")
        .arg(&script)
        .arg(format!("http://127.0.0.1:{port}"))
        .arg(litecar_e2e::hs256_token(SECRET, "app"))
        .arg(dir.path().join("app.db"))
        .output()
        .expect("python3 with postgrest (pip install postgrest; scripts/test does this)");
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the client saw a difference:\n{report}\nlitecar log:\n{}", lc.log_text());
    let checks: u32 =
        report.lines().find_map(|l| l.strip_suffix(" checks passed")).and_then(|n| n.trim().parse().ok()).unwrap_or(0);
    assert!(checks >= 50, "only {checks} checks ran:\n{report}");
    assert!(lc.terminate().success(), "{}", lc.log_text());
}
