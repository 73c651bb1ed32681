//! YAML read and edited in one place: a stream split into documents
//! (`split_documents`), an object parsed strictly against its type
//! (`parse_strict`), and format-preserving edits: the new document is computed
//! as data, and only the bytes of the scalars it changed (and the entries it
//! appended) are written. Every pipeline edit of a YAML file goes through here;
//! no other module splices YAML lines.
//!
//! 1. The file is parsed to JSON data and the new document computed: by a jq
//!    expression run by jaq (`jq::edit`: a person's `cargo xtask values set`, or a
//!    pipeline edit written in jq), by `(path, value)` pairs (`set`, the
//!    pipeline's own edits: data, not code), or by a function of every string
//!    value (`map_strings`: a URL that moved, never a key or a comment).
//! 2. The two documents are compared. Changed scalars are allowed, and entries
//!    appended to an existing block list. Adding or removing a key, removing a
//!    list entry, or appending to a flow list (`[a, b]`) would need a layout
//!    this module does not invent, so that is refused with a clear error.
//! 3. Each changed scalar is located in the source by a span-aware YAML parser
//!    (saphyr-parser) and rewritten in its original style: plain, quoted, or a
//!    block scalar (`|`, `>`, with its chomping indicator made to match the new
//!    value) at its own indentation. An appended entry is written as block YAML
//!    after the list's last entry, at its entries' indentation, with the last
//!    entry's key order. A value written once (`&anchor`) and used elsewhere
//!    (`*alias`) is rewritten where it is written.
//! 4. The result is parsed again and must equal the computed document exactly.
//!
//! Comments (even on the edited line), key order, blank lines, indentation,
//! CRLF line endings and the final newline are untouched because no other byte
//! is.

use std::collections::HashMap;
use std::fmt;

use anyhow::{Context, Result, bail, ensure};
use saphyr_parser::{Event, Parser, ScalarStyle};
use serde_json::Value;

// Edits written in jq (`values set`, the fork's and new-service's edits), `jq::edit`: the full
// xtask only (Cargo.toml's feature `full`), so the cluster jobs' build has no jaq.
#[cfg(feature = "full")]
pub mod jq;

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

impl ValuePath {
    fn child(&self, segment: Segment) -> Self {
        let mut path = self.clone();
        path.0.push(segment);
        path
    }

    fn starts_with(&self, prefix: &ValuePath) -> bool {
        self.0.starts_with(&prefix.0)
    }
}

/// A value the edit changed: a scalar (`old` its value before) or an entry
/// appended to a list (`old` is `None`, `path` the new entry's).
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub path: ValuePath,
    pub old: Option<Value>,
    pub new: Value,
}

/// The outcome of an edit: the new text and what changed (empty: a no-op).
#[derive(Debug, Clone, PartialEq)]
pub struct Edited {
    pub text: String,
    pub changes: Vec<Change>,
}

/// One edit as data: set the value at `path` to `value`. The pipeline's own
/// edits are these, never code (Kargo's `yaml-update` step has the same shape).
/// A list set to itself plus entries appends them.
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
/// (an in-place edit cannot add keys); the error names the missing one.
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

