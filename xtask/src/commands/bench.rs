//! `cargo xtask bench`: benchmarks that print figures and assert nothing
//! about speed.
//!
//! - `http`: the binary the image ships (or `--binary`) under wrk, beside a
//!   reference measured in the same run (`--reference gin`, built from
//!   `xtask/bench/reference-gin`, or `--reference-binary`), beside the floor
//!   (`--floor`: `xtask/bench/floor/floor.c`, a server that does no work, so
//!   what the kernel and wrk allow any server here), and beside PostgreSQL's
//!   own limit (pgbench) when it runs on a database.
//! - `gitops`: promotions against a local bare remote, one at a time and at once.
//! - `image`: assembly time, size, push time and the bytes a retag uploads.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use xshell::{Shell, cmd};

use crate::domain::image_build;
use crate::domain::lead_time::{LEAD_TIME_FILE, LeadTime};
use crate::domain::oci;
use crate::domain::registry::Repository;
use crate::plumbing::counting_proxy::CountingProxy;
use crate::plumbing::local_registry::LocalRegistry;
use crate::plumbing::pgbench::PgbenchRun;
use crate::plumbing::pinned_server::{PinnedServer, ServerSpec};
use crate::plumbing::proc_stats;
use crate::plumbing::process::which;
use crate::plumbing::workspace;
use crate::plumbing::wrk;

#[derive(clap::Subcommand)]
pub enum BenchCommand {
    /// Load-test the image's items-api binary with wrk: throughput, latency, memory, start-up.
    Http(HttpArgs),
    /// Time promotions against a local bare remote: one at a time, and 50 at once.
    Gitops(GitopsBenchArgs),
    /// Image assembly time, size, push time, and the bytes a retag uploads (real local registry).
    Image,
    /// Lead time from the demo's own steps, cold (an empty target dir) then warm: a commit to a
    /// preview answering and a merge to a recorded gate, split into checks, build, push,
    /// promote, sync-wait and tests.
    Pipeline(PipelineArgs),
}

#[derive(clap::Args)]
pub struct PipelineArgs {
    /// Where the two demos and their target dir go (the target dir is emptied first: the
    /// cold run compiles everything). Default: <target>/xtask/bench-pipeline.
    #[arg(long)]
    workdir: Option<PathBuf>,
    /// Keep the target dir of a previous run: both runs are warm.
    #[arg(long)]
    warm_only: bool,
}

pub fn run(command: BenchCommand) -> Result<()> {
    match command {
        BenchCommand::Http(args) => http(args),
        BenchCommand::Gitops(args) => gitops(args),
        BenchCommand::Image => image(),
        BenchCommand::Pipeline(args) => pipeline(args),
    }
}

#[derive(clap::Args)]
pub struct HttpArgs {
    /// Seconds per wrk run.
    #[arg(long, default_value_t = 15)]
    duration: u64,
    /// Runs per scenario and server, interleaved between servers; the median is reported.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// wrk connections.
    #[arg(long, default_value_t = 64)]
    connections: u32,
    /// wrk threads, all on CPU 1.
    #[arg(long, default_value_t = 2)]
    threads: u32,
    /// Port for the server under test (the reference gets the next one).
    #[arg(long, default_value_t = 18080)]
    port: u16,
    /// The items-api binary to measure. Default: the static binary `image build` puts in the
    /// linux/amd64 image, built the same way.
    #[arg(long, value_name = "PATH")]
    binary: Option<PathBuf>,
    /// Measure a reference implementation beside items-api in this run, interleaved, on the
    /// same CPU: `gin` builds the tutorial's Go/Gin service from `xtask/bench/reference-gin`
    /// (needs Go and Debian's gin packages). Without it no reference figure is printed.
    #[arg(long, value_enum, conflicts_with = "reference_binary")]
    reference: Option<Reference>,
    /// Measure this already-built reference binary instead (it must serve the same API on
    /// `$PORT`).
    #[arg(long, value_name = "PATH")]
    reference_binary: Option<PathBuf>,
    /// A/B: measure this other items-api build too, with the same settings and store
    /// (interleaved, run by run). Without a reference, the ratios are against it.
    #[arg(long, value_name = "PATH")]
    baseline: Option<PathBuf>,
    /// Measure the floor too: `xtask/bench/floor/floor.c` (built with `cc`), a server that only
    /// finds where each request ends and writes a fixed small answer. Its CPU per request is
    /// what the kernel's loopback TCP costs any server, and its req/s the most wrk gets from
    /// one CPU here: together, the largest ratio any server could show against the reference
    /// on this host (healthz, GET and POST; the list's answer is too large for it to be a floor).
    #[arg(long)]
    floor: bool,
    /// Run items-api on the PostgreSQL store at this URL (migrated first) instead of the
    /// in-memory store, and measure the database's own figure for the statements of the
    /// GET, the list and (one by one) the POST.
    #[arg(long, value_name = "URL")]
    database_url: Option<String>,
    /// items-api's pool size on PostgreSQL (DATABASE_POOL_SIZE), and pgbench's connections.
    #[arg(long, default_value_t = 10)]
    pool_size: usize,
}

