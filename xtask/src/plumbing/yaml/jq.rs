//! A YAML document edited by a jq expression, run by jaq: a person's `cargo
//! xtask values set`, or an edit the full xtask writes in jq (a fork's
//! `publicKeys`, an ApplicationSet's list). The new document is written back
//! as every edit of `yaml` is (`rewrite`). Not in the cluster jobs' build.

use std::fmt;

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;

use super::{Edited, parse, rewrite};

/// Applies the jq expression `expr` to the YAML document `text`
/// (`cargo xtask values set`: a person's edit, written in jq).
pub fn edit(text: &str, expr: &str) -> Result<Edited> {
    let old = parse(text)?;
    let new = run_jq(expr, &old)?;
    rewrite(text, &old, &new)
}

/// Runs `expr` with jaq on `input`; it must produce exactly one value.
fn run_jq(expr: &str, input: &Value) -> Result<Value> {
    use jaq_core::load::{Arena, File, Loader};
    use jaq_core::{Compiler, Ctx, Vars, data, unwrap_valr};

    let defs = jaq_core::defs()
        .chain(jaq_std::defs())
        .chain(jaq_json::defs());
    let funs = jaq_core::funs()
        .chain(jaq_std::funs())
        .chain(jaq_json::funs());
    let arena = Arena::default();
    let modules = Loader::new(defs)
        .load(
            &arena,
            File {
                code: expr,
                path: (),
            },
        )
        .map_err(|errs| {
            anyhow::anyhow!("cannot parse the expression {expr:?}: {}", describe(&errs))
        })?;
    let filter = Compiler::default()
        .with_funs(funs)
        .compile(modules)
        .map_err(|errs| {
            anyhow::anyhow!(
                "cannot compile the expression {expr:?}: {}",
                describe(&errs)
            )
        })?;
    let json = serde_json::to_string(input)?;
    let input = jaq_json::read::parse_single(json.as_bytes())
        .map_err(|e| anyhow::anyhow!("cannot hand the document to jaq: {e}"))?;
    let ctx = Ctx::<data::JustLut<jaq_json::Val>>::new(&filter.lut, Vars::new([]));
    let mut outputs = filter.id.run((ctx, input)).map(unwrap_valr);
    let first = match outputs.next() {
        Some(Ok(value)) => value,
        Some(Err(err)) => bail!("the expression {expr:?} failed: {err}"),
        None => bail!("the expression {expr:?} produced no document"),
    };
    ensure!(
        outputs.next().is_none(),
        "the expression {expr:?} produced more than one document"
    );
    serde_json::from_str(&first.to_string()).context("jaq produced a value that is not JSON data")
}

fn describe<T: fmt::Debug>(errors: &T) -> String {
    let text = format!("{errors:?}");
    text.chars().take(300).collect()
}
