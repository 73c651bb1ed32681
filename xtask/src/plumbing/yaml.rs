//! YAML read and edited in one place: a stream split into documents
//! (`split_documents`), an object parsed strictly against its type
//! (`parse_strict`), and format-preserving edits of values files: the new document is computed
//! as data, and only the bytes of the scalars it changed are rewritten.
//!
//! 1. The file is parsed to JSON data and the new document computed: by a jq
//!    expression run by jaq (`edit`, a person's `cargo xtask values set`), or by
//!    `(path, value)` pairs (`set`, the pipeline's own edits: data, not code).
//! 2. The two documents are compared; only changed scalars are allowed. Adding
//!    or removing a key or list entry would need new lines, and re-emitting the
//!    file would lose comments and layout, so that is refused with a clear error.
//! 3. Each changed scalar is located in the source by a span-aware YAML parser
//!    (saphyr-parser) and rewritten in its original quoting style.
//! 4. The result is parsed again and must equal jaq's document exactly.
//!
//! Comments (even on the edited line), key order, blank lines, indentation,
//! CRLF line endings and the final newline are untouched because no other byte
//! is.

use std::fmt;

use anyhow::{Context, Result, bail, ensure};
use saphyr_parser::{Event, Parser, ScalarStyle};
use serde_json::Value;

/// One step into a document: a mapping key or a sequence index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Key(String),
    Index(usize),
}

/// A path like `.image.tag` or `.hosts[0]`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ValuePath(pub Vec<Segment>);

impl fmt::Display for ValuePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str(".");
        }
        for segment in &self.0 {
            match segment {
                Segment::Key(key) => write!(f, ".{key}")?,
                Segment::Index(i) => write!(f, "[{i}]")?,
            }
        }
        Ok(())
    }
}

/// A scalar the expression changed.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub path: ValuePath,
    pub old: Value,
    pub new: Value,
}

/// The outcome of an edit: the new text and what changed (empty: a no-op).
#[derive(Debug, Clone, PartialEq)]
pub struct Edited {
    pub text: String,
    pub changes: Vec<Change>,
}

/// Applies the jq expression `expr` to the YAML document `text`
/// (`cargo xtask values set`: a person's edit, written in jq).
pub fn edit(text: &str, expr: &str) -> Result<Edited> {
    let old = parse(text)?;
    let new = run_jq(expr, &old)?;
    rewrite(text, &old, &new)
}

/// One edit as data: set the scalar at `path` to `value`. The pipeline's own
/// edits are these, never code (Kargo's `yaml-update` step has the same shape).
#[derive(Debug, Clone, PartialEq)]
pub struct Edit {
    pub path: ValuePath,
    pub value: Value,
}

impl Edit {
    /// `Edit::set(&["image", "tag"], "v1.0.0")`.
    pub fn set(keys: &[&str], value: impl Into<Value>) -> Self {
        Self {
            path: ValuePath(keys.iter().map(|k| Segment::Key((*k).to_owned())).collect()),
            value: value.into(),
        }
    }
}

/// Applies `edits` to the YAML document `text`. Every path must already exist
/// (an in-place edit cannot add lines); the error names the missing one.
pub fn set(text: &str, edits: &[Edit]) -> Result<Edited> {
    let old = parse(text)?;
    let mut new = old.clone();
    for edit in edits {
        *lookup_mut(&mut new, &edit.path).with_context(|| {
            format!(
                "cannot edit in place: {} does not exist; add the key to the file first, then set it",
                edit.path
            )
        })? = edit.value.clone();
    }
    rewrite(text, &old, &new)
}

fn lookup_mut<'a>(mut value: &'a mut Value, path: &ValuePath) -> Option<&'a mut Value> {
    for segment in &path.0 {
        value = match segment {
            Segment::Key(key) => value.as_object_mut()?.get_mut(key)?,
            Segment::Index(i) => value.as_array_mut()?.get_mut(*i)?,
        };
    }
    Some(value)
}

