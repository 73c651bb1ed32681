//! Where a deployed service answers: `--url` as given, or derived the way the
//! cluster routes to it. Each environment's Ingress (the chart's
//! `service-demo.host`) is `ingress.host` of the service's values file, else
//! `<namespace>.<ingress.domain>` (the chart's defaults under the values
//! file's): items-api at `preprod.localhost`, `pr-7.localhost`, a scaffolded
//! service at its own `orders-api.preprod.localhost`. The ingress controller
//! is at `--ingress-url` / `INGRESS_URL` (terraform's output `ingress_url`).
//! A derived URL names that host at the controller's scheme and port, and the
//! client connects to the controller's address: the request carries the
//! service's host (Host header, TLS server name), as an ingress needs.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::path::Path;

use anyhow::{Context, Result, bail, ensure};
use reqwest::Url;
use serde_json::Value;

use crate::domain::Repos;
use crate::domain::gitops::GitopsOptions;
use crate::domain::promotion::Env;
use crate::domain::services::{Service, workspace_around};
use crate::plumbing::{workspace, yaml};

/// `--url`, or `--env`/`--pr` with `--ingress-url`: where a suite reaches a service.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct UrlOptions {
    /// The service's base URL, e.g. http://127.0.0.1:8080 (wins over --env and --pr).
    #[arg(long)]
    pub url: Option<String>,
    /// Derive the URL of the service in this environment (dev, preprod, prod, pr-<N>) from its
    /// values file on the GitOps branch: its Ingress host through --ingress-url.
    #[arg(long, conflicts_with = "pr")]
    pub env: Option<Env>,
    /// Derive the URL of the service's preview of this pull request (namespace pr-<N>).
    #[arg(long)]
    pub pr: Option<u64>,
    /// The ingress controller's address, scheme and port (terraform output ingress_url,
    /// e.g. http://127.0.0.1:8081); with --env or --pr.
    #[arg(long, env = "INGRESS_URL")]
    pub ingress_url: Option<String>,
}

/// A service's base URL and, when derived, the address to connect to instead
/// of resolving its host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceUrl {
    pub url: Url,
    /// `(host, addresses)`: connect here for `host` (the ingress controller,
    /// or loopback for a name under `localhost`).
    pub connect: Option<(String, Vec<SocketAddr>)>,
}

impl UrlOptions {
    /// Where `service` answers: `--url`, else derived for `--env`/`--pr` from
    /// its values file at the GitOps branch's tip and its chart's defaults.
    pub fn resolve(&self, service: &Service, gitops: &GitopsOptions) -> Result<ServiceUrl> {
        if let Some(url) = &self.url {
            return ServiceUrl::given(url);
        }
        let env = match (self.env, self.pr) {
            (Some(env), _) => env,
            (None, Some(pr)) => Env::Preview(pr),
            (None, None) => bail!(
                "no URL for {}: pass --url URL, or --env ENV (or --pr N) with the ingress controller's address \
                 (--ingress-url or INGRESS_URL, terraform output ingress_url, e.g. http://127.0.0.1:8081)",
                service.name
            ),
        };
        let ingress = self.ingress_url.as_deref().unwrap_or_default();
        ensure!(
            !ingress.is_empty(),
            "{env}'s URL is derived through the ingress controller: set --ingress-url or INGRESS_URL (terraform \
             output ingress_url, e.g. http://127.0.0.1:8081; in Actions the repository variable INGRESS_URL, \
             which `cargo xtask doctor` checks), or pass --url"
        );
        let ingress = IngressController::parse(ingress)?;
        let (path, env_values) = read_values(service, env, gitops)?;
        let root = workspace_around(Path::new(".")).unwrap_or_else(|_| workspace::root());
        let chart_file = root.join(&service.declaration.chart).join("values.yaml");
        let chart_values = std::fs::read_to_string(&chart_file)
            .with_context(|| format!("reading {}", chart_file.display()))?;
        let host = ingress_host(&chart_values, &env_values, &env.to_string())
            .with_context(|| format!("{path}: {} has no URL in {env}", service.name))?;
        ingress.url_for(&host)
    }
}

/// A service's values file in `env` at the GitOps branch's tip: its path and text.
fn read_values(service: &Service, env: Env, gitops: &GitopsOptions) -> Result<(String, String)> {
    let repo = Repos::open(gitops)?.gitops;
    let tip = repo.fetch_tip()?;
    let path = repo.full_path(&env.values_path(&service.declaration.values_file));
    let text = repo.read(tip, &path)?.with_context(|| {
        format!(
            "{path} does not exist on the GitOps branch {}: {} is not deployed in {env} (promote it, or \
             `preview deploy` it), or pass --url",
            gitops.branch, service.name
        )
    })?;
    Ok((path, text))
}