/// The server runs on CPU 0; wrk and pgbench on CPU 1.
const SERVER_CPU: usize = 0;
const LOAD_CPU: usize = 1;
const SEED_ITEMS: usize = 1000;

/// The store's point lookup and first page, as `services/items-api/src/store/postgres.rs`
/// sends them (a test holds them equal); pgbench fills `$1` from `-D` variables.
const GET_ITEM_SQL: &str =
    "SELECT id, name, description, version, created_at, updated_at FROM items WHERE id = $1";
const LIST_SQL: &str =
    "SELECT id, name, description, version, created_at, updated_at FROM items ORDER BY id LIMIT $1";
/// One item per statement and per commit: what a create cost before the
/// store batched them, and the most a service that inserts one by one gets.
const INSERT_ONE_SQL: &str = "INSERT INTO items (id, name, description, version, created_at, updated_at) \
     VALUES (gen_random_uuid(), 'bench item', 'load', 1, now(), now()) \
     RETURNING id, name, description, version, created_at, updated_at";

/// A server under test, started and seeded.
struct Subject {
    name: &'static str,
    server: PinnedServer,
    startup_ms: f64,
    idle_rss_kib: u64,
    idle_anon_kib: u64,
    last_id: String,
    /// Per scenario, the runs in order.
    runs: Vec<Vec<wrk::Run>>,
}

/// 1. Build (or take) the binaries. 2. Start, time and seed each server.
/// 3. Run every scenario, interleaving servers run by run; on PostgreSQL,
///    pgbench's figure for the scenario's own statement after each round. 4. Print.
fn http(args: HttpArgs) -> Result<()> {
    let sh = Shell::new()?;
    sh.change_dir(workspace::root());
    for tool in ["wrk", "taskset"]
        .into_iter()
        .chain(args.database_url.as_ref().map(|_| "pgbench"))
    {
        ensure!(
            which(tool).is_some(),
            "{tool} is not installed: `apt-get install -y wrk util-linux postgresql-client`"
        );
    }
    let binary = match &args.binary {
        Some(path) => path.clone(),
        None => {
            let head = cmd!(sh, "git rev-parse HEAD").read()?;
            image_build::amd64_static_binary(&sh, &head)?
        }
    };
    if let Some(url) = &args.database_url {
        cmd!(sh, "{binary} migrate")
            .env("DATABASE_URL", url)
            .run()?;
    }
    let reference = match (args.reference, &args.reference_binary) {
        (Some(Reference::Gin), _) => Some(build_gin_reference(&sh)?),
        (None, path) => path.clone(),
    };
    let floor = args.floor.then(|| build_floor(&sh)).transpose()?;
    let mut subjects = start_subjects(&binary, floor, reference, &args)?;
    let scratch = crate::plumbing::fs::temp_dir("xtask-")?;
    let scenarios = scenarios(&subjects[0].last_id, scratch.path())?;
    let database_limits =
        measure_interleaved(&sh, &args, &scenarios, &mut subjects, scratch.path())?;
    print_http_report(&args, &binary, &scenarios, &subjects, &database_limits);
    Ok(())
}

/// items-api, then the baseline build, the floor and the reference when
/// there are (the reference is what the others are compared with, or else the baseline).
fn start_subjects(
    binary: &Path,
    floor: Option<PathBuf>,
    reference: Option<PathBuf>,
    args: &HttpArgs,
) -> Result<Vec<Subject>> {
    let mut subjects = vec![Subject::start(
        "items-api",
        &service_spec(binary, args.port, args),
    )?];
    if let Some(baseline) = &args.baseline {
        let spec = service_spec(baseline, args.port + 2, args);
        subjects.push(Subject::start("baseline", &spec)?);
    }
    if let Some(floor) = floor {
        let spec = ServerSpec {
            binary: floor,
            cpu: SERVER_CPU,
            port: args.port + 3,
            env: Vec::new(),
        };
        subjects.push(Subject::launch(FLOOR, &spec)?);
    }
    if let Some(reference) = reference {
        let spec = ServerSpec {
            binary: reference,
            cpu: SERVER_CPU,
            port: args.port + 1,
            env: Vec::new(),
        };
        subjects.push(Subject::start("reference", &spec)?);
    }
    Ok(subjects)
}

