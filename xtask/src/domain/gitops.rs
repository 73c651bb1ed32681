//! The GitOps repository: read files at the remote's tip, commit changes,
//! push with retries, and query history.
//!
//! Commits are built from objects alone (gix): read the tip's tree, write new
//! blobs, write a new tree and commit whose parent is the tip. No working tree,
//! index or local branch is touched, so a failure at any point leaves the
//! user's checkout exactly as it was; the only trace is unreferenced objects.
//!
//! gix cannot push yet, so fetch and push shell out to `git` (through xshell,
//! arguments passed safely, after `--`; a remote or branch beginning with `-`
//! is refused). Credentials in an http(s) URL reach git through its
//! environment only: messages and the cache path use `redact_url`. Processes
//! sharing a checkout take turns to fetch (a lock file), and the cache of a
//! `--gitops-repo` is created atomically. A rejected push is detected from
//! `git push --porcelain`'s status flag, not from English messages, and is
//! retried by fetching the new tip and **re-running the change on it** (the
//! caller's plan sees the new file contents), never by replaying a stale file.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use gix::ObjectId;
use gix::bstr::ByteSlice;
use sha2::Digest as _;
use xshell::{Shell, cmd};

use crate::plumbing::process::refuse_option_like;
use crate::plumbing::retry::{Attempt, retry};
use crate::plumbing::text::{redact_url, split_credentials};

/// Who the pipeline's commits are by.
#[derive(Debug, Clone, clap::Args)]
pub struct BotIdentity {
    /// Name on the pipeline's commits.
    #[arg(
        long = "bot-name",
        env = "GITOPS_BOT_NAME",
        default_value = "service-demo-bot",
        global = true
    )]
    pub name: String,
    /// Email on the pipeline's commits.
    #[arg(
        long = "bot-email",
        env = "GITOPS_BOT_EMAIL",
        default_value = "service-demo-bot@users.noreply.github.com",
        global = true
    )]
    pub email: String,
}

impl BotIdentity {
    /// Environment that makes git record the bot as author and committer of
    /// the commits it creates itself (notes, annotated tags), whatever git config says.
    pub fn git_env(&self) -> [(&'static str, &str); 4] {
        [
            ("GIT_AUTHOR_NAME", &self.name),
            ("GIT_AUTHOR_EMAIL", &self.email),
            ("GIT_COMMITTER_NAME", &self.name),
            ("GIT_COMMITTER_EMAIL", &self.email),
        ]
    }
}

/// Where the GitOps files live and how to reach their remote.
#[derive(Debug, Clone, clap::Args)]
pub struct GitopsOptions {
    /// The service repository (where image tags' commits and release tags live).
    #[arg(
        long = "repo",
        env = "SERVICE_REPO",
        default_value = ".",
        global = true
    )]
    pub service_repo: PathBuf,
    /// The GitOps repository (URL or path). Default: this repository's `--remote`,
    /// with the files under `gitops/`.
    #[arg(long, env = "GITOPS_REPO", global = true)]
    pub gitops_repo: Option<String>,
    /// Remote of this repository that holds the GitOps files when `--gitops-repo` is not given.
    #[arg(long, env = "GITOPS_REMOTE", default_value = "origin", global = true)]
    pub remote: String,
    /// Branch that Argo CD reads.
    #[arg(long, env = "GITOPS_BRANCH", default_value = "main", global = true)]
    pub branch: String,
    /// Attempts at pushing before giving up (each one refetches and re-applies the change).
    #[arg(long, default_value_t = 30, global = true)]
    pub push_attempts: u32,
    #[command(flatten)]
    pub bot: BotIdentity,
}

/// A file to write or delete in the GitOps tree, by path from the repo root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileChange {
    Write { path: String, text: String },
    Delete { path: String },
}

impl FileChange {
    pub fn path(&self) -> &str {
        match self {
            FileChange::Write { path, .. } | FileChange::Delete { path } => path,
        }
    }
}

/// What a command wants to do, given the current tip.
pub enum Decision {
    /// Nothing to do, and why (reported to the user).
    NoOp(String),
    /// Commit these changes with this message.
    Commit {
        changes: Vec<FileChange>,
        message: String,
    },
}

