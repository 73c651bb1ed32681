//! `cargo xtask smoke` and `cargo xtask preprod-test`: test suites against a
//! deployed items-api, reporting each check. `preprod-test` records its result
//! as the `preprod-tests` gate, bound to the commit and the tested digest.

use anyhow::{Context, Result, bail};
use reqwest::StatusCode;
use reqwest::blocking::Client;
use serde_json::{Value, json};

use crate::parts::attestation::{PreprodPredicate, Results, Signer};
use crate::parts::gates::{self, Conclusion, Gate, GateStore, GateStoreOptions, PREPROD_GATE};
use crate::parts::gitops::GitopsOptions;
use crate::parts::tags;

#[derive(clap::Args)]
pub struct SmokeArgs {
    /// Base URL of the deployed service, e.g. http://127.0.0.1:8080.
    #[arg(long)]
    url: String,
}

#[derive(clap::Args)]
pub struct PreprodTestArgs {
    /// Base URL of preprod.
    #[arg(long)]
    url: String,
    /// The commit preprod should be running; /version must report it.
    #[arg(long)]
    sha: String,
    /// The image digest preprod runs (recorded with the gate).
    #[arg(long)]
    digest: String,
    /// The image repository (<registry>/<path> or oci:<dir>): with GATE_SIGNING_KEY set, the
    /// signed result is stored there beside the image (cosign's sha256-<hex>.att tag).
    #[arg(long, env = "IMAGE_REPOSITORY")]
    repository: Option<String>,
    #[command(flatten)]
    store: GateStoreOptions,
    #[command(flatten)]
    gitops: GitopsOptions,
}

pub fn smoke(args: SmokeArgs) -> Result<()> {
    let mut suite = Suite::new(&args.url)?;
    smoke_checks(&mut suite);
    suite.finish("smoke")
}

pub fn preprod_test(args: PreprodTestArgs) -> Result<()> {
    tags::validate_digest(&args.digest)?;
    let sha = gates::full_sha(&args.gitops, &args.sha)?;
    let store = GateStore::open(&args.store, &args.gitops)?;
    // Opened before the suite runs, so a missing repository fails first.
    let signer = Signer::from_env(args.repository.as_deref())?;
    let mut suite = Suite::new(&args.url)?;
    suite.check("/version reports the commit under test", |c| {
        let version = c.json("GET", "/version", None, StatusCode::OK)?;
        let running = version["gitCommit"].as_str().unwrap_or_default();
        if running != sha {
            bail!("preprod runs commit {running:?}, not {sha}: wait for the rollout, or test the right commit");
        }
        Ok(())
    });
    smoke_checks(&mut suite);
    preprod_checks(&mut suite);
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

fn smoke_checks(suite: &mut Suite) {
    suite.check("GET /healthz answers 200", |c| {
        c.expect("GET", "/healthz", None, StatusCode::OK)
    });
    suite.check("GET /readyz answers 200", |c| {
        c.expect("GET", "/readyz", None, StatusCode::OK)
    });
    suite.check("GET /version names a version", |c| {
        let version = c.json("GET", "/version", None, StatusCode::OK)?;
        version["version"]
            .as_str()
            .filter(|v| !v.is_empty())
            .context("no version field")?;
        Ok(())
    });
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

/// The fuller suite preprod runs before a release can be cut.
// long: a list of independent checks, each a few lines; read top to bottom.
fn preprod_checks(suite: &mut Suite) {
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
    suite.check("GET /metrics counts requests", |c| {
        let text = c.text("GET", "/metrics", StatusCode::OK)?;
        if !text.contains("http_requests_total") {
            bail!("no http_requests_total in /metrics");
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

/// The host of `url` and the loopback address it stands for, when it is
/// `localhost` or a name under it (`pr-7.localhost:8081`, the ingress's
/// default domain).
fn loopback_name(url: &str) -> Option<(String, std::net::SocketAddr)> {
    let url = reqwest::Url::parse(url).ok()?;
    let host = url.host_str()?.to_ascii_lowercase();
    let host = host.trim_end_matches('.');
    if host != "localhost" && !host.ends_with(".localhost") {
        return None;
    }
    let port = url.port_or_known_default()?;
    Some((
        host.to_owned(),
        (std::net::Ipv4Addr::LOCALHOST, port).into(),
    ))
}

impl Suite {
    fn new(base: &str) -> Result<Self> {
        if base.is_empty() {
            bail!(
                "--url is empty: in Actions it comes from the repository variable PREPROD_URL (cd.yml) \
                 or PREVIEW_DOMAIN (preview.yml); set it (`cargo xtask doctor` lists what a fork is missing)"
            );
        }
        if !base.starts_with("http://") && !base.starts_with("https://") {
            bail!("--url {base:?} should start with http:// or https://");
        }
        let mut client = Client::builder().timeout(std::time::Duration::from_secs(10));
        if let Some((host, loopback)) = loopback_name(base) {
            // *.localhost is loopback (RFC 6761), as curl and browsers treat it; the
            // system resolver knows it only with systemd's nss-myhostname.
            client = client.resolve(&host, loopback);
        }
        Ok(Self {
            client: client.build()?,
            base: base.trim_end_matches('/').to_owned(),
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
    use super::loopback_name;

    #[test]
    fn names_under_localhost_are_loopback_at_the_urls_port() {
        let (host, address) = loopback_name("http://pr-7.localhost:8081/").unwrap();
        assert_eq!(
            (host.as_str(), address.to_string().as_str()),
            ("pr-7.localhost", "127.0.0.1:8081")
        );
        let (_, address) = loopback_name("http://Preprod.LOCALHOST").unwrap();
        assert_eq!(address.to_string(), "127.0.0.1:80");
        assert_eq!(loopback_name("http://preprod.localtest.me:8081"), None);
        assert_eq!(loopback_name("http://localhost.example.com"), None);
    }
}
