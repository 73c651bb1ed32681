//! The API suite against a real PostgreSQL (a server of its own per test), and
//! what only a database has: migrations, and an outage in the middle of traffic.
//! Where PostgreSQL is not installed these tests fail, unless
//! `SERVICE_DEMO_ALLOW_SKIP=1` (see the `test-skip` crate).

mod common {
    pub mod api_suite;
    pub mod postgres;
}

use std::sync::Arc;

use common::api_suite::{Backend, TestStore, assert_problem, serve_on_loopback};
use common::postgres::{PgServer, SharedDatabase};
use items_api::AppState;
use items_api::config::{Config, DatabaseConfig};
use items_api::domain::{Item, ItemDescription, NewItem};
use items_api::store::{ItemStore, PostgresStore, migrate};
use reqwest::StatusCode;
use serde_json::{Value, json};

fn database(url: &str) -> DatabaseConfig {
    let url = url.to_owned();
    Config::from_lookup(|name| (name == "DATABASE_URL").then(|| url.clone()))
        .unwrap()
        .database
        .unwrap()
}

struct Postgres;

impl Backend for Postgres {
    fn unavailable() -> Option<String> {
        PgServer::unavailable()
    }

    /// A migrated, fresh database on the server the suite shares.
    async fn store() -> TestStore {
        let db = SharedDatabase::create("api_postgres").expect("checked by unavailable()");
        let config = database(&db.url);
        migrate(&config).await.unwrap();
        TestStore {
            store: Arc::new(PostgresStore::new(&config).unwrap()),
            guard: Box::new(db),
        }
    }
}

api_suite!(Postgres);