/// Replaces every string value of the YAML document `text` by `map` of it:
/// values only, never a mapping key or a comment.
pub fn map_strings(text: &str, mut map: impl FnMut(&str) -> String) -> Result<Edited> {
    fn walk(value: &mut Value, map: &mut dyn FnMut(&str) -> String) {
        match value {
            Value::String(s) => *s = map(s),
            Value::Array(items) => items.iter_mut().for_each(|v| walk(v, map)),
            Value::Object(entries) => entries.values_mut().for_each(|v| walk(v, map)),
            _ => {}
        }
    }
    let old = parse(text)?;
    let mut new = old.clone();
    walk(&mut new, &mut map);
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

/// One splice of the source: `start..end` becomes `text`. `depth` orders two
/// insertions at one place (the outer list's entries after the inner's).
struct Splice {
    start: usize,
    end: usize,
    text: String,
    depth: usize,
}

/// Rewrites only the scalars that differ between `old` (the document `text`
/// holds) and `new`, appends the new list entries, then proves the result
/// parses to `new`.
fn rewrite(text: &str, old: &Value, new: &Value) -> Result<Edited> {
    let mut changes = Vec::new();
    diff(&ValuePath::default(), old, new, &mut changes)?;
    if changes.is_empty() {
        return Ok(Edited {
            text: text.to_owned(),
            changes,
        });
    }
    let source = Source::read(text)?;
    let mut splices = scalar_splices(text, &source, &changes)?;
    splices.extend(append_splices(text, &source, &changes)?);
    // Splice from the end so earlier offsets stay valid.
    splices.sort_by_key(|s| (std::cmp::Reverse(s.start), s.depth));
    let mut out = text.to_owned();
    let mut limit = text.len();
    for splice in splices {
        ensure!(
            splice.end <= limit,
            "cannot make these changes in one in-place edit (two of them touch the same lines); make them one at a time"
        );
        limit = splice.start;
        out.replace_range(splice.start..splice.end, &splice.text);
    }
    if std::env::var("YAML_DEBUG").is_ok() {
        eprintln!("DEBUG-OUT\n{out}\nDEBUG-END");
    }
    let reparsed =
        parse(&out).context("the edited file no longer parses (a bug: please report it)")?;
    if reparsed != *new {
        if !source.aliases.is_empty() {
            bail!(
                "cannot edit in place: a value written once (`&anchor`) and used elsewhere (`*alias`) must be \
                 changed at every place it is used, or written out separately first; the file was not written"
            );
        }
        bail!(
            "the in-place edit did not produce the expected document (a bug: please report it); the file was not written"
        );
    }
    Ok(Edited { text: out, changes })
}

/// The splices of the changed scalars, each where its value is written (an
/// alias's change is its anchor's, and must agree with it).
fn scalar_splices(text: &str, source: &Source, changes: &[Change]) -> Result<Vec<Splice>> {
    let mut done: Vec<(ValuePath, &Value)> = Vec::new();
    let mut splices = Vec::new();
    for change in changes.iter().filter(|c| c.old.is_some()) {
        let at = source.resolve(&change.path);
        if let Some((_, value)) = done.iter().find(|(path, _)| *path == at) {
            ensure!(
                *value == &change.new,
                "cannot edit in place: {} is an alias of {at}, and the edit sets them to different values",
                change.path
            );
            continue;
        }
        let span = source
            .scalars
            .iter()
            .find(|s| s.path == at)
            .with_context(|| format!("cannot find {} in the YAML source", change.path))?;
        let (replacement, end) = render(&change.new, span, text)?;
        splices.push(Splice {
            start: span.start,
            end,
            text: replacement,
            depth: 0,
        });
        done.push((at, &change.new));
    }
    Ok(splices)
}

/// The splices of the appended entries: one per list, after its last entry.
fn append_splices(text: &str, source: &Source, changes: &[Change]) -> Result<Vec<Splice>> {
    // (the list as written, the list as the edit names it, its new entries)
    let mut lists: Vec<(ValuePath, ValuePath, Vec<&Value>)> = Vec::new();
    for change in changes.iter().filter(|c| c.old.is_none()) {
        let list = ValuePath(change.path.0[..change.path.0.len() - 1].to_vec());
        match lists.iter_mut().find(|(_, named, _)| *named == list) {
            Some((_, _, entries)) => entries.push(&change.new),
            None => lists.push((source.resolve(&list), list, vec![&change.new])),
        }
    }
    let mut splices: Vec<Splice> = Vec::new();
    let mut done: Vec<(&ValuePath, &ValuePath, &Vec<&Value>)> = Vec::new();
    for (path, named, entries) in &lists {
        // A list used through an alias grows wherever it is used: append it once, where it is written.
        if let Some((_, first, appended)) = done.iter().find(|(at, _, _)| *at == path) {
            ensure!(
                *appended == entries,
                "cannot edit in place: {named} is an alias of {first}, and the edit appends different entries to them"
            );
            continue;
        }
        let sequence = source
            .sequences
            .iter()
            .find(|s| s.path == *path)
            .with_context(|| format!("cannot find the list {named} in the YAML source"))?;
        let (at, entry_text) = sequence.append(text, &source.scalars, entries)?;
        splices.push(Splice {
            start: at,
            end: at,
            text: entry_text,
            depth: path.0.len(),
        });
        done.push((path, named, entries));
    }
    Ok(splices)
}

/// Reads a YAML document as JSON data.
pub fn parse(text: &str) -> Result<Value> {
    let value: Value = yaml_serde::from_str(text).context("not valid YAML")?;
    Ok(value)
}

/// Collects changed scalars and appended list entries; refuses any other change of shape.
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
                a.len() <= b.len(),
                "cannot edit in place: the expression removes entries of the list at {path}; edit the file by hand to remove them"
            );
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                diff(&at(Segment::Index(i)), x, y, changes)?;
            }
            for (i, y) in b.iter().enumerate().skip(a.len()) {
                changes.push(Change {
                    path: at(Segment::Index(i)),
                    old: None,
                    new: y.clone(),
                });
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
            old: Some(a.clone()),
            new: b.clone(),
        }),
    }
    Ok(())
}

/// Where the document's values are written: every scalar value (not keys),
/// every list (for appends) and every alias (a path that is another's copy).
struct Source {
    scalars: Vec<ScalarSpan>,
    sequences: Vec<SequenceSpan>,
    /// (alias path, anchor path): the value used at the first is written at the second.
    aliases: Vec<(ValuePath, ValuePath)>,
}

/// Where a scalar value sits in the source, in bytes.
#[derive(Debug)]
struct ScalarSpan {
    path: ValuePath,
    /// For a block scalar, its indicator (`|`, `>`).
    start: usize,
    end: usize,
    style: ScalarStyle,
    block: Option<Block>,
}

/// A block scalar's chomping indicator: `-` strip, none clip, `+` keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chomping {
    Strip,
    Clip,
    Keep,
}

/// Where a block scalar's parts sit, and how its content is laid out.
#[derive(Debug)]
struct Block {
    /// After the header's indicators: the header's comment and line break stay.
    header_end: usize,
    /// Where the content lines start (after the header's line break).
    body_start: usize,
    /// After the last content line that is not empty.
    content_end: usize,
    /// After the empty lines that follow it (content only with `+`).
    trailing_end: usize,
    chomping: Chomping,
    /// The header's explicit indentation indicator (`|2`), kept.
    indentation_indicator: Option<char>,
    /// The content's indentation; for a block with no content, deeper than its key.
    indent: usize,
    /// `\n` or `\r\n`, as the header line ends.
    newline: &'static str,
}

/// A list in the source, for appends.
#[derive(Debug)]
struct SequenceSpan {
    path: ValuePath,
    /// Written `[a, b]`: nothing is appended to it.
    flow: bool,
    /// The column of its entries' `-`, and the line of the first one.
    dash_column: usize,
    dash_line: usize,
    /// From the `-` to the first entry's content (`- x`: 2).
    gap: Option<usize>,
    /// The last byte of any value inside it: its last entry ends on that line.
    last_end: usize,
    len: usize,
}

/// Parser state for one open collection.
enum Frame {
    /// In a mapping: the key whose value comes next, if one was just read.
    Mapping {
        pending_key: Option<String>,
        flow: bool,
    },
    /// In a list: the index of the next entry, and the list's record in `Source::sequences`.
    Sequence { next_index: usize, record: usize },
}

/// The walk over the parser's events: the open collections and the path to the current node.
struct Walk {
    stack: Vec<Frame>,
    path: Vec<Segment>,
    source: Source,
    /// Anchor id → the path where its value is written.
    anchors: HashMap<usize, ValuePath>,
}

