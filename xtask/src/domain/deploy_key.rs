//! The GitOps deploy key: a new ed25519 key pair made in memory and written
//! as OpenSSH writes it (`ssh-keygen -t ed25519 -N ''`), so the private half
//! never touches a disk: it exists in memory until it is sent, sealed, to
//! GitHub's secrets.

use anyhow::Result;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

/// A deploy key pair: the private key (OpenSSH PEM) and the public key line.
pub struct KeyPair {
    pub private: String,
    pub public: String,
}

const KEY_TYPE: &str = "ssh-ed25519";

/// A new ed25519 key pair, commented `comment`.
pub fn generate(comment: &str) -> Result<KeyPair> {
    let mut seed = [0u8; 32];
    rand_core::RngCore::try_fill_bytes(&mut rand_core::OsRng, &mut seed)
        .map_err(|e| anyhow::anyhow!("the system's random source: {e}"))?;
    Ok(from_seed(&seed, comment, fastrand::u32(..)))
}

/// The key pair of `seed`; `check` is OpenSSH's random check integer.
fn from_seed(seed: &[u8; 32], comment: &str, check: u32) -> KeyPair {
    let signing = ed25519_dalek::SigningKey::from_bytes(seed);
    let public = signing.verifying_key().to_bytes();
    let mut public_blob = Vec::new();
    string(&mut public_blob, KEY_TYPE.as_bytes());
    string(&mut public_blob, &public);
    // The private section: check integers, the key (seed then public half), comment, padding.
    let mut section = Vec::new();
    section.extend(check.to_be_bytes());
    section.extend(check.to_be_bytes());
    string(&mut section, KEY_TYPE.as_bytes());
    string(&mut section, &public);
    let mut keypair = seed.to_vec();
    keypair.extend(public);
    string(&mut section, &keypair);
    string(&mut section, comment.as_bytes());
    let mut pad = 1u8;
    while section.len() % 8 != 0 {
        section.push(pad);
        pad += 1;
    }
    let mut file = b"openssh-key-v1\0".to_vec();
    for field in [&b"none"[..], b"none", b""] {
        string(&mut file, field);
    }
    file.extend(1u32.to_be_bytes());
    string(&mut file, &public_blob);
    string(&mut file, &section);
    let encoded = BASE64.encode(&file);
    let mut private = String::from("-----BEGIN OPENSSH PRIVATE KEY-----\n");
    for line in encoded.as_bytes().chunks(70) {
        private.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        private.push('\n');
    }
    private.push_str("-----END OPENSSH PRIVATE KEY-----\n");
    KeyPair {
        private,
        public: format!("{KEY_TYPE} {} {comment}", BASE64.encode(&public_blob)),
    }
}

/// An SSH wire-format string: its length (u32, big-endian), then its bytes.
fn string(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend((bytes.len() as u32).to_be_bytes());
    out.extend(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::fork_settings::key_only;

    /// OpenSSH itself reads the key back and derives the same public half
    /// (`ssh-keygen -y`); the file exists only inside this test.
    #[test]
    fn openssh_reads_the_key_and_derives_its_public_half() {
        let pair = generate("gitops").unwrap();
        assert!(
            pair.public
                .starts_with("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI")
        );
        assert!(pair.public.ends_with(" gitops"));
        // tempfile makes the directory 0700.
        let dir = crate::plumbing::fs::temp_dir("xtask-key-test-").unwrap();
        let file = dir.path().join("key");
        let mut options = std::fs::OpenOptions::new();
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        std::io::Write::write_all(
            &mut options.write(true).create_new(true).open(&file).unwrap(),
            pair.private.as_bytes(),
        )
        .unwrap();
        let output = std::process::Command::new("ssh-keygen")
            .args(["-y", "-f"])
            .arg(&file)
            .output();
        drop(dir);
        let output = output.expect("ssh-keygen (openssh-client) is installed");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let derived = String::from_utf8(output.stdout).unwrap();
        assert_eq!(key_only(&derived), key_only(&pair.public));
        assert_eq!(key_only(&pair.public).split(' ').count(), 2);
    }

    #[test]
    fn the_same_seed_gives_the_same_keys_and_another_seed_others() {
        let (a, b) = (from_seed(&[7; 32], "c", 1), from_seed(&[7; 32], "c", 1));
        assert_eq!((a.private, a.public.clone()), (b.private, b.public));
        assert_ne!(from_seed(&[8; 32], "c", 1).public, a.public);
    }
}