/// What an update did.
#[derive(Debug)]
pub enum Outcome {
    NoOp(String),
    DryRun { diff: String },
    Pushed { commit: ObjectId, attempts: u32 },
}

impl Outcome {
    /// Tells the user what happened, in one line (plus the diff for a dry run).
    pub fn report(&self, what: &str) {
        match self {
            Outcome::NoOp(reason) => println!("nothing to do: {reason}"),
            Outcome::DryRun { diff } => {
                print!("{diff}");
                println!("dry run: would {what}; nothing was committed or pushed");
            }
            Outcome::Pushed { commit, attempts } => {
                let retries = if *attempts > 1 {
                    format!(" after {} attempts", attempts)
                } else {
                    String::new()
                };
                println!("{what}: pushed {}{retries}", &commit.to_string()[..7]);
            }
        }
    }
}

/// One version of a file in the history of the branch.
#[derive(Debug, Clone)]
pub struct FileVersion {
    pub commit: ObjectId,
    /// Commit time, seconds since the Unix epoch.
    pub time: i64,
    /// None where the commit deleted the file.
    pub text: Option<String>,
}

pub struct GitopsRepo {
    repo: gix::Repository,
    /// Directory to run `git` in.
    git_dir: PathBuf,
    /// Remote name or URL to fetch from and push to.
    remote: GitRemote,
    branch: String,
    /// Private ref the fetched tip is stored under (never a branch the user has).
    tip_ref: String,
    /// Path prefix of the GitOps files inside the repository ("gitops/" or "").
    pub prefix: String,
    push_attempts: u32,
    bot: BotIdentity,
}

impl GitopsRepo {
    /// Opens the GitOps repository described by `options`, from the service
    /// repository at `service_repo`. Remotes and branches that git would read
    /// as options are refused before anything is created.
    pub fn open(service_repo: &Path, options: &GitopsOptions) -> Result<Self> {
        // The remote is checked even with --gitops-repo: release and the gate
        // notes fetch from it.
        refuse_option_like("remote", &options.remote, "--remote / GITOPS_REMOTE")?;
        refuse_option_like("branch", &options.branch, "--branch / GITOPS_BRANCH")?;
        ensure!(
            gix::refs::FullName::try_from(format!("refs/heads/{}", options.branch)).is_ok(),
            "{:?} is not a valid branch name: fix --branch / GITOPS_BRANCH",
            options.branch
        );
        let service = gix::open(service_repo)
            .with_context(|| format!("{} is not a git repository", service_repo.display()))?;
        let (git_dir, remote, prefix) = match &options.gitops_repo {
            None => {
                ensure!(
                    service.find_remote(options.remote.as_str()).is_ok(),
                    "this repository has no remote {:?}: add one (`git remote add {} <url>`) or pass --gitops-repo",
                    options.remote,
                    options.remote
                );
                let remote = GitRemote::parse(&options.remote);
                (service_repo.to_path_buf(), remote, "gitops/".to_owned())
            }
            Some(url) => {
                refuse_option_like("GitOps repository", url, "--gitops-repo / GITOPS_REPO")?;
                // A bare cache clone inside this repository's .git keeps the
                // objects of the other repository; the user never sees it.
                let remote = GitRemote::parse(url);
                let caches = service.common_dir().join("xtask");
                let cache = caches.join(cache_name(&remote.shown));
                // Earlier versions named the cache after the URL as given, token and all.
                if remote.shown != *url {
                    let _ = std::fs::remove_dir_all(caches.join(readable_cache_name(url)));
                }
                create_cache(&cache)?;
                (cache, remote, String::new())
            }
        };
        let repo = gix::open(&git_dir)?;
        Ok(Self {
            repo,
            git_dir,
            tip_ref: format!("refs/xtask/gitops/{}", options.branch),
            remote,
            branch: options.branch.clone(),
            prefix,
            push_attempts: options.push_attempts.max(1),
            bot: options.bot.clone(),
        })
    }

    fn shell(&self) -> Result<Shell> {
        let sh = Shell::new()?;
        sh.change_dir(&self.git_dir);
        Ok(sh)
    }

