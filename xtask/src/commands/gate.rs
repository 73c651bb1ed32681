//! `cargo xtask gate record|check|keygen`: test results bound to a commit and
//! the image digest that was tested, in the local store and, with
//! GATE_SIGNING_KEY, as a signed attestation (see `domain/gate_store.rs`).

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};

use crate::domain::attestation::{self, PreprodPredicate, Results, Signer};
use crate::domain::gate_store::{
    self, Conclusion, Gate, GateStore, PREPROD_GATE, SIGNED_IN_ACTIONS,
};
use crate::domain::gitops::GitopsOptions;
use crate::domain::tags;

#[derive(Subcommand)]
pub enum GateCommand {
    /// Record a suite's result for a commit and the image digest it tested.
    Record(RecordArgs),
    /// Exit 0 only if the latest result for the commit passed (for --digest, if given).
    Check(CheckArgs),
    /// Write a P-256 key pair for signed gates: gate.key (PKCS#8 PEM, mode 0600; put it in
    /// GATE_SIGNING_KEY) and gate.pub (for release/verify: GATE_PUBLIC_KEY or --public-key).
    Keygen(KeygenArgs),
}

#[derive(Args)]
pub struct KeygenArgs {
    /// Directory for gate.key and gate.pub (existing files are never overwritten).
    #[arg(long)]
    out_dir: std::path::PathBuf,
}

#[derive(Args)]
pub struct RecordArgs {
    /// The commit the tested image was built from.
    #[arg(long)]
    sha: String,
    /// Gate name, e.g. preprod-tests.
    #[arg(long = "name")]
    gate: String,
    #[arg(long, value_enum)]
    conclusion: Conclusion,
    /// The image digest that was tested (sha256:…).
    #[arg(long)]
    digest: Option<String>,
    /// With GATE_SIGNING_KEY set, a preprod-tests result is also signed and stored in this
    /// image repository (<registry>/<path> or oci:<dir>) beside the image.
    #[arg(long, env = "IMAGE_REPOSITORY", value_parser = crate::domain::services::image_location)]
    repository: Option<String>,
    #[command(flatten)]
    gitops: GitopsOptions,
}

#[derive(Args)]
pub struct CheckArgs {
    /// The commit whose gate to check.
    #[arg(long)]
    sha: String,
    /// Gate name, e.g. preprod-tests.
    #[arg(long = "name")]
    gate: String,
    /// Require the pass to be for this image digest.
    #[arg(long)]
    digest: Option<String>,
    #[command(flatten)]
    gitops: GitopsOptions,
}

pub fn run(command: GateCommand) -> Result<()> {
    match command {
        GateCommand::Record(args) => record(args),
        GateCommand::Check(args) => {
            let sha = gate_store::full_sha(&args.gitops, &args.sha)?;
            let store = GateStore::local(&args.gitops)?.with_context(|| {
                format!(
                    "gate check reads the local store, which GitHub Actions does not use: {SIGNED_IN_ACTIONS}; \
                     check the signed gate with `cargo xtask verify`"
                )
            })?;
            let gate = store.check(&sha, &args.gate, args.digest.as_deref())?;
            println!("gate {} passed for {sha}{}", args.gate, at(&gate.digest));
            Ok(())
        }
        GateCommand::Keygen(args) => {
            let (private, public) = attestation::keygen(&args.out_dir)?;
            println!(
                "wrote {} (mode 0600: the value of GATE_SIGNING_KEY, a secret) and {} (GATE_PUBLIC_KEY \
                 or --public-key for release and verify)",
                private.display(),
                public.display()
            );
            Ok(())
        }
    }
}

fn record(args: RecordArgs) -> Result<()> {
    if let Some(digest) = &args.digest {
        tags::validate_digest(digest)?;
    }
    let sha = gate_store::full_sha(&args.gitops, &args.sha)?;
    let store = GateStore::local(&args.gitops)?;
    let signer = Signer::from_env(args.repository.as_deref())?;
    if store.is_none() && signer.is_none() {
        bail!("{SIGNED_IN_ACTIONS}");
    }
    if signer.is_some() && (args.gate != PREPROD_GATE || args.digest.is_none()) {
        bail!(
            "GATE_SIGNING_KEY signs {PREPROD_GATE} results for an image: pass --name {PREPROD_GATE} \
             and --digest, or unset GATE_SIGNING_KEY to record without signing"
        );
    }
    let gate = Gate {
        conclusion: args.conclusion,
        digest: args.digest.unwrap_or_default(),
    };
    if let Some(store) = &store {
        store.record(&sha, &args.gate, &gate)?;
        println!(
            "recorded gate {} = {:?} for {sha}{}",
            args.gate,
            gate.conclusion,
            at(&gate.digest)
        );
    }
    if let Some(signer) = signer {
        // `gate record` knows no per-check counts: one suite, passed or not.
        let results = match gate.conclusion {
            Conclusion::Success => Results {
                passed: 1,
                failed: 0,
            },
            Conclusion::Failure => Results {
                passed: 0,
                failed: 1,
            },
        };
        signer.attest_preprod(
            &gate.digest,
            &PreprodPredicate::now(&sha, gate.conclusion, results),
        )?;
    }
    Ok(())
}

fn at(digest: &str) -> String {
    if digest.is_empty() {
        String::new()
    } else {
        format!(" (image {digest})")
    }
}
