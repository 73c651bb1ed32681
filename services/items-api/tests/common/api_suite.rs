//! The API suite: the real server (`items_api::serve`) on a real socket,
//! driven by a real HTTP client, on any store. `tests/api.rs` runs it on the
//! in-memory store and `tests/api_postgres.rs` on a real PostgreSQL, each with
//! `api_suite!(TheirBackend)`, which makes one `#[tokio::test]` per suite
//! function (a function missing from the macro's list is dead code, which
//! clippy's `-D warnings` refuses).

use std::collections::HashSet;
use std::sync::Arc;

use items_api::AppState;
use items_api::config::Config;
use items_api::store::ItemStore;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, LINK, LOCATION};
use serde_json::{Value, json};

/// Where a test app keeps its items.
pub trait Backend {
    /// Why this backend cannot run here (PostgreSQL not installed), if so.
    fn unavailable() -> Option<String>;
    /// A fresh, empty store, and whatever keeps it alive (a PostgreSQL server).
    fn store() -> impl Future<Output = TestStore> + Send;
}

pub struct TestStore {
    pub store: Arc<dyn ItemStore>,
    pub guard: Box<dyn std::any::Any + Send + Sync>,
}

/// One `#[tokio::test]` per suite function, on `$backend`; a backend that is
/// unavailable fails the test unless skipping is asked for
/// ([`test_skip::skip_or_fail`]).
#[macro_export]
macro_rules! api_suite {
    ($backend:ty) => {
        $crate::api_suite!(@tests $backend:
            item_lifecycle
            malformed_json_is_400
            invalid_fields_are_422_and_named
            nul_in_text_is_422_on_every_store
            non_json_content_type_is_415
            body_over_64_kib_is_413
            a_request_still_unanswered_at_the_deadline_is_a_408_problem
            unknown_route_is_404_and_wrong_method_is_405
            id_that_is_not_a_uuid_is_404
            request_id_is_echoed_or_generated
            health_readiness_and_version
            metrics_count_requests_by_route_method_and_status
            unknown_methods_share_one_metrics_label
            listing_is_paged_with_a_link_header
            parallel_creates_get_distinct_ids_and_an_exact_count
            parallel_updates_to_one_item_lose_nothing
            if_match_makes_writes_conditional_on_the_version_read
            concurrent_conditional_updates_exactly_one_wins
        );
    };
    (@tests $backend:ty: $($name:ident)*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                use $crate::common::api_suite::Backend as _;
                if let Some(reason) = <$backend>::unavailable() {
                    let test = concat!(module_path!(), "::", stringify!($name));
                    return ::test_skip::skip_or_fail(test, &reason);
                }
                $crate::common::api_suite::$name::<$backend>().await;
            }
        )*
    };
}

/// Serves `state` with the production [`items_api::serve`] on a free loopback
/// port, until the test ends; returns the address.
pub async fn serve_on_loopback(
    state: AppState,
    limits: items_api::server::ServerLimits,
) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let serve = items_api::serve(listener, state, limits, std::future::pending());
    tokio::spawn(async move { serve.await.unwrap() });
    addr
}

/// A running server and a client for it.
pub struct TestApp {
    pub addr: std::net::SocketAddr,
    pub client: reqwest::Client,
    /// Whatever keeps the store alive (the PostgreSQL server).
    _store_guard: Box<dyn std::any::Any + Send + Sync>,
}

impl TestApp {
    pub async fn spawn<B: Backend>() -> Self {
        Self::spawn_with::<B>(|_| {}).await
    }

