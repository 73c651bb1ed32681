//! The GitHub writes `cluster up` makes that the shared client does not have
//! yet: an environment secret (sealed box) and a variable's update.
//! TEMPORARY: replaced by the `setup` branch's `github: write API` commit
//! (put_secret), which the shared client gets; until it lands these refuse.

use anyhow::{Result, bail};

use super::github::GitHub;

pub fn put_environment_secret(github: &GitHub, env: &str, name: &str, _value: &str) -> Result<()> {
    bail!(
        "writing secret {name} of environment {env} in {}: this build has no GitHub write API yet (branch setup's `github: write API`)",
        github.repository()
    )
}

pub fn update_variable(github: &GitHub, name: &str, _value: &str) -> Result<()> {
    bail!(
        "updating variable {name} in {}: this build has no GitHub write API yet (branch setup's `github: write API`)",
        github.repository()
    )
}
