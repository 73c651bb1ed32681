// A real PostgreSQL server for tests: initdb in a temp dir and `postgres` on a
// free loopback port, as the `postgres` user when the tests run as root (the
// server refuses to run as root). Debian's `postgresql` package provides it;
// .ci/run installs it. Stopped and deleted on drop.
//
// A test that stops, kills or watches its server (`pg_stat_activity`) gets a
// server of its own (`PgServer::start`); the others get a fresh database on
// one server per test process (`SharedDatabase::create`): one initdb and one
// start instead of one per test.

// Each test crate uses a part of this module.
#![allow(dead_code)]

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// A database of its own, on the server this test process shares.
pub struct SharedDatabase {
    pub url: String,
}

/// The server every [`SharedDatabase`] of this process is on. It is stopped
/// and its directory deleted when the process exits, however it exits: the
/// shell that runs it waits on a pipe only this process holds.
struct SharedServer {
    bin: PathBuf,
    port: u16,
    /// The shell (never waited for: it outlives the process) and its stdin.
    _lifeline: Mutex<(Child, ChildStdin)>,
}

impl SharedDatabase {
    /// A new, empty database for `test` on the process's shared server
    /// (started on first use); `None` when PostgreSQL is missing and
    /// skipping is allowed (else the test fails, as with [`PgServer::start`]).
    pub fn create(test: &str) -> Option<Self> {
        static SERVER: OnceLock<Result<SharedServer, String>> = OnceLock::new();
        let server = match SERVER.get_or_init(SharedServer::start) {
            Ok(server) => server,
            Err(reason) => {
                test_skip::skip_or_fail(test, reason);
                return None;
            }
        };
        let name = format!("test_{}", uuid::Uuid::new_v4().simple());
        let created = Command::new(server.bin.join("createdb"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &server.port.to_string(),
                "-U",
                "postgres",
            ])
            .arg(&name)
            .output()
            .expect("createdb runs");
        assert!(
            created.status.success(),
            "createdb {name}: {}",
            String::from_utf8_lossy(&created.stderr)
        );
        Some(Self {
            url: format!("postgres://postgres@127.0.0.1:{}/{name}", server.port),
        })
    }
}

impl SharedServer {
    fn start() -> Result<Self, String> {
        let bin = bin_dir().ok_or_else(|| PgServer::unavailable().expect("no bin dir"))?;
        let (dir, user) = init_cluster(&bin);
        let port = free_port();
        // `read` returns when this process's end of stdin closes (it exits):
        // then the server gets a fast shutdown and its directory goes.
        let script = r#"bin=$1 dir=$2 port=$3
"$bin/postgres" -D "$dir/data" -p "$port" -c listen_addresses=127.0.0.1 -c fsync=off \
    -c max_connections=300 -k "$dir" >/dev/null 2>"$dir/server.log" &
pid=$!
read -r _
kill -INT "$pid"; wait "$pid"; rm -rf "$dir""#;
        let mut command = Command::new("sh");
        command
            .args(["-c", script, "shared-postgres"])
            .arg(&bin)
            .arg(&dir)
            .arg(port.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::null());
        if let Some((uid, gid)) = user {
            command.uid(uid).gid(gid);
        }
        let mut child = command.spawn().expect("sh starts");
        let lifeline = child.stdin.take().expect("piped");
        wait_ready(&bin, port, || {
            std::fs::read_to_string(dir.join("server.log")).unwrap_or_default()
        });
        Ok(Self {
            bin,
            port,
            _lifeline: Mutex::new((child, lifeline)),
        })
    }
}

/// A new cluster (initdb) in a temp dir owned by the user the server runs as.
fn init_cluster(bin: &Path) -> (PathBuf, Option<(u32, u32)>) {
    let dir = std::env::temp_dir().join(format!("items-api-pg-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    // The server refuses root: run it as `postgres`, which must own the directory.
    let user = is_root().then(postgres_user);
    if let Some((uid, gid)) = user {
        std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).unwrap();
    }
    let mut initdb = Command::new(bin.join("initdb"));
    initdb
        .args([
            "--auth=trust",
            "--username=postgres",
            "--encoding=UTF8",
            "--no-sync",
            "-D",
        ])
        .arg(dir.join("data"))
        .stdout(Stdio::null());
    if let Some((uid, gid)) = user {
        initdb.uid(uid).gid(gid);
    }
    let status = initdb.status().expect("initdb runs");
    assert!(status.success(), "initdb failed");
    (dir, user)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until the server on `port` answers (20 s at most; then fails with `log`).
fn wait_ready(bin: &Path, port: u16, log: impl Fn() -> String) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ready = Command::new(bin.join("pg_isready"))
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q"])
            .status()
            .is_ok_and(|s| s.success());
        if ready {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "postgres did not start: {}",
            log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub struct PgServer {
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
    user: Option<(u32, u32)>,
    child: Option<Child>,
}

impl PgServer {
    /// Why no server can be started here, if so.
    pub fn unavailable() -> Option<String> {
        bin_dir().is_none().then(|| {
            "PostgreSQL is not installed (apt-get install postgresql, or bash .ci/run)".to_owned()
        })
    }

    /// A fresh server for `test`; where PostgreSQL is not installed, the test
    /// fails, or with `SERVICE_DEMO_ALLOW_SKIP=1` is skipped (`None`).
    pub fn start(test: &str) -> Option<Self> {
        let Some(bin) = bin_dir() else {
            let reason = Self::unavailable().expect("no bin dir");
            test_skip::skip_or_fail(test, &reason);
            return None;
        };
        let (dir, user) = init_cluster(&bin);
        let port = free_port();
        let mut server = Self {
            dir,
            bin,
            port,
            user,
            child: None,
        };
        server.start_again();
        Some(server)
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Starts the (stopped) server on the same data and port, and waits until it answers.
    pub fn start_again(&mut self) {
        let mut command = Command::new(self.bin.join("postgres"));
        command
            .arg("-D")
            .arg(self.dir.join("data"))
            .args([
                "-p",
                &self.port.to_string(),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
            ])
            .arg("-k")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.dir.join("server.log")).unwrap());
        if let Some((uid, gid)) = self.user {
            command.uid(uid).gid(gid);
        }
        self.child = Some(command.spawn().expect("postgres starts"));
        wait_ready(&self.bin, self.port, || self.log());
    }

    /// A fast shutdown (SIGINT): connections are closed, data is kept.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-INT", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }

    /// `pg_ctl stop -m immediate`: the server quits at once without a
    /// checkpoint, as in a crash; the next start recovers from the WAL.
    pub fn stop_immediately(&mut self) {
        let mut command = Command::new(self.bin.join("pg_ctl"));
        command
            .args(["stop", "-m", "immediate", "-D"])
            .arg(self.dir.join("data"))
            .stdout(Stdio::null());
        if let Some((uid, gid)) = self.user {
            command.uid(uid).gid(gid);
        }
        assert!(
            command.status().expect("pg_ctl runs").success(),
            "pg_ctl stop failed"
        );
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn bin_dir() -> Option<PathBuf> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|bin| bin.join("initdb").is_file())
        .collect();
    versions.sort_by_key(|p| {
        p.parent()
            .and_then(Path::file_name)
            .and_then(|v| v.to_str()?.parse::<u32>().ok())
            .unwrap_or(0)
    });
    versions.pop()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

fn postgres_user() -> (u32, u32) {
    let id = |flag: &str| -> u32 {
        let out = Command::new("id")
            .args([flag, "postgres"])
            .output()
            .expect("id runs");
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("a postgres user (the postgresql package makes it)")
    };
    (id("-u"), id("-g"))
}