/// A reference implementation `bench http` can build from this repository.
#[derive(Clone, Copy, clap::ValueEnum)]
enum Reference {
    /// The tutorial's Go/Gin service, `xtask/bench/reference-gin/main.go`.
    Gin,
}

/// Builds `xtask/bench/reference-gin` with the local Go against Debian's
/// packaged Gin (GOPATH mode: nothing is downloaded); returns the binary.
fn build_gin_reference(sh: &Shell) -> Result<PathBuf> {
    const INSTALL: &str = "apt-get install -y golang-go golang-github-gin-gonic-gin-dev golang-github-google-uuid-dev";
    ensure!(
        which("go").is_some(),
        "--reference gin needs Go: `{INSTALL}`, or pass --reference-binary PATH"
    );
    let gocode = Path::new("/usr/share/gocode");
    ensure!(
        gocode.join("src/github.com/gin-gonic/gin").is_dir(),
        "--reference gin needs Debian's Gin under {}: `{INSTALL}`",
        gocode.display()
    );
    let out = workspace::target_dir().join("bench");
    let (binary, cache) = (out.join("gin-reference"), out.join("go-cache"));
    let source = workspace::root().join("xtask/bench/reference-gin/main.go");
    eprintln!(
        "bench: building the Go/Gin reference from {}",
        source.display()
    );
    cmd!(sh, "go build -o {binary} {source}")
        .env("GOPATH", gocode)
        .env("GO111MODULE", "off")
        .env("GOCACHE", cache)
        .env("GOFLAGS", "")
        .run()
        .with_context(|| format!("building the Go/Gin reference (needs `{INSTALL}`)"))?;
    Ok(binary)
}

/// The floor's name among the subjects.
const FLOOR: &str = "floor";

/// Builds `xtask/bench/floor/floor.c` with the system's C compiler.
fn build_floor(sh: &Shell) -> Result<PathBuf> {
    ensure!(
        which("cc").is_some(),
        "--floor needs a C compiler: `apt-get install -y gcc`"
    );
    let out = workspace::target_dir().join("bench");
    sh.create_dir(&out)?;
    let binary = out.join("floor");
    let source = workspace::root().join("xtask/bench/floor/floor.c");
    cmd!(sh, "cc -O2 -o {binary} {source}")
        .run()
        .context("building the floor server")?;
    Ok(binary)
}

fn service_spec(binary: &Path, port: u16, args: &HttpArgs) -> ServerSpec {
    let mut env = vec![
        ("RUST_LOG".to_owned(), "warn".to_owned()),
        ("SHUTDOWN_DRAIN_SECONDS".to_owned(), "0".to_owned()),
        // A 15 s POST run writes more than the in-memory store's default
        // capacity (which fits the chart's 64 MiB): lift it, or it measures 507s.
        ("MEMORY_STORE_MAX_ITEMS".to_owned(), "100000000".to_owned()),
        (
            "MEMORY_STORE_MAX_BYTES".to_owned(),
            "1099511627776".to_owned(),
        ),
        // wrk opens 64 connections per run; keep the cap out of the way.
        ("MAX_CONNECTIONS".to_owned(), "4096".to_owned()),
    ];
    if let Some(url) = &args.database_url {
        env.push(("DATABASE_URL".to_owned(), url.clone()));
        env.push(("DATABASE_POOL_SIZE".to_owned(), args.pool_size.to_string()));
    }
    ServerSpec {
        binary: binary.to_owned(),
        cpu: SERVER_CPU,
        port,
        env,
    }
}

impl Subject {
    /// [`Self::launch`], then creates the items the scenarios read.
    fn start(name: &'static str, spec: &ServerSpec) -> Result<Self> {
        let mut subject = Self::launch(name, spec)?;
        subject.last_id =
            seed(&subject.server.base_url).with_context(|| format!("seeding {name}"))?;
        Ok(subject)
    }

