//! Which Applications each AppProject role's token reaches, as Argo CD
//! decides it: a policy's object `<project>/<glob>` matched with `*` (any
//! text) and `?` (one character), and a matching `deny` winning over every
//! `allow`. The pipeline's tokens are for the services' Applications, each
//! role in its environments: `preview` the previews, `preprod` preprod,
//! `release` dev and prod; no role reaches an Application file (the
//! databases' `service-demo-database-<env>`, whose names end as the services'
//! do, so `*-prod` alone would reach them).
//!
//! Upstream: Argo CD v2.13.2's RBAC for project roles (casbin with its glob
//! match: `*` any text, `/` included; a deny wins), held to the roles of its
//! declarative-setup docs by `the_project_roles_of_argo_cds_docs_reach_what_they_say`.

use serde_json::Value;

use crate::checks::{Finding, Rule, rule};
use crate::domain::application_sets::Generated;
use crate::domain::promotion::Env;

/// The rules of this module.
pub const RULES: &[Rule] = &[rule(
    "argocd.project-roles",
    "argocd",
    "each AppProject role's token reaches its environments' Applications only (preview the previews, preprod preprod, \
     release dev and prod) and never an Application file such as a database: a leaked pipeline token stays in its lane",
)];

/// Each pipeline role: the environments whose Applications it may reach, and
/// what its job does on every one of them. A role not listed may reach the
/// ApplicationSets' Applications of any environment.
const ROLE_ENVIRONMENTS: [(&str, &[&str], &[&str]); 3] = [
    ("preview", &["pr-<N>"], &["get"]),
    ("preprod", &["preprod"], &["get"]),
    ("release", &["dev", "prod"], &["get", "sync"]),
];

/// Every Application (made by an ApplicationSet, or an Application file of
/// `docs`) a role of an AppProject of `docs` reaches beyond its remit, or
/// does not reach within it.
pub fn problems(docs: &[(String, Value)], generated: &[Generated]) -> Vec<Finding> {
    let files: Vec<(&str, &str)> = docs
        .iter()
        .filter(|(_, d)| d["kind"] == "Application")
        .map(|(_, d)| {
            let name = d["metadata"]["name"].as_str().unwrap_or_default();
            (name, d["spec"]["project"].as_str().unwrap_or_default())
        })
        .collect();
    let mut found = Vec::new();
    for (file, project) in docs.iter().filter(|(_, d)| d["kind"] == "AppProject") {
        let project_name = project["metadata"]["name"].as_str().unwrap_or_default();
        let own_files: Vec<&str> = files
            .iter()
            .filter(|(_, p)| *p == project_name)
            .map(|(name, _)| *name)
            .collect();
        for role in project["spec"]["roles"].as_array().into_iter().flatten() {
            let problems = role_problems(project_name, role, &own_files, generated);
            let at_file = problems.into_iter().map(|p| format!("{file}: {p}"));
            found.extend(at_file.map(|p| Finding::new("argocd.project-roles", p)));
        }
    }
    found
}

/// One role's over- and under-reach over the project's Application files and
/// the ApplicationSets' Applications.
fn role_problems(
    project: &str,
    role: &Value,
    files: &[&str],
    generated: &[Generated],
) -> Vec<String> {
    let name = role["name"].as_str().unwrap_or_default();
    let mut found = Vec::new();
    let mut policies = Vec::new();
    for line in role["policies"].as_array().into_iter().flatten() {
        match Policy::parse(line.as_str().unwrap_or_default(), project, name) {
            Ok(policy) => policies.push(policy),
            Err(problem) => found.push(problem),
        }
    }
    let reach = |app: &str, action: &str| reaches(&policies, project, app, action);
    let refused = |app: &str, action: &str, why: &str| {
        format!(
            "role {name} may {action} Application {app}, {why}: narrow its globs or add a deny line \
             (`p, proj:{project}:{name}, applications, {action}, {project}/{app}, deny`)"
        )
    };
    for action in ["get", "sync"] {
        for app in files.iter().filter(|app| reach(app, action)) {
            found.push(refused(app, action, "which no pipeline token needs"));
        }
        for app in generated {
            let (allowed, needed) = remit(name, app.env, action);
            let reached = reach(app.name(), action);
            if reached && !allowed {
                found.push(refused(app.name(), action, "outside its environments"));
            }
            if needed && !reached {
                found.push(format!(
                    "role {name} may not {action} Application {}, which its job needs (its globs miss it, \
                     or a deny matches it)",
                    app.name()
                ));
            }
        }
    }
    found
}

