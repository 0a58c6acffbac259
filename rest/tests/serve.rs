//! `serve`: graceful shutdown answers the requests in flight, then stops. Loopback only.

mod common;

use std::time::Duration;

use common::Fixture;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

const ROWS: &str = "
    CREATE TABLE big (id INTEGER PRIMARY KEY, v TEXT);
    WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100000)
    INSERT INTO big SELECT i, printf('row-%d', i) FROM n;
";

#[tokio::test]
async fn shutdown_drains_requests_in_flight() {
    let fx = Fixture::new(ROWS);
    let app = fx.app(&["big"]);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
    let addr = listener.local_addr().expect("address");
    let cancel = CancellationToken::new();
    let server = tokio::spawn(litecar_rest::serve(listener, app, cancel.clone()));

    // A slow request: 20 patterns over 100k rows, then every row returned.
    let terms: Vec<String> = (0..20).map(|i| format!("v.like.*zz{i}*")).chain(["v.like.row-*".to_owned()]).collect();
    let request =
        format!("GET /big?select=id&or=({}) HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n", terms.join(","));
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    // A first, quick request on the same connection proves it was accepted before the shutdown begins.
    stream.write_all(b"GET /big?select=id&id=eq.1 HTTP/1.1\r\nHost: localhost\r\n\r\n").await.expect("send");
    let first = read_one_response(&mut stream).await;
    assert!(first.starts_with("HTTP/1.1 200") && first.ends_with("[{\"id\":1}]"), "{first}");
    stream.write_all(request.as_bytes()).await.expect("send request");
    tokio::time::sleep(Duration::from_millis(50)).await;
    cancel.cancel();
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(!server.is_finished(), "the server waits for the request in flight");

    let mut response = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(60), stream.read_to_end(&mut response)).await;
    read.expect("response before the time limit").expect("read response");
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 200"), "{}", &response[..response.len().min(200)]);
    assert!(response.trim_end().ends_with("{\"id\":100000}]"), "the whole body arrived");

    let stopped = tokio::time::timeout(Duration::from_secs(30), server).await.expect("server stops");
    stopped.expect("server task").expect("serve result");
    assert!(TcpStream::connect(addr).await.is_err(), "no longer accepting");
}

/// Reads exactly one response with a Content-Length body from a kept-alive connection.
async fn read_one_response(stream: &mut TcpStream) -> String {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&buffer).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned()))
                .and_then(|v| v.parse::<usize>().ok())
                .expect("content-length");
            if buffer.len() >= end + 4 + length {
                return text;
            }
        }
        let n = tokio::time::timeout(Duration::from_secs(30), stream.read(&mut chunk))
            .await
            .expect("response in time")
            .expect("read");
        assert!(n > 0, "connection closed early");
        buffer.extend_from_slice(&chunk[..n]);
    }
}