impl Walk {
    /// Decides what a node starting at (`line`, `column`) is: a key (false)
    /// or a value, whose path is pushed (true).
    fn enter(&mut self, line: usize, column: usize) -> bool {
        match self.stack.last_mut() {
            None => true,
            Some(Frame::Mapping { pending_key, .. }) => match pending_key.take() {
                Some(key) => {
                    self.path.push(Segment::Key(key));
                    true
                }
                None => false,
            },
            Some(Frame::Sequence { next_index, record }) => {
                let sequence = &mut self.source.sequences[*record];
                if *next_index == 0 {
                    // The first entry shows how far its content sits from its `-`.
                    sequence.gap = Some(if line == sequence.dash_line {
                        column.saturating_sub(sequence.dash_column).max(2)
                    } else {
                        2
                    });
                }
                self.path.push(Segment::Index(*next_index));
                *next_index += 1;
                true
            }
        }
    }

    fn leave(&mut self) {
        if !self.stack.is_empty() {
            self.path.pop();
        }
    }

    fn here(&self) -> ValuePath {
        ValuePath(self.path.clone())
    }

    /// A value ended at byte `end`: every open list's last entry reaches it.
    fn ended(&mut self, end: usize) {
        for frame in &self.stack {
            if let Frame::Sequence { record, .. } = frame {
                let sequence = &mut self.source.sequences[*record];
                sequence.last_end = sequence.last_end.max(end);
            }
        }
    }

    fn anchor(&mut self, id: usize) {
        if id != 0 {
            self.anchors.insert(id, self.here());
        }
    }
}

impl Source {
    /// Walks the parser's events, recording the path and byte span of every
    /// scalar value, every list and every alias.
    // long: one loop over the parser's events; its path stack is the state every arm shares.
    fn read(text: &str) -> Result<Self> {
        // saphyr's markers count characters; keep a char→byte table for slicing.
        let byte_at: Vec<usize> = text
            .char_indices()
            .map(|(b, _)| b)
            .chain([text.len()])
            .collect();
        let mut walk = Walk {
            stack: Vec::new(),
            path: Vec::new(),
            source: Source {
                scalars: Vec::new(),
                sequences: Vec::new(),
                aliases: Vec::new(),
            },
            anchors: HashMap::new(),
        };
        for event in Parser::new_from_str(text) {
            let (event, span) = event.map_err(|e| anyhow::anyhow!("not valid YAML: {e}"))?;
            let start = byte_at[span.start.index().min(byte_at.len() - 1)];
            let end = byte_at[span.end.index().min(byte_at.len() - 1)];
            let (line, column) = (span.start.line(), span.start.col());
            match event {
                Event::Scalar(value, style, anchor, _) => {
                    if !walk.enter(line, column) {
                        // A mapping key: the next node is its value.
                        if let Some(Frame::Mapping { pending_key, .. }) = walk.stack.last_mut() {
                            *pending_key = Some(value.to_string());
                        }
                        continue;
                    }
                    let scalar = scalar_span(text, walk.here(), start, style, &value)?;
                    walk.anchor(anchor);
                    walk.ended(scalar.end);
                    walk.source.scalars.push(scalar);
                    walk.leave();
                }
                Event::MappingStart(anchor, _) | Event::SequenceStart(anchor, _) => {
                    ensure!(
                        walk.enter(line, column),
                        "complex mapping keys are not supported"
                    );
                    walk.anchor(anchor);
                    let frame = if let Event::MappingStart(..) = event {
                        Frame::Mapping {
                            pending_key: None,
                            flow: text[start..].starts_with('{'),
                        }
                    } else {
                        let (dash_column, dash_line) =
                            first_dash(text, start).unwrap_or((column, line));
                        walk.source.sequences.push(SequenceSpan {
                            path: walk.here(),
                            flow: text[skip_properties(text, start)..].starts_with('['),
                            dash_column,
                            dash_line,
                            gap: None,
                            last_end: start,
                            len: 0,
                        });
                        Frame::Sequence {
                            next_index: 0,
                            record: walk.source.sequences.len() - 1,
                        }
                    };
                    walk.stack.push(frame);
                }
                Event::MappingEnd | Event::SequenceEnd => {
                    let flow = match walk.stack.pop() {
                        Some(Frame::Sequence { next_index, record }) => {
                            let sequence = &mut walk.source.sequences[record];
                            sequence.len = next_index;
                            sequence.flow
                        }
                        Some(Frame::Mapping { flow, .. }) => flow,
                        None => false,
                    };
                    // A flow collection ends at its `]` or `}`; a block one where the next node starts.
                    if flow {
                        walk.ended(end);
                    }
                    walk.leave();
                }
                // An alias is a value too, written where its anchor is.
                Event::Alias(id) if walk.enter(line, column) => {
                    if let Some(anchor) = walk.anchors.get(&id).cloned() {
                        walk.source.aliases.push((walk.here(), anchor));
                    }
                    walk.ended(end);
                    walk.leave();
                }
                _ => {}
            }
        }
        Ok(walk.source)
    }

    /// Where the value at `path` is written: an alias's path becomes its anchor's.
    fn resolve(&self, path: &ValuePath) -> ValuePath {
        let mut path = path.clone();
        // An anchor may hold aliases in turn; each step moves to an earlier anchor, so this ends.
        for _ in 0..=self.aliases.len() {
            let Some((alias, anchor)) = self.aliases.iter().find(|(a, _)| path.starts_with(a))
            else {
                break;
            };
            let mut resolved = anchor.clone();
            resolved.0.extend_from_slice(&path.0[alias.0.len()..]);
            path = resolved;
        }
        path
    }
}

/// The span of the scalar value the parser put at byte `start`.
fn scalar_span(
    text: &str,
    path: ValuePath,
    start: usize,
    style: ScalarStyle,
    value: &str,
) -> Result<ScalarSpan> {
    if matches!(style, ScalarStyle::Literal | ScalarStyle::Folded) {
        let (indicator, block) = block_layout(text, start, value)?;
        let end = match block.chomping {
            Chomping::Keep => block.trailing_end,
            _ => block.content_end,
        };
        return Ok(ScalarSpan {
            path,
            start: indicator,
            end,
            style,
            block: Some(block),
        });
    }
    let mut start = skip_properties(text, start);
    // saphyr reports an empty value as a plain "~" that is not in the text.
    let empty = style == ScalarStyle::Plain
        && (value.is_empty() || (value == "~" && !text[start..].starts_with('~')));
    if empty {
        start = empty_value_position(text, start);
    }
    let end = if empty {
        start
    } else {
        scalar_end(text, start, style, value)?
    };
    Ok(ScalarSpan {
        path,
        start,
        end,
        style,
        block: None,
    })
}

