//! `cargo xtask smoke` and `cargo xtask preprod-test`: test suites against a
//! deployed service (`--service NAME`; a workspace of one needs no flag),
//! reporting each check. Every service is probed where its declaration says
//! (`health-path`, `ready-path`) and asked for `/version`; items-api's API has
//! suites of its own. `preprod-test` records its result as the
//! `preprod-tests` gate, bound to the commit and the tested digest.

use anyhow::{Context, Result, bail, ensure};
use reqwest::StatusCode;
use reqwest::blocking::Client;
use serde_json::{Value, json};

use crate::domain::attestation::{PreprodPredicate, Results, Signer};
use crate::domain::gate_store::{
    self, Conclusion, Gate, GateStore, GateStoreOptions, PREPROD_GATE,
};
use crate::domain::github;
use crate::domain::gitops::GitopsOptions;
use crate::domain::service_url::{ServiceUrl, UrlOptions};
use crate::domain::services::{self, RepositoryOptions, Service, ServiceSelection};
use crate::domain::tags;

/// The service whose API the item suites below were written for.
const ITEMS_API: &str = "items-api";

#[derive(clap::Args)]
pub struct SmokeArgs {
    /// Where the service answers: --url, or --env/--pr through --ingress-url.
    #[command(flatten)]
    target: UrlOptions,
    #[command(flatten)]
    services: ServiceSelection,
    #[command(flatten)]
    gitops: GitopsOptions,
}

#[derive(clap::Args)]
pub struct PreprodTestArgs {
    /// Where the service answers in preprod: --url, or --env preprod through --ingress-url.
    #[command(flatten)]
    target: UrlOptions,
    /// The commit preprod should be running; /version must report it.
    #[arg(long)]
    sha: String,
    /// The image digest preprod runs (recorded with the gate).
    #[arg(long)]
    digest: String,
    /// Where the service's image repository is (--registry or --repository): with
    /// GATE_SIGNING_KEY set, the signed result is stored there beside the image (cosign's
    /// sha256-<hex>.att tag).
    #[command(flatten)]
    repositories: RepositoryOptions,
    #[command(flatten)]
    services: ServiceSelection,
    #[command(flatten)]
    store: GateStoreOptions,
    #[command(flatten)]
    gitops: GitopsOptions,
}

pub fn smoke(args: SmokeArgs) -> Result<()> {
    let service = args.services.one(&services::load_current()?)?;
    let mut suite = Suite::new(&args.target.resolve(&service, &args.gitops)?)?;
    smoke_checks(&mut suite, &service);
    suite.finish(&format!("{} smoke", service.name))
}

pub fn preprod_test(args: PreprodTestArgs) -> Result<()> {
    tags::validate_digest(&args.digest)?;
    let sha = gate_store::full_sha(&args.gitops, &args.sha)?;
    let all = services::load_current()?;
    let service = args.services.one(&all)?;
    let store = GateStore::open(&args.store, &args.gitops)?;
    // Opened before the suite runs, so a missing repository fails first.
    let repository = args.repositories.for_service(&service, &all)?;
    let signer = Signer::from_env(repository.as_deref())?;
    let mut suite = Suite::new(&args.target.resolve(&service, &args.gitops)?)?;
    let name = service.name.clone();
    suite.check("/version reports the service and the commit under test", |c| {
        let version = c.json("GET", "/version", None, StatusCode::OK)?;
        let running = version["gitCommit"].as_str().unwrap_or_default();
        if running != sha {
            bail!("preprod runs commit {running:?}, not {sha}: wait for the rollout, or test the right commit");
        }
        // Services built from one commit all report it: the URL must be this one's.
        let answered = version["service"].as_str().unwrap_or_default();
        if answered != name {
            bail!("{answered:?} answered, not {name}: the URL must be {name}'s preprod address");
        }
        Ok(())
    });
    smoke_checks(&mut suite, &service);
    preprod_checks(&mut suite, &service);
    let conclusion = if suite.failed == 0 {
        Conclusion::Success
    } else {
        Conclusion::Failure
    };
    store.record(
        &sha,
        PREPROD_GATE,
        &Gate {
            conclusion,
            digest: args.digest.clone(),
        },
    )?;
    println!(
        "recorded gate {PREPROD_GATE} = {conclusion:?} for {sha} (image {})",
        args.digest
    );
    if let Some(signer) = &signer {
        let results = Results {
            passed: suite.passed,
            failed: suite.failed,
        };
        signer.attest_preprod(
            &args.digest,
            &PreprodPredicate::now(&sha, conclusion, results),
        )?;
    }
    suite.finish("preprod tests")
}

