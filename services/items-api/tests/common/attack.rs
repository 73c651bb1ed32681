//! Tools for the abuse suite (`tests/abuse.rs`): the real binary as a child
//! process (so its RSS can be read), a raw HTTP/1.1 client that tells an
//! answered request from one the server never took, and a `/healthz` probe
//! that samples latency and RSS while an attack runs.

// Each test crate uses a part of this module.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The items-api binary, serving on a free loopback port.
pub struct Service {
    pub child: Child,
    pub port: u16,
}

impl Service {
    /// Starts the binary with `env` (plus PORT=0 and JSON logs without the
    /// per-request lines) and waits for its `listening` line.
    pub fn start(env: &[(&str, &str)]) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_items-api"));
        command
            .env_clear()
            .env("PORT", "0")
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", "info,http=warn")
            .envs(env.iter().copied())
            .stdout(Stdio::piped());
        let mut child = command.spawn().expect("start items-api");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let port = loop {
            let line = lines.next().expect("exited before listening").unwrap();
            let event: serde_json::Value = serde_json::from_str(&line).expect("a JSON log line");
            if event["message"] == "listening" {
                break event["port"].as_u64().unwrap() as u16;
            }
        };
        // Keep reading stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        Self { child, port }
    }

    /// Resident memory in KiB, from /proc/<pid>/status.
    pub fn rss_kib(&self) -> u64 {
        rss_kib(self.child.id())
    }

    pub fn connect(&self) -> Conn {
        Conn::open(self.port).expect("connect to items-api")
    }

    /// Size of the `/metrics` text, in bytes.
    pub fn metrics_bytes(&self) -> usize {
        let response = self.connect().request("GET", "/metrics", &[], None);
        response.answer().body.len()
    }

    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// An HTTP response as read off the socket.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    /// The head, lowercased.
    pub head: String,
    pub body: Vec<u8>,
}

/// What became of one request.
#[derive(Debug)]
pub enum Outcome {
    Answered(Response),
    /// The connection closed or was refused before a single byte of answer:
    /// the server never took the request.
    NotTaken(String),
    /// Part of an answer, then nothing: a request the server took and failed.
    Broken(String),
}

impl Outcome {
    pub fn answer(self) -> Response {
        match self {
            Self::Answered(response) => response,
            other => panic!("no answer: {other:?}"),
        }
    }
}

/// One keep-alive HTTP/1.1 connection.
pub struct Conn {
    reader: BufReader<TcpStream>,
}

impl Conn {
    pub fn open(port: u16) -> std::io::Result<Self> {
        let stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        stream.set_nodelay(true)?;
        Ok(Self {
            reader: BufReader::new(stream),
        })
    }

    pub fn stream(&mut self) -> &mut TcpStream {
        self.reader.get_mut()
    }

    /// Sends one request and reads its answer.
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        json: Option<&str>,
    ) -> Outcome {
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: abuse\r\n");
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        if let Some(body) = json {
            head.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                body.len()
            ));
        }
        head.push_str("\r\n");
        head.push_str(json.unwrap_or(""));
        if let Err(error) = self.stream().write_all(head.as_bytes()) {
            return Outcome::NotTaken(format!("write: {error}"));
        }
        self.read_response()
    }

    /// Reads one response: status line, headers, a Content-Length body.
    pub fn read_response(&mut self) -> Outcome {
        let mut head = String::new();
        loop {
            let before = head.len();
            match self.reader.read_line(&mut head) {
                Ok(0) if head.is_empty() => return Outcome::NotTaken("closed".into()),
                Ok(0) => return Outcome::Broken(format!("closed inside the head: {head:?}")),
                Err(error) if head.is_empty() => return Outcome::NotTaken(error.to_string()),
                Err(error) => return Outcome::Broken(format!("{error} inside the head: {head:?}")),
                Ok(_) if &head[before..] == "\r\n" => break,
                Ok(_) => {}
            }
        }
        let head = head.to_ascii_lowercase();
        let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok());
        let length = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse::<usize>().ok())
            .unwrap_or(0);
        let mut body = vec![0; length];
        if let Err(error) = self.reader.read_exact(&mut body) {
            return Outcome::Broken(format!("{error} inside the body of {head:?}"));
        }
        match status {
            Some(status) => Outcome::Answered(Response { status, head, body }),
            None => Outcome::Broken(format!("not a status line: {head:?}")),
        }
    }
}

/// `/healthz` asked every 10 ms on its own keep-alive connection while an
/// attack runs, with the server's RSS sampled alongside.
pub struct Probe {
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Samples>>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct Samples {
    latencies: Vec<Duration>,
    failures: usize,
    peak_rss_kib: u64,
}

impl Probe {
    pub fn start(service: &Service) -> Self {
        let (port, pid) = (service.port, service.child.id());
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(Mutex::new(Samples::default()));
        let (stop2, samples2) = (stop.clone(), samples.clone());
        let thread = std::thread::spawn(move || {
            let mut conn = Conn::open(port).ok();
            while !stop2.load(Ordering::Relaxed) {
                let started = Instant::now();
                let answered = conn
                    .as_mut()
                    .map(|c| c.request("GET", "/healthz", &[], None));
                let mut samples = samples2.lock().unwrap();
                match answered {
                    Some(Outcome::Answered(r)) if r.status == 200 => {
                        samples.latencies.push(started.elapsed())
                    }
                    _ => {
                        samples.failures += 1;
                        conn = Conn::open(port).ok();
                    }
                }
                samples.peak_rss_kib = samples.peak_rss_kib.max(rss_kib(pid));
                drop(samples);
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        Self {
            stop,
            samples,
            thread: Some(thread),
        }
    }

    /// Stops the probe; returns its figures as one line.
    pub fn finish(mut self) -> String {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap();
        let mut samples = self.samples.lock().unwrap();
        samples.latencies.sort();
        let at = |q: f64| {
            let n = samples.latencies.len();
            (n > 0).then(|| samples.latencies[((n - 1) as f64 * q) as usize])
        };
        format!(
            "healthz p50 {:?} p99 {:?} ({} probes, {} failed); peak RSS {}",
            at(0.5).unwrap_or_default(),
            at(0.99).unwrap_or_default(),
            samples.latencies.len(),
            samples.failures,
            mib(samples.peak_rss_kib)
        )
    }
}

pub fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}
