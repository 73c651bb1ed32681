//! `cargo xtask bench`: benchmarks that print numbers (and assert nothing
//! about speed).
//!
//! `bench http` load-tests the release binary of items-api. The server is
//! pinned to CPU 0 and wrk to CPU 1 (as the reference Go numbers were
//! measured), each scenario runs several times and the median is reported,
//! with the CPU use of both sides: a server near 100% is the limit; a wrk near
//! 100% means the load generator is, and its latency figures then include
//! its own queueing. Prints numbers; asserts nothing about speed.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use xshell::{Shell, cmd};

use crate::parts::workspace;

#[derive(clap::Subcommand)]
pub enum BenchCommand {
    /// Load-test the release binary of items-api with wrk: throughput, latency, memory, start-up.
    Http(BenchArgs),
    /// Time promotions against a local bare remote: one at a time, and 50 at once.
    Gitops(GitopsBenchArgs),
    /// Image assembly time, size, push time, and the bytes a retag uploads (real local registry).
    Image,
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

pub fn run(command: BenchCommand) -> Result<()> {
    match command {
        BenchCommand::Http(args) => load_test(args),
        BenchCommand::Gitops(args) => gitops(args),
        BenchCommand::Image => image(),
    }
}

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Seconds per wrk run.
    #[arg(long, default_value_t = 15)]
    duration: u64,
    /// Runs per scenario; the median is reported.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// wrk connections.
    #[arg(long, default_value_t = 64)]
    connections: u32,
    /// wrk threads, all on CPU 1. The reference used 2; with 1, wrk's threads
    /// do not take turns on the core, which keeps that out of the latencies.
    #[arg(long, default_value_t = 2)]
    threads: u32,
    /// Port for the server under test.
    #[arg(long, default_value_t = 18080)]
    port: u16,
    /// Benchmark the PostgreSQL store at this URL (an empty database; it is
    /// migrated first) instead of the in-memory store.
    #[arg(long, value_name = "URL")]
    database_url: Option<String>,
}

/// One wrk run, as parsed from its output.
#[derive(Debug, Clone, Copy, PartialEq)]
struct WrkRun {
    requests_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// wrk's user+system CPU time over the run's wall time (1.0 = one core).
    wrk_cpu: f64,
    /// The server's, likewise.
    server_cpu: f64,
}

