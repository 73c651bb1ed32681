//! A checker's output kept by the hash of everything it reads, in the user's
//! cache (`~/.cache/service-demo/tool-outputs/`): the same tool run again on
//! the same bytes answers from there instead of running. A linter is a pure
//! function of its binary, its arguments and the files it reads, so the key is
//! all of them (the binary by path, size and modification time); whatever is
//! not in the key must not change the output. `SERVICE_DEMO_NO_TOOL_CACHE=1`
//! runs every tool, and so does every GitHub Actions job (its runner's home may
//! hold what an earlier job wrote). Nothing is kept for a tool that could not
//! start.

use std::ffi::OsStr;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Output};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Set to `1`: no output is read from or written to the cache.
pub const DISABLE_VAR: &str = "SERVICE_DEMO_NO_TOOL_CACHE";

/// What a cached output depends on, added piece by piece.
pub struct Key(Sha256);

impl Key {
    /// A key for `tool`'s output (its name, and the cache's format version).
    pub fn new(tool: &str) -> Self {
        let mut key = Key(Sha256::new());
        key.bytes(b"output-cache v1").bytes(tool.as_bytes());
        key
    }

    /// Adds bytes (length-prefixed: two pieces never read as one).
    pub fn bytes(&mut self, bytes: &[u8]) -> &mut Self {
        self.0.update((bytes.len() as u64).to_le_bytes());
        self.0.update(bytes);
        self
    }

    /// Adds the file `path` (in `dir`) as the tool is given it: its name and
    /// its bytes, or that it is missing.
    pub fn file(&mut self, dir: &Path, path: &Path) -> &mut Self {
        self.bytes(path.as_os_str().as_encoded_bytes())
            .content(&dir.join(path))
    }

    /// Adds the bytes of the file at `path`, or that there is none to read.
    fn content(&mut self, path: &Path) -> &mut Self {
        match std::fs::read(path) {
            Ok(bytes) => self.bytes(b"file").bytes(&bytes),
            Err(_) => self.bytes(b"missing"),
        }
    }

    /// Adds the executable `program` resolves to on PATH: its path, size and
    /// modification time (another version of the tool is another key).
    pub fn program(&mut self, program: &str) -> &mut Self {
        self.bytes(program.as_bytes());
        match crate::plumbing::process::which(program).map(|p| (std::fs::metadata(&p), p)) {
            Some((Ok(meta), path)) => self
                .bytes(path.as_os_str().as_encoded_bytes())
                .bytes(&meta.len().to_le_bytes())
                .bytes(&meta.mtime().to_le_bytes())
                .bytes(&meta.mtime_nsec().to_le_bytes()),
            _ => self.bytes(b"not on PATH"),
        }
    }

    /// Adds a tool's argument that may be a path: the argument (with the
    /// [`Places`] marked, so another checkout or scratch folder is the same
    /// key), and for an existing file or folder every file's relative name and
    /// bytes.
    pub fn path_arg(&mut self, arg: &OsStr, places: &Places) -> &mut Self {
        self.bytes(places.marked(&arg.to_string_lossy()).as_bytes());
        let path = Path::new(arg);
        if path.is_file() {
            self.content(path);
        } else if path.is_dir() {
            for file in files_under(path) {
                self.file(path, &file);
            }
        }
        self
    }

    fn hex(self) -> String {
        crate::plumbing::text::hex(&self.0.finalize())
    }
}

/// A kept output.
#[derive(Serialize, Deserialize)]
struct Kept {
    status: i32,
    stdout: String,
    stderr: String,
}