/// Every service's probes, at its declared paths, and its `/version`; then
/// items-api's round trip.
fn smoke_checks(suite: &mut Suite, service: &Service) {
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

/// The fuller suite preprod runs before a release can be cut: every
/// service's metrics, then items-api's API.
fn preprod_checks(suite: &mut Suite, service: &Service) {
    suite.check("GET /metrics counts requests", |c| {
        let text = c.text("GET", "/metrics", StatusCode::OK)?;
        if !text.contains("http_requests_total") {
            bail!("no http_requests_total in /metrics");
        }
        Ok(())
    });
    if service.name == ITEMS_API {
        items_preprod_checks(suite);
    }
}

// long: a list of independent checks, each a few lines; read top to bottom.
fn items_preprod_checks(suite: &mut Suite) {
    suite.check("an invalid item is a 422 naming the field", |c| {
        let problem = c.json(
            "POST",
            "/api/v1/items",
            Some(json!({"name": ""})),
            StatusCode::UNPROCESSABLE_ENTITY,
        )?;
        if !problem.to_string().contains("name") {
            bail!("the problem does not name the field: {problem}");
        }
        Ok(())
    });
    suite.check("an unknown route is a JSON 404", |c| {
        c.json("GET", "/no-such-route", None, StatusCode::NOT_FOUND)
            .map(drop)
    });
    suite.check("update bumps the version", |c| {
        let created = c.json(
            "POST",
            "/api/v1/items",
            Some(json!({"name": "preprod"})),
            StatusCode::CREATED,
        )?;
        let id = created["id"].as_str().context("no id")?;
        let updated = c.json(
            "PUT",
            &format!("/api/v1/items/{id}"),
            Some(json!({"name": "preprod 2"})),
            StatusCode::OK,
        )?;
        let result = if updated["version"].as_u64() > created["version"].as_u64() {
            Ok(())
        } else {
            Err(anyhow::anyhow!(
                "version did not increase: {created} → {updated}"
            ))
        };
        c.expect(
            "DELETE",
            &format!("/api/v1/items/{id}"),
            None,
            StatusCode::NO_CONTENT,
        )?;
        result
    });
    suite.check("list pages with limit", |c| {
        let page = c.json("GET", "/api/v1/items?limit=1", None, StatusCode::OK)?;
        if page.as_array().is_none_or(|items| items.len() > 1) {
            bail!("limit=1 returned {page}");
        }
        Ok(())
    });
}

/// Runs checks, printing one line per check, and counts failures.
struct Suite {
    client: Client,
    base: String,
    failed: usize,
    passed: usize,
}

impl Suite {
    fn new(target: &ServiceUrl) -> Result<Self> {
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

    fn check(&mut self, name: &str, check: impl FnOnce(&Self) -> Result<()>) {
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

    fn finish(self, what: &str) -> Result<()> {
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

    fn expect(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        status: StatusCode,
    ) -> Result<()> {
        self.text_of(method, path, body, status).map(drop)
    }

    fn text(&self, method: &str, path: &str, status: StatusCode) -> Result<String> {
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

    fn json(
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
    use super::{Service, ServiceUrl, Suite, smoke_checks};
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