fn load_test(args: BenchArgs) -> Result<()> {
    let sh = Shell::new()?;
    sh.change_dir(workspace::root());
    for tool in ["wrk", "taskset"] {
        if cmd!(sh, "which {tool}")
            .quiet()
            .ignore_stdout()
            .run()
            .is_err()
        {
            bail!("{tool} is not installed: `apt-get install -y wrk util-linux`");
        }
    }
    cmd!(sh, "cargo build --release --locked -p items-api").run()?;
    let binary = workspace::target_dir().join("release/items-api");
    let database = args.database_url.as_deref();
    if let Some(url) = database {
        cmd!(sh, "{binary} migrate")
            .env("DATABASE_URL", url)
            .run()?;
    }

    let startup_ms = measure_startup(&binary, args.port, database)?;
    let server = Server::start(&binary, args.port, database)?;
    let idle_rss_kb = server.rss_kb("VmRSS")?;
    // The rest of RSS is mapped code (the binary's, and glibc's when it is
    // linked dynamically), shared with other processes using the same files.
    let idle_anon_kb = server.rss_kb("RssAnon")?;

    let base = format!("http://127.0.0.1:{}", args.port);
    let mut last_id = String::new();
    for i in 0..1000 {
        let (status, body) = http(
            args.port,
            "POST",
            "/api/v1/items",
            Some(&format!(r#"{{"name":"item {i}"}}"#)),
        )
        .map_err(anyhow::Error::msg)?;
        ensure!(status == 201, "seeding: POST answered {status}");
        last_id = json_string_field(&body, "id").context("seeding: no id in response")?;
    }

    let post_script = sh.create_temp_dir()?;
    let post_lua = post_script.path().join("post.lua");
    sh.write_file(
        &post_lua,
        "wrk.method = \"POST\"\nwrk.body = '{\"name\":\"bench item\",\"description\":\"load\"}'\nwrk.headers[\"Content-Type\"] = \"application/json\"\n",
    )?;
    // The list runs before the POST scenario, which adds many items.
    let scenarios: [(&str, String, Option<PathBuf>); 4] = [
        ("GET /healthz", format!("{base}/healthz"), None),
        (
            "GET /api/v1/items/{id}",
            format!("{base}/api/v1/items/{last_id}"),
            None,
        ),
        (
            "GET /api/v1/items?limit=1000",
            format!("{base}/api/v1/items?limit=1000"),
            None,
        ),
        (
            "POST /api/v1/items",
            format!("{base}/api/v1/items"),
            Some(post_lua),
        ),
    ];
    let mut rows = Vec::new();
    for (name, url, script) in &scenarios {
        let mut runs = Vec::new();
        for run in 1..=args.runs {
            eprintln!("bench: {name} run {run}/{}", args.runs);
            runs.push(wrk(&sh, url, script.as_deref(), &args, &server)?);
        }
        rows.push((*name, median_run(&runs), runs));
    }
    let peak_rss_kb = server.rss_kb("VmHWM")?;
    server.stop();

    println!(
        "\nitems-api release build, {} store; server on CPU 0, wrk -t{} -c{} -d{}s --latency on CPU 1; median of {} runs\n",
        if database.is_some() {
            "PostgreSQL"
        } else {
            "in-memory"
        },
        args.threads,
        args.connections,
        args.duration,
        args.runs
    );
    println!(
        "| scenario | req/s | p50 | p99 | server CPU | wrk CPU | req/s of the runs |\n|---|---:|---:|---:|---:|---:|---|"
    );
    for (name, median, runs) in &rows {
        let all: Vec<String> = runs
            .iter()
            .map(|r| format!("{:.0}", r.requests_per_sec))
            .collect();
        println!(
            "| {name} | {:.0} | {:.2} ms | {:.2} ms | {:.0}% | {:.0}% | {} |",
            median.requests_per_sec,
            median.p50_ms,
            median.p99_ms,
            median.server_cpu * 100.0,
            median.wrk_cpu * 100.0,
            all.join(", ")
        );
    }
    println!(
        "\nidle RSS {:.1} MB ({:.1} MB anonymous), peak RSS {:.1} MB, start to first 200 on /healthz {startup_ms:.1} ms",
        idle_rss_kb as f64 / 1024.0,
        idle_anon_kb as f64 / 1024.0,
        peak_rss_kb as f64 / 1024.0
    );
    Ok(())
}

/// Promotion timings, through the real `xtask promote` process as CI runs it:
/// fetch, edit, commit and push to a bare repository on the local disk.
fn gitops(args: GitopsBenchArgs) -> Result<()> {
    let sh = Shell::new()?;
    let tmp = sh.create_temp_dir()?;
    let dir = tmp.path();
    let _env = [
        sh.push_env("GIT_AUTHOR_NAME", "bench"),
        sh.push_env("GIT_AUTHOR_EMAIL", "bench@localhost"),
        sh.push_env("GIT_COMMITTER_NAME", "bench"),
        sh.push_env("GIT_COMMITTER_EMAIL", "bench@localhost"),
    ];
    let remote = dir.join("remote.git");
    let work = dir.join("work");
    cmd!(sh, "git init --quiet --bare --initial-branch=main {remote}").run()?;
    cmd!(sh, "git clone --quiet {remote} {work}").run()?;
    let values = work.join("gitops/values/preprod/service-demo.yaml");
    sh.create_dir(values.parent().unwrap())?;
    sh.copy_file(
        workspace::root().join("gitops/values/preprod/service-demo.yaml"),
        &values,
    )?;
    let builds = args.promotions.max(args.concurrent);
    let mut commits = Vec::new();
    {
        let _dir = sh.push_dir(&work);
        cmd!(sh, "git checkout --quiet -B main").run()?;
        cmd!(sh, "git add --all").run()?;
        cmd!(sh, "git commit --quiet -m values").run()?;
        for i in 0..builds {
            let message = format!("build {i}");
            cmd!(sh, "git commit --quiet --allow-empty -m {message}").run()?;
            commits.push(cmd!(sh, "git rev-parse --short=7 HEAD").read()?);
        }
        cmd!(sh, "git push --quiet origin main").run()?;
    }
    let exe = std::env::current_exe()?;
    let promote = |repo: &std::path::Path, sha: &str| {
        let tag = format!("main-{sha}");
        let mut command = Command::new(&exe);
        command
            .args([
                "promote",
                "--env",
                "preprod",
                "--tag",
                &tag,
                "--push-attempts",
                "200",
                "--repo",
            ])
            .arg(repo)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        command
    };

    let mut times = Vec::new();
    for sha in commits.iter().take(args.promotions) {
        let started = Instant::now();
        let status = promote(&work, sha).status()?;
        ensure!(status.success(), "promotion of main-{sha} failed");
        times.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);

    let clones: Vec<PathBuf> = (0..args.concurrent)
        .map(|i| {
            let clone = dir.join(format!("clone-{i}"));
            cmd!(sh, "git clone --quiet {remote} {clone}")
                .run()
                .map(|()| clone)
        })
        .collect::<Result<_, _>>()?;
    let started = Instant::now();
    let children: Vec<Child> = clones
        .iter()
        .zip(&commits)
        .map(|(clone, sha)| promote(clone, sha).spawn())
        .collect::<Result<_, _>>()?;
    let mut landed_or_refused = 0;
    for mut child in children {
        child.wait()?;
        landed_or_refused += 1;
    }
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
        "| {landed_or_refused} concurrent promotions, all finished | {:.2} s |",
        concurrent.as_secs_f64()
    );
    Ok(())
}

/// Runs wrk pinned to CPU 1 under bash, whose `times` builtin reports the CPU
/// time its children used; the server's comes from /proc over the same span.
fn wrk(
    sh: &Shell,
    url: &str,
    script: Option<&std::path::Path>,
    args: &BenchArgs,
    server: &Server,
) -> Result<WrkRun> {
    let script_arg = script
        .map(|s| format!("-s {}", s.display()))
        .unwrap_or_default();
    let line = format!(
        "taskset -c 1 wrk -t{} -c{} -d{}s --latency {script_arg} {url}; times",
        args.threads, args.connections, args.duration
    );
    let server_cpu_before = server.cpu_seconds()?;
    let started = Instant::now();
    let output = cmd!(sh, "bash -c {line}").read()?;
    let wall = started.elapsed().as_secs_f64();
    let server_cpu = server.cpu_seconds()? - server_cpu_before;
    parse_wrk(&output, wall, server_cpu)
        .with_context(|| format!("unexpected wrk output:\n{output}"))
}

/// A run from wrk's output followed by `times`, the run's wall time and the
/// server's CPU seconds over it.
fn parse_wrk(output: &str, wall_seconds: f64, server_cpu_seconds: f64) -> Option<WrkRun> {
    let requests_per_sec = output
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))?
        .trim()
        .parse()
        .ok()?;
    let percentile = |p: &str| {
        output
            .lines()
            .find_map(|l| l.trim().strip_prefix(p))
            .and_then(|v| parse_duration_ms(v.trim()))
    };
    // `times` prints the shell's times, then its children's: "0m1.2s 0m3.4s".
    let children = output
        .lines()
        .rev()
        .find(|l| l.contains("m") && l.ends_with('s'))?;
    let cpu: f64 = children
        .split_whitespace()
        .filter_map(parse_times_field)
        .sum();
    Some(WrkRun {
        requests_per_sec,
        p50_ms: percentile("50%")?,
        p99_ms: percentile("99%")?,
        wrk_cpu: cpu / wall_seconds,
        server_cpu: server_cpu_seconds / wall_seconds,
    })
}

