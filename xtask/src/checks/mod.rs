//! Checks: the rules `validate` runs on the repository (and `ci`, which runs
//! them too). They read the domain; nothing in `domain` or `plumbing` imports
//! them (held by `tests/tidy.rs`). Every check reports [`Finding`]s, each of a
//! rule of [`rules`] (`validate --list` prints them).
//!
//! # Code map
//!
//! One module per target, each with its rule table; `repository` loads the
//! repository once (Argo CD's objects, the workflows, the chart rendered per
//! environment and every service's renders) and runs them all on what it loaded.
//!
//! - `repository`: the run: loads and renders once, runs every target and the
//!   external checkers (Helm, kubernetes-validate, actionlint, zizmor,
//!   Terraform's formatter), prints the report.
//! - `objects`: any Kubernetes object this project writes, strictly by its
//!   kind (and custom resources against their upstream CRDs).
//! - `chart`: the chart and values files, per render and across renders.
//! - `argocd`: Argo CD's objects, the ApplicationSets' Applications, and who
//!   can change the cluster through them; `project_roles`: which Applications
//!   each AppProject role's token reaches (Argo CD's globs, a deny winning).
//! - `workflows`: the workflows and CODEOWNERS (thin, pinned, least power,
//!   wired as a fork relies on); `taint`: which expressions carry untrusted
//!   text into a script.
//! - `terraform`: Terraform, formatted and read as HCL, no key inline.
//! - `admission`: the Kyverno policy for signed images, and gitops/database/.
//! - `readme`: the Services the README's commands name.

pub mod admission;
pub mod argocd;
pub mod chart;
pub mod objects;
pub mod project_roles;
pub mod readme;
pub mod repository;
pub mod taint;
pub mod terraform;
pub mod workflows;

/// Every rule of every check, as `validate --list` prints them.
pub fn rules() -> impl Iterator<Item = &'static Rule> {
    [
        repository::RULES,
        objects::RULES,
        chart::RULES,
        argocd::RULES,
        project_roles::RULES,
        workflows::RULES,
        terraform::RULES,
        admission::RULES,
        readme::RULES,
    ]
    .into_iter()
    .flatten()
}

/// The rule whose id is `id`.
pub fn find_rule(id: &str) -> Option<&'static Rule> {
    rules().find(|rule| rule.id == id)
}
use std::fmt;

/// One problem a check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The file, from the repository root (or as given to `validate PATH`);
    /// empty when the finding is about the repository as a whole.
    pub file: String,
    /// Where in the file, as the message names it (`job build`, `document 2`,
    /// `dev`); empty for the whole file.
    pub path: String,
    /// The rule's id, one of [`Rule::id`].
    pub rule: &'static str,
    /// The whole sentence, as the report prints it (the fix included).
    pub message: String,
    /// The remedy clause of the message, where it has one (else empty).
    pub fix: String,
}

/// The verbs a remedy clause starts with.
const FIX_VERBS: [&str; 24] = [
    "add", "remove", "move", "make", "give", "write", "use", "choose", "rename", "define", "grant",
    "keep", "set", "run", "pin", "drop", "put", "list", "declare", "build", "name", "replace",
    "delete", "install",
];

impl Finding {
    /// A finding of `rule` from a message written `file: place: what`, as the
    /// checks write them.
    pub fn new(rule: &'static str, text: impl Into<String>) -> Self {
        let message: String = text.into();
        let mut parts = message.splitn(3, ": ");
        let head = parts.next().unwrap_or_default();
        let (file, path) = match is_file(head) {
            true => {
                let place = parts.next().filter(|p| is_place(p)).unwrap_or_default();
                (head.to_owned(), place.to_owned())
            }
            false => (String::new(), String::new()),
        };
        let fix = remedy(&message).unwrap_or_default().to_owned();
        Self {
            file,
            path,
            rule,
            message,
            fix,
        }
    }
}

impl Finding {
    /// Whether the message contains `needle`.
    pub fn contains(&self, needle: &str) -> bool {
        self.message.contains(needle)
    }
}

/// Every message of `found` as a finding of `rule`.
pub fn tag(rule: &'static str, found: Vec<String>) -> Vec<Finding> {
    found.into_iter().map(|m| Finding::new(rule, m)).collect()
}

