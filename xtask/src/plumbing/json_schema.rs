//! JSON Schema as the upstream contracts write it: GitHub's OpenAPI 3.0
//! description, Argo CD's Swagger 2.0 one and the CRDs' structural
//! `openAPIV3Schema`. One validator for the three: `$ref`, `type`,
//! `nullable` (`x-nullable` in Swagger 2.0), `properties`, `required`,
//! `enum`, `items`, `allOf`/`anyOf`/`oneOf`, `additionalProperties`,
//! `format` (date-time, date, int32, byte, uri), `pattern`, bounds, and the
//! `x-kubernetes-*` markers (preserve-unknown-fields, int-or-string,
//! embedded-resource).
//!
//! Strict: a property the schema does not declare is refused,
//! as the API server's strict field validation refuses it and as a typo in a
//! request shows. Not checked: `x-kubernetes-validations` (CEL), counted by
//! [`cel_rules`] so a caller can say so.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::fmt;

use serde_json::{Map, Value};

/// Which dialect a schema is written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// OpenAPI 3.0 (GitHub): `nullable`, `$ref`s into `#/components/…`.
    #[allow(dead_code)] // only the tests' GitHub contract (tests/support/contract.rs) reads it
    OpenApi3,
    /// Swagger 2.0 (Argo CD): `x-nullable`, `$ref`s into `#/definitions/…`.
    Swagger2,
    /// A CRD's structural schema: `x-kubernetes-*` markers, and a null in a
    /// field that is not `nullable` pruned (as absent) like the API server does.
    Kubernetes,
}

/// One place a document breaks its schema.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// Where, e.g. `.spec.source.helm.valueFiles[0]` (empty: the document).
    pub path: String,
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = if self.path.is_empty() {
            "(document)"
        } else {
            &self.path
        };
        write!(f, "{path}: {}", self.message)
    }
}

/// Which properties of an object a schema accounted for.
enum Evaluated {
    All,
    Names(BTreeSet<String>),
}

impl Evaluated {
    fn none() -> Self {
        Evaluated::Names(BTreeSet::new())
    }

    fn add(&mut self, other: Evaluated) {
        match (&mut *self, other) {
            (Evaluated::All, _) => {}
            (_, Evaluated::All) => *self = Evaluated::All,
            (Evaluated::Names(mine), Evaluated::Names(theirs)) => mine.extend(theirs),
        }
    }

    fn covers(&self, name: &str) -> bool {
        match self {
            Evaluated::All => true,
            Evaluated::Names(names) => names.contains(name),
        }
    }
}

/// A validator over one schema document (`$ref`s resolve against `root`).
pub struct Validator<'a> {
    root: &'a Value,
    dialect: Dialect,
    patterns: RefCell<HashMap<String, Option<regex::Regex>>>,
}

impl<'a> Validator<'a> {
    /// A strict validator: undeclared properties are refused.
    pub fn new(root: &'a Value, dialect: Dialect) -> Self {
        Self {
            root,
            dialect,
            patterns: RefCell::default(),
        }
    }

    /// Every violation of `schema` by `value`, each with its path under `at`.
    pub fn validate(&self, schema: &Value, value: &Value, at: &str) -> Vec<Violation> {
        let mut out = Vec::new();
        self.check(schema, value, at, &mut out);
        out
    }

    /// `schema` with its `$ref`s followed (itself when it has none).
    pub fn resolve<'s>(&'s self, schema: &'s Value) -> &'s Value {
        let mut schema = schema;
        for _ in 0..32 {
            match schema.get("$ref").and_then(Value::as_str) {
                Some(reference) => match self.pointer(reference) {
                    Some(target) => schema = target,
                    None => return schema,
                },
                None => return schema,
            }
        }
        schema
    }