/// Whether `role` may do `action` on an Application of `env`, and whether its job needs to.
fn remit(role: &str, env: Option<Env>, action: &str) -> (bool, bool) {
    let Some((_, envs, actions)) = ROLE_ENVIRONMENTS.iter().find(|(name, ..)| *name == role) else {
        return (true, false);
    };
    let ours = match env {
        Some(Env::Preview(_)) => envs.contains(&"pr-<N>"),
        Some(env) => envs.contains(&env.to_string().as_str()),
        None => false,
    };
    (ours, ours && actions.contains(&action))
}

/// `p, proj:<project>:<role>, applications, <action>, <project>/<glob>, <effect>`.
struct Policy {
    action: String,
    object: String,
    allow: bool,
}

impl Policy {
    /// A line of `role` in `project`, in the one shape this check reads in
    /// full. Argo CD globs the resource, the action and the object alike, so
    /// any other line (another resource such as `exec` or `*`, an action that
    /// is a glob or that the role's job does not do, another role's subject,
    /// a `g` line) is refused rather than skipped. A deny may name `*`: it
    /// only takes away.
    fn parse(line: &str, project: &str, role: &str) -> Result<Self, String> {
        let subject = format!("proj:{project}:{role}");
        let actions = ROLE_ENVIRONMENTS
            .iter()
            .find(|(name, ..)| *name == role)
            .map_or(&["get", "sync"][..], |(_, _, actions)| actions);
        let refused = |why: String| {
            format!(
                "role {role}: policy `{line}` {why}; a pipeline role's lines are `p, {subject}, applications, \
                 <{}>, {project}/<Application glob>, allow|deny`",
                actions.join("|")
            )
        };
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let ["p", who, "applications", action, object, effect] = fields.as_slice() else {
            return Err(refused("is not a policy on applications".into()));
        };
        let allow = match *effect {
            "allow" => true,
            "deny" => false,
            other => return Err(refused(format!("has the effect {other:?}"))),
        };
        if *who != subject {
            return Err(refused(format!("is for {who}")));
        }
        let takes_all_away = !allow && *action == "*";
        if !actions.contains(action) && !takes_all_away {
            return Err(refused(format!(
                "allows {action:?}, which its job does not do"
            )));
        }
        if !object.starts_with(&format!("{project}/")) {
            return Err(refused(format!(
                "names {object}, outside project {project}"
            )));
        }
        Ok(Self {
            action: (*action).to_owned(),
            object: (*object).to_owned(),
            allow,
        })
    }

    fn matches(&self, project: &str, app: &str, action: &str) -> bool {
        (self.action == action || self.action == "*")
            && glob_matches(&self.object, &format!("{project}/{app}"))
    }
}

/// Whether a role with `policies` may do `action` on `app`: an allow and no deny.
fn reaches(policies: &[Policy], project: &str, app: &str, action: &str) -> bool {
    let matching = || policies.iter().filter(|p| p.matches(project, app, action));
    matching().any(|p| p.allow) && !matching().any(|p| !p.allow)
}