/// wrk prints `812.00us`, `1.23ms` or `2.01s`.
fn parse_duration_ms(value: &str) -> Option<f64> {
    let (number, factor) = if let Some(n) = value.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = value.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = value.strip_suffix('s') {
        (n, 1000.0)
    } else {
        return None;
    };
    number.parse::<f64>().ok().map(|n| n * factor)
}

/// bash `times` fields look like `0m1.234s`.
fn parse_times_field(field: &str) -> Option<f64> {
    let (minutes, seconds) = field.strip_suffix('s')?.split_once('m')?;
    Some(minutes.parse::<f64>().ok()? * 60.0 + seconds.parse::<f64>().ok()?)
}

/// The run with the median throughput, so its latencies belong to one real run.
fn median_run(runs: &[WrkRun]) -> WrkRun {
    let mut sorted = runs.to_vec();
    sorted.sort_by(|a, b| a.requests_per_sec.total_cmp(&b.requests_per_sec));
    sorted[sorted.len() / 2]
}

struct Server(Child);

impl Server {
    fn start(binary: &std::path::Path, port: u16, database: Option<&str>) -> Result<Self> {
        let mut command = Command::new("taskset");
        if let Some(url) = database {
            command.env("DATABASE_URL", url);
        }
        let child = command
            .arg("-c")
            .arg("0")
            .arg(binary)
            .env("PORT", port.to_string())
            .env("RUST_LOG", "warn")
            .env("SHUTDOWN_DRAIN_SECONDS", "0")
            .stdout(Stdio::null())
            .spawn()
            .context("starting items-api")?;
        let server = Server(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while http(port, "GET", "/healthz", None).map(|r| r.0) != Ok(200) {
            ensure!(
                Instant::now() < deadline,
                "items-api did not answer on port {port}"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(server)
    }

    /// A memory figure from /proc: VmRSS (now) or VmHWM (peak), in KiB.
    fn rss_kb(&self, field: &str) -> Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.0.id()))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{field}:")))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .with_context(|| format!("no {field} in /proc status"))
    }

