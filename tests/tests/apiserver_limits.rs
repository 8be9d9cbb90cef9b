//! The REST API under abuse, over real TLS against the real server: a client that sends half a
//! request head (slowloris), never finishes its TLS handshake, idles on a keep-alive
//! connection, trickles a body, opens more connections than allowed, sends an oversized body,
//! or sends requests faster than its rate limit.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::Empty;
use hyper_util::rt::{TokioExecutor, TokioIo};
use suyun_apiserver::ratelimit::RateLimit;
use suyun_apiserver::server::Limits;
use suyun_tests::apiserver::{ServerOptions, TestServer};
use suyun_tests::https::tls_connect;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

/// How long a test waits for the server to close a connection before calling it held open.
const GIVE_UP: Duration = Duration::from_secs(8);
/// Scheduling delay tolerated on a loaded machine beyond a configured timeout.
const SLACK: Duration = Duration::from_secs(3);

async fn start(name: &str, options: ServerOptions) -> (TestServer, suyun_operator::store::Publisher) {
    TestServer::with_sample(name, options).await.unwrap()
}

fn limits(change: impl FnOnce(&mut Limits)) -> ServerOptions {
    let mut options = ServerOptions::default();
    change(&mut options.limits);
    options
}

/// Reads until the peer closes the connection (end of stream or an error); returns what was
/// read and how long it took, or `None` when it is still open after `wait`.
async fn read_until_closed(stream: &mut (impl AsyncRead + Unpin), wait: Duration) -> Option<(String, Duration)> {
    let start = Instant::now();
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match tokio::time::timeout_at((start + wait).into(), stream.read(&mut buffer)).await {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => return Some((String::from_utf8_lossy(&received).into_owned(), start.elapsed())),
            Ok(Ok(n)) => received.extend_from_slice(&buffer[..n]),
        }
    }
}