    fn pointer(&self, reference: &str) -> Option<&'a Value> {
        let pointer = reference.strip_prefix('#')?;
        let root: &'a Value = self.root;
        root.pointer(pointer)
    }

    /// The whole check at one place: the schema, then the properties it left.
    fn check(&self, schema: &Value, value: &Value, at: &str, out: &mut Vec<Violation>) {
        let evaluated = self.evaluate(schema, value, at, out);
        if let Some(object) = value.as_object() {
            for name in object.keys().filter(|name| !evaluated.covers(name)) {
                out.push(violation(
                    &child(at, name),
                    format!("unknown field `{name}` ({})", declared(self, schema, name)),
                ));
            }
        }
    }

    /// Every keyword but the unknown-property check; what it accounted for.
    fn evaluate(
        &self,
        schema: &Value,
        value: &Value,
        at: &str,
        out: &mut Vec<Violation>,
    ) -> Evaluated {
        if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
            return match self.pointer(reference) {
                Some(target) => self.evaluate(target, value, at, out),
                None => {
                    out.push(violation(
                        at,
                        format!("the schema's $ref {reference} resolves to nothing"),
                    ));
                    Evaluated::All
                }
            };
        }
        let Some(keywords) = schema.as_object() else {
            return Evaluated::All; // `true` / `{}`-like: anything
        };
        if value.is_null() && self.nullable(keywords) {
            return Evaluated::All;
        }
        if !self.type_matches(keywords, value, at, out) {
            return Evaluated::All;
        }
        self.scalar_keywords(keywords, value, at, out);
        let mut evaluated = match value {
            Value::Object(object) => self.object_keywords(keywords, object, at, out),
            Value::Array(items) => {
                self.array_keywords(keywords, items, at, out);
                Evaluated::none()
            }
            _ => Evaluated::none(),
        };
        if self.kubernetes_preserves(keywords) {
            // The declared fields are still checked; any other is kept.
            evaluated = Evaluated::All;
        }
        if self.kubernetes_embedded(keywords) && value.is_object() {
            // apiVersion, kind and metadata belong to every embedded object.
            evaluated.add(Evaluated::Names(
                ["apiVersion", "kind", "metadata"].map(String::from).into(),
            ));
        }
        evaluated.add(self.combinators(keywords, value, at, out));
        evaluated
    }

    fn nullable(&self, keywords: &Map<String, Value>) -> bool {
        let flag = match self.dialect {
            Dialect::Swagger2 => "x-nullable",
            Dialect::OpenApi3 | Dialect::Kubernetes => "nullable",
        };
        // Argo CD answers through Go's encoding/json, which writes a nil
        // slice, map or pointer as null (an empty list is `"items": null`);
        // its swagger, generated from the Go types, cannot say so.
        let go_nil = self.dialect == Dialect::Swagger2
            && matches!(
                keywords.get("type").and_then(Value::as_str),
                Some("array" | "object")
            );
        go_nil
            || keywords.get(flag) == Some(&Value::Bool(true))
            || keywords
                .get("type")
                .and_then(Value::as_array)
                .is_some_and(|types| types.contains(&Value::from("null")))
            || (!keywords.contains_key("type")
                && !keywords.contains_key("enum")
                && !has_combinator(keywords))
    }

    fn kubernetes_preserves(&self, keywords: &Map<String, Value>) -> bool {
        self.dialect == Dialect::Kubernetes
            && keywords.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true))
    }

    fn kubernetes_embedded(&self, keywords: &Map<String, Value>) -> bool {
        self.dialect == Dialect::Kubernetes
            && keywords.get("x-kubernetes-embedded-resource") == Some(&Value::Bool(true))
    }

    /// `type` (int-or-string included); false when the value is of another type.
    fn type_matches(
        &self,
        keywords: &Map<String, Value>,
        value: &Value,
        at: &str,
        out: &mut Vec<Violation>,
    ) -> bool {
        let int_or_string = self.dialect == Dialect::Kubernetes
            && keywords.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true));
        let types: Vec<&str> = match keywords.get("type") {
            _ if int_or_string => vec!["integer", "string"],
            Some(Value::String(one)) => vec![one.as_str()],
            Some(Value::Array(many)) => many.iter().filter_map(Value::as_str).collect(),
            _ => return true,
        };
        if types.iter().any(|name| is_type(value, name)) {
            return true;
        }
        out.push(violation(
            at,
            format!(
                "{} where the schema wants {}",
                describe(value),
                types.join(" or ")
            ),
        ));
        false
    }

    fn scalar_keywords(
        &self,
        keywords: &Map<String, Value>,
        value: &Value,
        at: &str,
        out: &mut Vec<Violation>,
    ) {
        if let Some(allowed) = keywords.get("enum").and_then(Value::as_array)
            && !allowed.contains(value)
        {
            let names: Vec<String> = allowed.iter().map(Value::to_string).collect();
            out.push(violation(
                at,
                format!("{value} is not one of {}", names.join(", ")),
            ));
        }
        if let Some(format) = keywords.get("format").and_then(Value::as_str)
            && let Some(problem) = format_problem(format, value)
        {
            out.push(violation(
                at,
                format!("{value} is not a {format}: {problem}"),
            ));
        }
        if let (Some(pattern), Some(text)) = (
            keywords.get("pattern").and_then(Value::as_str),
            value.as_str(),
        ) && self.pattern(pattern).is_some_and(|re| !re.is_match(text))
        {
            out.push(violation(
                at,
                format!("{value} does not match the pattern {pattern}"),
            ));
        }
        bounds(keywords, value, at, out);
    }

    fn pattern(&self, pattern: &str) -> Option<regex::Regex> {
        self.patterns
            .borrow_mut()
            .entry(pattern.to_owned())
            .or_insert_with(|| regex::Regex::new(pattern).ok())
            .clone()
    }

    fn object_keywords(
        &self,
        keywords: &Map<String, Value>,
        object: &Map<String, Value>,
        at: &str,
        out: &mut Vec<Violation>,
    ) -> Evaluated {
        let properties = keywords.get("properties").and_then(Value::as_object);
        let mut evaluated = Evaluated::none();
        for (name, value) in object {
            let Some(schema) = properties.and_then(|p| p.get(name)) else {
                continue;
            };
            evaluated.add(Evaluated::Names(BTreeSet::from([name.clone()])));
            if !self.pruned(schema, value) {
                self.check(schema, value, &child(at, name), out);
            }
        }
        for name in keywords
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            let present = object.get(name).is_some_and(|value| {
                !properties
                    .and_then(|p| p.get(name))
                    .is_some_and(|schema| self.pruned(schema, value))
            });
            if !present {
                out.push(violation(at, format!("missing required field `{name}`")));
            }
        }
        match keywords.get("additionalProperties") {
            Some(Value::Bool(true)) => evaluated = Evaluated::All,
            Some(schema @ Value::Object(_)) => {
                for (name, value) in object.iter().filter(|(name, _)| !evaluated.covers(name)) {
                    self.check(schema, value, &child(at, name), out);
                }
                evaluated = Evaluated::All;
            }
            _ => {}
        }
        evaluated
    }

    /// A null the API server drops before validating (a field not `nullable`).
    fn pruned(&self, schema: &Value, value: &Value) -> bool {
        self.dialect == Dialect::Kubernetes
            && value.is_null()
            && self.resolve(schema).get("nullable") != Some(&Value::Bool(true))
    }

    fn array_keywords(
        &self,
        keywords: &Map<String, Value>,
        items: &[Value],
        at: &str,
        out: &mut Vec<Violation>,
    ) {
        if let Some(schema) = keywords.get("items") {
            for (index, item) in items.iter().enumerate() {
                self.check(schema, item, &format!("{at}[{index}]"), out);
            }
        }
        if keywords.get("uniqueItems") == Some(&Value::Bool(true)) {
            let distinct: BTreeSet<String> = items.iter().map(Value::to_string).collect();
            if distinct.len() != items.len() {
                out.push(violation(
                    at,
                    "has duplicate items (uniqueItems)".to_owned(),
                ));
            }
        }
    }

    /// `allOf` (all), `anyOf` (one at least), `oneOf` (exactly one), `not`.
    fn combinators(
        &self,
        keywords: &Map<String, Value>,
        value: &Value,
        at: &str,
        out: &mut Vec<Violation>,
    ) -> Evaluated {
        let mut evaluated = Evaluated::none();
        for branch in keywords
            .get("allOf")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            evaluated.add(self.evaluate(branch, value, at, out));
        }
        for (keyword, exactly_one) in [("anyOf", false), ("oneOf", true)] {
            if let Some(branches) = keywords.get(keyword).and_then(Value::as_array) {
                evaluated.add(self.choose(
                    keyword,
                    branches,
                    exactly_one,
                    keywords,
                    value,
                    at,
                    out,
                ));
            }
        }
        if let Some(not) = keywords.get("not") {
            let mut errors = Vec::new();
            self.evaluate(not, value, at, &mut errors);
            if errors.is_empty() {
                out.push(violation(at, "matches the schema under `not`".to_owned()));
            }
        }
        evaluated
    }

    /// One branch of `anyOf`/`oneOf`, strictly with the enclosing schema's own
    /// properties: what it accounted for, or why it does not match.
    fn branch(
        &self,
        keyword: &str,
        index: usize,
        branch: &Value,
        parent: &Map<String, Value>,
        value: &Value,
        at: &str,
    ) -> Result<Evaluated, Vec<Violation>> {
        let mut errors = Vec::new();
        let mut evaluated = self.evaluate(branch, value, at, &mut errors);
        if let Some(object) = value.as_object() {
            evaluated.add(own_properties(parent));
            for name in object
                .keys()
                .filter(|name| !evaluated.covers(name) && !covered_by_all_of(self, parent, name))
            {
                errors.push(violation(
                    &child(at, name),
                    format!("unknown field `{name}` (in {keyword} branch #{index})"),
                ));
            }
        }
        if errors.is_empty() {
            Ok(evaluated)
        } else {
            Err(errors)
        }
    }

    /// The branches `value` matches, each checked strictly together with what
    /// the enclosing schema declares (so `{b: 1}` picks the branch with `b`).
    #[allow(clippy::too_many_arguments)]
    fn choose(
        &self,
        keyword: &str,
        branches: &[Value],
        exactly_one: bool,
        parent: &Map<String, Value>,
        value: &Value,
        at: &str,
        out: &mut Vec<Violation>,
    ) -> Evaluated {
        let mut matched: Vec<(usize, Evaluated)> = Vec::new();
        let mut closest: Option<(usize, Vec<Violation>)> = None;
        for (index, branch) in branches.iter().enumerate() {
            match self.branch(keyword, index, branch, parent, value, at) {
                Ok(evaluated) => matched.push((index, evaluated)),
                Err(errors) => {
                    if closest
                        .as_ref()
                        .is_none_or(|(_, best)| errors.len() < best.len())
                    {
                        closest = Some((index, errors));
                    }
                }
            }
        }
        match matched.len() {
            0 => {
                let (index, errors) = closest.unwrap_or_default();
                let reasons: Vec<String> = errors.iter().map(Violation::to_string).collect();
                out.push(violation(
                    at,
                    format!(
                        "matches none of the {} {keyword} branches (closest, #{index}: {})",
                        branches.len(),
                        reasons.join("; ")
                    ),
                ));
                Evaluated::All
            }
            n if n > 1 && exactly_one => {
                let which: Vec<String> = matched.iter().map(|(i, _)| format!("#{i}")).collect();
                out.push(violation(
                    at,
                    format!(
                        "matches {} of the oneOf branches ({}), not exactly one",
                        n,
                        which.join(", ")
                    ),
                ));
                Evaluated::All
            }
            _ => {
                let mut evaluated = Evaluated::none();
                for (_, branch) in matched {
                    evaluated.add(branch);
                }
                evaluated
            }
        }
    }
}

