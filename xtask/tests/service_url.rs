//! `smoke` without `--url`: the service's URL derived from its values file on
//! the GitOps branch (a real bare remote) and the chart's defaults, reached
//! through the "ingress controller" at `INGRESS_URL`: a real TCP server on
//! loopback standing in for ingress-nginx (Kubernetes cannot run here), which
//! records the Host header each request carried.

mod support;

use std::path::Path;

use support::{
    FakeHttp, TempDir, assert_fails, assert_ok, git, remote_and_clone, write_generated_services,
    xtask_in,
};

const SERVICE: &str = "svc-00";

/// A workspace of one generated service (`svc-00`, chart `charts/app` with
/// the ingress defaults of charts/service-demo) whose GitOps files are pushed
/// to its remote's main: preprod at its own host, pr-7 at the chart's
/// default, dev without an Ingress.
fn workspace_with_values(dir: &TempDir) -> std::path::PathBuf {
    let (_, work) = remote_and_clone(dir.path());
    write_generated_services(&work, 1, "charts/app");
    let files = [
        (
            "charts/app/values.yaml",
            "ingress:\n  enabled: true\n  className: nginx\n  domain: localhost\n  host: \"\"\n",
        ),
        (
            "gitops/values/preprod/svc-00.yaml",
            "image:\n  tag: main-abc\ningress:\n  host: svc-00.preprod.localhost\n",
        ),
        (
            "gitops/values/pr/pr-7/svc-00.yaml",
            "image:\n  tag: pr-7-abc\nenv:\n  ENV_NAME: pr-7\n",
        ),
        (
            "gitops/values/dev/svc-00.yaml",
            "image:\n  tag: v1.0.0\ningress:\n  enabled: false\n",
        ),
    ];
    for (path, text) in files {
        let path = work.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    git(&work, &["add", "."]);
    git(
        &work,
        &["commit", "--quiet", "-m", "a service and its values"],
    );
    git(&work, &["push", "--quiet", "origin", "HEAD:main"]);
    work
}

/// A service `svc-00` behind an ingress: its probes and `/version` answer.
fn ingress() -> FakeHttp {
    FakeHttp::start(|request, _| match request.target.as_str() {
        "/healthz" | "/readyz" => (200, vec![], "{}".into()),
        "/version" => (
            200,
            vec![],
            r#"{"service":"svc-00","version":"0.1.0"}"#.into(),
        ),
        _ => (404, vec![], "{}".into()),
    })
}

/// `(Host header, target)` of every request the server received.
fn hosts_and_targets(server: &FakeHttp) -> Vec<(String, String)> {
    server
        .requests()
        .into_iter()
        .map(|r| (r.headers["host"].clone(), r.target))
        .collect()
}

fn smoke(work: &Path, place: &[&str], ingress_url: &str) -> std::process::Output {
    let mut args = vec!["smoke", "--service", SERVICE];
    args.extend(place);
    xtask_in(work, &args, &[("INGRESS_URL", ingress_url)])
}

#[test]
fn smoke_reaches_each_environments_host_through_the_ingress_controller() {
    let dir = TempDir::new("service-url");
    let work = workspace_with_values(&dir);
    let server = ingress();
    let port = server.addr.rsplit(':').next().unwrap().to_owned();

    // preprod: the values file's own host, sent to the controller's address.
    let output = smoke(&work, &["--env", "preprod"], &server.url());
    assert_ok(&output);
    let host = format!("svc-00.preprod.localhost:{port}");
    assert_eq!(
        hosts_and_targets(&server),
        ["/healthz", "/readyz", "/version"].map(|t| (host.clone(), t.to_owned()))
    );
    let printed = support::stdout(&output);
    assert!(
        printed.contains(&format!("against http://{host}")),
        "{printed}"
    );

    // The preview: no host in its file, so the chart's <namespace>.<domain>.
    assert_ok(&smoke(&work, &["--pr", "7"], &server.url()));
    let previews: Vec<String> = hosts_and_targets(&server)[3..]
        .iter()
        .map(|(host, _)| host.clone())
        .collect();
    assert_eq!(previews, vec![format!("pr-7.localhost:{port}"); 3]);

    // --url wins: no values file is read, no INGRESS_URL needed.
    assert_ok(&smoke(&work, &["--env", "dev", "--url", &server.url()], ""));
    assert_eq!(server.requests()[6].headers["host"], server.addr);
}

#[test]
fn no_url_for_a_service_is_refused_with_the_fix_before_any_request() {
    let dir = TempDir::new("service-url-refused");
    let work = workspace_with_values(&dir);
    let server = ingress();

    let message = assert_fails(&smoke(&work, &["--env", "dev"], &server.url()));
    assert!(
        message.contains("gitops/values/dev/svc-00.yaml: svc-00 has no URL in dev")
            && message.contains("ingress.enabled is false"),
        "{message}"
    );
    let message = assert_fails(&smoke(&work, &["--env", "prod"], &server.url()));
    assert!(
        message.contains("gitops/values/prod/svc-00.yaml does not exist on the GitOps branch main"),
        "{message}"
    );
    let message = assert_fails(&smoke(&work, &[], &server.url()));
    assert!(
        message.contains("pass --url URL, or --env ENV (or --pr N)"),
        "{message}"
    );
    let message = assert_fails(&smoke(&work, &["--env", "preprod"], ""));
    assert!(
        message.contains("set --ingress-url or INGRESS_URL"),
        "{message}"
    );
    let message = assert_fails(&smoke(&work, &["--env", "preprod"], "http://127.0.0.1:1/x"));
    assert!(message.contains("scheme, host and port only"), "{message}");
    assert!(server.requests().is_empty(), "{:?}", server.requests());
}
