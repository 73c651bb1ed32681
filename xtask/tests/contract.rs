//! The contract checker itself (tests/support/contract.rs over
//! plumbing/json_schema.rs): what it refuses, with a message naming it, and what
//! it lets through.

mod support;

use serde_json::{Value, json};
use support::FakeHttp;
use support::contract::{self, Api, Dialect, Validator};

fn github() -> Option<Api> {
    contract::require_github()
}

const CHECK_RUNS: &str = "/repos/acme/service-demo/check-runs";

#[test]
fn github_requests_with_a_wrong_path_method_or_body_field_are_refused_by_name() {
    let Some(api) = github() else { return };
    let body = json!({"name": "CD / Preprod Tests", "head_sha": "abc", "status": "completed", "conclusion": "success"});
    api.check_request("POST", CHECK_RUNS, Some(&body))
        .unwrap_or_else(|problem| panic!("a real request is refused: {problem}"));

    let wrong_path = api
        .check_request("POST", "/repos/acme/service-demo/check-run", Some(&body))
        .unwrap_err();
    assert!(
        wrong_path.contains("no path of GitHub's OpenAPI description"),
        "{wrong_path}"
    );
    assert!(
        wrong_path.contains("/repos/acme/service-demo/check-run"),
        "{wrong_path}"
    );

    let wrong_method = api
        .check_request("PUT", CHECK_RUNS, Some(&body))
        .unwrap_err();
    assert!(
        wrong_method.contains("no PUT on /repos/{owner}/{repo}/check-runs (it has POST)"),
        "{wrong_method}"
    );

    let mut typo = body.clone();
    typo["conclusoin"] = json!("success");
    let typo = api
        .check_request("POST", CHECK_RUNS, Some(&typo))
        .unwrap_err();
    assert!(
        typo.contains("body.conclusoin: unknown field `conclusoin`"),
        "{typo}"
    );
    assert!(
        typo.contains("checks/create"),
        "names the operation: {typo}"
    );

    let bad_enum = json!({"name": "x", "head_sha": "abc", "conclusion": "passed"});
    let bad_enum = api
        .check_request("POST", CHECK_RUNS, Some(&bad_enum))
        .unwrap_err();
    assert!(
        bad_enum.contains("body.conclusion: \"passed\" is not one of"),
        "{bad_enum}"
    );

    let missing = api
        .check_request("POST", CHECK_RUNS, Some(&json!({"name": "x"})))
        .unwrap_err();
    assert!(
        missing.contains("body: missing required field `head_sha`"),
        "{missing}"
    );

    let query = "/repos/acme/service-demo/commits/abc/check-runs?check_name=x&filter=everything&per_pgae=100";
    let query = api.check_request("GET", query, None).unwrap_err();
    assert!(
        query.contains("query parameter `per_pgae` is not declared"),
        "{query}"
    );
    assert!(
        query.contains("query parameter filter: \"everything\" is not one of"),
        "{query}"
    );
}

#[test]
fn github_answers_missing_a_required_field_or_with_a_wrong_status_are_refused() {
    let Some(api) = github() else { return };
    let complete: Value =
        serde_json::from_str(&api.answer("POST", CHECK_RUNS, 201, json!({"id": 7}))).unwrap();
    api.check_response("POST", CHECK_RUNS, 201, &complete)
        .unwrap_or_else(|problem| panic!("the example answer is refused: {problem}"));
    assert_eq!(complete["id"], 7);

    let missing = api
        .check_response("POST", CHECK_RUNS, 201, &json!({"id": 7}))
        .unwrap_err();
    assert!(
        missing.contains("answer: missing required field `head_sha`"),
        "{missing}"
    );

    let mut wrong_type = complete.clone();
    wrong_type["id"] = json!("7");
    let wrong_type = api
        .check_response("POST", CHECK_RUNS, 201, &wrong_type)
        .unwrap_err();
    assert!(
        wrong_type.contains("answer.id: a string (\"7\") where the schema wants integer"),
        "{wrong_type}"
    );

    let status = api
        .check_response("POST", CHECK_RUNS, 200, &complete)
        .unwrap_err();
    assert!(
        status.contains("status 200 is not one the operation gives"),
        "{status}"
    );
    // GitHub answers any endpoint 401 with its basic error.
    let denied =
        json!({"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"});
    api.check_response("POST", CHECK_RUNS, 401, &denied)
        .unwrap();
}