/// The host the chart's Ingress names in `namespace` (its `service-demo.host`):
/// `ingress.host`, else `<namespace>.<ingress.domain>`, the values file over
/// the chart's defaults. An error when the Ingress is disabled.
pub fn ingress_host(chart_values: &str, env_values: &str, namespace: &str) -> Result<String> {
    let chart = yaml::parse(chart_values).context("the chart's values.yaml")?;
    let env = yaml::parse(env_values)?;
    // Helm merges maps key by key; `default` takes the next value for "" and null.
    let setting = |key: &str| -> Option<&Value> {
        [&env, &chart]
            .into_iter()
            .map(|values| &values["ingress"][key])
            .find(|value| !value.is_null())
    };
    let enabled = setting("enabled").and_then(Value::as_bool).unwrap_or(false);
    ensure!(
        enabled,
        "ingress.enabled is false, so no Ingress routes to it: enable it (ingress.enabled: true), or pass --url"
    );
    let text = |key: &str| -> Result<String> {
        match setting(key) {
            None => Ok(String::new()),
            Some(Value::String(text)) => Ok(text.trim().to_ascii_lowercase()),
            Some(other) => bail!("ingress.{key} is {other}, not a host name"),
        }
    };
    let host = match text("host")? {
        host if !host.is_empty() => host,
        _ => match text("domain")? {
            domain if !domain.is_empty() => format!("{namespace}.{domain}"),
            _ => bail!("neither ingress.host nor ingress.domain is set: set one, or pass --url"),
        },
    };
    // An address would be connected to as it is, past the controller; an
    // Ingress cannot name one anyway.
    ensure!(
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_err(),
        "ingress.host {host:?} is an address: an Ingress routes a host name (e.g. preprod.example.com)"
    );
    Ok(host)
}

/// The ingress controller's address: scheme, host and port of `INGRESS_URL`.
#[derive(Debug)]
struct IngressController {
    url: Url,
    addresses: Vec<SocketAddr>,
}

impl IngressController {
    fn parse(text: &str) -> Result<Self> {
        // Not echoed: it would print the password.
        ensure!(
            !text.contains('@'),
            "--ingress-url / INGRESS_URL carries a user name or password: give the controller's scheme, host \
             and port only, e.g. http://127.0.0.1:8081"
        );
        let url = Url::parse(text).map_err(|error| {
            anyhow::anyhow!(
                "--ingress-url / INGRESS_URL {text:?} is not a URL ({error}): expected e.g. http://127.0.0.1:8081"
            )
        })?;
        ensure!(
            matches!(url.scheme(), "http" | "https")
                && url.host_str().is_some()
                && url.path() == "/"
                && url.query().is_none(),
            "--ingress-url / INGRESS_URL {text:?} should be the controller's scheme, host and port only, \
             e.g. http://127.0.0.1:8081 (terraform output ingress_url)"
        );
        let host = url.host_str().context("checked above")?;
        let port = url
            .port_or_known_default()
            .context("http and https have ports")?;
        let addresses = match loopback_port(&url) {
            Some(loopback) => vec![loopback],
            None => (host.trim_start_matches('[').trim_end_matches(']'), port)
                .to_socket_addrs()
                .with_context(|| format!("resolving the ingress controller's host {host:?}"))?
                .collect(),
        };
        Ok(Self { url, addresses })
    }

    /// `host` at the controller's scheme and port, connecting to the controller.
    fn url_for(&self, host: &str) -> Result<ServiceUrl> {
        let mut url = self.url.clone();
        url.set_host(Some(host))
            .with_context(|| format!("the Ingress host {host:?} is not a host name"))?;
        Ok(ServiceUrl {
            url,
            connect: Some((host.to_owned(), self.addresses.clone())),
        })
    }
}

impl ServiceUrl {
    /// A URL as given (`--url`): a name under `localhost` connects to loopback.
    pub fn given(text: &str) -> Result<Self> {
        ensure!(
            !text.is_empty(),
            "--url is empty: in Actions the URL is derived from the repository variable INGRESS_URL \
             (cd.yml, preview.yml) with --env/--pr; set it (`cargo xtask doctor` lists what a fork is missing)"
        );
        ensure!(
            text.starts_with("http://") || text.starts_with("https://"),
            "--url {text:?} should start with http:// or https://"
        );
        let url = Url::parse(text).with_context(|| format!("--url {text:?} is not a URL"))?;
        let connect = loopback_port(&url).map(|loopback| {
            (
                url.host_str().unwrap_or_default().to_owned(),
                vec![loopback],
            )
        });
        Ok(Self { url, connect })
    }