    /// User plus system CPU time the server has used so far, from
    /// /proc/<pid>/stat (fields 14 and 15, in clock ticks of 1/100 s: Linux's
    /// USER_HZ on every architecture it supports).
    fn cpu_seconds(&self) -> Result<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.0.id()))?;
        parse_cpu_seconds(&stat).context("unexpected /proc/<pid>/stat")
    }

    fn stop(mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// utime + stime from a /proc/<pid>/stat line. The command name (field 2)
/// is in parentheses and may hold spaces, so fields are counted after it.
fn parse_cpu_seconds(stat: &str) -> Option<f64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // after_name starts at field 3 (state): utime is field 14, stime 15.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// Time from spawning the process to its first 200 on /healthz (best of 5).
fn measure_startup(binary: &std::path::Path, port: u16, database: Option<&str>) -> Result<f64> {
    let mut best = f64::MAX;
    for _ in 0..5 {
        let started = Instant::now();
        let server = Server::start(binary, port, database)?;
        best = best.min(started.elapsed().as_secs_f64() * 1000.0);
        server.stop();
    }
    Ok(best)
}

/// A minimal HTTP/1.1 exchange on a new connection: (status, body).
fn http(port: u16, method: &str, path: &str, json: Option<&str>) -> Result<(u16, String), String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    let body = json.unwrap_or("");
    let content_type = if json.is_some() {
        "Content-Type: application/json\r\n"
    } else {
        ""
    };
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n{content_type}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .map_err(|e| e.to_string())?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|e| e.to_string())?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or("no status line")?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

/// Extracts a top-level string field without a JSON dependency in xtask.
fn json_string_field(body: &str, field: &str) -> Option<String> {
    let start = body.find(&format!("\"{field}\":\""))? + field.len() + 4;
    let end = start + body[start..].find('"')?;
    Some(body[start..end].to_owned())
}