    /// Fetches the branch and returns its tip. Processes sharing this
    /// repository take turns (a lock file), and a ref lock held by someone
    /// else (a hand-run git) is waited out.
    pub fn fetch_tip(&self) -> Result<ObjectId> {
        let _turn = self.lock_fetches()?;
        let sh = self.shell()?;
        let (url, refspec) = (
            &self.remote.url,
            format!("+refs/heads/{}:{}", self.branch, self.tip_ref),
        );
        let mut stderr = String::new();
        let fetched = retry(FETCH_ATTEMPTS, |_| {
            stderr.clear();
            let output = cmd!(
                sh,
                "git fetch --quiet --no-tags --no-write-fetch-head -- {url} {refspec}"
            )
            .envs(self.remote.git_env())
            .quiet()
            .ignore_status()
            .output()?;
            if output.status.success() {
                return Ok::<_, anyhow::Error>(Attempt::Done(()));
            }
            stderr = self.remote.scrub(&String::from_utf8_lossy(&output.stderr));
            // A ref locked by another process is waited out; anything else is final.
            Ok(if is_lock_contention(&stderr) {
                Attempt::Again
            } else {
                Attempt::Done(())
            })
        })?;
        if fetched.is_none() || !stderr.is_empty() {
            bail!(
                "cannot fetch {} from {}: {}",
                self.branch,
                self.remote.shown,
                stderr.trim()
            );
        }
        // Re-open so gix sees the ref the git process just wrote.
        let repo = gix::open(&self.git_dir)?;
        let id = repo
            .find_reference(self.tip_ref.as_str())?
            .into_fully_peeled_id()?
            .detach();
        Ok(id)
    }

