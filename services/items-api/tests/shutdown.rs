//! Graceful shutdown of the real binary: SIGTERM while slow requests are in
//! flight. Every one completes, `/readyz` is 503 during the drain while new
//! connections are still served, and the process exits 0.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const DRAIN_SECONDS: u64 = 2;

/// Starts the binary on a free port and returns it with the port it logged.
fn start_server() -> (Child, u16) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_items-api"))
        .env("PORT", "0")
        .env("LOG_FORMAT", "json")
        .env("SHUTDOWN_DRAIN_SECONDS", DRAIN_SECONDS.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start items-api");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let port = loop {
        let line = lines
            .next()
            .expect("server exited before listening")
            .unwrap();
        let event: serde_json::Value = serde_json::from_str(&line).expect("JSON log line");
        if event["message"] == "listening" {
            break event["port"].as_u64().unwrap() as u16;
        }
    };
    // Keep draining stdout so the server never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    (child, port)
}

/// A POST whose body arrives in two parts, so the request is in flight between them.
struct SlowRequest {
    stream: TcpStream,
    rest: &'static [u8],
}

impl SlowRequest {
    fn start(port: u16) -> Self {
        let body: &'static [u8] = br#"{"name":"slow request"}"#;
        let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        write!(
            stream,
            "POST /api/v1/items HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .unwrap();
        let (first, rest) = body.split_at(5);
        stream.write_all(first).unwrap();
        stream.flush().unwrap();
        Self { stream, rest }
    }

    /// Sends the rest of the body and returns the response status.
    fn finish(mut self) -> u16 {
        self.stream.write_all(self.rest).unwrap();
        let mut response = Vec::new();
        let mut buf = [0; 4096];
        // Read until the head is in; the status line is all we need.
        while !response.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = self.stream.read(&mut buf).expect("response");
            assert!(n > 0, "connection closed without a response");
            response.extend_from_slice(&buf[..n]);
        }
        let head = String::from_utf8_lossy(&response);
        head.split_whitespace().nth(1).unwrap().parse().unwrap()
    }
}

/// A one-shot GET on a new connection; returns the status.
fn get_status(port: u16, path: &str) -> u16 {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn send_sigterm(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn sigterm_drains_then_exits_cleanly() {
    let (mut child, port) = start_server();
    assert_eq!(get_status(port, "/readyz"), 200);

    let during_drain = SlowRequest::start(port);
    let after_drain = SlowRequest::start(port);
    // Let the server read the first part of both bodies.
    std::thread::sleep(Duration::from_millis(200));

    let terminated_at = Instant::now();
    send_sigterm(&child);
    std::thread::sleep(Duration::from_millis(300));

    // Draining: not ready, but alive and still accepting new connections.
    assert_eq!(get_status(port, "/readyz"), 503);
    assert_eq!(get_status(port, "/healthz"), 200);
    assert_eq!(during_drain.finish(), 201);

    // Finish the second request after the drain period, when the listener is
    // closed: an in-flight request still completes.
    std::thread::sleep(Duration::from_secs(DRAIN_SECONDS) + Duration::from_millis(500));
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "listener should be closed after the drain"
    );
    assert_eq!(after_drain.finish(), 201);

    let status = child.wait().unwrap();
    assert!(status.success(), "exit status {status}");
    let elapsed = terminated_at.elapsed();
    assert!(
        elapsed >= Duration::from_secs(DRAIN_SECONDS),
        "exited before the drain: {elapsed:?}"
    );
}

#[test]
fn healthcheck_subcommand_reports_the_server_state() {
    let (mut child, port) = start_server();
    let healthcheck = |port: u16| {
        Command::new(env!("CARGO_BIN_EXE_items-api"))
            .arg("healthcheck")
            .env("PORT", port.to_string())
            .output()
            .unwrap()
    };
    assert!(healthcheck(port).status.success());
    child.kill().unwrap();
    child.wait().unwrap();
    let output = healthcheck(port);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot connect"));
}

#[test]
fn invalid_configuration_fails_at_start_naming_the_variable() {
    let output = Command::new(env!("CARGO_BIN_EXE_items-api"))
        .env("PORT", "http")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("PORT"));
}
