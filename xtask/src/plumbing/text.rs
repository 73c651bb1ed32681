//! Text: diffs as `--dry-run`s print them, timestamps, Argo CD's globs,
//! URLs without their credentials, bytes in hex, and a line-by-line edit of a
//! file that is not YAML (YAML is edited through `plumbing::yaml` only).

/// `bytes` in lowercase hex, two digits each (a digest as `sha256sum` prints it).
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A unified diff of one file, `a/<path>` → `b/<path>`, as `--dry-run`s print.
pub fn unified_diff(path: &str, old: &str, new: &str) -> String {
    similar::TextDiff::from_lines(old, new)
        .unified_diff()
        .header(&format!("a/{path}"), &format!("b/{path}"))
        .to_string()
}

/// `YYYY-MM-DDTHH:MM:SSZ` for a Unix time in seconds (times before 1970 are 1970).
pub fn rfc3339(epoch_seconds: i64) -> String {
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_secs(epoch_seconds.max(0) as u64);
    humantime::format_rfc3339_seconds(time).to_string()
}

/// `url` without its credentials, for every message and path: the user info
/// of an http(s) URL (`https://bot:TOKEN@host/x` → `https://host/x`; a token
/// may be the user name), or a `user:password@` anywhere. An ssh user name
/// (`git@host:x`) is not a secret and stays.
pub fn redact_url(url: &str) -> String {
    match split_credentials(url) {
        Some((without, _)) => without,
        None => url.to_owned(),
    }
}

/// `url` without its secret user info, and that user info; None when `url`
/// holds no secret.
pub fn split_credentials(url: &str) -> Option<(String, &str)> {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, url),
    };
    let authority = &rest[..rest.find('/').unwrap_or(rest.len())];
    let (userinfo, _) = authority.rsplit_once('@')?;
    let http =
        scheme.is_some_and(|s| s.eq_ignore_ascii_case("http") || s.eq_ignore_ascii_case("https"));
    if !http && !userinfo.contains(':') {
        return None;
    }
    let scheme = scheme.map(|s| format!("{s}://")).unwrap_or_default();
    Some((format!("{scheme}{}", &rest[userinfo.len() + 1..]), userinfo))
}

/// Argo CD's destination patterns: `*` matches any run of characters.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((prefix, rest)) => {
            text.starts_with(prefix)
                && (0..=text.len() - prefix.len())
                    .any(|i| glob_match(rest, &text[prefix.len() + i..]))
        }
    }
}

/// `text` with each line mapped, keeping its line endings: for files that are
/// not YAML (CODEOWNERS). A YAML file is edited through `plumbing::yaml`.
pub fn map_lines(text: &str, mut map: impl FnMut(&str) -> String) -> String {
    text.split_inclusive('\n')
        .map(|line| {
            let (body, end) = match line.strip_suffix('\n') {
                Some(body) => (body, "\n"),
                None => (line, ""),
            };
            format!("{}{end}", map(body))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339_matches_known_instants() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(super::rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }
}