    /// Waits for this process's turn to fetch; the turn ends when the file is
    /// dropped (or the process dies: the OS releases the lock).
    fn lock_fetches(&self) -> Result<std::fs::File> {
        let path = self.repo.common_dir().join("xtask-fetch.lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        file.lock()
            .with_context(|| format!("locking {}", path.display()))?;
        Ok(file)
    }

    /// A file's text at `commit`, or None when it does not exist.
    pub fn read(&self, commit: ObjectId, path: &str) -> Result<Option<String>> {
        let Some(blob) = self.blob_id(commit, path)? else {
            return Ok(None);
        };
        let blob = self.repo.find_blob(blob)?;
        let text =
            std::str::from_utf8(&blob.data).with_context(|| format!("{path} is not UTF-8"))?;
        Ok(Some(text.to_owned()))
    }

    fn blob_id(&self, commit: ObjectId, path: &str) -> Result<Option<ObjectId>> {
        let tree = self.repo.find_commit(commit)?.tree()?;
        Ok(tree
            .lookup_entry_by_path(path)?
            .map(|entry| entry.object_id()))
    }

    /// Names of the files directly inside `dir` at `commit`.
    pub fn list_dir(&self, commit: ObjectId, dir: &str) -> Result<Vec<String>> {
        self.list_entries(commit, dir, true)
    }

    /// Names of the folders directly inside `dir` at `commit`.
    pub fn list_subdirs(&self, commit: ObjectId, dir: &str) -> Result<Vec<String>> {
        self.list_entries(commit, dir, false)
    }

    fn list_entries(&self, commit: ObjectId, dir: &str, files: bool) -> Result<Vec<String>> {
        let tree = self.repo.find_commit(commit)?.tree()?;
        let Some(entry) = tree.lookup_entry_by_path(dir.trim_end_matches('/'))? else {
            return Ok(Vec::new());
        };
        let subtree = self.repo.find_tree(entry.object_id())?;
        let mut names = Vec::new();
        for entry in subtree.iter() {
            let entry = entry?;
            let wanted = if files {
                entry.mode().is_blob()
            } else {
                entry.mode().is_tree()
            };
            if wanted {
                names.push(entry.filename().to_str_lossy().into_owned());
            }
        }
        Ok(names)
    }

    /// Writes a commit on top of `parent` with `changes`; touches no ref.
    fn commit(&self, parent: ObjectId, changes: &[FileChange], message: &str) -> Result<ObjectId> {
        let tree = self.repo.find_commit(parent)?.tree()?;
        let mut editor = tree.edit()?;
        for change in changes {
            match change {
                FileChange::Write { path, text } => {
                    let blob = self.repo.write_blob(text.as_bytes())?.detach();
                    editor.upsert(path.as_str(), gix::object::tree::EntryKind::Blob, blob)?;
                }
                FileChange::Delete { path } => {
                    editor.remove(path.as_str())?;
                }
            }
        }
        let tree = editor.write()?.detach();
        let now = gix::date::Time::now_local_or_utc();
        let signature = gix::actor::Signature {
            name: self.bot.name.as_str().into(),
            email: self.bot.email.as_str().into(),
            time: now,
        };
        let commit = gix::objs::Commit {
            tree,
            parents: vec![parent].into(),
            author: signature.clone(),
            committer: signature,
            encoding: None,
            message: message.into(),
            extra_headers: Vec::new(),
        };
        Ok(self.repo.write_object(&commit)?.detach())
    }

    /// Pushes `commit` to the branch; the remote accepts it only as a fast-forward.
    fn push(&self, commit: ObjectId) -> Result<PushResult> {
        let sh = self.shell()?;
        let (url, refspec) = (
            &self.remote.url,
            format!("{commit}:refs/heads/{}", self.branch),
        );
        let output = cmd!(sh, "git push --porcelain --no-verify -- {url} {refspec}")
            .envs(self.remote.git_env())
            .quiet()
            .ignore_status()
            .output()?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        match parse_porcelain(&stdout, &self.branch) {
            Some(result) => Ok(result),
            None => bail!(
                "git push to {} failed: {}",
                self.remote.shown,
                self.remote
                    .scrub(&String::from_utf8_lossy(&output.stderr))
                    .trim()
            ),
        }
    }

    /// Plans a change on the current tip, commits and pushes it, and on a
    /// rejected push starts over from the new tip, with backoff and jitter.
    pub fn update(
        &self,
        dry_run: bool,
        mut plan: impl FnMut(&Snapshot<'_>) -> Result<Decision>,
    ) -> Result<Outcome> {
        let outcome = retry(self.push_attempts, |attempt| {
            let tip = self.fetch_tip()?;
            let snapshot = Snapshot { repo: self, tip };
            let (changes, message) = match plan(&snapshot)? {
                Decision::NoOp(reason) => return Ok(Attempt::Done(Outcome::NoOp(reason))),
                Decision::Commit { changes, message } => (changes, message),
            };
            if dry_run {
                let diff = self.diff(tip, &changes)?;
                return Ok(Attempt::Done(Outcome::DryRun { diff }));
            }
            let commit = self.commit(tip, &changes, &message)?;
            match self.push(commit)? {
                PushResult::Accepted => Ok(Attempt::Done(Outcome::Pushed {
                    commit,
                    attempts: attempt,
                })),
                PushResult::Rejected(reason) => {
                    eprintln!(
                        "push rejected ({reason}); refetching and re-applying (attempt {attempt})"
                    );
                    Ok(Attempt::Again)
                }
                PushResult::Refused(reason) => bail!(
                    "the remote refused the push: {reason}; nothing was changed on {}",
                    self.branch
                ),
            }
        })?;
        if let Some(outcome) = outcome {
            return Ok(outcome);
        }
        bail!(
            "gave up after {} push attempts: others kept moving {} (raise --push-attempts); nothing was changed",
            self.push_attempts,
            self.branch
        )
    }

    /// A unified diff of `changes` against `tip`.
    fn diff(&self, tip: ObjectId, changes: &[FileChange]) -> Result<String> {
        let mut out = String::new();
        for change in changes {
            let path = change.path();
            let old = self.read(tip, path)?.unwrap_or_default();
            let new = match change {
                FileChange::Write { text, .. } => text.as_str(),
                FileChange::Delete { .. } => "",
            };
            out.push_str(&crate::plumbing::text::unified_diff(path, &old, new));
        }
        Ok(out)
    }

    /// Every version of `path` on the first-parent history of `tip`, newest first.
    pub fn history(&self, tip: ObjectId, path: &str) -> Result<Vec<FileVersion>> {
        // On a first-parent walk each commit's parent is the next one walked,
        // so one blob lookup per commit is enough: a version starts wherever
        // the blob differs from the next commit's (or the walk ends).
        let mut walked: Vec<(ObjectId, i64, Option<ObjectId>)> = Vec::new();
        for info in self.repo.rev_walk([tip]).first_parent_only().all()? {
            let info = info?;
            let time = self.repo.find_commit(info.id)?.time()?.seconds;
            walked.push((info.id, time, self.blob_id(info.id, path)?));
        }
        let mut versions = Vec::new();
        for (i, (commit, time, blob)) in walked.iter().enumerate() {
            let parent_blob = walked.get(i + 1).and_then(|(_, _, b)| *b);
            if *blob == parent_blob {
                continue;
            }
            let text = match blob {
                Some(blob) => Some(self.repo.find_blob(*blob)?.data.to_str_lossy().into_owned()),
                None => None,
            };
            versions.push(FileVersion {
                commit: *commit,
                time: *time,
                text,
            });
        }
        Ok(versions)
    }
}

/// A read-only view of the branch at one tip, handed to a plan.
pub struct Snapshot<'a> {
    pub repo: &'a GitopsRepo,
    pub tip: ObjectId,
}

impl Snapshot<'_> {
    /// A GitOps file (path relative to the GitOps root) at this tip.
    pub fn read(&self, path: &str) -> Result<Option<String>> {
        self.repo.read(self.tip, &self.repo.full_path(path))
    }
}