/// A fake started checked fails its test on an exchange the description does
/// not have, and names it.
#[test]
fn a_checked_fake_records_every_violation_and_fails_its_test() {
    let Some(api) = github() else { return };
    let fake =
        FakeHttp::start_checked(api.clone(), |_, _| (201, vec![], r#"{"id": 7}"#.to_owned()));
    let send = |path: &str, body: Value| post(&fake.addr, path, &body);
    assert_eq!(
        send(
            CHECK_RUNS,
            json!({"name": "x", "head_sha": "abc", "stauts": "queued"})
        ),
        201
    );
    let violations = fake.take_violations();
    assert_eq!(violations.len(), 1, "{violations:#?}");
    assert!(
        violations[0].contains("unknown field `stauts`"),
        "{violations:#?}"
    );
    assert!(
        !violations[0].contains("missing required field `head_sha`"),
        "{violations:#?}"
    );

    // The request was right; the fake's answer lacks what GitHub always sends.
    assert_eq!(
        send(CHECK_RUNS, json!({"name": "x", "head_sha": "abc"})),
        201
    );
    let violations = fake.take_violations();
    assert!(
        violations[0].contains("answer: missing required field"),
        "{violations:#?}"
    );

    send("/repos/acme/service-demo/check_runs", json!({}));
    let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| fake.assert_contract()));
    let message = *unwound.unwrap_err().downcast::<String>().unwrap();
    assert!(
        message.contains("/repos/acme/service-demo/check_runs: no path of"),
        "{message}"
    );
    assert!(
        fake.take_violations().is_empty(),
        "assert_contract takes what it reports"
    );
}

/// The status of a plain HTTP/1.1 POST of `body` (JSON) to `addr`.
fn post(addr: &str, path: &str, body: &Value) -> u16 {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    let body = body.to_string();
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response.split(' ').nth(1).unwrap().parse().unwrap()
}

// The validator's keywords, on small schemas of each dialect.

