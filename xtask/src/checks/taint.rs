//! Which `${{ }}` expressions of a workflow carry untrusted text into a script,
//! directly or through `env:` entries (taint tracking over a workflow's,
//! job's and step's `env:`).

use serde_json::Value;

/// Expressions that carry text someone outside the repository's owners chose
/// (a matrix or a job's outputs may be computed by a pull request's own code:
/// ci.yml's matrix is its `cargo xtask affected`).
const UNTRUSTED: [&str; 7] = [
    "github.event.",
    "inputs.",
    "github.head_ref",
    "github.ref_name",
    "vars.",
    "matrix.",
    "needs.",
];

/// `(name, value)` of the `env:` entries whose value holds an untrusted
/// expression, or an `env.X` of an entry in `outer` (or earlier here) that does.
pub fn tainted_env(env: &Value, outer: &[(String, String)]) -> Vec<(String, String)> {
    let mut tainted: Vec<(String, String)> = Vec::new();
    for (name, value) in env.as_object().into_iter().flatten() {
        let Some(value) = value.as_str() else {
            continue;
        };
        let through = outer
            .iter()
            .chain(&tainted)
            .any(|(n, _)| names_env(value, n));
        if through || UNTRUSTED.iter().any(|u| value.contains(u)) {
            tainted.push((name.clone(), value.to_owned()));
        }
    }
    tainted
}

/// `${{ }}` of untrusted input inside a `run:` script or a github-script
/// `script:` (an injection), directly or through an `env:` entry holding it.
/// Upstream: GitHub Actions on github.com (unversioned; docs "Security
/// hardening for GitHub Actions", script injections, free-pro-team@latest),
/// held to its examples by `githubs_documented_script_injection_is_refused_and_its_fix_passes`.
pub fn run_problems(at: &str, key: &str, run: &str, tainted: &[(String, String)]) -> Vec<String> {
    run.match_indices("${{")
        .filter_map(|(start, _)| {
            let rest = &run[start..];
            let expression = &rest[..rest.find("}}").map_or(rest.len(), |end| end + 2)];
            let through = tainted
                .iter()
                .find(|(name, _)| names_env(expression, name))
                .map(|(name, value)| format!(" (env.{name} is `{value}`)"));
            let direct = UNTRUSTED.iter().any(|u| expression.contains(u));
            (direct || through.is_some()).then(|| {
                format!(
                    "{at}: `{expression}`{} inside `{key}:` is pasted into the script before it runs; pass it through the step's `env:` and use \"$NAME\" (process.env.NAME in a script)",
                    through.unwrap_or_default()
                )
            })
        })
        .collect()
}

/// Whether `expression` reads `env.<name>` (the whole name).
fn names_env(expression: &str, name: &str) -> bool {
    let needle = format!("env.{name}");
    expression.match_indices(&needle).any(|(at, _)| {
        let after = expression[at + needle.len()..].chars().next();
        let before = expression[..at].chars().next_back();
        !after.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
            && !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
    })
}
