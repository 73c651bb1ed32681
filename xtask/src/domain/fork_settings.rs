//! What a fork's GitHub settings must be for the workflows, in one place:
//! `setup` writes them and `doctor` checks them (environments, their secrets
//! and variables, the rulesets of each profile, the label, the CI check).

use serde_json::{Value, json};

/// How many people guard main: `solo` (a learner alone: a pull request and
/// green CI, no approval, since GitHub never lets an author approve their own
/// pull request) or `team` (one approval and code-owner review as well).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Profile {
    Solo,
    Team,
}

/// Who writes a secret or variable, i.e. the command that fixes it when missing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WrittenBy {
    Setup,
    ClusterUp,
}

impl WrittenBy {
    pub fn command(self) -> &'static str {
        match self {
            WrittenBy::Setup => "cargo xtask setup",
            WrittenBy::ClusterUp => "cargo xtask cluster up",
        }
    }
}

/// The environments, each limited to main; whether each needs a required reviewer.
pub const ENVIRONMENTS: [(&str, bool); 4] = [
    ("preview", false),
    ("preprod", false),
    ("prod", true),
    ("image-signing", false),
];

/// The GitOps deploy key's secret, in each environment that pushes GitOps commits.
pub const DEPLOY_KEY: &str = "GITOPS_DEPLOY_KEY";
/// The environments that hold the deploy key.
pub const DEPLOY_KEY_ENVIRONMENTS: [&str; 3] = ["preview", "preprod", "prod"];
/// The deploy key's public half, a repository variable (GitHub never returns a secret).
pub const DEPLOY_PUBLIC_KEY: &str = "GITOPS_DEPLOY_PUBLIC_KEY";
/// The deploy key's title.
pub const DEPLOY_KEY_TITLE: &str = "gitops";