fn violations(dialect: Dialect, schema: Value, value: Value) -> Vec<String> {
    let root = json!({"definitions": {"named": {"type": "object", "properties": {"a": {"type": "string"}}}}});
    Validator::new(&root, dialect)
        .validate(&schema, &value, "")
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn refs_nullable_and_unknown_fields_follow_each_dialect() {
    let by_ref = json!({"$ref": "#/definitions/named"});
    assert!(violations(Dialect::Swagger2, by_ref.clone(), json!({"a": "x"})).is_empty());
    assert_eq!(
        violations(Dialect::Swagger2, by_ref.clone(), json!({"a": 1, "b": 2})),
        [
            ".a: a number (1) where the schema wants string",
            ".b: unknown field `b` (the schema declares a)"
        ]
    );
    let string = json!({"type": "string"});
    assert_eq!(
        violations(Dialect::OpenApi3, string.clone(), Value::Null),
        ["(document): null where the schema wants string"]
    );
    assert!(
        violations(
            Dialect::OpenApi3,
            json!({"type": "string", "nullable": true}),
            Value::Null
        )
        .is_empty()
    );
    assert!(
        violations(
            Dialect::Swagger2,
            json!({"type": "string", "x-nullable": true}),
            Value::Null
        )
        .is_empty()
    );
    // The API server prunes a null in a field that is not nullable: absent, then required.
    let spec = json!({"type": "object", "required": ["a"], "properties": {"a": string}});
    assert_eq!(
        violations(Dialect::Kubernetes, spec, json!({"a": null})),
        ["(document): missing required field `a`"]
    );
}

#[test]
fn combinators_pick_the_branch_that_declares_the_fields() {
    let one_of = json!({"oneOf": [
        {"type": "object", "properties": {"a": {"type": "string"}}},
        {"type": "object", "properties": {"b": {"type": "integer"}}},
    ]});
    assert!(violations(Dialect::OpenApi3, one_of.clone(), json!({"b": 1})).is_empty());
    let none = violations(Dialect::OpenApi3, one_of.clone(), json!({"c": 1}));
    assert!(
        none[0].contains("matches none of the 2 oneOf branches"),
        "{none:?}"
    );
    let two = violations(Dialect::OpenApi3, one_of, json!({}));
    assert!(
        two[0].contains("matches 2 of the oneOf branches"),
        "{two:?}"
    );

    let all_of = json!({"allOf": [
        {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
        {"properties": {"b": {"type": "string", "enum": ["x"]}}},
    ]});
    assert!(
        violations(
            Dialect::OpenApi3,
            all_of.clone(),
            json!({"a": "", "b": "x"})
        )
        .is_empty()
    );
    assert_eq!(
        violations(Dialect::OpenApi3, all_of, json!({"b": "y", "c": 1})),
        [
            "(document): missing required field `a`",
            ".b: \"y\" is not one of \"x\"",
            ".c: unknown field `c` (the schema declares a, b)"
        ]
    );
    let any_of = json!({"anyOf": [{"type": "string"}, {"type": "integer"}]});
    assert!(violations(Dialect::OpenApi3, any_of.clone(), json!(3)).is_empty());
    assert!(
        violations(Dialect::OpenApi3, any_of, json!(true))[0]
            .contains("matches none of the 2 anyOf")
    );
}

#[test]
fn kubernetes_markers_formats_and_additional_properties() {
    let schema = json!({"type": "object", "properties": {
        "port": {"x-kubernetes-int-or-string": true},
        "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
        "kept": {"type": "object", "x-kubernetes-preserve-unknown-fields": true, "properties": {"n": {"type": "integer"}}},
        "embedded": {"type": "object", "x-kubernetes-embedded-resource": true, "properties": {"spec": {"type": "object"}}},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "at": {"type": "string", "format": "date-time"},
        "name": {"type": "string", "pattern": "^[a-z]+$", "maxLength": 5},
        "list": {"type": "array", "items": {"type": "string"}, "minItems": 1},
    }});
    let good = json!({
        "port": "http", "free": {"anything": [1]}, "kept": {"n": 1, "other": true}, "embedded": {"apiVersion": "v1", "kind": "Pod", "metadata": {}},
        "labels": {"a": "b"}, "at": "2026-01-02T03:04:05Z", "name": "abc", "list": ["x"],
    });
    assert!(violations(Dialect::Kubernetes, schema.clone(), good).is_empty());
    let bad = json!({
        "port": 1.5, "embedded": {"spek": {}}, "kept": {"n": "one", "other": true}, "labels": {"a": 1}, "at": "yesterday",
        "name": "ABCDEFG", "list": [],
    });
    assert_eq!(
        violations(Dialect::Kubernetes, schema, bad),
        [
            ".at: \"yesterday\" is not a date-time: RFC 3339, e.g. 2026-01-02T03:04:05Z",
            ".embedded.spek: unknown field `spek` (did you mean `spec`?)",
            ".kept.n: a string (\"one\") where the schema wants integer",
            ".labels.a: a number (1) where the schema wants string",
            ".list: minItems is 1, and this has 0",
            ".name: \"ABCDEFG\" does not match the pattern ^[a-z]+$",
            ".name: maxLength is 5, and this has 7",
            ".port: a number (1.5) where the schema wants integer or string",
        ]
    );
}

#[test]
fn argocd_requests_and_answers_off_its_description_are_refused_by_name() {
    let Some(api) = contract::require_argocd() else {
        return;
    };
    let sync = "/api/v1/applications/service-demo-prod/sync";
    let body = json!({"revision": "abc", "prune": true});
    api.check_request("POST", sync, Some(&body))
        .unwrap_or_else(|problem| panic!("xtask's own sync request is refused: {problem}"));
    let read = "/api/v1/applications/service-demo-prod?refresh=normal";
    api.check_request("GET", read, None).unwrap();

    let wrong_path = api
        .check_request("GET", "/api/v1/application/service-demo-prod", None)
        .unwrap_err();
    assert!(
        wrong_path.contains("no path of Argo CD's REST description"),
        "{wrong_path}"
    );
    let wrong_method = api.check_request("PUT", sync, Some(&body)).unwrap_err();
    assert!(
        wrong_method.contains("has no PUT on /api/v1/applications/{name}/sync (it has POST)"),
        "{wrong_method}"
    );
    let typo = api
        .check_request(
            "POST",
            sync,
            Some(&json!({"revision": "abc", "prnue": true})),
        )
        .unwrap_err();
    assert!(typo.contains("body.prnue: unknown field `prnue`"), "{typo}");
    assert!(typo.contains("ApplicationService_Sync"), "{typo}");
    let query = api
        .check_request("GET", "/api/v1/applications?projcts=service-demo", None)
        .unwrap_err();
    assert!(
        query.contains("query parameter `projcts` is not declared"),
        "{query}"
    );

    // Answers: Argo CD 2.13 has no health.lastTransitionTime (2.14 added it); a
    // list with nothing in it is `"items": null` (Go's nil slice).
    let app = json!({"metadata": {"name": "a"}, "status": {"health": {"status": "Healthy", "lastTransitionTime": "2026-01-01T00:00:00Z"}}});
    let newer = api.check_response("GET", read, 200, &app).unwrap_err();
    assert!(
        newer.contains("answer.status.health.lastTransitionTime: unknown field"),
        "{newer}"
    );
    api.check_response(
        "GET",
        "/api/v1/applications?selector=a%3Db",
        200,
        &json!({"metadata": {}, "items": null}),
    )
    .unwrap();
    let wrong_type = api
        .check_response(
            "GET",
            read,
            200,
            &json!({"status": {"sync": {"status": 1}}}),
        )
        .unwrap_err();
    assert!(
        wrong_type
            .contains("answer.status.sync.status: a number (1) where the schema wants string"),
        "{wrong_type}"
    );
    let error =
        json!({"error": "no session information", "code": 16, "message": "no session information"});
    api.check_response("GET", read, 401, &error).unwrap();
}
