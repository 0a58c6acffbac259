//! The /k8s routes with tower oneshot and concurrent watchers.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::*;
use futures::StreamExt;
use http_body_util::BodyExt;
use litecar_watchcache::{K8sApi, router};
use tower::ServiceExt;

async fn get(app: axum::Router, uri: &str) -> (StatusCode, serde_json::Value) {
    let resp = app.oneshot(Request::get(uri).body(Body::empty()).unwrap()).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap())
}

#[tokio::test]
async fn lists_with_queries_and_reports_bad_terms() {
    let s = pods();
    s.add(with_labels(pod("a", "x", 1), &[("app", "web")])).unwrap();
    s.add(pod("b", "y", 2)).unwrap();
    let app = router(K8sApi::default().with("", "v1", "pods", s));
    let (code, body) = get(app.clone(), "/k8s/core/v1/pods?filter=metadata.labels[app]=web").await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(names(body["items"].as_array().unwrap()), ["x"]);
    assert_eq!((body["count"].as_u64(), body["revision"].as_u64()), (Some(1), Some(2)));
    let (code, body) = get(app.clone(), "/k8s/core/v1/pods?filter=spec.nope=1").await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert!(body["message"].as_str().unwrap().contains("spec.nope=1"));
    assert_eq!(get(app, "/k8s/apps/v1/deployments").await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn concurrent_watchers_see_every_event_in_order_and_compacted_is_410() {
    let s = pods();
    s.add(pod("a", "p0", 1)).unwrap();
    let app = router(K8sApi::default().with("", "v1", "pods", s.clone()));
    let mut bodies = Vec::new();
    for _ in 0..3 {
        let resp = app
            .clone()
            .oneshot(Request::get("/k8s/core/v1/pods?watch=true&resourceVersion=1").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        bodies.push(resp.into_body().into_data_stream());
    }
    let writer = tokio::task::spawn_blocking(move || {
        for i in 2..=30u64 {
            s.add(pod("a", &format!("p{i}"), i)).unwrap();
        }
        s
    });
    for body in &mut bodies {
        let mut buf = String::new();
        let mut rvs = Vec::new();
        while rvs.len() < 29 {
            let chunk = tokio::time::timeout(Duration::from_secs(10), body.next()).await.unwrap().unwrap().unwrap();
            buf.push_str(std::str::from_utf8(&chunk).unwrap());
            while let Some((line, rest)) = buf.split_once('\n') {
                let v: serde_json::Value = serde_json::from_str(line).unwrap();
                assert_eq!(v["type"], "ADDED");
                rvs.push(v["object"]["metadata"]["resourceVersion"].as_str().unwrap().parse::<u64>().unwrap());
                buf = rest.to_owned();
            }
        }
        assert_eq!(rvs, (2..=30).collect::<Vec<_>>());
    }
    // compaction only after the watchers read: a watcher overtaken by compaction gets an ERROR event instead
    writer.await.unwrap().compact(10).unwrap();
    let (code, body) = get(app, "/k8s/core/v1/pods?watch=true&resourceVersion=5").await;
    assert_eq!((code, body["reason"].as_str()), (StatusCode::GONE, Some("Expired")));
}

#[tokio::test]
async fn a_store_waiting_for_its_first_list_answers_503_warming_up() {
    let s = pods();
    s.await_first_list();
    let api = K8sApi::default().with("", "v1", "pods", s.clone());
    let app = router(api.clone());
    let (code, body) = get(app.clone(), "/k8s/core/v1/pods").await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!((body["kind"].as_str(), body["reason"].as_str()), (Some("Status"), Some("ServiceUnavailable")));
    assert!(body["message"].as_str().unwrap().contains("warming up"), "{body}");
    assert_eq!(get(app.clone(), "/k8s/core/v1/pods?watch=true").await.0, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(api.warming().len(), 1);
    s.replace(vec![pod("a", "x", 1)], Some("5")).unwrap();
    let (code, body) = get(app, "/k8s/core/v1/pods").await;
    assert_eq!((code, body["count"].as_u64()), (StatusCode::OK, Some(1)));
    assert!(api.warming().is_empty());
}