/// A deploy key (`ssh-ed25519 AAAA…`) without its comment, as GitHub lists deploy keys: what
/// `setup` compares and `doctor` checks (`deploy_key` makes the key, in the full xtask only).
pub fn key_only(public: &str) -> String {
    public
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The gate key: private half in preprod, public half a prod variable.
pub const GATE_SIGNING_KEY: (&str, &str) = ("preprod", "GATE_SIGNING_KEY");
pub const GATE_PUBLIC_KEY: (&str, &str) = ("prod", "GATE_PUBLIC_KEY");
/// The image signing key: private half in image-signing, public half a
/// variable there and `gitops/policy/cosign.pub` (and the admission policy).
pub const IMAGE_SIGNING_KEY: (&str, &str) = ("image-signing", "IMAGE_SIGNING_KEY");
pub const IMAGE_PUBLIC_KEY: (&str, &str) = ("image-signing", "IMAGE_PUBLIC_KEY");

/// Environment secrets: (environment, name, what it is, who writes it).
pub const SECRETS: [(&str, &str, &str, WrittenBy); 8] = [
    (
        "preview",
        "ARGOCD_PREVIEW_TOKEN",
        "the Argo CD token of project role `preview`",
        WrittenBy::ClusterUp,
    ),
    (
        "preview",
        DEPLOY_KEY,
        "the GitOps deploy key's private key",
        WrittenBy::Setup,
    ),
    (
        "preprod",
        DEPLOY_KEY,
        "the GitOps deploy key's private key",
        WrittenBy::Setup,
    ),
    (
        "prod",
        DEPLOY_KEY,
        "the GitOps deploy key's private key",
        WrittenBy::Setup,
    ),
    (
        "preprod",
        "ARGOCD_PREPROD_TOKEN",
        "the Argo CD token of project role `preprod`",
        WrittenBy::ClusterUp,
    ),
    (
        "preprod",
        "GATE_SIGNING_KEY",
        "the gate's private key",
        WrittenBy::Setup,
    ),
    (
        "prod",
        "ARGOCD_AUTH_TOKEN",
        "the Argo CD token of project role `release`",
        WrittenBy::ClusterUp,
    ),
    (
        "image-signing",
        "IMAGE_SIGNING_KEY",
        "the image signing key (its public half is gitops/policy/cosign.pub)",
        WrittenBy::Setup,
    ),
];

/// Repository variables: (name, what it is, who writes it).
pub const VARIABLES: [(&str, &str, WrittenBy); 3] = [
    (
        "ARGOCD_SERVER",
        "the Argo CD address the cluster runner reaches",
        WrittenBy::ClusterUp,
    ),
    (
        "INGRESS_URL",
        "the ingress controller's address the cluster runner reaches",
        WrittenBy::ClusterUp,
    ),
    (
        PIPELINE_READY,
        "the workflows run only once setup has finished",
        WrittenBy::Setup,
    ),
];
/// The repository variable setup writes last; the workflows skip until it is `true`.
pub const PIPELINE_READY: &str = "PIPELINE_READY";

/// The check run ci.yml's `checks` job produces (its `name:`), required on main
/// (a test holds that ci.yml has a job of that name).
pub const CI_CHECK: &str = "Lint, SCA and tests";
/// The label that asks for a preview environment.
pub const PREVIEW_LABEL: &str = "preview";
/// The ruleset names setup writes.
pub const MAIN_RULESET: &str = "main";
pub const TAG_RULESET: &str = "release tags";
/// The git tags releases are (`v<X.Y.Z>`), as a ruleset names them.
pub const RELEASE_TAGS: &str = "refs/tags/v*";
/// The outside contributors whose pull requests' workflows wait for approval.
pub const FORK_PR_APPROVAL: &str = "all_external_contributors";

/// Only the deploy key (the GitOps commits', the release tags') bypasses a ruleset.
fn deploy_key_bypass() -> Value {
    json!([{"actor_id": null, "actor_type": "DeployKey", "bypass_mode": "always"}])
}

/// The ruleset of main for `profile`: pull request and CI required, no deletion, no force push.
pub fn main_ruleset(profile: Profile) -> Value {
    let team = profile == Profile::Team;
    json!({
        "name": MAIN_RULESET,
        "target": "branch",
        "enforcement": "active",
        "conditions": {"ref_name": {"include": ["refs/heads/main"], "exclude": []}},
        "rules": [
            {"type": "deletion"},
            {"type": "non_fast_forward"},
            {"type": "pull_request", "parameters": {
                "required_approving_review_count": if team { 1 } else { 0 },
                "require_code_owner_review": team,
                "dismiss_stale_reviews_on_push": true,
                "require_last_push_approval": false,
                "required_review_thread_resolution": false
            }},
            {"type": "required_status_checks", "parameters": {
                "strict_required_status_checks_policy": false,
                "required_status_checks": [{"context": CI_CHECK}]
            }}
        ],
        "bypass_actors": deploy_key_bypass()
    })
}

/// The ruleset of release tags: only the release job (the deploy key) creates, moves or deletes one.
pub fn tag_ruleset() -> Value {
    json!({
        "name": TAG_RULESET,
        "target": "tag",
        "enforcement": "active",
        "conditions": {"ref_name": {"include": [RELEASE_TAGS], "exclude": []}},
        "rules": [{"type": "creation"}, {"type": "update"}, {"type": "deletion"}],
        "bypass_actors": deploy_key_bypass()
    })
}

/// The settings page of a container package (`scope`: `users` or `orgs`), where
/// its visibility is changed: the one step GitHub's REST API cannot do.
pub fn package_settings_url(scope: &str, owner: &str, image: &str) -> String {
    format!("https://github.com/{scope}/{owner}/packages/container/{image}/settings")
}

/// Whether `actual` (as GitHub answers) holds everything `wanted` says:
/// objects key by key (a `null` wanted matches a missing key), arrays item
/// by item, in order and of the same length. GitHub adds fields of its own
/// (ids, links, defaults); those do not matter.
pub fn holds(actual: &Value, wanted: &Value) -> bool {
    match (actual, wanted) {
        (_, Value::Object(wanted)) => wanted.iter().all(|(key, value)| match actual.get(key) {
            Some(found) => holds(found, value),
            None => value.is_null(),
        }),
        (Value::Array(actual), Value::Array(wanted)) => {
            actual.len() == wanted.len() && actual.iter().zip(wanted).all(|(a, w)| holds(a, w))
        }
        _ => actual == wanted,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The check main's ruleset requires is the name ci.yml's job reports, or no merge could ever pass.
    #[test]
    fn the_required_check_is_a_job_of_ci_yml() {
        let path = crate::plumbing::workspace::root().join(".github/workflows/ci.yml");
        let workflow: Value =
            yaml_serde::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let names: Vec<&str> = workflow["jobs"]
            .as_object()
            .unwrap()
            .values()
            .filter_map(|job| job["name"].as_str())
            .collect();
        assert!(
            names.contains(&CI_CHECK),
            "{CI_CHECK:?} is not among {names:?}"
        );
    }

    #[test]
    fn holds_ignores_what_github_adds_but_not_what_differs() {
        let wanted = main_ruleset(Profile::Solo);
        let mut actual = wanted.clone();
        actual["id"] = json!(7);
        actual["bypass_actors"][0]
            .as_object_mut()
            .unwrap()
            .remove("actor_id");
        actual["rules"][2]["parameters"]["allowed_merge_methods"] = json!(["merge"]);
        assert!(holds(&actual, &wanted));
        assert!(!holds(&actual, &main_ruleset(Profile::Team)));
        actual["rules"].as_array_mut().unwrap().pop();
        assert!(!holds(&actual, &wanted));
    }
}
