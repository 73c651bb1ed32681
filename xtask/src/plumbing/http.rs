//! One HTTP client for every request xtask makes: its user agent, a timeout
//! on the whole request, and no redirect followed unless the caller asks (a
//! redirect to another host would carry a token there, or hide where an
//! answer came from). TLS is rustls with ring, installed here.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use reqwest::blocking::{Client, ClientBuilder};
use reqwest::redirect::Policy;

/// What every request says it is.
pub const USER_AGENT: &str = "service-demo-xtask";

/// The timeout of an API request (GitHub, Argo CD, a service).
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// The builder every client starts from: the user agent, `timeout` for a
/// whole request, no redirect followed (the caller sees the 3xx itself).
pub fn builder(timeout: Duration) -> ClientBuilder {
    let _ = rustls::crypto::ring::default_provider().install_default();
    Client::builder()
        .user_agent(USER_AGENT)
        .timeout(timeout)
        .redirect(Policy::none())
}

/// `builder(timeout)`, built.
pub fn client(timeout: Duration) -> Result<Client> {
    builder(timeout)
        .build()
        .context("building the HTTP client (TLS setup)")
}

/// The body of `GET url`, which must answer 2xx; redirects are followed
/// only when `follow_redirects` (a download from a host that moves files).
pub fn get_bytes(url: &str, timeout: Duration, follow_redirects: bool) -> Result<Vec<u8>> {
    let mut builder = builder(timeout);
    if follow_redirects {
        builder = builder.redirect(Policy::limited(10));
    }
    let response = builder
        .build()?
        .get(url)
        .send()
        .with_context(|| format!("GET {url}"))?;
    ensure!(
        response.status().is_success(),
        "GET {url}: {}",
        response.status()
    );
    Ok(response.bytes()?.to_vec())
}

/// The status of `GET url`, if anything answered within `timeout`.
pub fn status(url: &str, timeout: Duration) -> Option<u16> {
    client(timeout)
        .ok()?
        .get(url)
        .send()
        .ok()
        .map(|r| r.status().as_u16())
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpListener;

    use super::*;

    /// A server answering every connection with `answer`, counting them.
    fn serve(answer: &'static str) -> (String, std::sync::mpsc::Receiver<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let mut stream = stream.unwrap();
                let mut request = [0u8; 4096];
                let n = stream.read(&mut request).unwrap_or(0);
                let _ = tx.send(String::from_utf8_lossy(&request[..n]).into_owned());
                let _ = stream.write_all(answer.as_bytes());
            }
        });
        (url, rx)
    }

    #[test]
    fn a_redirect_is_answered_as_itself_and_the_user_agent_is_sent() {
        let (url, requests) = serve(
            "HTTP/1.1 302 Found\r\nLocation: /elsewhere\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
        assert_eq!(status(&format!("{url}/here"), TIMEOUT), Some(302));
        let request = requests.recv().unwrap();
        assert!(
            request.contains(&format!("user-agent: {USER_AGENT}")),
            "{request}"
        );
        assert!(
            requests.recv_timeout(Duration::from_millis(200)).is_err(),
            "the redirect was followed"
        );
        let error = get_bytes(&format!("{url}/here"), TIMEOUT, false).unwrap_err();
        assert!(format!("{error:#}").contains("302"), "{error:#}");
    }

    #[test]
    fn a_silent_server_times_out() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let started = std::time::Instant::now();
        assert_eq!(status(&url, Duration::from_millis(300)), None);
        assert!(started.elapsed() < Duration::from_secs(5));
        drop(listener);
    }
}
