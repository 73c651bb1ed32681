//! The files that name the fork, edited in memory: `fork` and `setup` point
//! a repository at a fork with [`Edits::point_at`]; `setup` also gives
//! CODEOWNERS its owner and writes the image key into `cosign.pub` and the
//! admission policy. Nothing is written until [`Edits::write`], so a
//! refusal or a `--dry-run` changes nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::domain::{POLICY_FILE, POLICY_PUBLIC_KEY_FILE};
use crate::plumbing::fs::{relative, yaml_files};
use crate::plumbing::text::{map_lines, unified_diff};
use crate::plumbing::yaml;

/// Where the repository is named, besides the YAML under gitops/argocd, gitops/values and gitops/policy.
const FILES: [&str; 5] = [
    "Cargo.toml",
    "Dockerfile",
    "charts/service-demo/Chart.yaml",
    "charts/service-demo/values.yaml",
    "terraform/variables.tf",
];
/// The directories whose YAML names the repository or its images.
const YAML_DIRS: [&str; 5] = [
    "gitops/argocd",
    "gitops/values/dev",
    "gitops/values/preprod",
    "gitops/values/prod",
    // The admission policy names the image repository.
    "gitops/policy",
];
pub const CODEOWNERS: &str = ".github/CODEOWNERS";
/// The owner CODEOWNERS names until a fork's setup replaces it.
const PLACEHOLDER_OWNER: &str = "@example";

/// A GitHub repository: (owner, name), the owner as GitHub spells it.
pub type RepoName = (String, String);

/// Every edited file's text before and after, by path relative to the root.
pub struct Edits {
    root: PathBuf,
    files: BTreeMap<String, (String, String)>,
}

