//! A test suite against a deployed service, one line per check: every
//! service's probes at the paths its declaration names and its `/version`,
//! and items-api's round trip (`smoke`); `preprod-test` adds its own checks
//! to the same suite.

use anyhow::{Context, Result, bail, ensure};
use reqwest::StatusCode;
use reqwest::blocking::Client;
use serde_json::{Value, json};

use crate::domain::github;
use crate::domain::service_url::ServiceUrl;
use crate::domain::services::Service;

/// The service whose API the item suites were written for.
pub const ITEMS_API: &str = "items-api";

/// Every service's probes, at its declared paths, and its `/version`; then
/// items-api's round trip.
pub fn smoke_checks(suite: &mut Suite, service: &Service) {
    let declared = &service.declaration;
    for path in [&declared.health_path, &declared.ready_path] {
        suite.check(&format!("GET {path} answers 200"), |c| {
            c.expect("GET", path, None, StatusCode::OK)
        });
    }
    let name = &service.name;
    suite.check(&format!("GET /version names {name} and a version"), |c| {
        let version = c.json("GET", "/version", None, StatusCode::OK)?;
        version["version"]
            .as_str()
            .filter(|v| !v.is_empty())
            .context("no version field")?;
        // Several services behind one host name would answer for each other.
        let answered = version["service"].as_str().unwrap_or_default();
        ensure!(
            answered == name,
            "{answered:?} answered, not {name}: check --url"
        );
        Ok(())
    });
    if service.name == ITEMS_API {
        items_round_trip(suite);
    }
}

fn items_round_trip(suite: &mut Suite) {
    suite.check("create → get → delete round trip", |c| {
        let name = format!("smoke-{}", fastrand::u64(..));
        let created = c.json(
            "POST",
            "/api/v1/items",
            Some(json!({"name": name})),
            StatusCode::CREATED,
        )?;
        let id = created["id"].as_str().context("created item has no id")?;
        let fetched = c.json("GET", &format!("/api/v1/items/{id}"), None, StatusCode::OK)?;
        if fetched["name"] != name.as_str() {
            bail!("GET returned {fetched}, not the created item");
        }
        c.expect(
            "DELETE",
            &format!("/api/v1/items/{id}"),
            None,
            StatusCode::NO_CONTENT,
        )?;
        c.expect(
            "GET",
            &format!("/api/v1/items/{id}"),
            None,
            StatusCode::NOT_FOUND,
        )
    });
}

/// Runs checks, printing one line per check, and counts failures.
pub struct Suite {
    client: Client,
    base: String,
    pub failed: usize,
    pub passed: usize,
}

impl Suite {
    pub fn new(target: &ServiceUrl) -> Result<Self> {
        let base = target.base();
        // The environment's link in Actions (cd.yml's `environment.url`).
        github::set_output("url", &base)?;
        let client = target.client(std::time::Duration::from_secs(10)).build()?;
        Ok(Self {
            client,
            base,
            failed: 0,
            passed: 0,
        })
    }

    pub fn check(&mut self, name: &str, check: impl FnOnce(&Self) -> Result<()>) {
        match check(self) {
            Ok(()) => {
                self.passed += 1;
                println!("  ✔ {name}");
            }
            Err(error) => {
                self.failed += 1;
                println!("  ✘ {name}: {error:#}");
            }
        }
    }

    pub fn finish(self, what: &str) -> Result<()> {
        println!(
            "{what}: {} passed, {} failed against {}",
            self.passed, self.failed, self.base
        );
        if self.failed > 0 {
            bail!(
                "{what} failed ({} of {} checks)",
                self.failed,
                self.passed + self.failed
            );
        }
        Ok(())
    }

    fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<reqwest::blocking::Response> {
        let url = format!("{}{path}", self.base);
        let mut request = self.client.request(method.parse()?, &url);
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().with_context(|| format!("{method} {url}"))
    }