impl From<&Output> for Kept {
    fn from(out: &Output) -> Self {
        Kept {
            status: out.status.into_raw(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

impl From<Kept> for Output {
    fn from(kept: Kept) -> Self {
        Output {
            status: ExitStatus::from_raw(kept.status),
            stdout: kept.stdout.into_bytes(),
            stderr: kept.stderr.into_bytes(),
        }
    }
}

/// A kept run of several tools: their outputs, and the files they wrote.
#[derive(Serialize, Deserialize)]
struct KeptRun {
    outputs: Vec<Kept>,
    /// (path in the scratch folder, content).
    files: Vec<(String, String)>,
}

/// The output kept under `key`, or `run`'s, which is then kept (unless the
/// tool could not start: exit status 126 or 127, or no status at all). For a
/// tool that names no folder of its own run and writes no file.
pub fn output(key: Key, run: impl FnOnce() -> Result<Output>) -> Result<Output> {
    let places = Places {
        scratch: PathBuf::new(),
        marks: Vec::new(),
    };
    let mut outputs = outputs_and_files(key, &places, &[], || Ok((vec![run()?], true)))?;
    outputs.pop().context("one output kept for one tool")
}

/// The folders a run names that another run names otherwise (its scratch
/// folder, the checkout), each kept as a marker.
pub struct Places {
    /// Where the files a run writes are.
    scratch: PathBuf,
    /// (path, marker), the longest path first: a folder inside another is marked as itself.
    marks: Vec<(String, String)>,
}

impl Places {
    /// `scratch` (where `dirs` of [`outputs_and_files`] are) and `others`.
    pub fn new(scratch: &Path, others: &[&Path]) -> Self {
        let mut places: Vec<(String, String)> = std::iter::once(scratch)
            .chain(others.iter().copied())
            .enumerate()
            .map(|(i, p)| {
                (
                    p.to_string_lossy().into_owned(),
                    format!("\u{0}place{i}\u{0}"),
                )
            })
            .collect();
        places.sort_by_key(|(path, _)| std::cmp::Reverse(path.len()));
        Places {
            scratch: scratch.to_owned(),
            marks: places,
        }
    }

    /// The run's scratch folder.
    pub fn scratch(&self) -> &Path {
        &self.scratch
    }

    fn marked(&self, text: &str) -> String {
        (self.marks.iter()).fold(text.to_owned(), |text, (path, marker)| {
            text.replace(path, marker)
        })
    }

    fn here(&self, text: &str) -> String {
        (self.marks.iter()).fold(text.to_owned(), |text, (path, marker)| {
            text.replace(marker, path)
        })
    }
}

/// `run`'s outputs and the files it writes into `dirs` (folders in the
/// scratch folder of `places`) kept under `key`: from the cache, the outputs
/// come back and the files are written again, with the kept run's places read
/// as this one's. `run` says whether its outputs may be kept (not when the
/// runner itself failed).
pub fn outputs_and_files(
    key: Key,
    places: &Places,
    dirs: &[PathBuf],
    run: impl FnOnce() -> Result<(Vec<Output>, bool)>,
) -> Result<Vec<Output>> {
    run_kept_at(cache_file(key).as_deref(), places, dirs, run)
}

/// [`outputs_and_files`] with its entry at `file` (none: no cache).
fn run_kept_at(
    file: Option<&Path>,
    places: &Places,
    dirs: &[PathBuf],
    run: impl FnOnce() -> Result<(Vec<Output>, bool)>,
) -> Result<Vec<Output>> {
    let here = |text: String| places.here(&text);
    if let Some(kept) = file.and_then(read::<KeptRun>) {
        for (name, content) in kept.files {
            let path = places.scratch.join(name);
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            std::fs::write(path, here(content))?;
        }
        let outputs = kept.outputs.into_iter().map(|mut out| {
            out.stdout = here(out.stdout);
            out.stderr = here(out.stderr);
            Output::from(out)
        });
        return Ok(outputs.collect());
    }
    let (outputs, keep) = run()?;
    if keep && outputs.iter().all(started) {
        let kept = snapshot(places, dirs, &outputs);
        if let Some(kept) = kept {
            write(file, &kept);
        }
    }
    Ok(outputs)
}

/// The outputs and the files under `dirs`, with the places marked; `None` if
/// a file is not UTF-8 text.
fn snapshot(places: &Places, dirs: &[PathBuf], outputs: &[Output]) -> Option<KeptRun> {
    let marked = |text: String| places.marked(&text);
    let mut files = Vec::new();
    for dir in dirs {
        let name = dir.strip_prefix(&places.scratch).ok()?;
        for file in files_under(dir) {
            let content = String::from_utf8(std::fs::read(dir.join(&file)).ok()?).ok()?;
            files.push((
                name.join(file).to_string_lossy().into_owned(),
                marked(content),
            ));
        }
    }
    let outputs = outputs.iter().map(|out| {
        let mut kept = Kept::from(out);
        kept.stdout = marked(kept.stdout);
        kept.stderr = marked(kept.stderr);
        kept
    });
    Some(KeptRun {
        outputs: outputs.collect(),
        files,
    })
}

/// The files under `dir`, as relative paths, sorted.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(dir.join(&rel)) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = rel.join(entry.file_name());
            match entry.file_type() {
                Ok(kind) if kind.is_dir() => stack.push(path),
                Ok(_) => found.push(path),
                Err(_) => {}
            }
        }
    }
    found.sort();
    found
}

/// A tool that ran (not: could not be started, or killed by a signal).
fn started(out: &Output) -> bool {
    out.status.code().is_some_and(|c| c != 126 && c != 127)
}

fn read<T: for<'de> Deserialize<'de>>(file: &Path) -> Option<T> {
    serde_json::from_slice(&std::fs::read(file).ok()?).ok()
}

/// Keeps `value` at `file` (whole or not at all); a cache that cannot be
/// written is no cache, and the run's result stands.
fn write(file: Option<&Path>, value: &impl Serialize) {
    let (Some(file), Some(dir)) = (file, file.and_then(Path::parent)) else {
        return;
    };
    let _ = std::fs::create_dir_all(dir)
        .map_err(anyhow::Error::from)
        .and_then(|()| serde_json::to_vec(value).map_err(Into::into))
        .and_then(|bytes| crate::plumbing::fs::write_atomic(file, &bytes));
}

/// Where `key`'s output is kept; `None` when the cache is off or there is no home.
fn cache_file(key: Key) -> Option<PathBuf> {
    let base = cache_dir(|name| std::env::var_os(name))?;
    let hex = key.hex();
    Some(base.join(&hex[..2]).join(format!("{hex}.json")))
}

/// The cache's folder from the environment (`var`); `None` when it is off:
/// [`DISABLE_VAR`], no home, or a GitHub Actions job. A runner's home may be an
/// earlier job's (a self-hosted runner), and what an earlier job wrote, maybe a
/// pull request's code, is no evidence for this one: in Actions every tool runs.
fn cache_dir(var: impl Fn(&str) -> Option<std::ffi::OsString>) -> Option<PathBuf> {
    let set = |name: &str, value: &str| var(name).is_some_and(|v| v == value);
    if set(DISABLE_VAR, "1") || set("GITHUB_ACTIONS", "true") {
        return None;
    }
    let base = match var("XDG_CACHE_HOME") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from(var("HOME").filter(|h| !h.is_empty())?).join(".cache"),
    };
    Some(base.join("service-demo/tool-outputs"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_changes_with_every_piece_and_pieces_never_run_together() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yml"), "on: push\n").unwrap();
        let key = |f: &dyn Fn(&mut Key)| {
            let mut key = Key::new("actionlint");
            f(&mut key);
            key.hex()
        };
        let base = key(&|k| {
            k.file(dir.path(), Path::new("a.yml"));
        });
        assert_eq!(
            base,
            key(&|k| {
                k.file(dir.path(), Path::new("a.yml"));
            })
        );
        assert_ne!(
            base,
            key(&|k| {
                k.file(dir.path(), Path::new("b.yml"));
            }),
            "a missing file is not the file"
        );
        assert_ne!(
            key(&|k| {
                k.bytes(b"ab").bytes(b"c");
            }),
            key(&|k| {
                k.bytes(b"a").bytes(b"bc");
            })
        );
        std::fs::write(dir.path().join("a.yml"), "on: pull_request\n").unwrap();
        assert_ne!(
            base,
            key(&|k| {
                k.file(dir.path(), Path::new("a.yml"));
            }),
            "other bytes, another key"
        );
    }

    #[test]
    fn a_kept_run_gives_back_its_outputs_and_files_in_the_new_scratch_folder() {
        let cache = tempfile::tempdir().unwrap();
        let entry = cache.path().join("entry.json");
        let run_in = |scratch: &Path, keep: bool| {
            let out = scratch.join("out");
            std::fs::create_dir_all(&out).unwrap();
            let dirs = [out.clone()];
            run_kept_at(Some(&entry), &Places::new(scratch, &[]), &dirs, || {
                std::fs::write(
                    out.join("a.yaml"),
                    format!("file: {}/a.yaml\n", out.display()),
                )?;
                let said = Output {
                    status: ExitStatus::from_raw(1 << 8),
                    stdout: format!("{}/a.yaml: a problem\n", out.display()).into_bytes(),
                    stderr: Vec::new(),
                };
                Ok((vec![said], keep))
            })
            .unwrap()
        };
        let first = tempfile::tempdir().unwrap();
        run_in(first.path(), false);
        assert!(!entry.exists(), "a run that may not be kept is not");
        run_in(first.path(), true);
        assert!(entry.exists());

        let second = tempfile::tempdir().unwrap();
        let out = second.path().join("out");
        std::fs::create_dir_all(&out).unwrap();
        let outputs = run_kept_at(
            Some(&entry),
            &Places::new(second.path(), &[]),
            std::slice::from_ref(&out),
            || panic!("a kept run is not run again"),
        )
        .unwrap();
        assert_eq!(outputs[0].status.code(), Some(1));
        let said = String::from_utf8_lossy(&outputs[0].stdout).into_owned();
        assert_eq!(said, format!("{}/a.yaml: a problem\n", out.display()));
        let written = std::fs::read_to_string(out.join("a.yaml")).unwrap();
        assert_eq!(written, format!("file: {}/a.yaml\n", out.display()));
    }

    #[test]
    fn a_path_argument_is_keyed_by_its_content_not_its_scratch_folder() {
        let key_in = |scratch: &Path, values: &str| {
            std::fs::write(scratch.join("values.yaml"), values).unwrap();
            let mut key = Key::new("batch");
            let places = Places::new(scratch, &[]);
            key.path_arg(scratch.join("values.yaml").as_os_str(), &places)
                .path_arg(OsStr::new("1.32.0"), &places);
            key.hex()
        };
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        assert_eq!(key_in(a.path(), "x: 1\n"), key_in(b.path(), "x: 1\n"));
        assert_ne!(key_in(a.path(), "x: 1\n"), key_in(b.path(), "x: 2\n"));
    }

    #[test]
    fn a_folder_in_another_checkout_with_the_same_files_is_the_same_key() {
        let scratch = tempfile::tempdir().unwrap();
        let key_in = |root: &Path, template: &str| {
            let chart = root.join("charts/service-demo/templates");
            std::fs::create_dir_all(&chart).unwrap();
            std::fs::write(chart.join("deployment.yaml"), template).unwrap();
            let places = Places::new(scratch.path(), &[root]);
            let mut key = Key::new("batch");
            key.path_arg(root.join("charts/service-demo").as_os_str(), &places);
            key.hex()
        };
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        assert_eq!(
            key_in(a.path(), "kind: Deployment\n"),
            key_in(b.path(), "kind: Deployment\n")
        );
        assert_ne!(
            key_in(a.path(), "kind: Deployment\n"),
            key_in(b.path(), "kind: Job\n")
        );
    }

    #[test]
    fn the_cache_is_off_when_asked_without_a_home_and_in_github_actions() {
        let dir = |vars: &[(&str, &str)]| {
            let vars: Vec<(String, String)> = vars
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            cache_dir(|name| {
                let found = vars.iter().find(|(k, _)| k == name);
                found.map(|(_, v)| v.into())
            })
        };
        assert_eq!(
            dir(&[("HOME", "/home/a")]),
            Some(PathBuf::from("/home/a/.cache/service-demo/tool-outputs"))
        );
        assert_eq!(
            dir(&[("HOME", "/home/a"), ("XDG_CACHE_HOME", "/c")]),
            Some(PathBuf::from("/c/service-demo/tool-outputs"))
        );
        assert_eq!(dir(&[("HOME", "/home/a"), (DISABLE_VAR, "1")]), None);
        assert_eq!(
            dir(&[("HOME", "/home/a"), ("GITHUB_ACTIONS", "true")]),
            None
        );
        assert_eq!(dir(&[("HOME", "")]), None);
    }
}