/// The `x-kubernetes-validations` (CEL) rules of a structural schema, none
/// of which is evaluated here: (the path of the field each is on, e.g.
/// `.spec.bootstrap.initdb`, `[]` for items; the rule's message or rule).
pub fn cel_rules(schema: &Value, at: &str) -> Vec<(String, String)> {
    let mut rules = Vec::new();
    for rule in schema["x-kubernetes-validations"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let said = rule["message"]
            .as_str()
            .or(rule["rule"].as_str())
            .unwrap_or("");
        rules.push((at.to_owned(), said.to_owned()));
    }
    for (name, property) in schema["properties"].as_object().into_iter().flatten() {
        rules.extend(cel_rules(property, &child(at, name)));
    }
    for (key, suffix) in [("items", "[]"), ("additionalProperties", ".*")] {
        if schema[key].is_object() {
            rules.extend(cel_rules(&schema[key], &format!("{at}{suffix}")));
        }
    }
    rules
}

fn violation(at: &str, message: String) -> Violation {
    Violation {
        path: at.to_owned(),
        message,
    }
}

fn child(at: &str, name: &str) -> String {
    format!("{at}.{name}")
}

fn has_combinator(keywords: &Map<String, Value>) -> bool {
    ["allOf", "anyOf", "oneOf", "$ref", "properties", "items"]
        .iter()
        .any(|key| keywords.contains_key(*key))
}