/// The column and line of a block list's first `-`: where the parser starts
/// the list, past its anchor or tag (then the `-` may be on a later line), or
/// (a list not indented under its key) just before it.
fn first_dash(text: &str, start: usize) -> Option<(usize, usize)> {
    let mut at = skip_properties(text, start);
    if at != start {
        // Past blank space and comments to the first entry.
        loop {
            at = text.len() - text[at..].trim_start().len();
            if !text[at..].starts_with('#') {
                break;
            }
            at = line_end(text, at);
        }
    }
    let line = text[..at].matches('\n').count() + 1;
    let before = &text[line_start(text, at)..at];
    if text[at..].starts_with('-') {
        return Some((before.chars().count(), line));
    }
    let dash = before.trim_end().strip_suffix('-')?;
    Some((dash.chars().count(), line))
}

/// Past a node's anchor (`&name`) and tag (`!tag`), which the parser counts as
/// part of the scalar.
fn skip_properties(text: &str, mut at: usize) -> usize {
    while text[at..].starts_with(['&', '!']) {
        at += text[at..]
            .find([' ', '\t', '\r', '\n'])
            .unwrap_or(text.len() - at);
        at = text.len() - text[at..].trim_start_matches([' ', '\t']).len();
    }
    at
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

/// The start of the line holding byte `at`.
fn line_start(text: &str, at: usize) -> usize {
    text[..at].rfind('\n').map_or(0, |n| n + 1)
}

/// After the line break that ends the line holding byte `at` (the text's end if none).
fn line_end(text: &str, at: usize) -> usize {
    text[at..].find('\n').map_or(text.len(), |i| at + i + 1)
}

/// The start of the line after the one holding byte `at`, or `at` itself if
/// it starts a line.
fn next_line(text: &str, at: usize) -> usize {
    if at == 0 || text[..at].ends_with('\n') {
        return at;
    }
    line_end(text, at)
}

/// In a block scalar's header line, its indicator (`|` or `>`) and the byte
/// after its chomping and indentation indicators, from the line's start.
fn block_indicator(line: &str) -> Option<(usize, usize)> {
    let body = line.split('\n').next().unwrap_or_default();
    let body = body.strip_suffix('\r').unwrap_or(body);
    body.char_indices()
        .filter(|&(i, c)| matches!(c, '|' | '>') && (i == 0 || body[..i].ends_with([' ', '\t'])))
        .find_map(|(i, _)| {
            let rest = &body[i + 1..];
            let tail =
                rest.trim_start_matches(|c: char| c.is_ascii_digit() || c == '+' || c == '-');
            let after = tail.trim_start_matches([' ', '\t']);
            let comment = after.starts_with('#') && after.len() < tail.len();
            let indicators = rest.len() - tail.len();
            (indicators <= 2 && (after.is_empty() || comment)).then_some((i, i + 1 + indicators))
        })
}

/// A block scalar's indicator and layout, from where the parser put it: on
/// its first content line, or with no content on the line after it (or on the
/// indicator itself at the end of the text).
fn block_layout(text: &str, at: usize, value: &str) -> Result<(usize, Block)> {
    let has_content = value.contains(|c| c != '\n');
    let mut header = line_start(text, at);
    let found = match block_indicator(&text[header..]) {
        Some((i, end)) if !has_content && header + i == at => Some((i, end)),
        _ => loop {
            // The header is the last line before that is not blank.
            ensure!(
                header > 0,
                "cannot find the header (`|` or `>`) of a block scalar"
            );
            header = line_start(text, header - 1);
            if !text[header..line_end(text, header)].trim().is_empty() {
                break block_indicator(&text[header..]);
            }
        },
    };
    let (indicator, header_end) = found
        .map(|(i, end)| (header + i, header + end))
        .context("cannot find the header (`|` or `>`) of a block scalar")?;
    let indicators = &text[indicator + 1..header_end];
    let body_start = line_end(text, header_end);
    let header_line = &text[header..body_start];
    let indent = if has_content {
        Some(at - line_start(text, at))
    } else {
        None
    };
    let (content_end, trailing_end) = block_lines(text, body_start, indent);
    let chomping = if indicators.contains('-') {
        Chomping::Strip
    } else if indicators.contains('+') {
        Chomping::Keep
    } else {
        Chomping::Clip
    };
    Ok((
        indicator,
        Block {
            header_end,
            body_start,
            content_end,
            trailing_end,
            chomping,
            indentation_indicator: indicators.chars().find(char::is_ascii_digit),
            indent: indent.unwrap_or_else(|| deeper_than(header_line)),
            newline: if header_line.ends_with("\r\n") {
                "\r\n"
            } else {
                "\n"
            },
        },
    ))
}

/// The indentation for content under a header line with none: two columns
/// deeper than the node the line starts (`key:` or `- key:`).
fn deeper_than(line: &str) -> usize {
    let mut rest = line;
    let mut column = 0;
    loop {
        let trimmed = rest.trim_start_matches(' ');
        column += rest.len() - trimmed.len();
        match trimmed.strip_prefix("- ") {
            Some(after) => {
                column += 2;
                rest = after;
            }
            None => return column + 2,
        }
    }
}

/// A block scalar's content lines from `body_start`, at `indent` (none: no
/// content line): after the last one that is not empty, and after the empty
/// lines that follow it.
fn block_lines(text: &str, body_start: usize, indent: Option<usize>) -> (usize, usize) {
    let (mut content_end, mut at) = (body_start, body_start);
    while at < text.len() {
        let next = line_end(text, at);
        let line = text[at..next].trim_end_matches(['\n', '\r']);
        let lead = line.len() - line.trim_start_matches(' ').len();
        if indent == Some(0) && (line.starts_with("---") || line.starts_with("...")) {
            break;
        }
        let more_indented = indent.is_some_and(|indent| lead > indent);
        if lead == line.len() && !more_indented {
            // An empty line: content only if a content line follows (or with `+`).
            at = next;
            continue;
        }
        if indent.is_none_or(|indent| lead < indent) {
            break;
        }
        content_end = next;
        at = next;
    }
    (content_end, at)
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
        _ => {
            // A one-line plain scalar is its own source text.
            if text[start..].starts_with(value) {
                Ok(start + value.len())
            } else {
                bail!("multi-line plain scalars cannot be edited in place")
            }
        }
    }
}