impl GitopsRepo {
    /// `values/prod/x.yaml` → `gitops/values/prod/x.yaml` in the default layout.
    pub fn full_path(&self, path: &str) -> String {
        format!("{}{path}", self.prefix)
    }
}

#[derive(Debug, PartialEq, Eq)]
enum PushResult {
    Accepted,
    /// Not a fast-forward: someone pushed first. Worth retrying.
    Rejected(String),
    /// Refused for another reason (hook, permissions, protected branch).
    Refused(String),
}

/// Reads the status line for our ref from `git push --porcelain`:
/// `<flag>\t<from>:<to>\t<summary> (<reason>)`. Flags: ` ` fast-forward,
/// `*` new ref, `=` up to date, `+` forced, `!` rejected.
fn parse_porcelain(stdout: &str, branch: &str) -> Option<PushResult> {
    let to = format!("refs/heads/{branch}");
    stdout.lines().find_map(|line| {
        let mut fields = line.split('\t');
        let flag = fields.next()?;
        let refs = fields.next()?;
        if refs.rsplit(':').next()? != to {
            return None;
        }
        let summary = fields.next().unwrap_or_default().to_owned();
        Some(match flag {
            " " | "*" | "=" | "+" => PushResult::Accepted,
            "!" if summary.starts_with("[rejected]") => PushResult::Rejected(summary),
            // The server lost a race for the ref lock with a concurrent push:
            // transient, unlike a hook or permission refusal.
            "!" if summary.starts_with("[remote rejected]")
                && (summary.contains("failed to update ref") || summary.contains("lock")) =>
            {
                PushResult::Rejected(summary)
            }
            _ => PushResult::Refused(summary),
        })
    })
}

/// Fetches that find a ref locked by a process outside xtask (a hand-run
/// git) are tried this many times.
const FETCH_ATTEMPTS: u32 = 20;

/// Whether git failed only because another process held a lock it needed.
fn is_lock_contention(stderr: &str) -> bool {
    stderr.contains("cannot lock ref") || stderr.contains(".lock': File exists")
}

/// A remote as git is given it. Credentials in an http(s) URL are taken out
/// of it and handed to git through its environment (a credential helper that
/// reads them from variables), so they appear in no argument, message or path.
#[derive(Debug)]
struct GitRemote {
    /// What git is given: a remote name, a path or a URL.
    url: String,
    /// What messages show.
    shown: String,
    /// As written in the user's URL, for scrubbing git's messages.
    original: String,
    credentials: Option<(String, String)>,
    /// `credential.<scheme>://<host>.helper`: git asks the helper only for
    /// this remote's host, never for a redirect or another remote.
    helper_key: String,
}

