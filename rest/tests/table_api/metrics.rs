//! Request metrics: labels come from bounded sets, whatever the URL.

use crate::common;

use axum::http::{Method, StatusCode};
use common::{Fixture, ITEMS, send};
use litecar_rest::{RestMetrics, RestState, router};

fn samples(registry: &prometheus::Registry, prefix: &str) -> Vec<String> {
    let text = prometheus::TextEncoder::new().encode_to_string(&registry.gather()).expect("metrics text");
    text.lines().filter(|l| l.starts_with(prefix)).map(str::to_owned).collect()
}

#[tokio::test]
async fn requests_are_counted_by_method_table_and_status() {
    let fx = Fixture::new(ITEMS);
    let registry = prometheus::Registry::new();
    let metrics = RestMetrics::new(&registry).expect("register");
    assert!(RestMetrics::new(&registry).is_err(), "registering twice is an error, not a silent duplicate");
    let app = router(RestState::new(fx.options(&["items"]), metrics).expect("state"));

    assert_eq!(send(&app, Method::GET, "/items", &[], None).await.status, StatusCode::OK);
    assert_eq!(send(&app, Method::GET, "/items?nope=eq.1", &[], None).await.status, StatusCode::BAD_REQUEST);
    for path in ["/secret", "/random-1", "/random-2", "/a/b/c"] {
        assert_eq!(send(&app, Method::GET, path, &[], None).await.status, StatusCode::NOT_FOUND);
    }
    let custom = Method::from_bytes(b"BREW").expect("method");
    send(&app, custom, "/items", &[], None).await;
    send(&app, Method::GET, "/openapi.json", &[], None).await;

    let requests = samples(&registry, "sqlite_rest_requests_total{");
    let has =
        |labels: &str, value: &str| requests.iter().any(|l| l.contains(labels) && l.ends_with(&format!(" {value}")));
    assert!(has(r#"method="GET",status="200",table="items""#, "1"), "{requests:#?}");
    assert!(has(r#"method="GET",status="400",table="items""#, "1"), "{requests:#?}");
    assert!(has(r#"method="GET",status="404",table="other""#, "4"), "unknown paths share one label: {requests:#?}");
    assert!(has(r#"method="OTHER",status="405",table="items""#, "1"), "{requests:#?}");
    assert!(has(r#"method="GET",status="200",table="openapi.json""#, "1"), "{requests:#?}");
    assert!(!requests.iter().any(|l| l.contains("secret") || l.contains("random")), "{requests:#?}");

    let durations = samples(&registry, "sqlite_rest_request_duration_seconds_count{");
    assert!(
        durations.iter().any(|l| l.contains(r#"method="GET",table="items""#) && l.ends_with(" 2")),
        "{durations:#?}"
    );
}
