//! Writing a secret of a fork (`setup`, `cluster up`): the value sealed to
//! the scope's public key with libsodium's sealed box, which GitHub decrypts.
//! A child of `github` so it writes through [`GitHub`]'s one write function;
//! only the full xtask has it (Cargo.toml's feature `full`).

use anyhow::{Context, Result, bail};
use reqwest::Method;
use serde_json::json;

use super::{GitHub, Scope};

impl GitHub {
    /// Create or replace the secret `name` in `scope` with `value`, encrypted
    /// to the scope's public key with libsodium's sealed box (what GitHub
    /// decrypts). In dry-run mode nothing is read or sent and the request is
    /// recorded with `***` for the value and the key id.
    pub fn put_secret(&self, scope: Scope, name: &str, value: &str) -> Result<()> {
        let base = self.repo_path(&scope.base("secrets"));
        let path = format!("{base}/{name}");
        let masked = json!({"encrypted_value": "***", "key_id": "***"});
        if self.dry_run {
            self.write(Method::PUT, &path, None, Some(&masked))?;
            return Ok(());
        }
        let key = self
            .get_optional(&format!("{base}/public-key"))?
            .with_context(|| format!("{scope} has no secrets public key (does it exist?)"))?;
        let (Some(key_id), Some(public_key)) = (key["key_id"].as_str(), key["key"].as_str()) else {
            bail!("GitHub's public key for {scope} has no key_id and key: {key}");
        };
        let encrypted = seal(public_key, value.as_bytes())
            .with_context(|| format!("encrypting secret {name} for {scope}"))?;
        let body = json!({"encrypted_value": encrypted, "key_id": key_id});
        let shown = json!({"encrypted_value": "***", "key_id": key_id});
        self.write(Method::PUT, &path, Some(&body), Some(&shown))?;
        Ok(())
    }
}

/// `value` sealed (libsodium's `crypto_box_seal`) to the base64 X25519
/// public key `public_key`, base64: the `encrypted_value` of a GitHub secret.
pub fn seal(public_key: &str, value: &[u8]) -> Result<String> {
    use base64::Engine as _;
    let engine = base64::engine::general_purpose::STANDARD;
    let bytes: [u8; 32] = engine
        .decode(public_key)
        .context("the public key is not base64")?
        .try_into()
        .map_err(|_| anyhow::anyhow!("the public key is not 32 bytes"))?;
    let key = crypto_box::PublicKey::from(bytes);
    let sealed = key
        .seal(&mut crypto_box::aead::OsRng, value)
        .map_err(|_| anyhow::anyhow!("sealing failed"))?;
    Ok(engine.encode(sealed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_secrets_open_with_the_private_key_only() {
        use base64::Engine as _;
        let engine = base64::engine::general_purpose::STANDARD;
        let secret = crypto_box::SecretKey::generate(&mut crypto_box::aead::OsRng);
        let public = engine.encode(secret.public_key().as_bytes());
        let sealed = engine.decode(seal(&public, b"the value").unwrap()).unwrap();
        assert_eq!(secret.unseal(&sealed).unwrap(), b"the value");
        let other = crypto_box::SecretKey::generate(&mut crypto_box::aead::OsRng);
        assert!(other.unseal(&sealed).is_err());
        assert!(seal("not base64!", b"x").is_err());
    }

    #[test]
    fn dry_run_records_writes_with_secrets_masked_and_sends_nothing() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        // Port 9 on loopback: nothing answers, so a sent request would fail.
        let github = GitHub::new("http://127.0.0.1:9", "acme/demo", "t".into())
            .unwrap()
            .dry_run(true);
        github
            .put_secret(Scope::Environment("prod"), "KEY", "the secret value")
            .unwrap();
        github
            .put(
                &github.repo_path("/actions/permissions"),
                &json!({"enabled": true}),
            )
            .unwrap();
        let writes = github.writes();
        assert_eq!(
            writes[0].to_string(),
            r#"PUT /repos/acme/demo/environments/prod/secrets/KEY {"encrypted_value":"***","key_id":"***"}"#
        );
        assert_eq!(
            writes[1].to_string(),
            r#"PUT /repos/acme/demo/actions/permissions {"enabled":true}"#
        );
        assert!(!format!("{writes:?}").contains("the secret value"));
    }
}