/// Build the static binary, then time what happens after `cargo build`:
/// assembly (median of 5), pushes to a real `docker-registry` on loopback, and
/// the bytes sent to it, counted by a proxy in front of it.
fn image() -> Result<()> {
    use crate::parts::oci;
    use crate::parts::registry::Repository;

    let sh = Shell::new()?;
    sh.change_dir(workspace::root());
    let head = cmd!(sh, "git rev-parse HEAD").read()?;
    let binaries = crate::image::static_binaries(&sh, &["linux/amd64".to_owned()], &head)?;
    let meta = crate::image::image_meta(&sh, &head)?;
    let mut times = Vec::new();
    let mut image = None;
    for _ in 0..5 {
        let started = Instant::now();
        image = Some(oci::assemble(&binaries, &meta)?);
        times.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    let image = image.expect("assembled five times");
    times.sort_by(f64::total_cmp);
    println!(
        "binary (static, stripped)        {}",
        crate::image::human_size(binaries[0].1.len() as u64)
    );
    println!(
        "image, compressed                {}",
        crate::image::human_size(image.compressed_size())
    );
    println!(
        "assembly after cargo build       {:.0} ms (median of 5)",
        times[2]
    );

    let registry = LocalRegistry::start(&sh)?;
    let proxy = CountingProxy::start(&registry.addr)?;
    let repository = Repository::open_with(
        &format!("{}/service-demo", proxy.addr),
        oci_client::secrets::RegistryAuth::Anonymous,
    )?;
    let tag = format!("main-{head}");
    let measure = |what: &str, action: &dyn Fn() -> Result<()>| -> Result<()> {
        let before = proxy.bytes_up();
        let started = Instant::now();
        action()?;
        println!(
            "{what:<32} {:.0} ms, {} sent to the registry",
            started.elapsed().as_secs_f64() * 1000.0,
            crate::image::human_size(proxy.bytes_up() - before)
        );
        Ok(())
    };
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
    Ok(())
}

/// Debian's docker-registry with its own config on a free loopback port.
struct LocalRegistry {
    child: Child,
    dir: PathBuf,
    addr: String,
}

impl LocalRegistry {
    fn start(sh: &Shell) -> Result<Self> {
        if cmd!(sh, "which docker-registry")
            .quiet()
            .ignore_stdout()
            .run()
            .is_err()
        {
            bail!("docker-registry is not installed: apt-get install docker-registry");
        }
        let dir =
            workspace::target_dir().join(format!("xtask/bench-registry-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let addr = format!("127.0.0.1:{port}");
        let config = dir.join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog: {{level: error, accesslog: {{disabled: true}}}}\n\
                 storage: {{filesystem: {{rootdirectory: {}}}}}\nhttp: {{addr: {addr}}}\n",
                dir.join("data").display()
            ),
        )?;
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let registry = Self { child, dir, addr };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(&registry.addr).is_err() {
            ensure!(Instant::now() < deadline, "docker-registry did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(registry)
    }
}

impl Drop for LocalRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A loopback TCP proxy that counts the bytes clients send upstream.
struct CountingProxy {
    addr: String,
    up: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl CountingProxy {
    fn start(upstream: &str) -> Result<Self> {
        use std::sync::atomic::{AtomicU64, Ordering};
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?.to_string();
        let up = std::sync::Arc::new(AtomicU64::new(0));
        let (counter, upstream) = (up.clone(), upstream.to_owned());
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = TcpStream::connect(&upstream) else {
                    continue;
                };
                let (mut client_r, mut server_w) =
                    (client.try_clone().unwrap(), server.try_clone().unwrap());
                let counter = counter.clone();
                std::thread::spawn(move || {
                    let mut buf = [0; 64 * 1024];
                    while let Ok(n @ 1..) = client_r.read(&mut buf) {
                        counter.fetch_add(n as u64, Ordering::Relaxed);
                        if server_w.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = server_w.shutdown(std::net::Shutdown::Write);
                });
                let (mut server_r, mut client_w) = (server, client);
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut server_r, &mut client_w);
                    let _ = client_w.shutdown(std::net::Shutdown::Write);
                });
            }
        });
        Ok(Self { addr, up })
    }

    fn bytes_up(&self) -> u64 {
        self.up.load(std::sync::atomic::Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WRK_OUTPUT: &str = "\
Running 15s test @ http://127.0.0.1:18080/healthz
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   812.00us  300.00us   9.00ms   90.00%
  Latency Distribution
     50%  700.00us
     75%    1.00ms
     90%    1.20ms
     99%    2.50ms
  1000000 requests in 15.00s, 100.00MB read
Requests/sec:  66666.66
Transfer/sec:      6.67MB
0m0.001s 0m0.002s
0m6.000s 0m9.000s
";

    #[test]
    fn parses_wrk_output_and_child_cpu_time() {
        let run = parse_wrk(WRK_OUTPUT, 15.0, 13.5).unwrap();
        assert_eq!(run.requests_per_sec, 66666.66);
        assert!((run.p50_ms - 0.7).abs() < 1e-9, "{}", run.p50_ms);
        assert!((run.p99_ms - 2.5).abs() < 1e-9, "{}", run.p99_ms);
        assert!((run.wrk_cpu - 1.0).abs() < 1e-9, "{}", run.wrk_cpu);
        assert!((run.server_cpu - 0.9).abs() < 1e-9, "{}", run.server_cpu);
    }

    #[test]
    fn median_run_is_a_real_run() {
        let run = |rps: f64| WrkRun {
            requests_per_sec: rps,
            p50_ms: rps,
            p99_ms: rps,
            wrk_cpu: 0.0,
            server_cpu: 0.0,
        };
        assert_eq!(median_run(&[run(3.0), run(1.0), run(2.0)]), run(2.0));
    }

    #[test]
    fn cpu_time_comes_from_utime_and_stime() {
        // A line in the kernel's format, with a space in the command name.
        let stat = "4242 (items api) S 1 4242 4242 0 -1 4194560 1630 0 0 0 1234 567 0 0 20 0 3 0 \
                    80000 12345678 1100 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 17 0 0 0 0 0 0";
        assert_eq!(parse_cpu_seconds(stat), Some(18.01));
        assert_eq!(parse_cpu_seconds("4242 (x) S 1"), None);
    }

    #[test]
    fn json_field_extraction() {
        assert_eq!(
            json_string_field(r#"{"id":"abc","name":"x"}"#, "id").as_deref(),
            Some("abc")
        );
        assert_eq!(json_string_field("{}", "id"), None);
    }
}