impl Edits {
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
            files: BTreeMap::new(),
        }
    }

    /// Apply `change` to the current (possibly already edited) text of `path`.
    fn edit(&mut self, path: &str, change: impl FnOnce(&str) -> Result<String>) -> Result<()> {
        if !self.files.contains_key(path) {
            let text = std::fs::read_to_string(self.root.join(path))
                .with_context(|| format!("reading {path}"))?;
            self.files.insert(path.to_owned(), (text.clone(), text));
        }
        let entry = self.files.get_mut(path).expect("inserted above");
        entry.1 = change(&entry.1).with_context(|| format!("editing {path}"))?;
        Ok(())
    }

    /// Point the repository at `new`: its GitHub URL everywhere, and each
    /// service's images at `ghcr.io/<owner, lower-cased>/` (an image name has
    /// no capitals).
    pub fn point_at(&mut self, new: &RepoName) -> Result<()> {
        let old = current_name(&self.root)?;
        let replacements = [
            (
                format!("github.com/{}/{}", old.0, old.1),
                format!("github.com/{}/{}", new.0, new.1),
            ),
            // A private fork's Argo CD objects name its SSH URL (git@github.com:<owner>/<name>.git).
            (
                format!("github.com:{}/{}", old.0, old.1),
                format!("github.com:{}/{}", new.0, new.1),
            ),
            // Each service's images are ghcr.io/<owner>/<image> (its declared
            // image name), whatever the repository is called: the owner moves.
            (
                format!("ghcr.io/{}/", old.0).to_lowercase(),
                format!("ghcr.io/{}/", new.0).to_lowercase(),
            ),
        ];
        let mut files: Vec<PathBuf> = FILES.iter().map(|f| self.root.join(f)).collect();
        for dir in YAML_DIRS {
            files.extend(yaml_files(&self.root.join(dir))?);
        }
        let rename = |s: &str| {
            replacements
                .iter()
                .fold(s.to_owned(), |s, (from, to)| s.replace(from, to))
        };
        for file in files.into_iter().filter(|f| f.is_file()) {
            let path = relative(&self.root, &file);
            if is_yaml(&path) {
                // The string values only: a comment or a key that names the old repository stays.
                self.edit(&path, |text| Ok(yaml::map_strings(text, rename)?.text))?;
            } else {
                // Cargo.toml, the Dockerfile and Terraform are not YAML: a text edit.
                self.edit(&path, |text| Ok(rename(text)))?;
            }
        }
        Ok(())
    }

    /// How Argo CD reads the fork `repo`, in every object under gitops/argocd
    /// (the Applications' `repoURL`, the AppProjects' `sourceRepos`): a
    /// private fork over SSH, `git@github.com:<owner>/<name>.git`, with the
    /// read-only deploy key `cluster up` gives Argo CD (a key made for SSH
    /// matches no HTTPS URL); a public one over HTTPS, without credentials.
    /// Everything else (Cargo.toml, the chart, Terraform's default) keeps the
    /// HTTPS URL: it is a link, not what Argo CD fetches.
    pub fn argocd_transport(&mut self, repo: &RepoName, private: bool) -> Result<()> {
        let https = format!("https://github.com/{}/{}.git", repo.0, repo.1);
        let ssh = format!("git@github.com:{}/{}.git", repo.0, repo.1);
        let (from, to) = if private { (https, ssh) } else { (ssh, https) };
        for file in yaml_files(&self.root.join("gitops/argocd"))? {
            let path = relative(&self.root, &file);
            self.edit(&path, |text| {
                Ok(yaml::map_strings(text, |s| s.replace(&from, &to))?.text)
            })?;
        }
        Ok(())
    }

    /// CODEOWNERS' placeholder owner `@example` becomes `@<owner>` (its comments stay).
    pub fn codeowners(&mut self, owner: &str) -> Result<()> {
        if !self.root.join(CODEOWNERS).is_file() {
            return Ok(());
        }
        let owner = format!("@{owner}");
        self.edit(CODEOWNERS, |text| {
            Ok(map_lines(text, |line| {
                if line.trim_start().starts_with('#') {
                    line.to_owned()
                } else {
                    line.split(' ')
                        .map(|word| {
                            if word == PLACEHOLDER_OWNER {
                                &owner
                            } else {
                                word
                            }
                        })
                        .collect::<Vec<_>>()
                        .join(" ")
                }
            }))
        })
    }

    /// The image signing key's public half (PEM) into `cosign.pub` and into
    /// the admission policy's inline `publicKeys`, which must agree.
    pub fn image_key(&mut self, public_pem: &str) -> Result<()> {
        let pem = format!("{}\n", public_pem.trim_end());
        self.edit(POLICY_PUBLIC_KEY_FILE, |_| Ok(pem.clone()))?;
        self.edit(POLICY_FILE, |text| replace_public_keys(text, &pem))
    }

    /// The files whose text changes: (path, before, after).
    pub fn changed(&self) -> Vec<(&str, &str, &str)> {
        self.files
            .iter()
            .filter(|(_, (old, new))| old != new)
            .map(|(path, (old, new))| (path.as_str(), old.as_str(), new.as_str()))
            .collect()
    }

    /// The unified diff of every changed file.
    pub fn diff(&self) -> String {
        self.changed()
            .into_iter()
            .map(|(path, old, new)| unified_diff(path, old, new))
            .collect()
    }

    /// Write every changed file; returns their paths.
    pub fn write(&self) -> Result<Vec<String>> {
        let mut written = Vec::new();
        for (path, _, new) in self.changed() {
            std::fs::write(self.root.join(path), new).with_context(|| format!("writing {path}"))?;
            written.push(path.to_owned());
        }
        Ok(written)
    }
}

/// Whether `path` names a YAML file (edited through `plumbing::yaml`, never as text).
fn is_yaml(path: &str) -> bool {
    path.ends_with(".yaml") || path.ends_with(".yml")
}

/// Where the policy holds the image key: every `publicKeys` value (each is set,
/// so a policy that writes it twice cannot disagree with itself).
const PUBLIC_KEYS: &str = r#"(.. | objects | select(has("publicKeys")) | .publicKeys)"#;

/// The policy with every `publicKeys` value set to `pem`: a block scalar
/// (`publicKeys: |-`) keeps its indentation, its comments and its anchor.
fn replace_public_keys(text: &str, pem: &str) -> Result<String> {
    fn holds_a_key(value: &serde_json::Value) -> bool {
        match value {
            serde_json::Value::Object(map) => {
                map.contains_key("publicKeys") || map.values().any(holds_a_key)
            }
            serde_json::Value::Array(items) => items.iter().any(holds_a_key),
            _ => false,
        }
    }
    if !holds_a_key(&yaml::parse(text)?) {
        bail!("no `publicKeys` (e.g. `publicKeys: |-`) to hold the image key");
    }
    let pem = serde_json::to_string(pem.trim_end())?;
    Ok(yaml::jq::edit(text, &format!("{PUBLIC_KEYS} = {pem}"))?.text)
}

