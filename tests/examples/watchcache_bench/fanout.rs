//! Fan-out and list through the Kubernetes-compatible API: the watch-cache (ingest + router, as the daemon
//! serves them) runs in a child process over the fake API server's pods; the parent opens many raw HTTP watches
//! on it, changes pods upstream at a steady rate and times each event from the upstream write to its arrival at
//! every watcher; then it walks the whole list with `limit=500` through litecar and through the fake.
//!
//!   cargo run --release -p litecar-e2e --example watchcache_bench -- fanout [PODS [WATCHERS [EVENTS [PER_S]]]]

use std::time::{Duration, Instant};

use litecar_e2e::fakekube::{FakeKube, PODS};
use litecar_watchcache::{Database, K8sApi, ResourceType, StoreConfig, ingest, router};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::{client, cpu_s, mem, pct, pod, pod_spec};

/// Child: the watch-cache library as the daemon runs it (a file database, ingest, the read API), on 127.0.0.1.
pub async fn child_serve(url: &str, db_path: &str) {
    let db = Database::open(db_path).unwrap();
    let store = db.store(ResourceType::new("", "v1", "Pod"), StoreConfig::default()).unwrap();
    store.await_first_list();
    let cancel = CancellationToken::new();
    tokio::spawn(ingest(client(url), vec![pod_spec()], db, cancel.clone()));
    let app = router(K8sApi::default().with("", "v1", "pods", store));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    println!("ADDR {}", listener.local_addr().unwrap());
    // as the daemon's listeners do (see its `http::no_delay`)
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    // and served as the daemon serves
    litecar_watchcache::serve(listener, app, CancellationToken::new()).await;
}

/// The marker each benchmark change carries; six digits and a quote follow it.
const MARK: &[u8] = b"\"bench/seq\":\"";

/// One watch over a raw HTTP/1.1 connection: (sequence number, arrival) of every marked event, until the last
/// one or `deadline`.
async fn watcher(addr: String, rv: String, last: u32, ready: tokio::sync::mpsc::Sender<()>) -> Vec<(u32, Instant)> {
    let mut s = TcpStream::connect(&addr).await.unwrap();
    let req = format!("GET /api/v1/pods?watch=true&resourceVersion={rv} HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 16 * 1024];
    let mut carry: Vec<u8> = Vec::new();
    let mut got = Vec::new();
    let mut headers = false;
    loop {
        let n = match tokio::time::timeout(Duration::from_secs(60), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return got,
            Ok(Ok(n)) => n,
        };
        let now = Instant::now();
        carry.extend_from_slice(&buf[..n]);
        if !headers {
            let Some(end) = carry.windows(4).position(|w| w == b"\r\n\r\n") else { continue };
            assert!(carry.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&carry[..end]));
            carry.drain(..end + 4);
            headers = true;
            ready.send(()).await.unwrap();
        }
        let mut from = 0;
        loop {
            let Some(i) = carry[from..].windows(MARK.len()).position(|w| w == MARK) else {
                // keep a tail that may hold the start of a marker
                from = carry.len().saturating_sub(MARK.len() + 7).max(from);
                break;
            };
            let at = from + i + MARK.len();
            if carry.len() < at + 7 {
                from += i;
                break;
            }
            let seq: u32 = std::str::from_utf8(&carry[at..at + 6]).unwrap().parse().unwrap();
            got.push((seq, now));
            if seq == last {
                return got;
            }
            from = at + 7;
        }
        carry.drain(..from);
    }
}

async fn get_json(c: &kube::Client, url: &str) -> Value {
    let req = axum::http::Request::get(url).body(Vec::new()).unwrap();
    serde_json::from_str(&c.request_text(req).await.unwrap()).unwrap()
}

/// Walk every pod with limit=500 pages: (seconds, objects, pages).
async fn walk(c: &kube::Client) -> (f64, usize, usize) {
    let t = Instant::now();
    let (mut objects, mut pages, mut token) = (0, 0, String::new());
    loop {
        let mut url = "/api/v1/pods?limit=500".to_owned();
        if !token.is_empty() {
            url.push_str(&format!("&continue={token}"));
        }
        let req = axum::http::Request::get(url).body(Vec::new()).unwrap();
        let text = c.request_text(req).await.unwrap();
        #[derive(serde::Deserialize)]
        struct Page {
            metadata: Meta,
            items: Vec<serde::de::IgnoredAny>,
        }
        #[derive(serde::Deserialize)]
        struct Meta {
            #[serde(rename = "continue")]
            token: Option<String>,
        }
        let page: Page = serde_json::from_str(&text).unwrap();
        objects += page.items.len();
        pages += 1;
        match page.metadata.token {
            Some(t) if !t.is_empty() => token = t,
            _ => return (t.elapsed().as_secs_f64(), objects, pages),
        }
    }
}

