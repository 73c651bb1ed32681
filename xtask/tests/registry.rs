//! The rules of `domain/registry.rs` against a real registry (Debian's
//! `docker-registry`) on loopback: plain HTTP only to loopback, a bearer token
//! sent as one and never in clear off loopback or in output; and `image build
//! --output`, which replaces only what is an OCI layout.

mod support;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};

use support::{Registry, TempDir, assert_fails, assert_ok, head, stderr, stdout, xtask};

/// A stand-in binary: content only matters for the digest.
fn fake_binary(dir: &Path, content: &str) -> String {
    let path = dir.join(format!("bin-{}", fastrand::u64(..)));
    std::fs::write(&path, content).unwrap();
    path.to_str().unwrap().to_owned()
}

/// A TCP relay on a loopback port in front of `target` (the real registry)
/// that keeps every byte clients send through it, per connection.
struct Relay {
    port: u16,
    sent: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl Relay {
    fn start(target: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let sent = Arc::new(Mutex::new(Vec::new()));
        let (log, target) = (sent.clone(), target.to_owned());
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let (log, target) = (log.clone(), target.clone());
                std::thread::spawn(move || relay(client, &target, &log));
            }
        });
        Self { port, sent }
    }

    /// Everything clients sent, one entry per connection.
    fn sent(&self) -> Vec<String> {
        let sent = self.sent.lock().unwrap();
        sent.iter()
            .map(|bytes| String::from_utf8_lossy(bytes).into_owned())
            .collect()
    }
}

/// Relays one connection, logging what the client sent as it is read and
/// before it is forwarded: by the time the client sees any answer (or the
/// connection's end), its bytes are in the log, so a test that reads the log
/// after the client process exits never races this thread.
fn relay(client: TcpStream, target: &str, log: &Mutex<Vec<Vec<u8>>>) {
    let entry = {
        let mut log = log.lock().unwrap();
        log.push(Vec::new());
        log.len() - 1
    };
    let Ok(server) = TcpStream::connect(target) else {
        return;
    };
    let (mut from_server, mut to_client) =
        (server.try_clone().unwrap(), client.try_clone().unwrap());
    let back = std::thread::spawn(move || {
        let _ = std::io::copy(&mut from_server, &mut to_client);
        let _ = to_client.shutdown(Shutdown::Write);
    });
    let (mut from_client, mut to_server) = (client, server);
    let mut buffer = [0; 16 * 1024];
    while let Ok(n @ 1..) = from_client.read(&mut buffer) {
        log.lock().unwrap()[entry].extend_from_slice(&buffer[..n]);
        if to_server.write_all(&buffer[..n]).is_err() {
            break;
        }
    }
    let _ = to_server.shutdown(Shutdown::Write);
    let _ = back.join();
}

/// How many requests clients sent (a request line ends in ` HTTP/1.1`; a
/// body may run into the next request without a line break), and the values
/// of their `authorization` headers.
fn requests_and_authorizations(sent: &[String]) -> (usize, Vec<String>) {
    let requests = sent
        .iter()
        .map(|s| s.matches(" HTTP/1.1\r\n").count())
        .sum();
    let authorizations = sent
        .iter()
        .flat_map(|s| s.split("\r\n"))
        .filter_map(|line| {
            line.split_once(':')
                .filter(|(name, _)| name.eq_ignore_ascii_case("authorization"))
        })
        .map(|(_, value)| value.trim().to_owned())
        .collect();
    (requests, authorizations)
}

#[test]
fn a_bearer_token_goes_with_every_request_and_is_never_printed() {
    let dir = TempDir::new("registry-bearer");
    let Some(registry) = Registry::start() else {
        return;
    };
    let relay = Relay::start(&registry.addr);
    let repo = format!("127.0.0.1:{}/service-demo", relay.port);
    let token = "tok-3n9fQ-do-not-print";
    let binary = fake_binary(dir.path(), "bits for bearer");
    let envs = [("REGISTRY_TOKEN", token)];

    let push = xtask(
        &["image", "build", "--binary", &binary, "--push", &repo],
        &envs,
    );
    assert_ok(&push);
    let tag = format!("main-{}", head());
    let inspect = xtask(&["image", "inspect", &tag, "--repository", &repo], &envs);
    assert_ok(&inspect);
    for output in [&push, &inspect] {
        let all = format!("{}{}", stdout(output), stderr(output));
        assert!(!all.contains(token), "the token leaked: {all}");
    }

    // Plain HTTP on loopback, and the token as a bearer on each request.
    let sent = relay.sent();
    assert!(
        sent.iter()
            .any(|s| s.contains("PUT /v2/service-demo/manifests/")),
        "no manifest was pushed through the relay"
    );
    let (requests, authorizations) = requests_and_authorizations(&sent);
    assert!(requests >= 10, "{requests} requests");
    assert_eq!(authorizations, vec![format!("Bearer {token}"); requests]);
}