    /// Spawns the app after `configure` has adjusted its state, served by
    /// the production [`items_api::serve`] with the default limits, except
    /// the connection cap: the parallel tests open 400 connections at once
    /// (the cap itself is tested in `tests/abuse.rs`).
    pub async fn spawn_with<B: Backend>(configure: impl FnOnce(&mut AppState)) -> Self {
        let config = Config::from_lookup(|name| match name {
            "ENV_NAME" => Some("test-env".into()),
            "GIT_COMMIT" => Some("0123abc".into()),
            "APP_VERSION" => Some("9.9.9".into()),
            _ => None,
        })
        .unwrap();
        let TestStore { store, guard } = B::store().await;
        let mut state = AppState::new(&config, store);
        configure(&mut state);
        let limits = items_api::server::ServerLimits {
            max_connections: 1024,
            ..config.server
        };
        let addr = serve_on_loopback(state, limits).await;
        Self {
            addr,
            client: reqwest::Client::new(),
            _store_guard: guard,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.unwrap()
    }

    pub async fn create(&self, body: Value) -> reqwest::Response {
        self.client
            .post(self.url("/api/v1/items"))
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    pub async fn create_ok(&self, name: &str) -> Value {
        let response = self.create(json!({ "name": name })).await;
        assert_eq!(response.status(), StatusCode::CREATED);
        response.json().await.unwrap()
    }

    /// Follows `Link: rel="next"` from `first` to the end; returns every item.
    pub async fn list_all(&self, first: &str) -> (Vec<Value>, usize) {
        let mut items = Vec::new();
        let mut pages = 0;
        let mut next = Some(first.to_owned());
        while let Some(path) = next.take() {
            let response = self.get(&path).await;
            assert_eq!(response.status(), StatusCode::OK);
            next = response
                .headers()
                .get(LINK)
                .map(|v| parse_next_link(v.to_str().unwrap()));
            let page: Vec<Value> = response.json().await.unwrap();
            items.extend(page);
            pages += 1;
        }
        (items, pages)
    }
}

pub fn parse_next_link(header: &str) -> String {
    assert!(
        header.ends_with("; rel=\"next\""),
        "unexpected Link: {header}"
    );
    header[1..header.find('>').unwrap()].to_owned()
}

/// Asserts a problem+json response with this status, returning its body.
pub async fn assert_problem(response: reqwest::Response, status: StatusCode) -> Value {
    assert_eq!(response.status(), status);
    assert_eq!(
        response.headers()[CONTENT_TYPE],
        "application/problem+json",
        "error responses are problem details"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], status.as_u16());
    assert_eq!(body["title"], status.canonical_reason().unwrap());
    assert!(!body["detail"].as_str().unwrap().is_empty());
    body
}

pub async fn item_lifecycle<B: Backend>() {
    let app = TestApp::spawn::<B>().await;

    let response = app
        .create(json!({ "name": "  first  ", "description": "d" }))
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let location = response.headers()[LOCATION].to_str().unwrap().to_owned();
    let created: Value = response.json().await.unwrap();
    assert_eq!(created["name"], "first", "names are trimmed");
    assert_eq!(created["description"], "d");
    assert_eq!(created["version"], 1);
    assert_eq!(
        location,
        format!("/api/v1/items/{}", created["id"].as_str().unwrap())
    );
    let created_at = created["createdAt"].as_str().unwrap();
    assert!(
        time::OffsetDateTime::parse(created_at, &time::format_description::well_known::Rfc3339)
            .is_ok()
    );
    assert_eq!(created["createdAt"], created["updatedAt"]);

    let fetched: Value = app.get(&location).await.json().await.unwrap();
    assert_eq!(fetched, created);

    let listed: Vec<Value> = app.get("/api/v1/items").await.json().await.unwrap();
    assert_eq!(listed, vec![created.clone()]);

    let response = app
        .client
        .put(app.url(&location))
        .json(&json!({ "name": "renamed" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let updated: Value = response.json().await.unwrap();
    assert_eq!(updated["name"], "renamed");
    assert_eq!(
        updated["description"],
        Value::Null,
        "PUT replaces the whole item"
    );
    assert_eq!(updated["version"], 2);
    assert_eq!(updated["createdAt"], created["createdAt"]);
    assert!(updated["updatedAt"].as_str().unwrap() >= created_at);

    let response = app.client.delete(app.url(&location)).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert!(response.bytes().await.unwrap().is_empty());

    for response in [
        app.get(&location).await,
        app.client.delete(app.url(&location)).send().await.unwrap(),
        app.client
            .put(app.url(&location))
            .json(&json!({"name": "x"}))
            .send()
            .await
            .unwrap(),
    ] {
        assert_problem(response, StatusCode::NOT_FOUND).await;
    }
}

pub async fn malformed_json_is_400<B: Backend>() {
    let app = TestApp::spawn::<B>().await;
    let response = app
        .client
        .post(app.url("/api/v1/items"))
        .header(CONTENT_TYPE, "application/json")
        .body("{\"name\": ")
        .send()
        .await
        .unwrap();
    let body = assert_problem(response, StatusCode::BAD_REQUEST).await;
    assert!(body["detail"].as_str().unwrap().contains("malformed JSON"));
}

pub async fn invalid_fields_are_422_and_named<B: Backend>() {
    let app = TestApp::spawn::<B>().await;
    let cases = [
        (json!({}), vec!["name"]),
        (json!({ "name": "   " }), vec!["name"]),
        (json!({ "name": "x".repeat(201) }), vec!["name"]),
        (json!({ "name": 42 }), vec!["name"]),
        (
            json!({ "name": "ok", "description": "x".repeat(2001) }),
            vec!["description"],
        ),
        (
            json!({ "description": ["not", "text"] }),
            vec!["description"],
        ),
        (
            json!({ "description": "x".repeat(2001) }),
            vec!["name", "description"],
        ),
        (json!([1, 2]), vec!["body"]),
    ];
    for (body, fields) in cases {
        let response = app.create(body.clone()).await;
        let problem = assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
        let named: Vec<&str> = problem["errors"]
            .as_array()
            .unwrap_or_else(|| panic!("no errors for {body}"))
            .iter()
            .map(|e| e["field"].as_str().unwrap())
            .collect();
        assert_eq!(named, fields, "for {body}");
    }
    // Boundaries that are valid.
    let response = app
        .create(json!({ "name": "x".repeat(200), "description": "y".repeat(2000) }))
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
}

/// PostgreSQL refuses NUL in text; the domain refuses it first, so both
/// stores answer the same 422 naming the field (not a 201 here and a
/// retry-forever 503 there), and nothing is stored.
pub async fn nul_in_text_is_422_on_every_store<B: Backend>() {
    let app = TestApp::spawn::<B>().await;
    for (body, field) in [
        (json!({ "name": "a\u{0}b" }), "name"),
        (
            json!({ "name": "ok", "description": "x\u{0}" }),
            "description",
        ),
    ] {
        let problem =
            assert_problem(app.create(body).await, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert_eq!(problem["errors"][0]["field"], field, "{problem}");
        assert!(
            problem["errors"][0]["message"]
                .as_str()
                .unwrap()
                .contains("NUL"),
            "{problem}"
        );
    }
    let item = app.create_ok("clean").await;
    let response = app
        .client
        .put(app.url(&format!("/api/v1/items/{}", item["id"].as_str().unwrap())))
        .json(&json!({ "name": "\u{0}" }))
        .send()
        .await
        .unwrap();
    assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    let (items, _) = app.list_all("/api/v1/items").await;
    assert_eq!(items, [item], "nothing else was stored or changed");
}

pub async fn non_json_content_type_is_415<B: Backend>() {
    let app = TestApp::spawn::<B>().await;
    for content_type in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        None,
    ] {
        let mut request = app
            .client
            .post(app.url("/api/v1/items"))
            .body(r#"{"name":"a"}"#);
        if let Some(content_type) = content_type {
            request = request.header(CONTENT_TYPE, content_type);
        }
        assert_problem(
            request.send().await.unwrap(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        )
        .await;
    }
}

pub async fn body_over_64_kib_is_413<B: Backend>() {
    let app = TestApp::spawn::<B>().await;
    let big = json!({ "name": "a", "description": "x".repeat(64 * 1024) });
    assert_problem(app.create(big).await, StatusCode::PAYLOAD_TOO_LARGE).await;
    // Also when the client does not announce the length (chunked upload).
    let chunks: Vec<Result<_, std::io::Error>> =
        vec![Ok(vec![b' '; 40 * 1024]), Ok(vec![b' '; 40 * 1024])];
    let response = app
        .client
        .post(app.url("/api/v1/items"))
        .header(CONTENT_TYPE, "application/json")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    assert_problem(response, StatusCode::PAYLOAD_TOO_LARGE).await;
}

pub async fn a_request_still_unanswered_at_the_deadline_is_a_408_problem<B: Backend>() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = TestApp::spawn_with::<B>(|state| {
        state.request_timeout = std::time::Duration::from_millis(300);
    })
    .await;
    // A client that announces 100 bytes of body, sends 9, then stalls.
    let mut stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    stream
        .write_all(
            b"POST /api/v1/items HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n\
              Content-Length: 100\r\nx-request-id: stalled-1\r\n\r\n{\"name\":",
        )
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let mut received = Vec::new();
    let mut chunk = [0u8; 4096];
    let (head, body) = loop {
        let n = tokio::time::timeout(std::time::Duration::from_secs(10), stream.read(&mut chunk))
            .await
            .expect("the server answers before 10 s")
            .unwrap();
        assert!(
            n > 0,
            "connection closed without a complete response: {received:?}"
        );
        received.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&received).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .expect("a content-length");
            if body.len() >= length {
                break (head.to_owned(), body.to_owned());
            }
        }
    };
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(250),
        "answered before the deadline"
    );
    assert!(head.starts_with("HTTP/1.1 408 "), "{head}");
    let head = head.to_ascii_lowercase();
    assert!(
        head.contains("content-type: application/problem+json"),
        "{head}"
    );
    assert!(head.contains("x-request-id: stalled-1"), "{head}");
    let problem: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(problem["status"], 408);
    assert_eq!(problem["detail"], "the request took too long");

    // The timeout is counted in the metrics like any other answer.
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics
            .contains(r#"http_requests_total{method="POST",route="/api/v1/items",status="408"} 1"#),
        "{metrics}"
    );
}

pub async fn unknown_route_is_404_and_wrong_method_is_405<B: Backend>() {
    let app = TestApp::spawn::<B>().await;
    let response = app.get("/nope").await;
    assert_problem(response, StatusCode::NOT_FOUND).await;

    let response = app
        .client
        .patch(app.url("/api/v1/items"))
        .send()
        .await
        .unwrap();
    let allow = response.headers()["allow"].to_str().unwrap().to_owned();
    assert_problem(response, StatusCode::METHOD_NOT_ALLOWED).await;
    assert!(
        allow.contains("GET") && allow.contains("POST"),
        "Allow: {allow}"
    );
}

pub async fn id_that_is_not_a_uuid_is_404<B: Backend>() {
    let app = TestApp::spawn::<B>().await;
    let response = app.get("/api/v1/items/not-a-uuid").await;
    let body = assert_problem(response, StatusCode::NOT_FOUND).await;
    assert!(body["detail"].as_str().unwrap().contains("UUID"));
}

pub async fn request_id_is_echoed_or_generated<B: Backend>() {
    let app = TestApp::spawn::<B>().await;
    let response = app
        .client
        .get(app.url("/healthz"))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "abc-123");

    let response = app.get("/nope").await;
    let generated = response.headers()["x-request-id"].to_str().unwrap();
    assert!(
        uuid::Uuid::try_parse(generated).is_ok(),
        "generated id {generated:?}"
    );
}

pub async fn health_readiness_and_version<B: Backend>() {
    let app = TestApp::spawn::<B>().await;
    for path in ["/healthz", "/readyz"] {
        let response = app.get(path).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.json::<Value>().await.unwrap(),
            json!({ "status": "ok" })
        );
    }
    let version: Value = app.get("/version").await.json().await.unwrap();
    assert_eq!(
        version,
        json!({ "service": "items-api", "version": "9.9.9", "gitCommit": "0123abc", "envName": "test-env", "servicesNamespace": "default" })
    );
}

