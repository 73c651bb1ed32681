//! Image tags and what they name: `main-<sha>`, `pr-<N>-<sha>`, `v<X.Y.Z>`.
//!
//! The SHA in a tag is the thread of trust: it names the commit the image was
//! built from, so promotion order can be checked against git ancestry.

use std::fmt;

use anyhow::{Result, bail};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageTag {
    /// Built from a commit on main.
    Main { sha: String },
    /// Built from a pull request's head commit.
    Pr { number: u64, sha: String },
    /// A release: a retag of a `main-<sha>` image.
    Release(semver::Version),
}

impl ImageTag {
    pub fn parse(tag: &str) -> Result<Self> {
        let hint =
            "expected main-<sha>, pr-<N>-<sha> or v<X.Y.Z> (sha: 7 to 40 lowercase hex digits)";
        if let Some(sha) = tag.strip_prefix("main-") {
            if is_sha(sha) {
                return Ok(Self::Main {
                    sha: sha.to_owned(),
                });
            }
        } else if let Some(rest) = tag.strip_prefix("pr-") {
            if let Some((number, sha)) = rest.split_once('-')
                && let Ok(number) = number.parse::<u64>()
                && number > 0
                && is_sha(sha)
            {
                return Ok(Self::Pr {
                    number,
                    sha: sha.to_owned(),
                });
            }
        } else if let Some(version) = tag.strip_prefix('v')
            && let Ok(version) = semver::Version::parse(version)
        {
            return Ok(Self::Release(version));
        }
        bail!("malformed image tag {tag:?}: {hint}")
    }
}

impl fmt::Display for ImageTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Main { sha } => write!(f, "main-{sha}"),
            Self::Pr { number, sha } => write!(f, "pr-{number}-{sha}"),
            Self::Release(version) => write!(f, "v{version}"),
        }
    }
}

pub fn is_sha(s: &str) -> bool {
    (7..=40).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// An OCI digest: `sha256:` and 64 lowercase hex digits.
/// An image reference as given: a tag or digest, or `@FILE`, the digest an
/// earlier job wrote there (`image build --digest-file`; a workflow artifact),
/// so a later job reads exactly the bits that job pushed, never a tag again.
pub fn reference_arg(arg: &str) -> Result<String> {
    let Some(file) = arg.strip_prefix('@') else {
        return Ok(arg.to_owned());
    };
    let text = std::fs::read_to_string(file)
        .map_err(|e| anyhow::anyhow!("reading the digest from {file}: {e}"))?;
    let digest = text.trim().to_owned();
    validate_digest(&digest).map_err(|e| anyhow::anyhow!("{file}: {e:#}"))?;
    Ok(digest)
}

pub fn validate_digest(digest: &str) -> Result<()> {
    match digest.strip_prefix("sha256:") {
        Some(hex)
            if hex.len() == 64
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) =>
        {
            Ok(())
        }
        _ => bail!(
            "malformed digest {digest:?}: expected sha256: followed by 64 lowercase hex digits"
        ),
    }
}

/// A commit sha as people read it: its first 7 characters.
pub fn short(sha: &str) -> &str {
    &sha[..sha.len().min(7)]
}

/// A digest as people read it: `sha256:` and 12 hex digits.
pub fn short_digest(digest: &str) -> &str {
    &digest[..digest.len().min("sha256:".len() + 12)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_kinds() {
        assert_eq!(
            ImageTag::parse("main-abc1234").unwrap(),
            ImageTag::Main {
                sha: "abc1234".into()
            }
        );
        assert_eq!(
            ImageTag::parse("pr-12-abc1234").unwrap(),
            ImageTag::Pr {
                number: 12,
                sha: "abc1234".into()
            }
        );
        assert_eq!(ImageTag::parse("v1.2.3").unwrap().to_string(), "v1.2.3");
        for tag in [
            "main-abc1234",
            "pr-7-0123456789abcdef0123456789abcdef01234567",
            "v0.1.0-rc.1",
        ] {
            assert_eq!(ImageTag::parse(tag).unwrap().to_string(), tag);
        }
    }

    #[test]
    fn rejects_malformed_tags_with_the_expected_forms() {
        for bad in [
            "latest",
            "main-xyz",
            "main-abc",
            "main-ABC1234",
            "pr-0-abc1234",
            "pr-x-abc1234",
            "v1.2",
            "1.2.3",
            "",
        ] {
            let err = ImageTag::parse(bad).unwrap_err().to_string();
            assert!(err.contains("expected main-<sha>"), "{bad}: {err}");
        }
    }

    #[test]
    fn digests() {
        assert!(validate_digest(&format!("sha256:{}", "a".repeat(64))).is_ok());
        assert!(validate_digest("sha256:abc").is_err());
        assert!(validate_digest(&format!("sha512:{}", "a".repeat(64))).is_err());
    }
}