/// The new scalar's source text, in the old one's style where possible, and
/// the byte where the old one's text ends.
fn render(new: &Value, span: &ScalarSpan, text: &str) -> Result<(String, usize)> {
    if let Some(block) = &span.block {
        return render_block(new, span.style, block, text);
    }
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
    let rendered = if needs_space {
        format!(" {rendered}")
    } else {
        rendered
    };
    Ok((rendered, span.end))
}

/// A block scalar rewritten: its header keeps its comment, its content lines
/// its indentation, and its chomping indicator is the one the new value needs
/// (`-` no final line break, none one, `+` more). A folded (`>`) value with a
/// line that starts with a space is written literal (`|`); a value no block
/// holds (not a string, a control character) is written double-quoted on the
/// header's line.
fn render_block(
    new: &Value,
    style: ScalarStyle,
    block: &Block,
    text: &str,
) -> Result<(String, usize)> {
    let header_tail = &text[block.header_end..block.body_start];
    let nl = block.newline;
    let Some(s) = new.as_str().filter(|s| block_holds(s, block)) else {
        return block_as_flow(new, block, text);
    };
    let body = s.trim_end_matches('\n');
    let breaks = s.len() - body.len();
    let chomping = match (breaks, block.chomping) {
        (0, _) => Chomping::Strip,
        (1, Chomping::Keep) => Chomping::Keep,
        // With no content line, a line break is kept only by `+`.
        (1, _) if !body.is_empty() => Chomping::Clip,
        _ => Chomping::Keep,
    };
    let lines: Vec<&str> = if body.is_empty() {
        Vec::new()
    } else {
        body.split('\n').collect()
    };
    let folded = style == ScalarStyle::Folded && lines.iter().all(|l| !l.starts_with([' ', '\t']));
    let mut out = String::from(if folded { ">" } else { "|" });
    out.extend(block.indentation_indicator);
    out.push_str(match chomping {
        Chomping::Strip => "-",
        Chomping::Clip => "",
        Chomping::Keep => "+",
    });
    out.push_str(header_tail);
    if !header_tail.ends_with('\n') && (breaks > 0 || !lines.is_empty()) {
        out.push_str(nl);
    }
    write_block_lines(&mut out, &lines, folded, &" ".repeat(block.indent), nl);
    if chomping == Chomping::Keep {
        let kept = if lines.is_empty() { breaks } else { breaks - 1 };
        out.push_str(&nl.repeat(kept));
    }
    let end = if chomping == Chomping::Keep || block.chomping == Chomping::Keep {
        block.trailing_end
    } else {
        block.content_end
    };
    if end == text.len()
        && !text.ends_with('\n')
        && chomping == Chomping::Strip
        && out.ends_with(nl)
    {
        // The file had no final line break: it still has none (a value that ends in one needs one).
        out.truncate(out.len() - nl.len());
    }
    Ok((out, end))
}

/// A value no block scalar holds, double-quoted on the block's header line
/// (its comment stays after it); the block's content lines go.
fn block_as_flow(new: &Value, block: &Block, text: &str) -> Result<(String, usize)> {
    let end = match block.chomping {
        Chomping::Keep => block.trailing_end,
        _ => block.content_end,
    };
    let quoted = ScalarSpan {
        path: ValuePath::default(),
        start: 0,
        end: 0,
        style: ScalarStyle::DoubleQuoted,
        block: None,
    };
    let (flow, _) = render(new, &quoted, text)?;
    Ok((
        format!("{flow}{}", &text[block.header_end..block.body_start]),
        end,
    ))
}

/// A block scalar's content `lines`, each after `pad` (an empty one without).
fn write_block_lines(out: &mut String, lines: &[&str], folded: bool, pad: &str, nl: &str) {
    for (i, line) in lines.iter().enumerate() {
        // Folded, one line break between two lines reads as a space: write it as an empty line.
        if folded && i > 0 && !lines[i - 1].is_empty() {
            out.push_str(nl);
        }
        if !line.is_empty() {
            out.push_str(pad);
            out.push_str(line);
        }
        out.push_str(nl);
    }
}

/// Whether a block scalar at `block`'s indentation reads back as `s`.
fn block_holds(s: &str, block: &Block) -> bool {
    let first = s.split('\n').find(|l| !l.is_empty()).unwrap_or_default();
    // At column 0, a `---` or `...` line would end the document.
    let document_marker = |l: &str| l.starts_with("---") || l.starts_with("...");
    !s.chars().any(|c| c.is_control() && c != '\n' && c != '\t')
        && !s.contains('\u{feff}')
        && (block.indentation_indicator.is_some() || !first.starts_with([' ', '\t']))
        && (block.indent > 0 || !s.split('\n').any(document_marker))
}

impl SequenceSpan {
    /// Where new entries go (after the last entry's last line) and their text.
    fn append(
        &self,
        text: &str,
        scalars: &[ScalarSpan],
        entries: &[&Value],
    ) -> Result<(usize, String)> {
        ensure!(
            !self.flow,
            "cannot append to the list at {}: it is written in flow style (`[a, b]`); in-place edits append only \
             to a block list (one `- ` entry per line), so write it that way first",
            self.path
        );
        let newline = if text.contains("\r\n") { "\r\n" } else { "\n" };
        let at = next_line(text, self.last_end);
        let emitter = Emitter {
            newline,
            gap: self.gap.unwrap_or(2),
            scalars,
            last: self.path.child(Segment::Index(self.len.saturating_sub(1))),
        };
        let mut out = String::new();
        for entry in entries {
            emitter.entry(&mut out, entry, self.dash_column, &mut Vec::new())?;
        }
        if at == text.len() && !text.is_empty() && !text.ends_with('\n') {
            // After a last line with no line break: the entries get the break, the file still ends without one.
            out.truncate(out.len() - newline.len());
            out.insert_str(0, newline);
        }
        Ok((at, out))
    }
}