/// Rewrites only the scalars that differ between `old` (the document `text`
/// holds) and `new`, then proves the result parses to `new`.
fn rewrite(text: &str, old: &Value, new: &Value) -> Result<Edited> {
    let mut changes = Vec::new();
    diff(&ValuePath::default(), old, new, &mut changes)?;
    if changes.is_empty() {
        return Ok(Edited {
            text: text.to_owned(),
            changes,
        });
    }
    let spans = scalar_spans(text)?;
    let mut replacements = Vec::new();
    for change in &changes {
        let span = spans
            .iter()
            .find(|s| s.path == change.path)
            .with_context(|| format!("cannot find {} in the YAML source", change.path))?;
        replacements.push((span.start, span.end, render(&change.new, span, text)?));
    }
    // Replace from the end so earlier offsets stay valid.
    replacements.sort_by_key(|r| std::cmp::Reverse(r.0));
    let mut out = text.to_owned();
    for (start, end, replacement) in replacements {
        out.replace_range(start..end, &replacement);
    }
    let reparsed =
        parse(&out).context("the edited file no longer parses (a bug: please report it)")?;
    ensure!(
        reparsed == *new,
        "the in-place edit did not produce the expected document (a bug: please report it); the file was not written"
    );
    Ok(Edited { text: out, changes })
}

/// Reads a YAML document as JSON data.
pub fn parse(text: &str) -> Result<Value> {
    let value: Value = yaml_serde::from_str(text).context("not valid YAML")?;
    Ok(value)
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

/// Collects changed scalars; refuses any change of shape.
fn diff(path: &ValuePath, old: &Value, new: &Value, changes: &mut Vec<Change>) -> Result<()> {
    let at = |segment: Segment| {
        let mut p = path.clone();
        p.0.push(segment);
        p
    };
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            if let Some(added) = b.keys().find(|k| !a.contains_key(*k)) {
                bail!(
                    "cannot edit in place: the expression adds {}, which would change the file's layout; \
                     add the key to the file first (e.g. `{added}: \"\"`), then set it",
                    at(Segment::Key(added.clone()))
                );
            }
            if let Some(removed) = a.keys().find(|k| !b.contains_key(*k)) {
                bail!(
                    "cannot edit in place: the expression removes {}; edit the file by hand to remove keys",
                    at(Segment::Key(removed.clone()))
                );
            }
            for (key, value) in a {
                diff(&at(Segment::Key(key.clone())), value, &b[key], changes)?;
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            ensure!(
                a.len() == b.len(),
                "cannot edit in place: the expression changes the length of the list at {path}"
            );
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                diff(&at(Segment::Index(i)), x, y, changes)?;
            }
        }
        (Value::Object(_) | Value::Array(_), _) | (_, Value::Object(_) | Value::Array(_)) => {
            if old != new {
                bail!(
                    "cannot edit in place: the expression replaces a mapping or list at {path} with a different shape"
                );
            }
        }
        (a, b) if a == b => {}
        (a, b) => changes.push(Change {
            path: path.clone(),
            old: a.clone(),
            new: b.clone(),
        }),
    }
    Ok(())
}

/// Where a scalar value sits in the source, in bytes.
#[derive(Debug)]
struct ScalarSpan {
    path: ValuePath,
    start: usize,
    end: usize,
    style: ScalarStyle,
}

/// Parser state for one open collection.
enum Frame {
    /// In a mapping: the key whose value comes next, if one was just read.
    Mapping {
        pending_key: Option<String>,
    },
    Sequence {
        next_index: usize,
    },
}