    /// The base URL without a trailing slash, for `{base}{path}`.
    pub fn base(&self) -> String {
        self.url.as_str().trim_end_matches('/').to_owned()
    }

    /// A client builder that connects where this URL says, and nowhere else:
    /// no redirect is followed (to another host), and a host pinned to an
    /// address goes there directly, never through `HTTP(S)_PROXY`, which
    /// would resolve the name itself.
    pub fn client(&self, timeout: std::time::Duration) -> reqwest::blocking::ClientBuilder {
        let builder = crate::plumbing::http::builder(timeout);
        match &self.connect {
            // The port in the addresses is ignored: the URL's is used.
            Some((host, addresses)) => builder.no_proxy().resolve_to_addrs(host, addresses),
            None => builder,
        }
    }
}

/// The loopback address at `url`'s port when its host is `localhost` or a
/// name under it (`pr-7.localhost:8081`, the ingress's default domain):
/// loopback by RFC 6761, as curl and browsers treat it, while the system
/// resolver knows it only with systemd's nss-myhostname.
fn loopback_port(url: &Url) -> Option<SocketAddr> {
    let host = url.host_str()?.to_ascii_lowercase();
    let host = host.trim_end_matches('.');
    if host != "localhost" && !host.ends_with(".localhost") {
        return None;
    }
    Some((Ipv4Addr::LOCALHOST, url.port_or_known_default()?).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHART: &str = include_str!("../../../charts/service-demo/values.yaml");
    /// items-api's preprod values set no ingress key (the chart's defaults apply).
    const ITEMS_API_PREPROD: &str =
        include_str!("../../../gitops/values/preprod/service-demo.yaml");

    fn no_gitops_flags() -> GitopsOptions {
        #[derive(clap::Parser)]
        struct Flags {
            #[command(flatten)]
            gitops: GitopsOptions,
        }
        <Flags as clap::Parser>::parse_from(["xtask"]).gitops
    }

    fn through(ingress: &str, host: &str) -> ServiceUrl {
        IngressController::parse(ingress)
            .unwrap()
            .url_for(host)
            .unwrap()
    }

    /// A pinned service answering with a redirect to another host (here
    /// another loopback port) must not send the suite there: the answer is
    /// the redirect itself, and the other host sees no connection.
    #[test]
    fn the_suites_client_follows_no_redirect() {
        use std::io::{Read, Write};
        use std::net::TcpListener;
        use std::time::Duration;
        // As main does, before any client is built.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let elsewhere = TcpListener::bind("127.0.0.1:0").unwrap();
        let elsewhere_port = elsewhere.local_addr().unwrap().port();
        elsewhere.set_nonblocking(true).unwrap();
        let service = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = service.local_addr().unwrap().port();
        let answer = std::thread::spawn(move || {
            let (mut stream, _) = service.accept().unwrap();
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request).unwrap();
            let redirect = format!(
                "HTTP/1.1 302 Found\r\nlocation: http://127.0.0.1:{elsewhere_port}/version\r\n\
                 content-length: 0\r\nconnection: close\r\n\r\n"
            );
            stream.write_all(redirect.as_bytes()).unwrap();
        });
        let url = through(&format!("http://127.0.0.1:{port}"), "svc.preprod.localhost");
        let client = url.client(Duration::from_secs(5)).build().unwrap();
        let response = client
            .get(format!("{}/version", url.base()))
            .send()
            .unwrap();
        answer.join().unwrap();
        assert_eq!(response.status(), reqwest::StatusCode::FOUND);
        assert!(elsewhere.accept().is_err(), "the redirect was followed");
    }

    #[test]
    fn items_api_is_at_its_namespace_under_the_charts_domain() {
        assert_eq!(
            ingress_host(CHART, ITEMS_API_PREPROD, "preprod").unwrap(),
            "preprod.localhost"
        );
        // A preview's file sets no host either: namespace pr-7.
        let preview = "image:\n  tag: pr-7-abc\nenv:\n  ENV_NAME: pr-7\n";
        assert_eq!(
            ingress_host(CHART, preview, "pr-7").unwrap(),
            "pr-7.localhost"
        );
    }

    #[test]
    fn a_scaffolded_service_is_at_its_own_host() {
        // What `new-service orders-api` writes for preprod (its template, filled in).
        let scaffolded = include_str!("scaffold/values.yaml.txt")
            .replace("{{name}}", "orders-api")
            .replace("{{env}}", "preprod")
            .replace("{{repository}}", "ghcr.io/example/orders-api")
            .replace("{{port}}", "8081");
        assert_eq!(
            ingress_host(CHART, &scaffolded, "preprod").unwrap(),
            "orders-api.preprod.localhost"
        );
    }

    #[test]
    fn a_custom_host_or_domain_wins_over_the_charts() {
        let custom = "ingress:\n  host: Preprod.Example.COM\n";
        assert_eq!(
            ingress_host(CHART, custom, "preprod").unwrap(),
            "preprod.example.com"
        );
        let domain = "ingress:\n  domain: localtest.me\n";
        assert_eq!(
            ingress_host(CHART, domain, "pr-3").unwrap(),
            "pr-3.localtest.me"
        );
        // An empty host is the chart's `default`: the namespace's name.
        let empty = "ingress:\n  host: \"\"\n";
        assert_eq!(ingress_host(CHART, empty, "dev").unwrap(), "dev.localhost");
    }

    #[test]
    fn a_disabled_ingress_or_no_host_is_refused_with_the_fix() {
        let disabled = "ingress:\n  enabled: false\n  host: x.localhost\n";
        let error = ingress_host(CHART, disabled, "preprod")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("ingress.enabled is false") && error.contains("--url"),
            "{error}"
        );
        // A chart without an ingress section has no Ingress either.
        let error = ingress_host("replicaCount: 1\n", "", "preprod")
            .unwrap_err()
            .to_string();
        assert!(error.contains("ingress.enabled is false"), "{error}");
        let error = ingress_host("ingress:\n  enabled: true\n", "", "preprod")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("neither ingress.host nor ingress.domain"),
            "{error}"
        );
        for address in ["10.0.0.7", "[::1]"] {
            let values = format!("ingress:\n  host: \"{address}\"\n");
            let error = ingress_host(CHART, &values, "preprod")
                .unwrap_err()
                .to_string();
            assert!(error.contains("is an address"), "{address}: {error}");
        }
    }

    #[test]
    fn a_derived_url_names_the_host_and_connects_to_the_controller() {
        let url = through("http://127.0.0.1:8081", "orders-api.preprod.localhost");
        assert_eq!(
            url.url.as_str(),
            "http://orders-api.preprod.localhost:8081/"
        );
        let (host, addresses) = url.connect.unwrap();
        assert_eq!(host, "orders-api.preprod.localhost");
        assert_eq!(addresses, ["127.0.0.1:8081".parse::<SocketAddr>().unwrap()]);
        // https on its default port keeps both.
        let url = through("https://localhost", "preprod.example.com");
        assert_eq!(url.base(), "https://preprod.example.com");
        assert_eq!(url.connect.unwrap().1[0].to_string(), "127.0.0.1:443");
        for bad in [
            "localhost:8081",
            "ftp://127.0.0.1",
            "http://127.0.0.1:8081/preprod",
            "",
        ] {
            assert!(IngressController::parse(bad).is_err(), "{bad} accepted");
        }
        let error = IngressController::parse("http://user:s3cret@127.0.0.1:8081")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("user name or password") && !error.contains("s3cret"),
            "{error}"
        );
    }

    #[test]
    fn the_url_flag_wins_and_names_under_localhost_are_loopback() {
        let options = UrlOptions {
            url: Some("http://Preprod.LOCALHOST".into()),
            env: Some(Env::Prod),
            ingress_url: Some("not a url".into()),
            ..UrlOptions::default()
        };
        let service = Service {
            name: "items-api".into(),
            dir: "services/items-api".into(),
            declaration: crate::domain::services::Declaration {
                image: "service-demo".into(),
                chart: "charts/none".into(),
                port: 8080,
                health_path: "/healthz".into(),
                ready_path: "/readyz".into(),
                values_file: "none.yaml".into(),
            },
        };
        // No GitOps repository is opened, no values file read: --url alone.
        let gitops = no_gitops_flags();
        let url = options.resolve(&service, &gitops).unwrap();
        assert_eq!(url.base(), "http://preprod.localhost");
        assert_eq!(url.connect.unwrap().1[0].to_string(), "127.0.0.1:80");
        let given = ServiceUrl::given("http://pr-7.localhost:8081/").unwrap();
        assert_eq!(given.connect.unwrap().1[0].to_string(), "127.0.0.1:8081");
        assert_eq!(
            ServiceUrl::given("http://preprod.localtest.me:8081")
                .unwrap()
                .connect,
            None
        );
        assert_eq!(
            ServiceUrl::given("http://localhost.example.com")
                .unwrap()
                .connect,
            None
        );

        let neither = UrlOptions::default()
            .resolve(&service, &gitops)
            .unwrap_err()
            .to_string();
        assert!(
            neither.contains("pass --url URL, or --env ENV (or --pr N)"),
            "{neither}"
        );
        let no_ingress = UrlOptions {
            pr: Some(7),
            ..UrlOptions::default()
        };
        let error = no_ingress
            .resolve(&service, &gitops)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("pr-7's URL") && error.contains("INGRESS_URL"),
            "{error}"
        );
    }
}