    pub fn expect(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        status: StatusCode,
    ) -> Result<()> {
        self.text_of(method, path, body, status).map(drop)
    }

    pub fn text(&self, method: &str, path: &str, status: StatusCode) -> Result<String> {
        self.text_of(method, path, None, status)
    }

    fn text_of(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        status: StatusCode,
    ) -> Result<String> {
        let response = self.send(method, path, body)?;
        let got = response.status();
        let text = response.text()?;
        if got != status {
            bail!(
                "{method} {path} answered {got}, expected {status}: {}",
                text.chars().take(200).collect::<String>()
            );
        }
        Ok(text)
    }

    pub fn json(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        status: StatusCode,
    ) -> Result<Value> {
        let text = self.text_of(method, path, body, status)?;
        serde_json::from_str(&text).with_context(|| format!("{method} {path} did not answer JSON"))
    }
}

#[cfg(test)]
mod tests {
    use super::{Service, Suite, smoke_checks};
    use crate::domain::service_url::ServiceUrl;
    use crate::domain::services::Declaration;
    use std::io::{BufRead, BufReader, Write};

    /// A service named `name` on real TCP answering 200 on `ok` paths (JSON
    /// on /version) and 404 elsewhere; returns its URL and, when done, the
    /// paths it was asked.
    fn serve(
        name: &'static str,
        ok: &'static [&'static str],
        requests: usize,
    ) -> (String, std::thread::JoinHandle<Vec<String>>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let version = format!(r#"{{"service":"{name}","version":"0.1.0"}}"#);
        let server = std::thread::spawn(move || {
            let mut asked = Vec::new();
            for stream in listener.incoming().take(requests) {
                let mut stream = stream.unwrap();
                let mut line = String::new();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                reader.read_line(&mut line).unwrap();
                while reader.read_line(&mut String::new()).unwrap() > 2 {}
                let path = line.split_whitespace().nth(1).unwrap().to_owned();
                let (status, body) = match ok.contains(&path.as_str()) {
                    true => ("200 OK", version.as_str()),
                    false => ("404 Not Found", "{}"),
                };
                write!(
                    stream,
                    "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                )
                .unwrap();
                asked.push(path);
            }
            asked
        });
        (url, server)
    }

    #[test]
    fn smoke_probes_the_paths_a_service_declares_and_nothing_of_items_api() {
        let service = Service {
            name: "orders-api".into(),
            dir: "services/orders-api".into(),
            declaration: Declaration {
                image: "orders".into(),
                chart: "charts/orders".into(),
                port: 9091,
                health_path: "/live".into(),
                ready_path: "/ready".into(),
                values_file: "orders.yaml".into(),
            },
        };
        // As main() does before any client is built.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let (url, server) = serve("orders-api", &["/live", "/ready", "/version"], 3);
        let mut suite = Suite::new(&ServiceUrl::given(&url).unwrap()).unwrap();
        smoke_checks(&mut suite, &service);
        assert_eq!((suite.passed, suite.failed), (3, 0));
        assert_eq!(server.join().unwrap(), ["/live", "/ready", "/version"]);

        // items-api's probes are not where this service declares them: they fail.
        let (url, server) = serve("orders-api", &["/healthz", "/readyz", "/version"], 3);
        let mut suite = Suite::new(&ServiceUrl::given(&url).unwrap()).unwrap();
        smoke_checks(&mut suite, &service);
        assert_eq!((suite.passed, suite.failed), (1, 2));
        server.join().unwrap();

        // Another service behind the URL (two services on one host name): /version says so.
        let (url, server) = serve("items-api", &["/live", "/ready", "/version"], 3);
        let mut suite = Suite::new(&ServiceUrl::given(&url).unwrap()).unwrap();
        smoke_checks(&mut suite, &service);
        assert_eq!((suite.passed, suite.failed), (2, 1));
        server.join().unwrap();
    }
}