#[tokio::test]
async fn slow_and_idle_clients_are_disconnected() {
    let timeout = Duration::from_millis(400);
    let (server, _publisher) = start(
        "limits-slow",
        limits(|l| {
            l.header_read_timeout = timeout;
            l.handshake_timeout = timeout;
        }),
    )
    .await;
    let tls = server.anonymous().tls;

    // Slowloris: half a request head, then nothing.
    let mut slow = tls_connect(server.addr, tls.clone()).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: ").await.unwrap();
    slow.flush().await.unwrap();
    let (answer, after) =
        read_until_closed(&mut slow, GIVE_UP).await.expect("a half-sent request head holds its connection");
    assert!(answer.is_empty(), "a timed-out head gets no answer: {answer}");
    assert!(after >= timeout - Duration::from_millis(50) && after < timeout + SLACK, "closed after {after:?}");

    // A TLS connection that never sends a byte.
    let mut silent = tls_connect(server.addr, tls.clone()).await.unwrap();
    let (_, after) = read_until_closed(&mut silent, GIVE_UP).await.expect("a silent connection stays");
    assert!(after < timeout + SLACK, "closed after {after:?}");

    // A TCP connection that never starts its TLS handshake.
    let mut raw = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let (_, after) = read_until_closed(&mut raw, GIVE_UP).await.expect("a handshake that never starts");
    assert!(after < timeout + SLACK, "closed after {after:?}");

    // A well-behaved client is not affected.
    assert_eq!(server.anonymous().get("/healthz").await.unwrap().status, StatusCode::OK);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed() {
    let idle = Duration::from_millis(400);
    let (server, _publisher) = start(
        "limits-idle",
        limits(|l| {
            l.header_read_timeout = Duration::from_secs(30);
            l.idle_timeout = idle;
        }),
    )
    .await;
    let mut stream = tls_connect(server.addr, server.anonymous().tls).await.unwrap();
    stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n").await.unwrap();
    let mut buffer = [0u8; 1024];
    let n = stream.read(&mut buffer).await.unwrap();
    assert!(String::from_utf8_lossy(&buffer[..n]).starts_with("HTTP/1.1 200"), "{}", String::from_utf8_lossy(&buffer));
    let (_, after) = read_until_closed(&mut stream, GIVE_UP).await.expect("an idle connection stays open");
    assert!(after >= idle - Duration::from_millis(50) && after < idle + SLACK, "closed after {after:?}");

    // HTTP/2 (negotiated with ALPN): the connection ends (GOAWAY) once idle, too.
    let mut h2 = (*server.anonymous().tls).clone();
    h2.alpn_protocols = vec![b"h2".to_vec()];
    let stream = tls_connect(server.addr, Arc::new(h2)).await.unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await.unwrap();
    let connection = tokio::spawn(connection);
    let request = http::Request::get("https://localhost/healthz").body(Empty::<Bytes>::new()).unwrap();
    assert_eq!(sender.send_request(request).await.unwrap().status(), StatusCode::OK);
    let start = Instant::now();
    tokio::time::timeout(GIVE_UP, connection).await.expect("an idle HTTP/2 connection stays open").unwrap().ok();
    let after = start.elapsed();
    assert!(after >= idle - Duration::from_millis(50) && after < idle + SLACK, "closed after {after:?}");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_trickled_body_times_out_with_408() {
    let (server, _publisher) =
        start("limits-request", limits(|l| l.request_timeout = Duration::from_millis(400))).await;
    let mut stream = tls_connect(server.addr, server.anonymous().tls).await.unwrap();
    stream
        .write_all(
            b"POST /api/v1/systems/JS-320100-0002/cutover-approval HTTP/1.1\r\nHost: localhost\r\n\
              Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"reason\":",
        )
        .await
        .unwrap();
    stream.flush().await.unwrap();
    let (answer, after) = read_until_closed(&mut stream, GIVE_UP).await.expect("no answer");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("content-type: application/problem+json"), "{answer}");
    assert!(after < Duration::from_millis(400) + SLACK, "answered after {after:?}");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn the_connection_limit_holds() {
    let (server, _publisher) = start(
        "limits-connections",
        limits(|l| {
            l.max_connections = 3;
            l.header_read_timeout = Duration::from_secs(30);
        }),
    )
    .await;
    let tls = server.anonymous().tls;
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(tls_connect(server.addr, tls.clone()).await.unwrap());
    }
    // The fourth is not accepted (its handshake gets no answer) while three are open.
    let fourth = tokio::time::timeout(Duration::from_millis(700), tls_connect(server.addr, tls.clone())).await;
    assert!(fourth.is_err(), "a fourth connection was served with max_connections = 3");
    // One closes: a new connection gets its slot.
    drop(open.pop());
    let reply = tokio::time::timeout(Duration::from_secs(5), server.anonymous().get("/healthz"))
        .await
        .expect("no slot freed after a connection closed")
        .unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn an_oversized_body_gets_413_problem_json() {
    let (server, _publisher) = start("limits-body", limits(|l| l.max_body_bytes = 1024)).await;
    let path = "/api/v1/systems/JS-320100-0002/cutover-approval";
    let nanjing = server.with_certificate("nanjing-ops", &["320100"]);
    let json = [("content-type", "application/json")];

    // Declared length over the limit: refused before authentication and before reading it.
    for caller in [&nanjing, &server.anonymous()] {
        let reply = caller.send(Method::POST, path, &json, Bytes::from(vec![b' '; 2048])).await.unwrap();
        assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", reply.text());
        assert_eq!(reply.header("content-type").as_deref(), Some("application/problem+json"));
        assert_eq!(reply.json()["status"], 413);
    }

    // No declared length (chunked): refused when the limit is crossed.
    let mut stream = tls_connect(server.addr, server.anonymous().tls).await.unwrap();
    let chunk = " ".repeat(2000);
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nConnection: close\r\n\
         Transfer-Encoding: chunked\r\n\r\n{:x}\r\n{chunk}\r\n0\r\n\r\n",
        chunk.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let (answer, _) = read_until_closed(&mut stream, GIVE_UP).await.expect("no answer");
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("content-type: application/problem+json"), "{answer}");

    // A body within the limit reaches the application.
    let reply = server.anonymous().send(Method::POST, path, &json, Bytes::from_static(b"{}")).await.unwrap();
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.text());
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_burst_from_one_identity_gets_429_and_others_are_unaffected() {
    let options = ServerOptions { rate_limit: RateLimit { per_second: 0.25, burst: 3 }, ..ServerOptions::default() };
    let (server, _publisher) = start("limits-rate", options).await;
    let nanjing = server.with_certificate("nanjing-ops", &["320100"]);
    let suzhou = server.with_certificate("suzhou-ops", &["320500"]);

    for _ in 0..3 {
        assert_eq!(nanjing.get("/api/v1/nodes").await.unwrap().status, StatusCode::OK);
    }
    let limited = nanjing.get("/api/v1/nodes").await.unwrap();
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS, "{}", limited.text());
    assert_eq!(limited.header("content-type").as_deref(), Some("application/problem+json"));
    assert_eq!(limited.json()["status"], 429);
    let retry_after: u64 = limited.header("retry-after").expect("Retry-After").parse().unwrap();
    // One request every 4 s: the next one is allowed at most 4 s after the burst.
    assert!((1..=4).contains(&retry_after), "Retry-After: {retry_after}");

    // Another identity has its own bucket; unauthenticated requests are answered 401, not 429.
    assert_eq!(suzhou.get("/api/v1/nodes").await.unwrap().status, StatusCode::OK);
    assert_eq!(server.anonymous().get("/api/v1/nodes").await.unwrap().status, StatusCode::UNAUTHORIZED);
    // Health and the OpenAPI document are not rate limited.
    assert_eq!(nanjing.get("/healthz").await.unwrap().status, StatusCode::OK);

    // After Retry-After, the identity may send again.
    tokio::time::sleep(Duration::from_secs(retry_after)).await;
    assert_eq!(nanjing.get("/api/v1/nodes").await.unwrap().status, StatusCode::OK);
    server.stop().await.unwrap();
}