/// The properties a schema names itself (not through `allOf` or a branch).
fn own_properties(keywords: &Map<String, Value>) -> Evaluated {
    if keywords.contains_key("additionalProperties")
        && keywords.get("additionalProperties") != Some(&Value::Bool(false))
    {
        return Evaluated::All;
    }
    let names = keywords
        .get("properties")
        .and_then(Value::as_object)
        .map(|p| p.keys().cloned().collect());
    Evaluated::Names(names.unwrap_or_default())
}

fn covered_by_all_of(validator: &Validator, keywords: &Map<String, Value>, name: &str) -> bool {
    keywords
        .get("allOf")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|branch| {
            validator
                .resolve(branch)
                .as_object()
                .is_some_and(|branch| own_properties(branch).covers(name))
        })
}

/// The property names a schema declares, for an unknown-field message.
fn declared(validator: &Validator, schema: &Value, unknown: &str) -> String {
    let mut names = BTreeSet::new();
    let mut stack = vec![validator.resolve(schema)];
    while let Some(schema) = stack.pop() {
        if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
            names.extend(properties.keys().cloned());
        }
        for keyword in ["allOf", "anyOf", "oneOf"] {
            for branch in schema
                .get(keyword)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                stack.push(validator.resolve(branch));
            }
        }
    }
    let near = names
        .iter()
        .map(|known| {
            (
                distance(&known.to_lowercase(), &unknown.to_lowercase()),
                known,
            )
        })
        .filter(|(d, _)| *d <= 2 && d * 3 <= unknown.len())
        .min();
    if let Some((_, known)) = near {
        return format!("did you mean `{known}`?");
    }
    match names.len() {
        0 => "the schema declares no fields".to_owned(),
        n if n > 12 => format!("the schema declares {n} other fields"),
        _ => format!(
            "the schema declares {}",
            names.into_iter().collect::<Vec<_>>().join(", ")
        ),
    }
}