    /// Times start-up, starts the server for good and reads its idle memory.
    fn launch(name: &'static str, spec: &ServerSpec) -> Result<Self> {
        let startup_ms = PinnedServer::startup_ms(spec)?;
        let server = PinnedServer::start(spec)?;
        let (idle_rss_kib, idle_anon_kib) = (
            proc_stats::memory_kib(server.pid(), "VmRSS")?,
            proc_stats::memory_kib(server.pid(), "RssAnon")?,
        );
        Ok(Self {
            name,
            server,
            startup_ms,
            idle_rss_kib,
            idle_anon_kib,
            last_id: name.to_owned(),
            runs: Vec::new(),
        })
    }

    /// Whether this subject runs `scenario` (the floor only where its small
    /// answer is a floor).
    fn runs_scenario(&self, scenario: &Scenario) -> bool {
        self.name != FLOOR || scenario.small_answer
    }
}

/// POSTs the items the list reads; returns the last one's id (the GET's).
fn seed(base_url: &str) -> Result<String> {
    let client = crate::plumbing::http::client(crate::plumbing::http::TIMEOUT)?;
    let mut last_id = String::new();
    for i in 0..SEED_ITEMS {
        let created: serde_json::Value = client
            .post(format!("{base_url}/api/v1/items"))
            .json(&serde_json::json!({ "name": format!("item {i}") }))
            .send()?
            .error_for_status()?
            .json()?;
        last_id = created["id"]
            .as_str()
            .context("a created item has no string id")?
            .to_owned();
    }
    Ok(last_id)
}

/// A scenario: its name, the path wrk requests, an optional wrk script, and
/// on PostgreSQL the statement pgbench runs beside it (`sql`, described by `what`).
struct Scenario {
    name: &'static str,
    path: String,
    script: Option<PathBuf>,
    database: Option<(&'static str, &'static str)>,
    /// The answer is a few hundred bytes at most: the floor's is comparable.
    small_answer: bool,
}