/// Reset `pid`'s peak RSS (VmHWM) to its current RSS.
fn reset_peak(pid: &str) {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").unwrap();
}

/// Threads of `pid` now: a thread's stack and its allocator arena are memory that no watcher owns.
fn threads(pid: &str) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task")).map(|d| d.count()).unwrap_or(0)
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg").unwrap().split(' ').take(3).collect::<Vec<_>>().join(" ")
}

pub async fn run(args: &[String]) {
    let arg = |i: usize, d: usize| args.get(i).map(|s| s.parse().unwrap()).unwrap_or(d);
    let (n, watchers, events, per_s) = (arg(0, 100_000), arg(1, 1000), arg(2, 200), arg(3, 20));
    assert!(events <= n && events < 1_000_000, "EVENTS must be at most PODS (and below a million)");
    let dir = tempfile::Builder::new().prefix("litecar-bench-fanout-").tempdir_in("/tmp").unwrap();
    let fake = FakeKube::start().await;
    for i in 0..n {
        fake.create(PODS, pod(i)).unwrap();
    }
    eprintln!("fake: {n} pods; load {}", load());
    fake.clear_requests();

    let exe = std::env::current_exe().unwrap();
    let db = dir.path().join("fanout.db");
    let mut child = tokio::process::Command::new(exe)
        .args(["child-serve", &fake.url(), db.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = child.id().unwrap().to_string();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = loop {
        let l = lines.next_line().await.unwrap().expect("the child ended before it served");
        if let Some(a) = l.strip_prefix("ADDR ") {
            break a.to_owned();
        }
    };
    let lc = client(&format!("http://{addr}"));
    let t0 = Instant::now();
    // 503 while warming up; kube's request_text turns that into an error
    let rv = loop {
        let req = axum::http::Request::get("/api/v1/pods?limit=1").body(Vec::new()).unwrap();
        if let Ok(text) = lc.request_text(req).await {
            let v: Value = serde_json::from_str(&text).unwrap();
            break v["metadata"]["resourceVersion"].as_str().unwrap().to_owned();
        }
        assert!(t0.elapsed() < Duration::from_secs(300), "litecar did not fill its cache");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    eprintln!("litecar: {n} pods in {:.1} s", t0.elapsed().as_secs_f64());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss0 = mem(&pid)[1];
    let threads0 = threads(&pid);

    // open the watches in two halves: the growth over the second half is the cost of a watcher, free of what
    // the process returns to the system after its first list
    let last = (events - 1) as u32;
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel(watchers);
    let mut tasks = Vec::with_capacity(watchers);
    let half = watchers / 2;
    let mut rss_half = 0;
    let mut threads_half = 0;
    for (from, to) in [(0, half), (half, watchers)] {
        for _ in from..to {
            tasks.push(tokio::spawn(watcher(addr.clone(), rv.clone(), last, ready_tx.clone())));
        }
        for _ in from..to {
            ready_rx.recv().await.expect("a watch failed to start");
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        if from == 0 {
            rss_half = mem(&pid)[1];
            threads_half = threads(&pid);
        }
    }
    drop(ready_tx);
    let rss1 = mem(&pid)[1];
    let threads1 = threads(&pid);

    // change pods upstream at a steady rate; each change carries its number
    let load_before = load();
    let cpu0 = cpu_s(&pid);
    let stride = n / events;
    let mut sent = Vec::with_capacity(events);
    let t_events = Instant::now();
    for i in 0..events {
        tokio::time::sleep_until((t_events + Duration::from_secs_f64(i as f64 / per_s as f64)).into()).await;
        let mut p = pod(i * stride);
        p["metadata"]["annotations"]["bench/seq"] = json!(format!("{i:06}"));
        sent.push(Instant::now());
        fake.update(PODS, p).unwrap();
    }
    let mut lat = Vec::new();
    let mut last_arrival = vec![None::<Instant>; events];
    let mut missed = 0;
    for t in tasks {
        let got = t.await.unwrap();
        missed += events - got.len();
        for (seq, at) in got {
            let seq = seq as usize;
            lat.push(at.duration_since(sent[seq]).as_secs_f64() * 1000.0);
            last_arrival[seq] = Some(last_arrival[seq].map_or(at, |l: Instant| l.max(at)));
        }
    }
    let cpu = cpu_s(&pid) - cpu0;
    let secs = t_events.elapsed().as_secs_f64();
    let rss2 = mem(&pid)[1];
    let load_after = load();
    let mut every: Vec<f64> = last_arrival
        .iter()
        .zip(&sent)
        .filter_map(|(a, s)| a.map(|a| a.duration_since(*s).as_secs_f64() * 1000.0))
        .collect();
    lat.sort_by(f64::total_cmp);
    every.sort_by(f64::total_cmp);
    let upstream = fake.requests().into_iter().filter(|r| r.path.ends_with("/pods")).collect::<Vec<_>>();
    let up_watches = upstream.iter().filter(|r| r.is_watch()).count();
    let up_lists = upstream.iter().filter(|r| r.is_list()).count();

    println!("\nfan-out: {watchers} watchers on {n} pods, {events} upstream changes at {per_s}/s");
    println!("  load average before / after: {load_before} / {load_after}");
    println!(
        "  delivery latency, upstream write -> a watcher: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} deliveries, {missed} missed)",
        pct(&lat, 0.5),
        pct(&lat, 0.99),
        lat[lat.len() - 1],
        lat.len()
    );
    println!(
        "  upstream write -> the last of the {watchers} watchers: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        pct(&every, 0.5),
        pct(&every, 0.99),
        every[every.len() - 1]
    );
    println!(
        "  litecar VmRSS: {:.1} MB idle, {:.1} MB with {half} watches, {:.1} MB with {watchers} ({:+.1} KB per watcher over the second half), {:.1} MB after the changes",
        rss0 as f64 / 1024.0,
        rss_half as f64 / 1024.0,
        rss1 as f64 / 1024.0,
        (rss1 as f64 - rss_half as f64) / (watchers - half) as f64,
        rss2 as f64 / 1024.0,
    );
    println!("  litecar threads: {threads0} idle, {threads_half} with {half} watches, {threads1} with {watchers}");
    println!("  litecar CPU during the changes: {cpu:.2} s over {secs:.1} s");
    println!(
        "  upstream (fake API server) pod requests since litecar started: {up_watches} watch, {up_lists} list pages"
    );

    // lists: the same walk through litecar and through the fake, three times each
    let up = client(&fake.url());
    let _ = get_json(&up, "/api/v1/pods?limit=1").await;
    println!("\nlist of {n} pods, limit=500 pages (3 walks each; time: median; peak RSS growth: largest)");
    for (who, c, p) in [("litecar", &lc, pid.as_str()), ("fake API server (+ the client)", &up, "self")] {
        let mut times = Vec::new();
        let mut growth = 0u64;
        let mut each = Vec::new();
        let mut anon = 0u64;
        let mut file = 0u64;
        let mut shape = (0, 0);
        for _ in 0..3 {
            let base = mem(p)[1];
            reset_peak(p);
            let (t, objects, pages) = walk(c).await;
            let g = mem(p)[0].saturating_sub(base);
            growth = growth.max(g);
            each.push(format!("{:.1}", g as f64 / 1024.0));
            anon = anon.max(mem(p)[2]);
            file = file.max(mem(p)[3]);
            times.push(t);
            shape = (objects, pages);
        }
        times.sort_by(f64::total_cmp);
        assert_eq!(shape.0, n, "{who} listed {} objects", shape.0);
        println!(
            "  {who:<32} {:.2} s ({} pages, {:.0} objects/s), peak RSS +{:.1} MB (walks: +{} MB), VmRSS {:.1} MB (RssAnon {:.1} MB, RssFile {:.1} MB); load {}",
            times[1],
            shape.1,
            n as f64 / times[1],
            growth as f64 / 1024.0,
            each.join(", +"),
            mem(p)[1] as f64 / 1024.0,
            anon as f64 / 1024.0,
            file as f64 / 1024.0,
            load()
        );
    }
    let _ = child.start_kill();
    let _ = child.wait().await;
}