/// Writes new list entries as block YAML in the list's own style: its
/// entries' indentation and `-` gap, its last entry's key order.
struct Emitter<'a> {
    newline: &'a str,
    /// From the `-` to the entry's content.
    gap: usize,
    scalars: &'a [ScalarSpan],
    /// The list's last entry.
    last: ValuePath,
}

impl Emitter<'_> {
    /// `value` as an entry whose `-` is at `column`; `rel` its path inside the entry.
    fn entry(
        &self,
        out: &mut String,
        value: &Value,
        column: usize,
        rel: &mut Vec<Segment>,
    ) -> Result<()> {
        let lead = format!("{}-{}", " ".repeat(column), " ".repeat(self.gap - 1));
        self.node(out, value, &lead, column + self.gap, rel)
    }

    /// `value` on a line begun with `lead` (a `- ` or an indentation), its
    /// nested lines at `column`.
    fn node(
        &self,
        out: &mut String,
        value: &Value,
        lead: &str,
        column: usize,
        rel: &mut Vec<Segment>,
    ) -> Result<()> {
        let nl = self.newline;
        match value {
            Value::Object(map) if !map.is_empty() => {
                let indentation = " ".repeat(column);
                for (i, key) in self.key_order(map, rel).into_iter().enumerate() {
                    let line = if i == 0 { lead } else { &indentation };
                    let name = flow_scalar(&Value::String(key.clone()))?;
                    let value = &map[&key];
                    rel.push(Segment::Key(key));
                    match value {
                        Value::Object(m) if !m.is_empty() => {
                            out.push_str(&format!("{line}{name}:{nl}"));
                            self.node(out, value, &" ".repeat(column + 2), column + 2, rel)?;
                        }
                        Value::Array(items) if !items.is_empty() => {
                            out.push_str(&format!("{line}{name}:{nl}"));
                            self.entries(out, items, column + 2, rel)?;
                        }
                        _ => out.push_str(&format!("{line}{name}: {}{nl}", flow_scalar(value)?)),
                    }
                    rel.pop();
                }
            }
            Value::Array(items) if !items.is_empty() => {
                out.push_str(&format!("{}{nl}", lead.trim_end()));
                self.entries(out, items, column, rel)?;
            }
            _ => out.push_str(&format!("{lead}{}{nl}", flow_scalar(value)?)),
        }
        Ok(())
    }

    fn entries(
        &self,
        out: &mut String,
        items: &[Value],
        column: usize,
        rel: &mut Vec<Segment>,
    ) -> Result<()> {
        for (i, item) in items.iter().enumerate() {
            rel.push(Segment::Index(i));
            self.entry(out, item, column, rel)?;
            rel.pop();
        }
        Ok(())
    }

    /// `map`'s keys in the order the list's last entry writes them (at the
    /// same place inside it), then the others.
    fn key_order(&self, map: &serde_json::Map<String, Value>, rel: &[Segment]) -> Vec<String> {
        let mut prefix = self.last.clone();
        prefix.0.extend_from_slice(rel);
        let mut keys: Vec<String> = Vec::new();
        let written = self
            .scalars
            .iter()
            .filter(|s| s.path.starts_with(&prefix))
            .filter_map(|s| match s.path.0.get(prefix.0.len()) {
                Some(Segment::Key(key)) => Some(key),
                _ => None,
            });
        for key in written.chain(map.keys()) {
            if map.contains_key(key) && !keys.contains(key) {
                keys.push(key.clone());
            }
        }
        keys
    }
}