/// The list runs before POST, which adds many items. The GET reads the last
/// seeded item of the first server; others are asked for their own.
fn scenarios(last_id: &str, scratch: &Path) -> Result<Vec<Scenario>> {
    let post = wrk::post_script(scratch, r#"{"name":"bench item","description":"load"}"#)?;
    let scenario = |name, path: String, script, database, small_answer| Scenario {
        name,
        path,
        script,
        database,
        small_answer,
    };
    Ok(vec![
        scenario("GET /healthz", "/healthz".into(), None, None, true),
        scenario(
            "GET /api/v1/items/{id}",
            format!("/api/v1/items/{last_id}"),
            None,
            Some(("the GET's SELECT", GET_ITEM_SQL)),
            true,
        ),
        scenario(
            "GET /api/v1/items?limit=1000",
            "/api/v1/items?limit=1000".into(),
            None,
            Some(("the list's SELECT of 1001 rows", LIST_SQL)),
            false,
        ),
        scenario(
            "POST /api/v1/items",
            "/api/v1/items".into(),
            Some(post),
            Some(("one INSERT … RETURNING per transaction", INSERT_ONE_SQL)),
            true,
        ),
    ])
}

/// Every scenario, `runs` times, each run going to every server in turn, so
/// drifts of the machine (other load, thermals) touch all servers alike. On
/// PostgreSQL, each round of a scenario that has a statement is followed by a
/// pgbench run of that statement at the pool's connection count: what the
/// database itself does at that moment. Returns those, per scenario.
fn measure_interleaved(
    sh: &Shell,
    args: &HttpArgs,
    scenarios: &[Scenario],
    subjects: &mut [Subject],
    scratch: &Path,
) -> Result<Vec<Vec<f64>>> {
    let load = wrk::Load {
        threads: args.threads,
        connections: args.connections,
        seconds: args.duration,
        cpu: LOAD_CPU,
    };
    let first_id = subjects[0].last_id.clone();
    let vars = [("id", first_id.as_str()), ("limit", "1001")];
    let mut database_limits = Vec::new();
    for scenario in scenarios {
        for subject in subjects.iter_mut() {
            subject.runs.push(Vec::new());
        }
        database_limits.push(Vec::new());
        let sql = scenario
            .database
            .map(|(_, sql)| sql.replace("$1", if sql == LIST_SQL { ":limit" } else { ":id" }));
        for run in 1..=args.runs {
            for subject in subjects.iter_mut().filter(|s| s.runs_scenario(scenario)) {
                eprintln!(
                    "bench: {} on {}, run {run}/{}",
                    scenario.name, subject.name, args.runs
                );
                let path = scenario.path.replace(&first_id, &subject.last_id);
                let url = format!("{}{path}", subject.server.base_url);
                let result = wrk::run(
                    sh,
                    load,
                    &url,
                    scenario.script.as_deref(),
                    subject.server.pid(),
                )?;
                subject.runs.last_mut().expect("pushed above").push(result);
            }
            if let (Some(database_url), Some(sql)) = (&args.database_url, &sql) {
                eprintln!(
                    "bench: pgbench -M prepared -c {} beside {}, run {run}/{}",
                    args.pool_size, scenario.name, args.runs
                );
                let tps = database_tps(sh, args, database_url, sql, &vars, scratch)?;
                database_limits.last_mut().expect("pushed above").push(tps);
            }
        }
    }
    Ok(database_limits)
}

/// pgbench's transactions per second for `sql`, as the pool would send it.
fn database_tps(
    sh: &Shell,
    args: &HttpArgs,
    database_url: &str,
    sql: &str,
    vars: &[(&str, &str)],
    scratch: &Path,
) -> Result<f64> {
    let pgbench = PgbenchRun {
        database_url,
        sql,
        vars,
        clients: args.pool_size,
        seconds: args.duration,
        cpu: LOAD_CPU,
    };
    pgbench.tps(sh, scratch)
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

/// Prints the tables; the reference's figures only when measured in this run.
fn print_http_report(
    args: &HttpArgs,
    binary: &Path,
    scenarios: &[Scenario],
    subjects: &[Subject],
    database_limits: &[Vec<f64>],
) {
    let store = if args.database_url.is_some() {
        format!("PostgreSQL store, pool of {}", args.pool_size)
    } else {
        "in-memory store".to_owned()
    };
    println!(
        "\nitems-api {} ({store}); server on CPU {SERVER_CPU}, wrk -t{} -c{} -d{}s --latency on CPU {LOAD_CPU}; \
         median of {} interleaved runs\n",
        binary.display(),
        args.threads,
        args.connections,
        args.duration,
        args.runs
    );
    if let Some(baseline) = &args.baseline {
        println!("baseline: {}, same settings\n", baseline.display());
    }
    print_scenario_table(scenarios, subjects);
    print_floor(scenarios, subjects);
    println!();
    for subject in subjects {
        let peak = proc_stats::memory_kib(subject.server.pid(), "VmHWM").unwrap_or(0);
        println!(
            "{}: idle RSS {:.1} MB ({:.1} MB anonymous), peak RSS {:.1} MB, start to first 200 on /healthz {:.1} ms",
            subject.name,
            subject.idle_rss_kib as f64 / 1024.0,
            subject.idle_anon_kib as f64 / 1024.0,
            peak as f64 / 1024.0,
            subject.startup_ms
        );
    }
    if !subjects.iter().any(|s| s.name == "reference") {
        println!(
            "no reference measured (pass --reference gin or --reference-binary PATH to measure one beside items-api)"
        );
    }
    print_database_limits(args, scenarios, subjects, database_limits);
}

/// Beside each scenario that has a statement, PostgreSQL's own figure for it
/// and what each items-api build got as a share of it.
fn print_database_limits(
    args: &HttpArgs,
    scenarios: &[Scenario],
    subjects: &[Subject],
    database_limits: &[Vec<f64>],
) {
    for (index, (scenario, limits)) in scenarios.iter().zip(database_limits).enumerate() {
        let Some((what, _)) = scenario.database.filter(|_| !limits.is_empty()) else {
            continue;
        };
        let limit = median(limits);
        let all: Vec<String> = limits.iter().map(|t| format!("{t:.0}")).collect();
        let services: Vec<String> = subjects
            .iter()
            .filter(|s| s.name != "reference" && s.name != FLOOR)
            .map(|s| {
                let rps = wrk::median(&s.runs[index]).requests_per_sec;
                format!("{} {rps:.0} req/s = {:.0}%", s.name, rps / limit * 100.0)
            })
            .collect();
        println!(
            "{}: PostgreSQL's own limit for {what}, pgbench -M prepared -c {} on CPU {LOAD_CPU} after each round: \
             {limit:.0} tx/s (runs: {}); {} of it",
            scenario.name,
            args.pool_size,
            all.join(", "),
            services.join(", ")
        );
    }
}

/// With the floor and a reference measured: per scenario, the largest ratio
/// any server could show here, and each server's own work per request (its
/// CPU per request above the floor's, which is the kernel's part).
fn print_floor(scenarios: &[Scenario], subjects: &[Subject]) {
    let (Some(floor), Some(reference)) = (
        subjects.iter().find(|s| s.name == FLOOR),
        subjects.last().filter(|s| s.name == "reference"),
    ) else {
        return;
    };
    println!(
        "\nfloor ({FLOOR}: xtask/bench/floor/floor.c, a fixed answer and no work): the most any server can show \
         against the reference on this host, and each server's own CPU per request above the floor's"
    );
    for (index, scenario) in scenarios.iter().enumerate() {
        if !scenario.small_answer {
            continue;
        }
        let f = wrk::median(&floor.runs[index]);
        let r = wrk::median(&reference.runs[index]);
        let above = |s: &Subject| {
            let m = wrk::median(&s.runs[index]);
            format!(
                "{} {:.1} µs",
                s.name,
                m.cpu_per_request_us() - f.cpu_per_request_us()
            )
        };
        let own: Vec<String> = subjects
            .iter()
            .filter(|s| s.name != FLOOR)
            .map(above)
            .collect();
        println!(
            "{}: floor {:.0} req/s, {:.1} µs per request: at most {:.2}× the reference's req/s, {:.2}× its requests \
             per CPU second; above the floor: {}",
            scenario.name,
            f.requests_per_sec,
            f.cpu_per_request_us(),
            f.requests_per_sec / r.requests_per_sec,
            r.cpu_per_request_us() / f.cpu_per_request_us(),
            own.join(", ")
        );
    }
}

/// One row per scenario and server: the median run's figures, and against
/// the reference (or else the baseline, when there is one) the ratios of
/// throughput, CPU time per request and p99.
/// CPU per request is what a request costs whether or not the server had its
/// core to itself (this machine is shared).
fn print_scenario_table(scenarios: &[Scenario], subjects: &[Subject]) {
    // Never the floor, which runs only the small-answer scenarios.
    let reference = ["reference", "baseline"]
        .into_iter()
        .find_map(|name| subjects.iter().find(|s| s.name == name));
    let versus_header = reference
        .map(|r| format!(" vs {}: req/s, CPU per request, p99 |", r.name))
        .unwrap_or_default();
    let versus_rule = if reference.is_some() { "---|" } else { "" };
    println!(
        "| scenario | server | req/s | p50 | p99 | server CPU | CPU per request | wrk CPU | req/s of the runs |{versus_header}\n\
         |---|---|---:|---:|---:|---:|---:|---:|---|{versus_rule}"
    );
    for (index, scenario) in scenarios.iter().enumerate() {
        for subject in subjects.iter().filter(|s| s.runs_scenario(scenario)) {
            let m = wrk::median(&subject.runs[index]);
            let all: Vec<String> = subject.runs[index]
                .iter()
                .map(|r| format!("{:.0}", r.requests_per_sec))
                .collect();
            let versus = match reference {
                Some(r) if !std::ptr::eq(r, subject) => {
                    let rm = wrk::median(&r.runs[index]);
                    format!(
                        " {:.2}×, {:.2}×, {:.2}× |",
                        m.requests_per_sec / rm.requests_per_sec,
                        m.cpu_per_request_us() / rm.cpu_per_request_us(),
                        m.p99_ms / rm.p99_ms
                    )
                }
                Some(_) => " |".to_owned(),
                None => String::new(),
            };
            println!(
                "| {} | {} | {:.0} | {:.2} ms | {:.2} ms | {:.0}% | {:.1} µs | {:.0}% | {} |{versus}",
                scenario.name,
                subject.name,
                m.requests_per_sec,
                m.p50_ms,
                m.p99_ms,
                m.server_cpu * 100.0,
                m.cpu_per_request_us(),
                m.wrk_cpu * 100.0,
                all.join(", ")
            );
        }
    }
}

#[derive(clap::Args)]
pub struct GitopsBenchArgs {
    /// Sequential promotions to time.
    #[arg(long, default_value_t = 20)]
    promotions: usize,
    /// Concurrent promoters, each in its own clone.
    #[arg(long, default_value_t = 50)]
    concurrent: usize,
}

/// Promotion timings, through the real `xtask promote` process as CI runs it:
/// fetch, edit, commit and push to a bare repository on the local disk.
/// 1. A bare remote with a values file and one commit per build.
/// 2. Promotions one at a time. 3. Promotions all at once, from their own clones.
// long: three measurements in a row, each a few lines over one fixture.
fn gitops(args: GitopsBenchArgs) -> Result<()> {
    let sh = Shell::new()?;
    let tmp = crate::plumbing::fs::temp_dir("xtask-")?;
    let _env = [
        sh.push_env("GIT_AUTHOR_NAME", "bench"),
        sh.push_env("GIT_AUTHOR_EMAIL", "bench@localhost"),
        sh.push_env("GIT_COMMITTER_NAME", "bench"),
        sh.push_env("GIT_COMMITTER_EMAIL", "bench@localhost"),
    ];
    let (remote, work) = (tmp.path().join("remote.git"), tmp.path().join("work"));
    let commits = gitops_remote(&sh, &remote, &work, args.promotions.max(args.concurrent))?;

    let mut times = Vec::new();
    for sha in commits.iter().take(args.promotions) {
        let started = Instant::now();
        let status = promote(&work, sha)?.status()?;
        ensure!(status.success(), "promotion of main-{sha} failed");
        times.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);

    let clones: Vec<PathBuf> = (0..args.concurrent)
        .map(|i| {
            let clone = tmp.path().join(format!("clone-{i}"));
            cmd!(sh, "git clone --quiet {remote} {clone}")
                .run()
                .map(|()| clone)
        })
        .collect::<Result<_, _>>()?;
    let started = Instant::now();
    let children: Vec<Child> = clones
        .iter()
        .zip(&commits)
        .map(|(clone, sha)| Ok(promote(clone, sha)?.spawn()?))
        .collect::<Result<_>>()?;
    let finished = children
        .into_iter()
        .map(|mut c| c.wait())
        .collect::<Result<Vec<_>, _>>()?;
    let concurrent = started.elapsed();

    println!(
        "\nxtask promote against a local bare remote (process start, fetch, edit, commit, push)\n"
    );
    println!("| measure | value |\n|---|---:|");
    println!(
        "| one promotion, median of {} | {:.0} ms |",
        times.len(),
        times[times.len() / 2]
    );
    println!(
        "| one promotion, slowest | {:.0} ms |",
        times[times.len() - 1]
    );
    println!(
        "| {} concurrent promotions, all finished | {:.2} s |",
        finished.len(),
        concurrent.as_secs_f64()
    );
    Ok(())
}

/// A bare `remote` holding the preprod values file and `builds` empty
/// commits after it, cloned at `work`; returns the builds' short SHAs.
fn gitops_remote(sh: &Shell, remote: &Path, work: &Path, builds: usize) -> Result<Vec<String>> {
    cmd!(sh, "git init --quiet --bare --initial-branch=main {remote}").run()?;
    cmd!(sh, "git clone --quiet {remote} {work}").run()?;
    let values = work.join("gitops/values/preprod/service-demo.yaml");
    sh.create_dir(values.parent().context("values file has a parent")?)?;
    sh.copy_file(
        workspace::root().join("gitops/values/preprod/service-demo.yaml"),
        &values,
    )?;
    let _dir = sh.push_dir(work);
    cmd!(sh, "git checkout --quiet -B main").run()?;
    cmd!(sh, "git add --all").run()?;
    cmd!(sh, "git commit --quiet -m values").run()?;
    let mut commits = Vec::new();
    for i in 0..builds {
        let message = format!("build {i}");
        cmd!(sh, "git commit --quiet --allow-empty -m {message}").run()?;
        commits.push(cmd!(sh, "git rev-parse --short=7 HEAD").read()?);
    }
    cmd!(sh, "git push --quiet origin main").run()?;
    Ok(commits)
}

/// `xtask promote --env preprod --tag main-<sha>` on `repo`, quiet.
fn promote(repo: &Path, sha: &str) -> Result<Command> {
    let mut command = Command::new(std::env::current_exe()?);
    command
        .args([
            "promote",
            "--env",
            "preprod",
            "--tag",
            &format!("main-{sha}"),
        ])
        .args(["--push-attempts", "200", "--repo"])
        .arg(repo)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    Ok(command)
}

/// 1. Build the static binary and assemble the image (median of 5).
/// 2. Push it to a real `docker-registry` on loopback through a proxy that
///    counts the bytes sent; push a changed build; retag.
// long: one timed measurement per line of output, read top to bottom.
fn image() -> Result<()> {
    let sh = Shell::new()?;
    sh.change_dir(workspace::root());
    let head = cmd!(sh, "git rev-parse HEAD").read()?;
    let binaries = image_build::static_binaries(&sh, &["linux/amd64".to_owned()], &head)?;
    let meta = image_build::image_meta(&sh, &head)?;
    let mut times = Vec::new();
    let mut image = None;
    for _ in 0..5 {
        let started = Instant::now();
        image = Some(oci::assemble(&binaries, &meta)?);
        times.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    let image = image.context("assembled five times")?;
    println!(
        "binary (static, stripped)        {}",
        image_build::human_size(binaries[0].1.len() as u64)
    );
    println!(
        "image, compressed                {}",
        image_build::human_size(image.compressed_size())
    );
    println!(
        "assembly after cargo build       {:.0} ms (median of 5)",
        median(&times)
    );

    let registry = LocalRegistry::start()?;
    let proxy = CountingProxy::start(&registry.addr)?;
    let repository = Repository::open_anonymous(&format!("{}/service-demo", proxy.addr))?;
    let measure = |what: &str, action: &dyn Fn() -> Result<()>| -> Result<()> {
        let (before, started) = (proxy.bytes_up(), Instant::now());
        action()?;
        println!(
            "{what:<32} {:.0} ms, {} sent to the registry",
            started.elapsed().as_secs_f64() * 1000.0,
            image_build::human_size(proxy.bytes_up() - before)
        );
        Ok(())
    };
    let tag = format!("main-{head}");
    measure("push (empty registry)", &|| {
        repository.push(&image, &tag).map(drop)
    })?;
    let mut changed = binaries.clone();
    changed[0].1.extend_from_slice(b"another build");
    let next = oci::assemble(&changed, &meta)?;
    measure("push of a new build (base cached)", &|| {
        repository.push(&next, &format!("pr-1-{head}")).map(drop)
    })?;
    measure("retag main-<sha> -> v0.0.0-bench", &|| {
        repository.retag(&tag, "v0.0.0-bench").map(drop)
    })?;
    if registry.requests().is_empty() {
        bail!("the registry logged no request: the pushes did not reach it");
    }
    Ok(())
}

/// 1. An empty target dir of the benchmark's own (unless --warm-only).
/// 2. `cargo xtask demo` (this binary) on it twice: cold, then warm.
/// 3. Each run's lead time as the demo recorded it; printed, never judged.
fn pipeline(args: PipelineArgs) -> Result<()> {
    let dir = args
        .workdir
        .unwrap_or_else(|| workspace::target_dir().join("xtask/bench-pipeline"));
    let target = dir.join("target");
    if !args.warm_only && target.exists() {
        std::fs::remove_dir_all(&target)
            .with_context(|| format!("emptying {}", target.display()))?;
    }
    std::fs::create_dir_all(&target)?;
    let target = target.canonicalize()?;
    let exe = std::env::current_exe().context("this binary's path")?;
    let mut tables = Vec::new();
    for run in ["cold", "warm"] {
        let run = if args.warm_only { "warm" } else { run };
        let work = dir.join(format!("demo-{}", tables.len() + 1));
        let started = Instant::now();
        let status = Command::new(&exe)
            // What ships: the lead time of the workflows' release build, not the demo's light one.
            .args([
                "demo",
                "--cargo-profile",
                image_build::SHIPPED_PROFILE,
                "--workdir",
            ])
            .arg(&work)
            .env("CARGO_TARGET_DIR", &target)
            .current_dir(workspace::root())
            .status()
            .context("running the demo")?;
        ensure!(
            status.success(),
            "the {run} demo failed (its output is above)"
        );
        let took = started.elapsed().as_secs_f64();
        let lead = LeadTime::read(&work.join(LEAD_TIME_FILE))?;
        tables.push(lead.table(&format!("{run} (demo {took:.0}s)")));
    }
    println!(
        "\nlead time from the demo's own steps (seconds; a container start stands in for Argo CD's sync; \
         the target dir {}):",
        target.display()
    );
    for table in tables {
        println!("{table}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pgbench_runs_the_statement_the_store_sends() {
        // The store writes its column list once (`item_columns!`) and each statement around it.
        let store = include_str!("../../../services/items-api/src/store/postgres.rs");
        let columns = store
            .split("macro_rules! item_columns")
            .nth(1)
            .and_then(|m| m.split('"').nth(1))
            .expect("the store's item_columns! macro");
        for (sql, tail) in [
            (GET_ITEM_SQL, " FROM items WHERE id = $1"),
            (LIST_SQL, " FROM items ORDER BY id LIMIT $1"),
        ] {
            assert!(
                sql == format!("SELECT {columns}{tail}") && store.contains(&format!("\"{tail}\"")),
                "the store no longer sends {sql:?}: update bench.rs"
            );
        }
    }

    #[test]
    fn median_is_a_measured_value() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[5.0]), 5.0);
    }
}