/// Walks the parser's events, recording the path and byte span of every
/// scalar value (not keys).
// long: one loop over the parser's events; its path stack is the state every arm shares.
fn scalar_spans(text: &str) -> Result<Vec<ScalarSpan>> {
    // saphyr's markers count characters; keep a char→byte table for slicing.
    let byte_at: Vec<usize> = text
        .char_indices()
        .map(|(b, _)| b)
        .chain([text.len()])
        .collect();
    let mut stack: Vec<Frame> = Vec::new();
    let mut path: Vec<Segment> = Vec::new();
    let mut spans = Vec::new();

    // Decides what a node at this point is: a key (None) or a value at a path.
    fn enter(stack: &mut [Frame], path: &mut Vec<Segment>) -> Option<()> {
        match stack.last_mut() {
            None => Some(()),
            Some(Frame::Mapping { pending_key }) => {
                pending_key.take().map(|key| path.push(Segment::Key(key)))
            }
            Some(Frame::Sequence { next_index }) => {
                path.push(Segment::Index(*next_index));
                *next_index += 1;
                Some(())
            }
        }
    }
    fn leave(stack: &[Frame], path: &mut Vec<Segment>) {
        if !stack.is_empty() {
            path.pop();
        }
    }

    for event in Parser::new_from_str(text) {
        let (event, span) = event.map_err(|e| anyhow::anyhow!("not valid YAML: {e}"))?;
        match event {
            Event::Scalar(value, style, _, _) => match enter(&mut stack, &mut path) {
                None => {
                    // A mapping key: the next node is its value.
                    if let Some(Frame::Mapping { pending_key }) = stack.last_mut() {
                        *pending_key = Some(value.to_string());
                    }
                }
                Some(()) => {
                    let mut start = byte_at[span.start.index()];
                    // saphyr reports an empty value as a plain "~" that is not in the text.
                    let empty = style == ScalarStyle::Plain
                        && (value.is_empty() || (value == "~" && !text[start..].starts_with('~')));
                    if empty {
                        start = empty_value_position(text, start);
                    }
                    let end = if empty {
                        start
                    } else {
                        scalar_end(text, start, style, &value)?
                    };
                    spans.push(ScalarSpan {
                        path: ValuePath(path.clone()),
                        start,
                        end,
                        style,
                    });
                    leave(&stack, &mut path);
                }
            },
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                if enter(&mut stack, &mut path).is_none() {
                    bail!("complex mapping keys are not supported");
                }
                stack.push(match event {
                    Event::MappingStart(..) => Frame::Mapping { pending_key: None },
                    _ => Frame::Sequence { next_index: 0 },
                });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                stack.pop();
                leave(&stack, &mut path);
            }
            // An alias is a value too (its target was recorded where it was defined).
            Event::Alias(_) if enter(&mut stack, &mut path).is_some() => leave(&stack, &mut path),
            _ => {}
        }
    }
    Ok(spans)
}

/// Where an empty plain value sits: just after its key's `:` (or its `-`).
fn empty_value_position(text: &str, from: usize) -> usize {
    // saphyr puts the empty scalar on the colon itself.
    if text[from..].starts_with(':') {
        return from + 1;
    }
    let before = text[..from].trim_end();
    if before.ends_with(':') || before.ends_with('-') {
        before.len()
    } else {
        from
    }
}

/// The byte where a scalar's source text ends. Quoted scalars are scanned for
/// their closing quote (the parser's end marker can run past it).
fn scalar_end(text: &str, start: usize, style: ScalarStyle, value: &str) -> Result<usize> {
    let bytes = text.as_bytes();
    match style {
        ScalarStyle::DoubleQuoted => {
            let mut i = start + 1;
            while i < bytes.len() {
                match bytes[i] {
                    b'\\' => i += 2,
                    b'"' => return Ok(i + 1),
                    _ => i += 1,
                }
            }
            bail!("unterminated double-quoted scalar")
        }
        ScalarStyle::SingleQuoted => {
            let mut i = start + 1;
            while i < bytes.len() {
                if bytes[i] == b'\'' {
                    if bytes.get(i + 1) == Some(&b'\'') {
                        i += 2;
                        continue;
                    }
                    return Ok(i + 1);
                }
                i += 1;
            }
            bail!("unterminated single-quoted scalar")
        }
        ScalarStyle::Plain => {
            // A one-line plain scalar is its own source text.
            if text[start..].starts_with(value) {
                Ok(start + value.len())
            } else {
                bail!("multi-line plain scalars cannot be edited in place")
            }
        }
        _ => bail!("block scalars (| or >) cannot be edited in place"),
    }
}

/// The new scalar's source text, in the old one's style where possible.
fn render(new: &Value, span: &ScalarSpan, text: &str) -> Result<String> {
    let needs_space = span.start == span.end && text[..span.start].ends_with(':');
    let rendered = match new {
        Value::String(s) => match span.style {
            ScalarStyle::SingleQuoted if !s.chars().any(char::is_control) => {
                format!("'{}'", s.replace('\'', "''"))
            }
            ScalarStyle::Plain if is_plain_safe(s) => s.clone(),
            _ => serde_json::to_string(s)?,
        },
        Value::Number(_) | Value::Bool(_) => new.to_string(),
        Value::Null => "null".to_owned(),
        Value::Object(_) | Value::Array(_) => {
            bail!("cannot write a mapping or list in place at {}", span.path)
        }
    };
    Ok(if needs_space {
        format!(" {rendered}")
    } else {
        rendered
    })
}