#[test]
fn a_bearer_token_the_registry_refuses_is_named_and_not_printed() {
    let dir = TempDir::new("registry-bearer-refused");
    // bcrypt (cost 4) of "s3cret-Pa55word-do-not-print", as in tests/image.rs.
    let hash = "$2b$04$E5jSM2Wc3F.Qsab7Zzm3LeQssIIJlamB9KzT/cBvwm0r2qOE0TBxK";
    let Some(registry) = Registry::start_with_users(&format!("ci:{hash}\n")) else {
        return;
    };
    let token = "tok-7Yq2-do-not-print";
    let binary = fake_binary(dir.path(), "bits");
    let output = xtask(
        &[
            "image",
            "build",
            "--binary",
            &binary,
            "--push",
            &registry.repository(),
        ],
        &[("REGISTRY_TOKEN", token)],
    );
    let message = assert_fails(&output);
    assert!(message.contains("refused the credentials"), "{message}");
    assert!(message.contains("REGISTRY_TOKEN"), "{message}");
    assert!(!message.contains(token), "the token leaked: {message}");
    assert!(
        !registry.requests().iter().any(|r| r.starts_with("PUT ")),
        "nothing was written: {:?}",
        registry.requests()
    );

    // A token beside a user name and password is ambiguous: refused before any request.
    let before = registry.requests().len();
    let output = xtask(
        &[
            "image",
            "build",
            "--binary",
            &binary,
            "--push",
            &registry.repository(),
        ],
        &[
            ("REGISTRY_USERNAME", "ci"),
            ("REGISTRY_PASSWORD", "s3cret-Pa55word-do-not-print"),
            ("REGISTRY_TOKEN", token),
        ],
    );
    let message = assert_fails(&output);
    assert!(message.contains("REGISTRY_TOKEN alone"), "{message}");
    assert!(!message.contains(token) && !message.contains("s3cret-Pa55word-do-not-print"));
    assert_eq!(registry.requests().len(), before);
}

#[test]
fn plain_http_is_spoken_only_to_loopback_so_a_token_never_crosses_a_network_in_clear() {
    let dir = TempDir::new("registry-https");
    let Some(registry) = Registry::start() else {
        return;
    };
    let relay = Relay::start(&registry.addr);
    let token = "tok-Zx81-do-not-print";
    let binary = fake_binary(dir.path(), "bits for https");
    // 0.0.0.0 reaches this machine's loopback listener on Linux, but it is
    // not a loopback address: the client must insist on TLS.
    let repo = format!("0.0.0.0:{}/service-demo", relay.port);
    let output = xtask(
        &["image", "build", "--binary", &binary, "--push", &repo],
        &[("REGISTRY_TOKEN", token)],
    );
    let message = assert_fails(&output);
    assert!(!message.contains(token), "the token leaked: {message}");
    let sent: Vec<Vec<u8>> = relay.sent.lock().unwrap().clone();
    // A connection the client opened but wrote nothing on carries no token.
    let sent: Vec<Vec<u8>> = sent.into_iter().filter(|b| !b.is_empty()).collect();
    assert!(!sent.is_empty(), "the client never sent a byte");
    for bytes in &sent {
        // A TLS handshake record (content type 22, version 3.x), no HTTP.
        assert_eq!(
            bytes.get(..2),
            Some(&[0x16, 0x03][..]),
            "{:?}",
            String::from_utf8_lossy(bytes)
        );
        assert!(!String::from_utf8_lossy(bytes).contains(token));
    }
    // Nothing reached the registry's handlers (its launcher waits on a TCP
    // connect, so any request here would be the client's).
    assert_eq!(registry.requests(), Vec::<String>::new());
}

fn build_to(binary: &str, output: &Path) -> std::process::Output {
    xtask(
        &[
            "image",
            "build",
            "--binary",
            binary,
            "--output",
            output.to_str().unwrap(),
        ],
        &[],
    )
}

/// Every file under `dir`, relative, with its contents.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(next) = stack.pop() {
        for entry in std::fs::read_dir(&next).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let name = path.strip_prefix(dir).unwrap().display().to_string();
                files.push((name, std::fs::read(&path).unwrap()));
            }
        }
    }
    files.sort();
    files
}

#[test]
fn output_replaces_only_an_oci_layout_and_never_a_directory_of_other_files() {
    let dir = TempDir::new("image-output");
    let bin_dir = TempDir::new("image-output-bin");
    let binary = fake_binary(bin_dir.path(), "bits for a layout");
    // Absent, then its own layout again: written, then replaced.
    let layout = dir.path().join("out/layout");
    assert_ok(&build_to(&binary, &layout));
    assert!(layout.join("oci-layout").is_file() && layout.join("index.json").is_file());
    assert_ok(&build_to(&binary, &layout));
    // An empty directory is fine too.
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    assert_ok(&build_to(&binary, &empty));
    assert!(empty.join("oci-layout").is_file());

    // A directory of someone's files, and a layout with someone's file in it:
    // refused, with nothing changed, nothing left beside them.
    let documents = dir.path().join("documents");
    std::fs::create_dir_all(documents.join("notes")).unwrap();
    std::fs::write(documents.join("thesis.txt"), "years of work").unwrap();
    std::fs::write(documents.join("notes/a.md"), "a").unwrap();
    let mixed = dir.path().join("mixed");
    support::copy_dir(&layout, &mixed);
    std::fs::write(mixed.join("README"), "mine").unwrap();
    // The old code deleted `<output>.tmp` without looking.
    std::fs::create_dir(dir.path().join("documents.tmp")).unwrap();
    std::fs::write(dir.path().join("documents.tmp/keep"), "keep").unwrap();
    let before = snapshot(dir.path());
    for target in [&documents, &mixed] {
        let message = assert_fails(&build_to(&binary, target));
        assert!(
            message.contains("not empty and holds more than an OCI layout")
                && message.contains("point --output at a new or empty directory"),
            "{message}"
        );
    }
    assert_eq!(snapshot(dir.path()), before);
    // A file is not a directory to write into.
    let file = dir.path().join("documents/thesis.txt");
    assert_fails(&build_to(&binary, &file));
    assert_eq!(snapshot(dir.path()), before);
}