/// The edit distance of two names (Levenshtein), for "did you mean".
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous + usize::from(ca != *cb);
            previous = row[j + 1];
            row[j + 1] = substitute.min(previous + 1).min(row[j] + 1);
        }
    }
    row[b.len()]
}

fn is_type(value: &Value, name: &str) -> bool {
    match name {
        "string" => value.is_string(),
        "integer" => {
            value.is_i64() || value.is_u64() || value.as_f64().is_some_and(|f| f.fract() == 0.0)
        }
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        "object" => value.is_object(),
        "array" => value.is_array(),
        "null" => value.is_null(),
        _ => true,
    }
}

fn describe(value: &Value) -> String {
    let kind = match value {
        Value::Null => return "null".to_owned(),
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => return "an array".to_owned(),
        Value::Object(_) => return "an object".to_owned(),
    };
    format!("{kind} ({value})")
}

/// Why `value` is not of `format`, for the formats both sides agree on.
fn format_problem(format: &str, value: &Value) -> Option<&'static str> {
    match (format, value) {
        ("date-time", Value::String(text)) => {
            (!is_date_time(text)).then_some("RFC 3339, e.g. 2026-01-02T03:04:05Z")
        }
        ("date", Value::String(text)) => (!is_date(text)).then_some("a date, e.g. 2026-01-02"),
        ("int32", Value::Number(n)) => n
            .as_i64()
            .is_some_and(|n| i32::try_from(n).is_err())
            .then_some("out of the 32-bit range"),
        ("byte", Value::String(text)) => {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .is_err()
                .then_some("base64")
        }
        ("uri", Value::String(text)) => (!is_uri(text)).then_some("an absolute URI with a scheme"),
        _ => None,
    }
}

fn is_date(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.len() == 10
        && bytes[4] == b'-'
        && bytes[7] == b'-'
        && [0..4, 5..7, 8..10]
            .into_iter()
            .all(|range| bytes[range].iter().all(u8::is_ascii_digit))
}

fn is_date_time(text: &str) -> bool {
    let Some((date, time)) = text.split_once(['T', 't']) else {
        return false;
    };
    let zone_at = time.rfind(['Z', 'z', '+', '-']).unwrap_or(0);
    let (clock, zone) = time.split_at(zone_at);
    let clock_ok = clock.len() >= 8
        && clock.as_bytes()[2] == b':'
        && clock.as_bytes()[5] == b':'
        && clock
            .bytes()
            .enumerate()
            .all(|(i, b)| matches!(i, 2 | 5) || b.is_ascii_digit() || (i >= 8 && b == b'.'));
    let zone_ok = matches!(zone, "Z" | "z") || (zone.len() == 6 && zone.as_bytes()[3] == b':');
    is_date(date) && clock_ok && zone_ok
}

fn is_uri(text: &str) -> bool {
    text.split_once(':').is_some_and(|(scheme, _)| {
        !scheme.is_empty()
            && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    })
}

fn bounds(keywords: &Map<String, Value>, value: &Value, at: &str, out: &mut Vec<Violation>) {
    let limit = |key: &str| keywords.get(key).and_then(Value::as_f64);
    let mut over = |key: &str, actual: f64, too_small: bool| {
        if let Some(bound) = limit(key)
            && ((too_small && actual < bound) || (!too_small && actual > bound))
        {
            out.push(violation(
                at,
                format!("{key} is {bound}, and this has {actual}"),
            ));
        }
    };
    let length = match value {
        Value::String(text) => Some(("Length", text.chars().count())),
        Value::Array(items) => Some(("Items", items.len())),
        Value::Object(object) => Some(("Properties", object.len())),
        _ => None,
    };
    if let Some((suffix, count)) = length {
        over(&format!("min{suffix}"), count as f64, true);
        over(&format!("max{suffix}"), count as f64, false);
    }
    if let Some(number) = value.as_f64() {
        over("minimum", number, true);
        over("maximum", number, false);
    }
}