/// A scalar (or an empty mapping or list) on one line: plain when it reads
/// back as itself, else double-quoted.
fn flow_scalar(value: &Value) -> Result<String> {
    Ok(match value {
        Value::String(s) if is_plain_safe(s) => s.clone(),
        Value::String(s) => serde_json::to_string(s)?,
        Value::Object(m) if m.is_empty() => "{}".to_owned(),
        Value::Array(a) if a.is_empty() => "[]".to_owned(),
        Value::Object(_) | Value::Array(_) => bail!("a mapping or list is not a scalar"),
        other => other.to_string(),
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
    use super::jq::edit;
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
        assert_eq!(edited.changes[0].old, Some(Value::from("main-aaaaaaa")));
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

    /// The admission policy's shape: a key block under an anchor used again by an alias.
    const POLICY: &str = "\
rules:
  - attestors: &attestors
      - entries:
          - keys:
              publicKeys: |- # the image key
                -----BEGIN PUBLIC KEY-----
                old
                -----END PUBLIC KEY-----
              # Not in the transparency log.
              rekor:
                ignoreTlog: true
  - attestors: *attestors
";

    #[test]
    fn a_block_scalar_is_rewritten_at_its_indentation_keeping_comments_and_aliases() {
        let pem = "-----BEGIN PUBLIC KEY-----\nnew1\nnew2\n-----END PUBLIC KEY-----";
        let expr = format!(
            "(.. | objects | select(has(\"publicKeys\")) | .publicKeys) = {}",
            serde_json::to_string(pem).unwrap()
        );
        let edited = edit(POLICY, &expr).unwrap();
        assert_eq!(
            edited.text,
            POLICY.replace(
                "                old\n",
                "                new1\n                new2\n"
            )
        );
        // Written once, where the anchor is; the alias reads it.
        assert_eq!(
            parse(&edited.text).unwrap()["rules"][1]["attestors"][0]["entries"][0]["keys"]["publicKeys"],
            pem
        );
        // Setting only the alias's copy cannot be written: refused, naming why.
        let error = edit(
            POLICY,
            ".rules[1].attestors[0].entries[0].keys.publicKeys = \"x\"",
        )
        .unwrap_err();
        assert!(error.to_string().contains("`&anchor`"), "{error:#}");
    }

    #[test]
    fn each_chomping_indicator_is_kept_or_changed_to_what_the_new_value_needs() {
        let text = "a: |-\n  one\n  two\nb: |\n  one\n\nc: |+\n  one\n\nd: x\n";
        let case = |expr: &str| jq(text, expr);
        // The same number of final line breaks: the same indicator.
        assert_eq!(
            case(".a = \"1\\n2\" | .b = \"1\\n\" | .c = \"1\\n\\n\""),
            "a: |-\n  1\n  2\nb: |\n  1\n\nc: |+\n  1\n\nd: x\n"
        );
        // Strip becomes clip, clip becomes keep (the blank line after it is now content, once), keep becomes strip.
        assert_eq!(
            case(".a = \"1\\n\" | .b = \"1\\n\\n\" | .c = \"1\""),
            "a: |\n  1\nb: |+\n  1\n\nc: |-\n  1\nd: x\n"
        );
        // Clip to strip keeps the blank line after the block (it was never content).
        assert_eq!(
            case(".b = \"1\""),
            "a: |-\n  one\n  two\nb: |-\n  1\n\nc: |+\n  one\n\nd: x\n"
        );
        // Empty values: nothing, or a lone line break (which only `+` keeps).
        assert_eq!(
            case(".a = \"\""),
            "a: |-\nb: |\n  one\n\nc: |+\n  one\n\nd: x\n"
        );
        assert_eq!(
            case(".a = \"\\n\""),
            "a: |+\n\nb: |\n  one\n\nc: |+\n  one\n\nd: x\n"
        );
        // Blank lines inside the value, and a line more indented than the first.
        assert_eq!(
            case(".a = \"x\\n\\n  y\""),
            "a: |-\n  x\n\n    y\nb: |\n  one\n\nc: |+\n  one\n\nd: x\n"
        );
    }

    #[test]
    fn a_block_in_a_list_an_empty_block_and_one_at_the_end_without_a_line_break() {
        let out = jq("- |\n    a\n- b\n", ".[0] = \"c\\nd\\n\"");
        assert_eq!(out, "- |\n    c\n    d\n- b\n");
        // No content yet: written deeper than its key.
        let out = jq("k:\n  key: |-\n  next: 1\n", ".k.key = \"v\"");
        assert_eq!(out, "k:\n  key: |-\n    v\n  next: 1\n");
        let out = jq("k: |-\n  a\n  b", ".k = \"c\"");
        assert_eq!(out, "k: |-\n  c");
        let out = jq("k: |\n  a", ".k = \"c\\n\"");
        assert_eq!(out, "k: |\n  c\n");
    }

    #[test]
    fn a_folded_block_stays_folded_when_it_can() {
        let text = "m: >-\n  one\n  two\nn: 1\n";
        // A single line break of the value is an empty line in a folded block.
        let out = jq(text, ".m = \"a b\\nc\\n\\nd\"");
        assert_eq!(out, "m: >-\n  a b\n\n  c\n\n\n  d\nn: 1\n");
        // A more-indented line folds differently: written literal instead.
        let out = jq(text, ".m = \"a\\n  b\"");
        assert_eq!(out, "m: |-\n  a\n    b\nn: 1\n");
    }

    #[test]
    fn a_block_in_a_crlf_file_keeps_crlf() {
        let text = "a:\r\n  k: |-\r\n    old\r\n  # c\r\n  z: 1\r\n";
        let out = jq(text, ".a.k = \"x\\ny\"");
        assert_eq!(
            out,
            "a:\r\n  k: |-\r\n    x\r\n    y\r\n  # c\r\n  z: 1\r\n"
        );
    }

    #[test]
    fn what_a_block_cannot_hold_is_written_quoted_on_its_line() {
        let text = "k: |- # note\n  a\nz: 1\n";
        assert_eq!(jq(text, ".k = 3"), "k: 3 # note\nz: 1\n");
        assert_eq!(
            jq(text, ".k = \"a\\u0001\""),
            "k: \"a\\u0001\" # note\nz: 1\n"
        );
        // A first line starting with a space would set the block's indentation: quoted too.
        assert_eq!(jq(text, ".k = \"  a\""), "k: \"  a\" # note\nz: 1\n");
    }

    #[test]
    fn an_anchored_scalar_is_rewritten_where_it_is_written() {
        let text = "a: &r \"ghcr.io/x/* | other\" # list\nb: *r\nc: !!str plain\n";
        let out = map_strings(text, |s| s.replace("ghcr.io/x/", "ghcr.io/y/")).unwrap();
        assert_eq!(
            out.text,
            "a: &r \"ghcr.io/y/* | other\" # list\nb: *r\nc: !!str plain\n"
        );
        assert_eq!(
            jq(text, ".c = \"other\""),
            "a: &r \"ghcr.io/x/* | other\" # list\nb: *r\nc: !!str other\n"
        );
    }

    #[test]
    fn map_strings_rewrites_values_never_keys_or_comments() {
        let text = "# github.com/old/repo is where it lived\ngithub.com/old/repo: github.com/old/repo\nlist:\n  - https://github.com/old/repo.git # github.com/old/repo\n";
        let out = map_strings(text, |s| {
            s.replace("github.com/old/repo", "github.com/new/x")
        })
        .unwrap();
        assert_eq!(
            out.text,
            "# github.com/old/repo is where it lived\ngithub.com/old/repo: github.com/new/x\nlist:\n  - https://github.com/new/x.git # github.com/old/repo\n"
        );
        assert_eq!(out.changes.len(), 2);
    }

    /// An ApplicationSet's shape: a list of mappings, a comment and a blank line after it.
    const SET: &str = "\
spec:
  generators:
    - list:
        elements:
          # the services
          - service: a # first
            valuesFile: a.yaml
          - service: b
            valuesFile: \"b.yaml\"

        # after the list
    - list:
        elements: [x]
";

    #[test]
    fn an_appended_entry_follows_the_last_at_its_indentation_in_its_key_order() {
        let entry = serde_json::json!({"valuesFile": "c.yaml", "service": "c", "tags": ["x", "y"], "extra": {"k": true}});
        let expr = format!(".spec.generators[0].list.elements += [{entry}]");
        let edited = edit(SET, &expr).unwrap();
        assert_eq!(
            edited.text,
            SET.replace(
                "\"b.yaml\"\n",
                "\"b.yaml\"\n          - service: c\n            valuesFile: c.yaml\n            extra:\n              k: true\n            tags:\n              - x\n              - y\n"
            )
        );
        assert_eq!(edited.changes.len(), 1);
        assert_eq!(
            edited.changes[0].path.to_string(),
            ".spec.generators[0].list.elements[2]"
        );
        assert_eq!(edited.changes[0].old, None);
        // As data: the list set to itself plus the entry writes the same bytes.
        let mut elements = parse(SET).unwrap()["spec"]["generators"][0]["list"]["elements"].clone();
        elements.as_array_mut().unwrap().push(entry);
        let path = ValuePath(vec![
            Segment::Key("spec".into()),
            Segment::Key("generators".into()),
            Segment::Index(0),
            Segment::Key("list".into()),
            Segment::Key("elements".into()),
        ]);
        let by_data = set(
            SET,
            &[Edit {
                path,
                value: elements,
            }],
        )
        .unwrap();
        assert_eq!(by_data.text, edited.text);
    }

    #[test]
    fn appends_keep_the_lists_own_style_and_the_files_line_ends() {
        // An indentless list, a wider `-` gap, several entries, no final line break.
        assert_eq!(
            jq("k:\n- a\n- b", ".k += [\"c\", \"true\"]"),
            "k:\n- a\n- b\n- c\n- \"true\""
        );
        assert_eq!(
            jq("l:\n  -   a: 1\n", ".l += [{\"a\": 2}]"),
            "l:\n  -   a: 1\n  -   a: 2\n"
        );
        assert_eq!(
            jq("l:\r\n  - a # c\r\n# end\r\n", ".l += [\"b\"]"),
            "l:\r\n  - a # c\r\n  - b\r\n# end\r\n"
        );
        // A list whose last entry ends in a block scalar: after its content, before the blank line.
        assert_eq!(
            jq("l:\n  - |\n    x\n\nz: 1\n", ".l += [\"y\"]"),
            "l:\n  - |\n    x\n  - y\n\nz: 1\n"
        );
        // An anchored list (its `-` a line below its anchor) grows where it is written, for every alias.
        assert_eq!(
            jq(
                "a: &l # the list\n  - x: 1\nb: *l\n",
                ".a += [{\"x\": 2}] | .b += [{\"x\": 2}]"
            ),
            "a: &l # the list\n  - x: 1\n  - x: 2\nb: *l\n"
        );
        let error = edit("a: &l\n  - 1\nb: *l\n", ".a += [2]").unwrap_err();
        assert!(error.to_string().contains("`*alias`"), "{error:#}");
        // An inner and an outer list that end on the same line.
        assert_eq!(
            jq("l:\n  - m:\n      - 1\n", ".l[0].m += [2] | .l += [3]"),
            "l:\n  - m:\n      - 1\n      - 2\n  - 3\n"
        );
    }

    #[test]
    fn a_flow_list_or_a_shorter_list_is_refused() {
        let error = edit(SET, ".spec.generators[1].list.elements += [\"y\"]").unwrap_err();
        assert!(
            error.to_string().contains("flow style")
                && error
                    .to_string()
                    .contains(".spec.generators[1].list.elements"),
            "{error:#}"
        );
        let error = edit("l: []\n", ".l += [1]").unwrap_err();
        assert!(error.to_string().contains("flow style"), "{error:#}");
        let error = edit(SET, "del(.spec.generators[0].list.elements[0])").unwrap_err();
        assert!(error.to_string().contains("removes entries"), "{error:#}");
    }

    /// Every list of `value` with its path.
    fn lists_of(value: &Value, at: ValuePath, found: &mut Vec<(ValuePath, Vec<Value>)>) {
        match value {
            Value::Array(items) => {
                found.push((at.clone(), items.clone()));
                for (i, item) in items.iter().enumerate() {
                    lists_of(item, at.child(Segment::Index(i)), found);
                }
            }
            Value::Object(entries) => {
                for (key, item) in entries {
                    lists_of(item, at.child(Segment::Key(key.clone())), found);
                }
            }
            _ => {}
        }
    }

    /// The repository's own YAML (anchors, block scalars, comments, indentless
    /// lists): every string changed, to one line and to several, and a copy of
    /// its last entry appended to every block list, each re-parsed by `rewrite`.
    #[test]
    fn every_yaml_file_of_the_repository_takes_every_edit() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let (mut failures, mut appended) = (Vec::new(), 0);
        for dir in ["gitops", ".github/workflows", "charts/service-demo"] {
            for file in crate::plumbing::fs::yaml_files(&root.join(dir)).unwrap() {
                let text = std::fs::read_to_string(&file).unwrap();
                // Helm templates are not YAML until rendered.
                let Ok(doc) = parse(&text) else { continue };
                let name = file.display();
                for (how, result) in [
                    ("suffix", map_strings(&text, |s| format!("{s}Z"))),
                    ("lines", map_strings(&text, |s| format!("{s}\nline two\n"))),
                ] {
                    if let Err(error) = result {
                        failures.push(format!("{name} {how}: {error:#}"));
                    }
                }
                let mut lists = Vec::new();
                lists_of(&doc, ValuePath::default(), &mut lists);
                for (path, mut items) in lists {
                    items.extend(items.last().cloned());
                    let value = Value::Array(items);
                    match set(
                        &text,
                        &[Edit {
                            path: path.clone(),
                            value,
                        }],
                    ) {
                        Ok(_) => appended += 1,
                        // A flow list, or one site of a list used through an alias: refused as documented.
                        Err(e)
                            if ["flow style", "`*alias`"]
                                .iter()
                                .any(|w| e.to_string().contains(w)) => {}
                        Err(e) => failures.push(format!("{name} append to {path}: {e:#}")),
                    }
                }
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
        assert!(appended > 50, "only {appended} lists took an entry");
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