/// `<owner>/<name>` checked: GitHub's characters only.
pub fn parse_name(name: &str) -> Result<RepoName> {
    let valid = |part: &str| {
        !part.is_empty()
            && part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    };
    match name.trim_end_matches(".git").split_once('/') {
        Some((owner, repo)) if valid(owner) && valid(repo) => {
            Ok((owner.to_owned(), repo.to_owned()))
        }
        _ => {
            bail!("--github {name:?} should be <owner>/<name>, e.g. --github octocat/service-demo")
        }
    }
}

/// The repository the AppProject trusts now.
pub fn current_name(root: &Path) -> Result<RepoName> {
    let path = root.join("gitops/argocd/project.yaml");
    let project = yaml::parse(
        &std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?,
    )?;
    let url = project["spec"]["sourceRepos"][0]
        .as_str()
        .unwrap_or_default();
    url.strip_prefix("https://github.com/")
        .or_else(|| url.strip_prefix("git@github.com:"))
        .and_then(|rest| parse_name(rest).ok())
        .with_context(|| {
            format!(
                "{}: sourceRepos[0] = {url:?} is not a GitHub repository URL",
                path.display()
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_key_block_is_replaced_at_its_indentation() {
        let policy = "a:\n  publicKeys: |-\n    -----BEGIN PUBLIC KEY-----\n    old\n    -----END PUBLIC KEY-----\n  rekor:\n    x: 1\n";
        let pem = "-----BEGIN PUBLIC KEY-----\nnew1\nnew2\n-----END PUBLIC KEY-----\n";
        assert_eq!(
            replace_public_keys(policy, pem).unwrap(),
            "a:\n  publicKeys: |-\n    -----BEGIN PUBLIC KEY-----\n    new1\n    new2\n    -----END PUBLIC KEY-----\n  rekor:\n    x: 1\n"
        );
        assert!(replace_public_keys("a: 1\n", pem).is_err());
    }

    #[test]
    fn the_real_policys_key_changes_where_it_is_written_and_nothing_else_moves() {
        let file = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(POLICY_FILE);
        let policy = std::fs::read_to_string(file).unwrap();
        let pem = "-----BEGIN PUBLIC KEY-----\nnew\n-----END PUBLIC KEY-----\n";
        let out = replace_public_keys(&policy, pem).unwrap();
        let diff = similar::TextDiff::from_lines(&policy, &out);
        let lines = |tag| -> Vec<&str> {
            diff.iter_all_changes()
                .filter(|c| c.tag() == tag)
                .map(|c| c.value())
                .collect()
        };
        // The key's two body lines become one; its header, its indentation and every other line stay.
        assert_eq!(
            lines(similar::ChangeTag::Insert),
            ["                      new\n"],
            "{out}"
        );
        assert_eq!(lines(similar::ChangeTag::Delete).len(), 2, "{out}");
        // The debug rule reads the same key through its alias.
        let keys: Vec<String> = ["pipeline-signed", "pipeline-signed-debug"]
            .iter()
            .map(|rule| {
                let doc = yaml::parse(&out).unwrap();
                let rule = doc["spec"]["rules"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|r| r["name"] == *rule)
                    .unwrap()
                    .clone();
                rule["verifyImages"][0]["attestors"][0]["entries"][0]["keys"]["publicKeys"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        assert_eq!(keys, [pem.trim_end(), pem.trim_end()]);
    }

    /// A repository whose gitops/argocd objects and Cargo.toml name `url`.
    fn repository_naming(url: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let argocd = dir.path().join("gitops/argocd");
        std::fs::create_dir_all(argocd.join("apps")).unwrap();
        for dir_name in YAML_DIRS {
            std::fs::create_dir_all(dir.path().join(dir_name)).unwrap();
        }
        let project = format!(
            "apiVersion: argoproj.io/v1alpha1\nkind: AppProject\nmetadata:\n  name: p\nspec:\n  sourceRepos:\n    - {url}\n"
        );
        std::fs::write(argocd.join("project.yaml"), project).unwrap();
        let app = format!("spec:\n  source:\n    repoURL: {url}\n");
        std::fs::write(argocd.join("apps/app.yaml"), app).unwrap();
        let link = url.replace("git@github.com:", "https://github.com/");
        std::fs::write(
            dir.path().join("Cargo.toml"),
            format!("repository = \"{link}\"\n"),
        )
        .unwrap();
        dir
    }

    #[test]
    fn a_private_forks_argocd_objects_name_its_ssh_url_and_a_public_ones_https() {
        let https = "https://github.com/acme/service-demo.git";
        let ssh = "git@github.com:acme/service-demo.git";
        let repo = ("acme".to_owned(), "service-demo".to_owned());
        let dir = repository_naming(https);
        let mut edits = Edits::new(dir.path());
        edits.argocd_transport(&repo, true).unwrap();
        let changed: Vec<&str> = edits.changed().iter().map(|(p, _, _)| *p).collect();
        assert_eq!(
            changed,
            ["gitops/argocd/apps/app.yaml", "gitops/argocd/project.yaml"]
        );
        edits.write().unwrap();
        let project =
            std::fs::read_to_string(dir.path().join("gitops/argocd/project.yaml")).unwrap();
        assert!(
            project.contains(ssh) && !project.contains(https),
            "{project}"
        );
        // The SSH URL is still this fork's name, and pointing it at another moves that URL too.
        assert_eq!(current_name(dir.path()).unwrap(), repo);
        let mut moved = Edits::new(dir.path());
        moved
            .point_at(&("Other".to_owned(), "demo".to_owned()))
            .unwrap();
        moved.write().unwrap();
        let app = std::fs::read_to_string(dir.path().join("gitops/argocd/apps/app.yaml")).unwrap();
        assert!(app.contains("git@github.com:Other/demo.git"), "{app}");
        // Made public again: HTTPS again.
        let mut public = Edits::new(dir.path());
        public
            .argocd_transport(&("Other".to_owned(), "demo".to_owned()), false)
            .unwrap();
        public.write().unwrap();
        let app = std::fs::read_to_string(dir.path().join("gitops/argocd/apps/app.yaml")).unwrap();
        assert!(app.contains("https://github.com/Other/demo.git"), "{app}");
        // Nothing to change says so.
        let mut again = Edits::new(dir.path());
        again
            .argocd_transport(&("Other".to_owned(), "demo".to_owned()), false)
            .unwrap();
        assert!(again.changed().is_empty());
    }

    #[test]
    fn a_yaml_comment_or_key_naming_the_repository_is_not_rewritten() {
        let https = "https://github.com/acme/service-demo.git";
        let dir = repository_naming(https);
        let app = dir.path().join("gitops/argocd/apps/app.yaml");
        let text = format!(
            "# moved from {https}\n{https}: x\n{}",
            std::fs::read_to_string(&app).unwrap()
        );
        std::fs::write(&app, &text).unwrap();
        let mut edits = Edits::new(dir.path());
        edits
            .argocd_transport(&("acme".to_owned(), "service-demo".to_owned()), true)
            .unwrap();
        edits
            .point_at(&("Other".to_owned(), "demo".to_owned()))
            .unwrap();
        edits.write().unwrap();
        let after = std::fs::read_to_string(&app).unwrap();
        assert_eq!(
            after,
            text.replace(
                &format!("repoURL: {https}"),
                "repoURL: git@github.com:Other/demo.git"
            ),
            "{after}"
        );
        // Cargo.toml is not YAML: its text moves.
        let cargo = std::fs::read_to_string(dir.path().join("Cargo.toml")).unwrap();
        assert!(cargo.contains("https://github.com/Other/demo"), "{cargo}");
    }

    #[test]
    fn codeowners_comment_lines_keep_the_placeholder() {
        let text = "# @example is the placeholder\n/gitops/ @example @other\n";
        let mapped = map_lines(text, |line| {
            if line.starts_with('#') {
                line.to_owned()
            } else {
                line.replace("@example", "@Acme")
            }
        });
        assert_eq!(
            mapped,
            "# @example is the placeholder\n/gitops/ @Acme @other\n"
        );
    }
}