/// Argo CD's glob on a whole name: `*` any text (`/` too), `?` one character.
fn glob_matches(pattern: &str, text: &str) -> bool {
    let (pattern, text): (Vec<char>, Vec<char>) =
        (pattern.chars().collect(), text.chars().collect());
    // The pattern's position after which `*` may take one more character, and that text position.
    let (mut p, mut t, mut star) = (0, 0, None);
    while t < text.len() {
        match pattern.get(p) {
            Some('*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == '?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((star_p, star_t)) => {
                    star = Some((star_p, star_t + 1));
                    (p, t) = (star_p + 1, star_t + 1);
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Argo CD v2.13.2's docs, operator-manual/declarative-setup.md (Projects):
    /// `read-only` gets every Application of my-project, `ci-role` syncs
    /// guestbook-dev only.
    #[test]
    fn the_project_roles_of_argo_cds_docs_reach_what_they_say() {
        let read_only = Policy::parse(
            "p, proj:my-project:read-only, applications, get, my-project/*, allow",
            "my-project",
            "read-only",
        )
        .unwrap();
        let ci = Policy::parse(
            "p, proj:my-project:ci-role, applications, sync, my-project/guestbook-dev, allow",
            "my-project",
            "ci-role",
        )
        .unwrap();
        let (read_only, ci) = ([read_only], [ci]);
        for app in ["guestbook-dev", "guestbook-prod"] {
            assert!(reaches(&read_only, "my-project", app, "get"), "{app}");
            assert!(!reaches(&read_only, "my-project", app, "sync"), "{app}");
            assert!(!reaches(&read_only, "other-project", app, "get"), "{app}");
        }
        assert!(reaches(&ci, "my-project", "guestbook-dev", "sync"));
        assert!(!reaches(&ci, "my-project", "guestbook-prod", "sync"));
        assert!(!reaches(&ci, "my-project", "guestbook-dev", "get"));
    }

    #[test]
    fn globs_match_whole_names_as_argo_cd_does() {
        for (pattern, text, expected) in [
            (
                "service-demo/*-prod",
                "service-demo/service-demo-prod",
                true,
            ),
            (
                "service-demo/*-prod",
                "service-demo/service-demo-database-prod",
                true,
            ),
            (
                "service-demo/*-prod",
                "service-demo/service-demo-prod-x",
                false,
            ),
            ("service-demo/*-pr-*", "service-demo/orders-api-pr-7", true),
            (
                "service-demo/*-pr-*",
                "service-demo/service-demo-preprod",
                false,
            ),
            (
                "service-demo/*-database-*",
                "service-demo/service-demo-database-prod",
                true,
            ),
            ("service-demo/*", "service-demo/a/b", true),
            ("service-demo/pr-?", "service-demo/pr-7", true),
            ("service-demo/pr-?", "service-demo/pr-17", false),
            ("other/*", "service-demo/x", false),
        ] {
            assert_eq!(glob_matches(pattern, text), expected, "{pattern} on {text}");
        }
    }

    /// Argo CD globs every field of a line, so a line the check cannot read
    /// in full would be a grant it never saw: each of these is refused.
    #[test]
    fn a_line_outside_the_one_shape_is_refused_not_skipped() {
        for (role, line, why) in [
            (
                "preview",
                "p, proj:service-demo:preview, exec, create, service-demo/*, allow",
                "is not a policy on applications",
            ),
            (
                "preview",
                "p, proj:service-demo:preview, *, *, service-demo/*, allow",
                "is not a policy on applications",
            ),
            (
                "release",
                "p, proj:service-demo:release, applications, delete, service-demo/*-prod, allow",
                "allows \"delete\"",
            ),
            (
                "release",
                "p, proj:service-demo:release, applications, s*, service-demo/*-prod, allow",
                "allows \"s*\"",
            ),
            (
                "preprod",
                "p, proj:service-demo:preprod, applications, sync, service-demo/*-preprod, allow",
                "allows \"sync\"",
            ),
            (
                "preprod",
                "p, proj:service-demo:preprod, applications, *, service-demo/*-preprod, allow",
                "allows \"*\"",
            ),
            (
                "preview",
                "p, proj:service-demo:release, applications, sync, service-demo/*-prod, allow",
                "is for proj:service-demo:release",
            ),
            (
                "preview",
                "g, some-group, proj:service-demo:release",
                "is not a policy on applications",
            ),
            (
                "preview",
                "p, proj:service-demo:preview, applications, get, other/*, allow",
                "outside project service-demo",
            ),
            (
                "preview",
                "p, proj:service-demo:preview, applications, get, service-demo/*-pr-*, Allow",
                "has the effect",
            ),
        ] {
            let error = Policy::parse(line, "service-demo", role)
                .err()
                .unwrap_or_else(|| panic!("accepted {line}"));
            assert!(error.contains(why), "{line}: {error}");
        }
        // A deny may take away everything.
        assert!(
            Policy::parse(
                "p, proj:service-demo:preprod, applications, *, service-demo/x, deny",
                "service-demo",
                "preprod"
            )
            .is_ok()
        );
    }

    #[test]
    fn a_deny_wins_over_an_allow() {
        let policies: Vec<Policy> = [
            "p, proj:service-demo:release, applications, sync, service-demo/*-prod, allow",
            "p, proj:service-demo:release, applications, *, service-demo/*-database-*, deny",
        ]
        .into_iter()
        .map(|line| Policy::parse(line, "service-demo", "release").unwrap())
        .collect();
        assert!(reaches(
            &policies,
            "service-demo",
            "orders-api-prod",
            "sync"
        ));
        assert!(!reaches(
            &policies,
            "service-demo",
            "orders-api-prod",
            "get"
        ));
        assert!(!reaches(
            &policies,
            "service-demo",
            "service-demo-database-prod",
            "sync"
        ));
    }
}