pub async fn metrics_count_requests_by_route_method_and_status<B: Backend>() {
    let app = TestApp::spawn::<B>().await;
    for _ in 0..3 {
        app.get("/healthz").await;
    }
    let created = app.create_ok("m").await;
    let item = format!("/api/v1/items/{}", created["id"].as_str().unwrap());
    app.get(&item).await;
    app.get("/api/v1/items/00000000-0000-0000-0000-000000000000")
        .await;
    app.get("/no/such/path").await;

    let response = app.get("/metrics").await;
    assert!(
        response.headers()[CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    let text = response.text().await.unwrap();
    let sample = |labels: &str| {
        let prefix = format!("http_requests_total{{{labels}}} ");
        text.lines()
            .find_map(|line| line.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("no sample {prefix} in\n{text}"))
            .to_owned()
    };
    assert_eq!(sample(r#"method="GET",route="/healthz",status="200""#), "3");
    assert_eq!(
        sample(r#"method="POST",route="/api/v1/items",status="201""#),
        "1"
    );
    assert_eq!(
        sample(r#"method="GET",route="/api/v1/items/{id}",status="200""#),
        "1"
    );
    assert_eq!(
        sample(r#"method="GET",route="/api/v1/items/{id}",status="404""#),
        "1"
    );
    assert_eq!(
        sample(r#"method="GET",route="unmatched",status="404""#),
        "1"
    );
    assert!(
        text.contains(
            r#"http_request_duration_seconds_count{method="GET",route="/healthz",status="200"} 3"#
        ),
        "{text}"
    );
}

/// A client chooses the method: 200 different ones are one label value,
/// `_OTHER`, not 200 new time series.
pub async fn unknown_methods_share_one_metrics_label<B: Backend>() {
    let app = TestApp::spawn::<B>().await;
    for n in 0..200 {
        let method = reqwest::Method::from_bytes(format!("M{n}").as_bytes()).unwrap();
        let response = app
            .client
            .request(method, app.url("/api/v1/items"))
            .send()
            .await
            .unwrap();
        assert_problem(response, StatusCode::METHOD_NOT_ALLOWED).await;
    }
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains(
            r#"http_requests_total{method="_OTHER",route="/api/v1/items",status="405"} 200"#
        ),
        "{metrics}"
    );
    assert!(!metrics.contains("M199"), "{metrics}");
}

pub async fn listing_is_paged_with_a_link_header<B: Backend>() {
    let app = TestApp::spawn::<B>().await;
    let mut created = Vec::new();
    for i in 0..250 {
        created.push(app.create_ok(&format!("item {i}")).await["id"].clone());
    }
    let (items, pages) = app.list_all("/api/v1/items").await;
    assert_eq!(pages, 3, "100 + 100 + 50");
    let ids: Vec<Value> = items.iter().map(|i| i["id"].clone()).collect();
    assert_eq!(ids, created, "every item once, in creation order");

    let (items, pages) = app.list_all("/api/v1/items?limit=1000").await;
    assert_eq!((items.len(), pages), (250, 1));

    for bad in ["limit=0", "limit=1001", "limit=abc", "cursor=xyz"] {
        let response = app.get(&format!("/api/v1/items?{bad}")).await;
        let body = assert_problem(response, StatusCode::BAD_REQUEST).await;
        let param = bad.split('=').next().unwrap();
        assert!(body["detail"].as_str().unwrap().contains(param), "{body}");
    }
}

pub async fn parallel_creates_get_distinct_ids_and_an_exact_count<B: Backend>() {
    let app = Arc::new(TestApp::spawn::<B>().await);
    let tasks: Vec<_> = (0..400)
        .map(|i| {
            let app = app.clone();
            tokio::spawn(async move {
                app.create_ok(&format!("p{i}")).await["id"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
        })
        .collect();
    let mut ids = HashSet::new();
    for task in tasks {
        assert!(ids.insert(task.await.unwrap()), "duplicate id");
    }
    let (items, _) = app.list_all("/api/v1/items?limit=1000").await;
    assert_eq!(items.len(), 400);
    let listed: HashSet<String> = items
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(listed, ids);
}

pub async fn parallel_updates_to_one_item_lose_nothing<B: Backend>() {
    let app = Arc::new(TestApp::spawn::<B>().await);
    let id = app.create_ok("contended").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let app = app.clone();
            let url = app.url(&format!("/api/v1/items/{id}"));
            tokio::spawn(async move {
                let response = app
                    .client
                    .put(url)
                    .json(&json!({ "name": format!("w{i}") }))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), StatusCode::OK);
                response.json::<Value>().await.unwrap()["version"]
                    .as_u64()
                    .unwrap()
            })
        })
        .collect();
    let mut versions = Vec::new();
    for task in tasks {
        versions.push(task.await.unwrap());
    }
    versions.sort_unstable();
    // Each update saw a distinct predecessor: versions 2..=201, none repeated.
    assert_eq!(versions, (2..=201).collect::<Vec<u64>>());
    let last: Value = app
        .get(&format!("/api/v1/items/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(last["version"], 201);
}

pub async fn if_match_makes_writes_conditional_on_the_version_read<B: Backend>() {
    let app = TestApp::spawn::<B>().await;
    let created = app.create(json!({ "name": "tea" })).await;
    assert_eq!(created.headers()["etag"], "\"1\"");
    let item: Value = created.json().await.unwrap();
    let path = format!("/api/v1/items/{}", item["id"].as_str().unwrap());
    assert_eq!(app.get(&path).await.headers()["etag"], "\"1\"");

    let put = |if_match: &'static str, name: &'static str| {
        app.client
            .put(app.url(&path))
            .header("if-match", if_match)
            .json(&json!({ "name": name }))
            .send()
    };
    let updated = put("\"1\"", "green tea").await.unwrap();
    assert_eq!(updated.status(), StatusCode::OK);
    assert_eq!(updated.headers()["etag"], "\"2\"");
    // A second writer still holding version 1 is refused, and nothing changes.
    let stale = put("\"1\"", "black tea").await.unwrap();
    let problem = assert_problem(stale, StatusCode::PRECONDITION_FAILED).await;
    assert!(
        problem["detail"].as_str().unwrap().contains("version 2"),
        "{problem}"
    );
    let current: Value = app.get(&path).await.json().await.unwrap();
    assert_eq!(
        (current["name"].as_str(), current["version"].as_u64()),
        (Some("green tea"), Some(2))
    );
    // `*` means any version; a weak or malformed ETag is a 400 that says what to send.
    assert_eq!(put("*", "oolong").await.unwrap().status(), StatusCode::OK);
    for bad in ["W/\"3\"", "3", "\"three\""] {
        let response = app
            .client
            .put(app.url(&path))
            .header("if-match", bad)
            .json(&json!({ "name": "x" }))
            .send()
            .await
            .unwrap();
        let problem = assert_problem(response, StatusCode::BAD_REQUEST).await;
        assert!(
            problem["detail"].as_str().unwrap().contains("If-Match"),
            "{problem}"
        );
    }

    let delete = |if_match: &'static str| {
        app.client
            .delete(app.url(&path))
            .header("if-match", if_match)
            .send()
    };
    assert_problem(
        delete("\"2\"").await.unwrap(),
        StatusCode::PRECONDITION_FAILED,
    )
    .await;
    assert_eq!(
        delete("\"3\"").await.unwrap().status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(app.get(&path).await.status(), StatusCode::NOT_FOUND);
}

pub async fn concurrent_conditional_updates_exactly_one_wins<B: Backend>() {
    let app = Arc::new(TestApp::spawn::<B>().await);
    let item = app.create_ok("contended").await;
    let path = format!("/api/v1/items/{}", item["id"].as_str().unwrap());
    let writers = (0..50).map(|n| {
        let (app, path) = (app.clone(), path.clone());
        tokio::spawn(async move {
            let response = app
                .client
                .put(app.url(&path))
                .header("if-match", "\"1\"")
                .json(&json!({ "name": format!("writer {n}") }))
                .send()
                .await
                .unwrap();
            response.status()
        })
    });
    let statuses = futures_util::future::join_all(writers).await;
    let won = statuses
        .iter()
        .filter(|s| *s.as_ref().unwrap() == StatusCode::OK)
        .count();
    let refused = statuses
        .iter()
        .filter(|s| *s.as_ref().unwrap() == StatusCode::PRECONDITION_FAILED)
        .count();
    assert_eq!((won, refused), (1, 49), "{statuses:?}");
    let current: Value = app.get(&path).await.json().await.unwrap();
    assert_eq!(current["version"], 2);
}
