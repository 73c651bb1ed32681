//! The README: every Service its commands name (`svc/<name>`) is one the chart renders.

use std::collections::BTreeSet;
use std::path::Path;

use crate::checks::chart::{Rendered, of_kind};
use crate::checks::{Finding, Rule, rule, tag};

/// This target's rules (`validate --list`).
pub const RULES: &[Rule] = &[rule(
    "readme.services-exist",
    "readme",
    "every `svc/<name>` the README names is a Service the chart renders: the tutorial's commands work",
)];

/// Every `svc/<name>` the README names is a Service the chart renders
/// (`<N>` standing for the sample pull request).
pub fn problems(root: &Path, rendered: &[Rendered]) -> Vec<Finding> {
    tag("readme.services-exist", readme_problems(root, rendered))
}

/// [`problems`], as messages.
fn readme_problems(root: &Path, rendered: &[Rendered]) -> Vec<String> {
    let Ok(readme) = std::fs::read_to_string(root.join("README.md")) else {
        return vec!["README.md: missing (its commands are checked against the chart)".into()];
    };
    let services: BTreeSet<String> = rendered
        .iter()
        .flat_map(|(_, docs)| of_kind(docs, "Service"))
        .filter_map(|s| Some(s["metadata"]["name"].as_str()?.to_owned()))
        .collect();
    let sample = rendered
        .iter()
        .find_map(|(env, _)| env.strip_prefix("pr-"))
        .unwrap_or("7");
    let mut found = Vec::new();
    for (at, _) in readme.match_indices("svc/") {
        let name: String = readme[at + 4..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || "-<>".contains(*c))
            .collect();
        let name = name.replace("<N>", sample);
        if !name.is_empty() && !services.contains(&name) {
            found.push(format!(
                "README.md: `svc/{name}` is not a Service the chart renders ({services:?}): the Service is named after \
                 the Application, service-demo-<env>"
            ));
        }
    }
    found
}
