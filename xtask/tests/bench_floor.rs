//! `bench http --floor`'s server, `xtask/bench/floor/floor.c`, built with the
//! system's C compiler and spoken to over real TCP: it must answer every
//! request once, however the request arrives, or the floor's req/s and CPU
//! per request (the ceiling every ratio is read against) would be wrong.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use support::{TempDir, free_port, on_path, require};

/// What the floor answers to every request.
const ANSWER: &str = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 15\r\n\r\n{\"status\":\"ok\"}";

struct Floor(Child);

impl Drop for Floor {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Reads until `answers` whole answers arrived (or 5 s passed), then checks
/// that nothing more comes.
fn read_answers(stream: &mut TcpStream, answers: usize) -> String {
    let expected = ANSWER.len() * answers;
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buffer = [0u8; 4096];
    while got.len() < expected && Instant::now() < deadline {
        match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buffer[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(e) => panic!("reading the floor's answers: {e}"),
        }
    }
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    if let Ok(n) = stream.read(&mut buffer) {
        got.extend_from_slice(&buffer[..n]);
    }
    String::from_utf8(got).unwrap()
}

#[test]
fn the_floor_answers_each_request_once_however_it_arrives() {
    let Some(()) = require(on_path("cc"), "a C compiler (cc)") else {
        return;
    };
    let dir = TempDir::new("floor");
    let binary = dir.path().join("floor");
    let source = concat!(env!("CARGO_MANIFEST_DIR"), "/bench/floor/floor.c");
    let built = Command::new("cc")
        .args(["-O2", "-o"])
        .arg(&binary)
        .arg(source)
        .status()
        .unwrap();
    assert!(built.success(), "cc could not build {source}");
    let port = free_port();
    let _floor = Floor(
        Command::new(&binary)
            .env("PORT", port.to_string())
            .spawn()
            .unwrap(),
    );
    let addr = format!("127.0.0.1:{port}");
    assert!(
        xtask::plumbing::process::wait_listening(&addr, Duration::from_secs(5)),
        "the floor never listened on {port}"
    );
    let mut stream = TcpStream::connect(&addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let get = "GET /healthz HTTP/1.1\r\nHost: floor\r\n\r\n";
    let body = "{\"name\":\"\r\n\r\nx\"}";
    let post = format!(
        "POST /api/v1/items HTTP/1.1\r\nHost: floor\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );

    // One request, one answer, on a connection kept alive.
    stream.write_all(get.as_bytes()).unwrap();
    assert_eq!(read_answers(&mut stream, 1), ANSWER);
    // A body (holding a blank line of its own) split across two writes: one
    // answer, after the last byte.
    let (head, rest) = post.split_at(post.len() - 5);
    stream.write_all(head.as_bytes()).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    stream.write_all(rest.as_bytes()).unwrap();
    assert_eq!(read_answers(&mut stream, 1), ANSWER);
    // Three pipelined in one write, the header name in another case.
    let lower = post.replace("Content-Length", "content-length");
    stream
        .write_all(format!("{get}{lower}{get}").as_bytes())
        .unwrap();
    assert_eq!(read_answers(&mut stream, 3), ANSWER.repeat(3));
}