impl GitRemote {
    fn parse(url: &str) -> Self {
        let lower = url.to_ascii_lowercase();
        let is_http = lower.starts_with("http://") || lower.starts_with("https://");
        let (url_to_use, credentials) = match split_credentials(url) {
            Some((without, userinfo)) if is_http => {
                let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
                (without, Some((user.to_owned(), password.to_owned())))
            }
            _ => (url.to_owned(), None),
        };
        let helper_key = format!("credential.{}.helper", origin_of(&url_to_use));
        Self {
            helper_key,
            url: url_to_use,
            shown: redact_url(url),
            original: url.to_owned(),
            credentials,
        }
    }

    /// Environment for git: with credentials, a helper that answers with them
    /// (after clearing any configured helper) and no terminal prompt.
    fn git_env(&self) -> Vec<(&'static str, &str)> {
        let Some((user, password)) = &self.credentials else {
            return Vec::new();
        };
        vec![
            ("GIT_TERMINAL_PROMPT", "0"),
            ("GIT_CONFIG_COUNT", "2"),
            ("GIT_CONFIG_KEY_0", "credential.helper"),
            ("GIT_CONFIG_VALUE_0", ""),
            ("GIT_CONFIG_KEY_1", &self.helper_key),
            (
                "GIT_CONFIG_VALUE_1",
                "!f() { test \"$1\" = get && printf 'username=%s\\npassword=%s\\n' \"$XTASK_GIT_USERNAME\" \"$XTASK_GIT_PASSWORD\"; }; f",
            ),
            ("XTASK_GIT_USERNAME", user),
            ("XTASK_GIT_PASSWORD", password),
        ]
    }

    /// `text` (git's own messages) with the credentials taken out.
    fn scrub(&self, text: &str) -> String {
        let mut text = text.replace(&self.original, &self.shown);
        if let Some((user, password)) = &self.credentials {
            for secret in [password, user].into_iter().filter(|s| s.len() >= 4) {
                text = text.replace(secret.as_str(), "<redacted>");
            }
        }
        text
    }
}

/// `scheme://host[:port]` of a URL (the whole text when it has no scheme).
fn origin_of(url: &str) -> &str {
    let Some(scheme_end) = url.find("://") else {
        return url;
    };
    let authority_end = url[scheme_end + 3..]
        .find('/')
        .map_or(url.len(), |i| scheme_end + 3 + i);
    &url[..authority_end]
}

/// A folder name for a cache clone of `url` (credentials already taken out):
/// readable from the URL's tail, unique by a hash of the whole URL (two
/// remotes that end alike never share a cache).
fn cache_name(url: &str) -> String {
    let hash = sha2::Sha256::digest(url.as_bytes());
    let short = crate::plumbing::text::hex(&hash[..6]);
    format!("{}-{short}", readable_cache_name(url))
}

/// `gitops-` and the URL's last 60 characters, made safe for a file name:
/// what earlier versions named a cache.
fn readable_cache_name(url: &str) -> String {
    let readable: String = url
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let tail: String = readable
        .chars()
        .rev()
        .take(60)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("gitops-{tail}")
}