#[tokio::test]
async fn migrations_apply_once_and_rerun_as_a_no_op() {
    let Some(db) =
        SharedDatabase::create("api_postgres::migrations_apply_once_and_rerun_as_a_no_op")
    else {
        return;
    };
    // Advisory locks are per database: a fresh one on the shared server suffices.
    let config = database(&db.url);
    assert_eq!(migrate(&config).await.unwrap(), ["0001_create_items"]);
    assert!(migrate(&config).await.unwrap().is_empty());
    // Concurrent runs (two hook Jobs) serialize on the advisory lock.
    let (a, b) = tokio::join!(migrate(&config), migrate(&config));
    assert!(a.unwrap().is_empty() && b.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_restart_is_503_while_down_and_loses_nothing() {
    let Some(mut server) =
        PgServer::start("api_postgres::a_database_restart_is_503_while_down_and_loses_nothing")
    else {
        return;
    };
    let config = database(&server.url());
    migrate(&config).await.unwrap();
    let app_config = Config::from_lookup(|_| None).unwrap();
    let state = AppState::new(&app_config, Arc::new(PostgresStore::new(&config).unwrap()));
    let base = format!(
        "http://{}",
        serve_on_loopback(state, app_config.server).await
    );
    let client = reqwest::Client::new();
    let get = |path: &str| client.get(format!("{base}{path}")).send();

    let created: Value = client
        .post(format!("{base}/api/v1/items"))
        .json(&json!({ "name": "survives" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let path = format!("/api/v1/items/{}", created["id"].as_str().unwrap());
    // Point lookups share connections: open them all before the outage.
    for _ in 0..4 {
        assert_eq!(get(&path).await.unwrap().status(), StatusCode::OK);
    }

    server.stop();
    // Reads and readiness fail fast with 503; liveness does not depend on the database.
    let down = get(&path).await.unwrap();
    assert_problem(down, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(
        get("/readyz").await.unwrap().status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(get("/healthz").await.unwrap().status(), StatusCode::OK);

    server.start_again();
    assert_eq!(get("/readyz").await.unwrap().status(), StatusCode::OK);
    // Every shared connection was closed by the restart and is replaced.
    for _ in 0..4 {
        let back: Value = get(&path).await.unwrap().json().await.unwrap();
        assert_eq!(back, created);
    }
}

/// A busy pool is load, not an outage: with every connection held, `/readyz`
/// answers 200 at once instead of waiting 3 s for a connection (past the
/// readiness probe's 2 s timeout), which turned every replica unready at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_stays_ready_while_every_pool_connection_is_busy() {
    let Some(server) =
        PgServer::start("api_postgres::readiness_stays_ready_while_every_pool_connection_is_busy")
    else {
        return;
    };
    let mut config = database(&server.url());
    config.pool_size = 1;
    migrate(&config).await.unwrap();
    // Another session locks the table, so a create holds the pool's only connection.
    let (locker, connection) = tokio_postgres::connect(&server.url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    locker
        .batch_execute("BEGIN; LOCK TABLE items IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let app_config = Config::from_lookup(|_| None).unwrap();
    let state = AppState::new(&app_config, Arc::new(PostgresStore::new(&config).unwrap()));
    let base = format!(
        "http://{}",
        serve_on_loopback(state, app_config.server).await
    );
    let client = reqwest::Client::new();
    let blocked = tokio::spawn(
        client
            .post(format!("{base}/api/v1/items"))
            .json(&json!({ "name": "waits for the lock" }))
            .send(),
    );
    // Until the create holds the connection (its wait shows in pg_stat_activity).
    // Generous: a loaded CI machine may take seconds to connect the first time.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        // Inside a transaction PostgreSQL caches what pg_stat_activity showed
        // at its first read: clear that, or a first look before the create
        // arrived is all this loop ever sees.
        locker
            .batch_execute("SELECT pg_stat_clear_snapshot()")
            .await
            .unwrap();
        let waiting = locker
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'",
                &[],
            )
            .await
            .unwrap()
            .get::<_, i64>(0);
        if waiting > 0 {
            break;
        }
        assert!(
            !blocked.is_finished(),
            "the create finished without waiting for the lock: {:?}",
            blocked.await
        );
        assert!(
            std::time::Instant::now() < deadline,
            "the create never waited"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let started = std::time::Instant::now();
    let ready = client.get(format!("{base}/readyz")).send().await.unwrap();
    eprintln!("/readyz with a busy pool: {:?}", started.elapsed());
    assert_eq!(ready.status(), StatusCode::OK);
    locker.batch_execute("COMMIT").await.unwrap();
    assert_eq!(
        blocked.await.unwrap().unwrap().status(),
        StatusCode::CREATED
    );
}

/// Concurrent creates are inserted in batches (`store/batched_insert.rs`):
/// one statement, so one transaction, whose items share `now()`. Each create
/// still gets back its own item, and every one is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_share_statements_and_each_gets_its_own_item() {
    let Some(db) = SharedDatabase::create(
        "api_postgres::concurrent_creates_share_statements_and_each_gets_its_own_item",
    ) else {
        return;
    };
    let config = database(&db.url);
    migrate(&config).await.unwrap();
    let store = Arc::new(PostgresStore::new(&config).unwrap());
    const CREATES: usize = 200;
    let creates: Vec<_> = (0..CREATES)
        .map(|n| {
            let store = store.clone();
            tokio::spawn(async move {
                let new = NewItem {
                    description: (n % 2 == 0)
                        .then(|| ItemDescription::parse(format!("description {n}")).unwrap()),
                    ..NewItem::named(&format!("item {n}")).unwrap()
                };
                (n, store.create(new).await.unwrap())
            })
        })
        .collect();
    let mut ids = std::collections::HashSet::new();
    let mut transactions = std::collections::HashSet::new();
    for create in creates {
        let (n, item) = create.await.unwrap();
        assert_eq!(
            item.name,
            format!("item {n}"),
            "a create got another's item"
        );
        let description = (n % 2 == 0).then(|| format!("description {n}"));
        assert_eq!(item.description, description);
        assert_eq!(store.get(item.id).await.unwrap(), item);
        ids.insert(item.id);
        transactions.insert(item.created_at);
    }
    assert_eq!(ids.len(), CREATES, "every create has an id of its own");
    let page = store.list(None, 1000).await.unwrap();
    let listed: Vec<Value> = serde_json::from_slice(&page.json).unwrap();
    assert_eq!(listed.len(), CREATES);
    // One by one, 200 creates are 200 transactions; batched, a few.
    assert!(
        transactions.len() <= CREATES / 4,
        "{} transactions for {CREATES} concurrent creates: they were not batched",
        transactions.len()
    );
    eprintln!(
        "{CREATES} concurrent creates in {} transactions",
        transactions.len()
    );
}

/// A list's page is written from the rows by hand (`store/row_json.rs`), an
/// item alone by serde: the page must be, byte for byte, the JSON array of
/// the items serde writes. Names that need escapes, text beyond ASCII, an
/// item with a description and one without, one updated (two timestamps).
#[tokio::test]
async fn a_page_is_byte_for_byte_the_items_own_json() {
    let Some(db) =
        SharedDatabase::create("api_postgres::a_page_is_byte_for_byte_the_items_own_json")
    else {
        return;
    };
    let config = database(&db.url);
    migrate(&config).await.unwrap();
    let store = PostgresStore::new(&config).unwrap();
    let new = |name: &str, description: Option<&str>| NewItem {
        description: description.map(|d| ItemDescription::parse(d.to_owned()).unwrap()),
        ..NewItem::named(name).unwrap()
    };
    let mut items: Vec<Item> = Vec::new();
    for (name, description) in [
        ("tea", None),
        (
            "caf\u{e9} \u{2603} \"quoted\" back\\slash",
            Some("tab\there\nline \u{1}"),
        ),
        ("plain", Some("")),
    ] {
        items.push(store.create(new(name, description)).await.unwrap());
    }
    let updated = store
        .update(
            items[0].id,
            new("tea, updated", Some("now described")),
            None,
        )
        .await
        .unwrap();
    assert_ne!(updated.created_at, updated.updated_at);
    items[0] = updated;
    let page = store.list(None, 10).await.unwrap();
    assert_eq!(
        String::from_utf8(page.json.to_vec()).unwrap(),
        serde_json::to_string(&items).unwrap()
    );
    for item in &items {
        assert_eq!(&store.get(item.id).await.unwrap(), item);
    }
}