/// A message's head names a file: a path without spaces.
fn is_file(head: &str) -> bool {
    !head.contains(' ')
        && (head.contains('/')
            || [".yaml", ".yml", ".tf", ".md", ".toml", ".pub"]
                .iter()
                .any(|ext| head.ends_with(ext)))
}

/// A message's second part names a place in the file.
fn is_place(part: &str) -> bool {
    ["job ", "document ", "container ", "step "]
        .iter()
        .any(|p| part.starts_with(p))
        && part.split(' ').count() <= 4
}

/// The last clause of `message` that starts with a remedy verb.
fn remedy(message: &str) -> Option<&str> {
    let starts = message
        .match_indices(['(', ';', ':', '—'])
        .map(|(i, s)| i + s.len());
    starts
        .filter_map(|at| {
            let clause = message[at..].trim_start();
            let word = clause.split([' ', '`']).next()?;
            FIX_VERBS
                .contains(&word.to_lowercase().as_str())
                .then_some(clause)
        })
        .next_back()
        .map(|c| c.trim_end_matches(')'))
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{} [{}]", self.message, self.rule)
    }
}

/// What a check's rule is, for `validate --list`.
#[derive(Debug)]
pub struct Rule {
    /// `<target>.<what>`, unique.
    pub id: &'static str,
    /// What it checks: workflows, argocd, chart, terraform, admission, readme, files.
    pub target: &'static str,
    /// Why it exists: what breaks, or who could do what, without it.
    pub why: &'static str,
}

/// Shorthand for the rule tables.
pub const fn rule(id: &'static str, target: &'static str, why: &'static str) -> Rule {
    Rule { id, target, why }
}

#[cfg(test)]
mod finding_tests {
    use super::*;

    #[test]
    fn a_message_gives_its_file_place_and_fix() {
        let finding = Finding::new(
            "workflows.secret-scope",
            ".github/workflows/cd.yml: job deploy: reads PROD_KEY; move it to the prod job",
        );
        assert_eq!(finding.file, ".github/workflows/cd.yml");
        assert_eq!(finding.path, "job deploy");
        assert_eq!(finding.fix, "move it to the prod job");
        assert!(finding.to_string().ends_with("[workflows.secret-scope]"));
        let whole = Finding::new("workflows.secret-scope", "no root Application");
        assert_eq!((whole.file.as_str(), whole.fix.as_str()), ("", ""));
    }
}

#[cfg(test)]
mod rule_tests {
    use std::collections::BTreeSet;

    /// Every string literal of the checks' (and validate's) code that has a
    /// rule id's shape, outside the rule tables.
    fn ids_in_code() -> BTreeSet<String> {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files: Vec<_> = std::fs::read_dir(src.join("checks"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.push(src.join("commands/validate.rs"));
        let mut found = BTreeSet::new();
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            let code = text.split("#[cfg(test)]").next().unwrap();
            for line in code
                .lines()
                .filter(|l| !l.trim_start().starts_with("rule(\""))
            {
                for literal in line.split('"').skip(1).step_by(2) {
                    let shaped = literal.split_once('.').is_some_and(|(target, what)| {
                        super::rules().any(|r| r.target == target)
                            && !what.is_empty()
                            && what.chars().all(|c| c.is_ascii_lowercase() || c == '-')
                    });
                    if shaped {
                        found.insert(literal.to_owned());
                    }
                }
            }
        }
        found
    }

    #[test]
    fn rule_ids_are_unique_and_name_their_target() {
        let mut seen = BTreeSet::new();
        for rule in super::rules() {
            assert!(seen.insert(rule.id), "{} is in the table twice", rule.id);
            assert!(
                rule.id.starts_with(&format!("{}.", rule.target)),
                "{} is not under its target {}",
                rule.id,
                rule.target
            );
            assert!(!rule.why.is_empty(), "{} says not why it exists", rule.id);
        }
    }

    /// A finding's rule is in the table (`validate --list` shows it), and no
    /// rule of the table is one no check reports.
    #[test]
    fn the_code_reports_exactly_the_rules_of_the_table() {
        let table: BTreeSet<String> = super::rules().map(|r| r.id.to_owned()).collect();
        let code = ids_in_code();
        let unlisted: Vec<_> = code.difference(&table).collect();
        let unused: Vec<_> = table.difference(&code).collect();
        assert!(
            unlisted.is_empty(),
            "reported but not in the table: {unlisted:?}"
        );
        assert!(
            unused.is_empty(),
            "in the table but never reported: {unused:?}"
        );
    }
}