/// Creates the bare cache repository at `cache` unless it exists, atomically:
/// built under a temporary name beside it, then renamed into place. A process
/// that loses the race to another one uses the winner's.
fn create_cache(cache: &Path) -> Result<()> {
    if cache.join("HEAD").exists() {
        return Ok(());
    }
    let parent = cache.parent().context("a cache has a parent directory")?;
    // Removed when dropped: empty after the rename, or the loser's copy.
    let scratch = crate::plumbing::fs::temp_dir_in(parent, ".tmp-")?;
    let staging = scratch.path().join("cache.git");
    let sh = Shell::new()?;
    cmd!(sh, "git init --quiet --bare -- {staging}")
        .quiet()
        .run()?;
    match std::fs::rename(&staging, cache) {
        Ok(()) => Ok(()),
        Err(_) if cache.join("HEAD").exists() => Ok(()),
        Err(error) => Err(error).with_context(|| {
            format!(
                "cannot create the GitOps cache {}: remove it if it is left from a crash",
                cache.display()
            )
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn porcelain_status_flags() {
        let ok = "To /tmp/r.git\n \t0123:refs/heads/main\tabc..def\nDone\n";
        assert_eq!(parse_porcelain(ok, "main"), Some(PushResult::Accepted));
        let rejected = "To /tmp/r.git\n!\t0123:refs/heads/main\t[rejected] (fetch first)\nDone\n";
        assert!(matches!(
            parse_porcelain(rejected, "main"),
            Some(PushResult::Rejected(_))
        ));
        let hook = "To /tmp/r.git\n!\t0123:refs/heads/main\t[remote rejected] (pre-receive hook declined)\nDone\n";
        assert!(matches!(
            parse_porcelain(hook, "main"),
            Some(PushResult::Refused(_))
        ));
        let raced = "To /tmp/r.git\n!\t0123:refs/heads/main\t[remote rejected] (failed to update ref)\nDone\n";
        assert!(matches!(
            parse_porcelain(raced, "main"),
            Some(PushResult::Rejected(_))
        ));
        assert_eq!(parse_porcelain(ok, "other"), None);
        assert_eq!(parse_porcelain("fatal: no such remote\n", "main"), None);
    }

    #[test]
    fn credentials_are_taken_out_of_urls() {
        let cases = [
            ("https://bot:TOKEN@host/x.git", "https://host/x.git"),
            ("https://TOKEN@host/x.git", "https://host/x.git"),
            ("http://u:p@ss@127.0.0.1:8080/x", "http://127.0.0.1:8080/x"),
            ("ssh://git@host/x.git", "ssh://git@host/x.git"),
            ("ssh://u:secret@host/x.git", "ssh://host/x.git"),
            ("git@github.com:o/x.git", "git@github.com:o/x.git"),
            ("u:secret@host:o/x.git", "host:o/x.git"),
            ("/srv/git/x.git", "/srv/git/x.git"),
            ("origin", "origin"),
        ];
        for (url, shown) in cases {
            assert_eq!(redact_url(url), shown, "{url}");
        }
        let remote = GitRemote::parse("https://bot:TOKEN@host/x.git");
        assert_eq!(remote.url, "https://host/x.git");
        assert_eq!(
            remote.credentials,
            Some(("bot".to_owned(), "TOKEN".to_owned()))
        );
        assert_eq!(
            remote.scrub("fatal: unable to access 'https://bot:TOKEN@host/x.git/': TOKEN"),
            "fatal: unable to access 'https://host/x.git/': <redacted>"
        );
        let upper = GitRemote::parse("HTTPS://TOKEN@host/x.git");
        assert_eq!(upper.url, "HTTPS://host/x.git");
        let ssh = GitRemote::parse("ssh://git@host/x.git");
        assert_eq!(
            (ssh.url.as_str(), ssh.credentials),
            ("ssh://git@host/x.git", None)
        );
    }

    #[test]
    fn the_credential_helper_answers_only_for_the_remotes_host() {
        let remote = GitRemote::parse("https://bot:TOKEN@git.example:8443/o/x.git");
        let env = remote.git_env();
        let key = env
            .iter()
            .find(|(k, _)| *k == "GIT_CONFIG_KEY_1")
            .unwrap()
            .1;
        assert_eq!(key, "credential.https://git.example:8443.helper");
        // The token travels in the environment only, never in the helper's text.
        let helper = env
            .iter()
            .find(|(k, _)| *k == "GIT_CONFIG_VALUE_1")
            .unwrap()
            .1;
        assert!(!helper.contains("TOKEN"), "{helper}");
    }

    #[test]
    fn cache_names_of_remotes_that_end_alike_differ() {
        let tail = "/".to_owned() + &"a".repeat(80) + "/gitops.git";
        let one = cache_name(&format!("https://one.example{tail}"));
        let two = cache_name(&format!("https://two.example{tail}"));
        assert_ne!(one, two);
        assert!(one.starts_with("gitops-") && one.len() < 90, "{one}");
        assert_eq!(one, cache_name(&format!("https://one.example{tail}")));
    }

    #[test]
    fn option_like_values_are_refused() {
        let error = refuse_option_like("remote", "--upload-pack=touch x", "--remote").unwrap_err();
        assert!(error.to_string().contains("begins with '-'"), "{error}");
        assert!(refuse_option_like("remote", "origin", "--remote").is_ok());
    }
}