/// Whether `s` reads back as the same string when written unquoted.
fn is_plain_safe(s: &str) -> bool {
    !s.is_empty()
        && s.trim() == s
        && !s.contains(": ")
        && !s.contains(" #")
        && !s.starts_with([
            '-', '?', ':', ',', '[', ']', '{', '}', '#', '&', '*', '!', '|', '>', '\'', '"', '%',
            '@', '`',
        ])
        && !s.chars().any(|c| c.is_control())
        && parse(s).ok() == Some(Value::String(s.to_owned()))
}

/// Parses a Kubernetes object strictly: a field k8s-openapi does not know
/// (a typo Kubernetes would drop or reject) is an error naming its path.
pub fn parse_strict<T: serde::de::DeserializeOwned>(doc: &Value, what: &str) -> Result<T> {
    let mut unknown = Vec::new();
    let parsed: T = serde_ignored::deserialize(doc, |path| {
        // serde_ignored marks each Option it went through with a `?` segment.
        unknown.push(path.to_string().replace(".?", ""))
    })
    .with_context(|| format!("{what} does not parse as its Kubernetes type"))?;
    if !unknown.is_empty() {
        anyhow::bail!(
            "{what} has fields its schema does not have: {}",
            unknown.join(", ")
        );
    }
    Ok(parsed)
}

/// Documents of a multi-document YAML stream, skipping empty ones.
pub fn split_documents(text: &str) -> Result<Vec<Value>> {
    let mut docs = Vec::new();
    for document in yaml_serde::Deserializer::from_str(text) {
        let value: Value = serde::Deserialize::deserialize(document)?;
        if !value.is_null() {
            docs.push(value);
        }
    }
    Ok(docs)
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALUES: &str = "\
# Values for preprod: written by hand, edited by the pipeline.
replicaCount: 2

image:
  repository: ghcr.io/example/service-demo   # where images live
  tag: \"main-aaaaaaa\" # set by `cargo xtask promote`
  digest: ''
  pullPolicy: IfNotPresent

env:
  ENV_NAME: preprod
";

    fn jq(text: &str, expr: &str) -> String {
        edit(text, expr).unwrap().text
    }

    /// The lines that differ between two texts.
    fn changed_lines(a: &str, b: &str) -> Vec<(String, String)> {
        assert_eq!(a.lines().count(), b.lines().count(), "line count changed");
        a.lines()
            .zip(b.lines())
            .filter(|(x, y)| x != y)
            .map(|(x, y)| (x.to_owned(), y.to_owned()))
            .collect()
    }

    #[test]
    fn only_the_changed_scalar_bytes_move() {
        let out = jq(
            VALUES,
            ".image.tag = \"main-bbbbbbb\" | .image.digest = \"sha256:0123\"",
        );
        assert_eq!(
            changed_lines(VALUES, &out),
            [
                (
                    "  tag: \"main-aaaaaaa\" # set by `cargo xtask promote`".to_owned(),
                    "  tag: \"main-bbbbbbb\" # set by `cargo xtask promote`".to_owned()
                ),
                (
                    "  digest: ''".to_owned(),
                    "  digest: 'sha256:0123'".to_owned()
                ),
            ]
        );
    }

    #[test]
    fn plain_scalars_stay_plain_unless_they_must_be_quoted() {
        let out = jq(VALUES, ".env.ENV_NAME = \"prod\"");
        assert!(out.contains("  ENV_NAME: prod\n"), "{out}");
        // "true" unquoted would read back as a boolean; it gets quoted.
        let out = jq(VALUES, ".env.ENV_NAME = \"true\"");
        assert!(out.contains("  ENV_NAME: \"true\"\n"), "{out}");
        let out = jq(VALUES, ".replicaCount = 3");
        assert!(out.contains("replicaCount: 3\n"), "{out}");
    }

    #[test]
    fn crlf_and_missing_final_newline_are_kept() {
        let crlf = VALUES.replace('\n', "\r\n");
        let crlf = crlf.strip_suffix("\r\n").unwrap();
        let out = jq(crlf, ".image.tag = \"v1.2.3\"");
        assert_eq!(out.matches("\r\n").count(), crlf.matches("\r\n").count());
        assert!(!out.ends_with('\n'));
        assert!(out.contains("  tag: \"v1.2.3\" # set by"), "{out}");
    }

    #[test]
    fn setting_the_current_value_is_a_no_op() {
        let edited = edit(VALUES, ".image.tag = \"main-aaaaaaa\"").unwrap();
        assert!(edited.changes.is_empty());
        assert_eq!(edited.text, VALUES);
    }

    #[test]
    fn changes_report_paths_and_values() {
        let edited = edit(VALUES, ".image.tag = \"x\"").unwrap();
        assert_eq!(edited.changes.len(), 1);
        assert_eq!(edited.changes[0].path.to_string(), ".image.tag");
        assert_eq!(edited.changes[0].old, Value::from("main-aaaaaaa"));
    }

    #[test]
    fn lists_flow_collections_and_unicode_before_the_edit() {
        let text = "hosts: [a.example, \"b.example\"]\nnote: «héllo» # ünïcode\nlist:\n  - one\n  - two # second\n";
        let out = jq(text, ".list[1] = \"deux\" | .hosts[1] = \"c.example\"");
        assert_eq!(
            out,
            "hosts: [a.example, \"c.example\"]\nnote: «héllo» # ünïcode\nlist:\n  - one\n  - deux # second\n"
        );
    }

    #[test]
    fn escapes_in_double_quotes_are_handled() {
        let text = "a: \"say \\\"hi\\\"\" # c\nb: 'it''s' # d\n";
        let out = jq(text, ".a = \"q\\\"x\" | .b = \"it's not\"");
        assert_eq!(out, "a: \"q\\\"x\" # c\nb: 'it''s not' # d\n");
    }

    #[test]
    fn empty_plain_value_gets_a_space() {
        let out = jq(
            "image:\n  digest:\n  tag: x\n",
            ".image.digest = \"sha256:ab\"",
        );
        assert_eq!(out, "image:\n  digest: sha256:ab\n  tag: x\n");
    }

    #[test]
    fn adding_a_key_is_refused_with_the_fix() {
        let err = edit(VALUES, ".image.sha = \"x\"").unwrap_err().to_string();
        assert!(
            err.contains(".image.sha") && err.contains("add the key to the file first"),
            "{err}"
        );
        let err = edit(VALUES, "del(.image.pullPolicy)")
            .unwrap_err()
            .to_string();
        assert!(err.contains("removes .image.pullPolicy"), "{err}");
        let err = edit(VALUES, ".image = 3").unwrap_err().to_string();
        assert!(err.contains("different shape"), "{err}");
    }

    #[test]
    fn bad_expressions_are_reported() {
        assert!(
            edit(VALUES, ".image.tag = ")
                .unwrap_err()
                .to_string()
                .contains("cannot parse")
        );
        assert!(
            edit(VALUES, ".[] , .")
                .unwrap_err()
                .to_string()
                .contains("more than one")
        );
        assert!(
            edit(VALUES, "error(\"boom\")")
                .unwrap_err()
                .to_string()
                .contains("failed")
        );
        assert!(edit("a: [", ".a = 1").is_err());
    }

    #[test]
    fn plain_safety() {
        for ok in ["main-abc1234", "v1.2.3", "sha256:abc", "ghcr.io/x/y"] {
            assert!(is_plain_safe(ok), "{ok}");
        }
        for bad in [
            "", " x", "true", "null", "1.0", "a: b", "- x", "#x", "x #y", "~",
        ] {
            assert!(!is_plain_safe(bad), "{bad}");
        }
    }

    #[test]
    fn edits_as_data_write_the_same_bytes_as_the_jq_expression() {
        let by_data = set(
            VALUES,
            &[
                Edit::set(&["image", "tag"], "main-bbbbbbb"),
                Edit::set(&["image", "digest"], "sha256:0123"),
            ],
        )
        .unwrap();
        let by_jq = jq(
            VALUES,
            ".image.tag = \"main-bbbbbbb\" | .image.digest = \"sha256:0123\"",
        );
        assert_eq!(by_data.text, by_jq);
        let mut paths: Vec<String> = by_data.changes.iter().map(|c| c.path.to_string()).collect();
        paths.sort();
        assert_eq!(paths, [".image.digest", ".image.tag"]);
    }

    #[test]
    fn an_edit_of_a_missing_key_names_it_and_changes_nothing() {
        let error = set(VALUES, &[Edit::set(&["image", "tagg"], "x")]).unwrap_err();
        assert!(
            error.to_string().contains(".image.tagg does not exist"),
            "{error:#}"
        );
        let error = set(VALUES, &[Edit::set(&["replicaCount", "x"], "y")]).unwrap_err();
        assert!(error.to_string().contains(".replicaCount.x"), "{error:#}");
    }
}
