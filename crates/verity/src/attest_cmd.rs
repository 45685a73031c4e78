//! `verity attest verify`: checks TEE evidence offline, the way the chain does at registration.
//! `verity attest produce`: makes evidence on this machine, to check a TEE host before it runs a
//! worker.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use base64::Engine as _;
use clap::{Args, Subcommand};
use verity_tee::{AttestationError, Binding, Evidence, Policy, TeeKind};
use verity_types::{Address, Hash};

#[derive(Subcommand)]
pub enum AttestCommand {
    /// Verify evidence: exit 0 with the verdict when it is valid, 1 with the reason when not.
    Verify(VerifyArgs),
    /// Produce evidence on this machine binding an enclave key, and write it to files.
    Produce(ProduceArgs),
}

#[derive(Args)]
pub struct ProduceArgs {
    /// auto (the first of configfs-tsm, /dev/sev-guest, /dev/nsm), tdx, snp, nitro or dev.
    #[arg(long, default_value = "auto")]
    tee: String,
    /// The enclave public key to bind, hex.
    #[arg(long)]
    enclave_key: String,
    #[arg(long)]
    chain_id: String,
    #[arg(long)]
    worker: Address,
    /// The chain's attestation nonce (`GET /v1/attestation-nonce`).
    #[arg(long)]
    nonce: Hash,
    /// Certificates to add to SNP evidence when the kernel gives none (VCEK, ASK, ARK).
    #[arg(long = "cert")]
    certs: Vec<PathBuf>,
    /// Directory for report.bin and cert-N.bin; created if needed.
    #[arg(long)]
    out: PathBuf,
}

#[derive(Args)]
pub struct VerifyArgs {
    /// tdx, sgx, snp, nitro or dev.
    #[arg(long)]
    kind: TeeKind,
    /// The quote, report or attestation document: raw bytes, hex or base64.
    #[arg(long)]
    report: PathBuf,
    /// DCAP collateral (QuoteCollateralV3 JSON).
    #[arg(long)]
    collateral: Option<PathBuf>,
    /// Certificates that travel beside the report (SNP: VCEK, ASK, ARK), DER or PEM.
    #[arg(long, num_args = 1..)]
    certs: Vec<PathBuf>,
    /// The time to verify at, unix seconds (the chain uses the block timestamp).
    #[arg(long)]
    now: u64,
    /// Policy file, TOML or JSON; without one: any hardware kind and measurement, current TCB,
    /// no debug enclaves, no dev enclaves.
    #[arg(long)]
    policy: Option<PathBuf>,
    /// Also check that report_data binds this enclave key (hex) for --chain-id, --worker and
    /// --nonce, as RegisterEnclave does.
    #[arg(long, requires_all = ["chain_id", "worker", "nonce"])]
    enclave_key: Option<String>,
    #[arg(long, requires = "enclave_key")]
    chain_id: Option<String>,
    #[arg(long, requires = "enclave_key")]
    worker: Option<Address>,
    /// The chain's attestation nonce the evidence binds (`GET /v1/attestation-nonce`).
    #[arg(long, requires = "enclave_key")]
    nonce: Option<Hash>,
    /// Print the verdict as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(cmd: AttestCommand) -> Result<()> {
    match cmd {
        AttestCommand::Verify(args) => verify(args),
        AttestCommand::Produce(args) => produce(args),
    }
}

fn produce(args: ProduceArgs) -> Result<()> {
    use verity_tee::produce::{produce, EvidenceRequest, Host};

    let enclave_key = enclave_key_arg(&args.enclave_key)?;
    let binding = Binding {
        chain_id: &args.chain_id,
        worker: &args.worker,
        enclave_key: &enclave_key,
        nonce: &args.nonce.0,
    };
    let certs = args
        .certs
        .iter()
        .map(|p| read(p))
        .collect::<Result<Vec<_>>>()?;
    // A dev report is signed by a throwaway vendor key: it proves nothing about hardware anyway.
    let vendor = verity_types::AccountKey::generate();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .context("the clock is before 1970")?
        .as_secs();
    let request = EvidenceRequest {
        binding,
        certs: &certs,
        dev: Some((&vendor, b"verity attest produce".as_slice(), now)),
    };
    let source = crate::task_cmd::parse_tee(&args.tee)?;
    let (kind, evidence) = produce(source, &request, &Host::linux())?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let write = |name: String, bytes: &[u8]| -> Result<PathBuf> {
        let path = args.out.join(name);
        std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    };
    let report = write("report.bin".into(), &evidence.report)?;
    let collateral = evidence
        .collateral
        .as_deref()
        .map(|c| write("collateral.json".into(), c))
        .transpose()?;
    let cert_paths = evidence
        .certs
        .iter()
        .enumerate()
        .map(|(i, c)| write(format!("cert-{i}.bin"), c))
        .collect::<Result<Vec<_>>>()?;
    outln!("{kind} evidence written to {}", report.display());
    outln!("  report_data: {}", hex::encode(binding.report_data()));
    let mut check = format!(
        "verity attest verify --kind {kind} --report {} --now {now}",
        report.display()
    );
    if let Some(c) = &collateral {
        check.push_str(&format!(" --collateral {}", c.display()));
    }
    if !cert_paths.is_empty() {
        check.push_str(" --certs");
        for c in &cert_paths {
            check.push_str(&format!(" {}", c.display()));
        }
    }
    check.push_str(&format!(
        " --enclave-key {} --chain-id {} --worker {} --nonce {}",
        hex::encode(&enclave_key),
        args.chain_id,
        args.worker,
        args.nonce
    ));
    outln!("  check it:    {check}");
    if kind == TeeKind::Dev {
        outln!("               (with --policy naming a policy that has allow_dev and [kinds.dev])");
    }
    Ok(())
}

fn verify(args: VerifyArgs) -> Result<()> {
    let policy = match &args.policy {
        Some(path) => Policy::parse(&read_text(path)?)?,
        None => Policy::permissive(),
    };
    let evidence = Evidence {
        report: decode_binary(&read(&args.report)?),
        collateral: args.collateral.as_deref().map(read).transpose()?,
        certs: args
            .certs
            .iter()
            .map(|p| read(p).map(|b| decode_binary(&b)))
            .collect::<Result<_>>()?,
    };
    let key = args
        .enclave_key
        .as_deref()
        .map(enclave_key_arg)
        .transpose()?;
    let verdict = verity_tee::verify(args.kind, &evidence, &policy, args.now).and_then(|enclave| {
        if let (Some(key), Some(chain_id), Some(worker), Some(nonce)) =
            (&key, &args.chain_id, &args.worker, &args.nonce)
        {
            enclave.check_binding(&Binding {
                chain_id,
                worker,
                enclave_key: key,
                nonce: &nonce.0,
            })?;
        }
        Ok(enclave)
    });
    match verdict {
        Ok(enclave) => {
            if args.json {
                let mut verdict = serde_json::to_value(&enclave)?;
                verdict["valid"] = true.into();
                outln!("{}", serde_json::to_string_pretty(&verdict)?);
            } else {
                outln!("valid {} evidence", enclave.kind);
                outln!("  measurement:  {}", hex::encode(&enclave.measurement));
                outln!("  report_data:  {}", hex::encode(&enclave.report_data));
                outln!("  TCB status:   {}", enclave.tcb_status);
                if !enclave.advisories.is_empty() {
                    outln!("  advisories:   {}", enclave.advisories.join(", "));
                }
                if enclave.debug {
                    outln!("  debug:        yes (the host can read the enclave's memory)");
                }
                if enclave.kind == TeeKind::Dev {
                    outln!("  note:         dev TEE, not hardware-backed");
                }
            }
            Ok(())
        }
        Err(error) => {
            if args.json {
                let verdict = serde_json::json!({
                    "valid": false,
                    "error": { "code": code(&error), "message": error.to_string() },
                });
                outln!("{}", serde_json::to_string_pretty(&verdict)?);
            }
            Err(anyhow::Error::new(error).context(format!("{} evidence is not valid", args.kind)))
        }
    }
}

/// Stable machine-readable codes for rejections.
fn code(error: &AttestationError) -> &'static str {
    match error {
        AttestationError::Malformed { .. } => "malformed",
        AttestationError::Rejected { .. } => "rejected",
        AttestationError::TcbNotAccepted { .. } => "tcb_not_accepted",
        AttestationError::DebugNotAllowed => "debug_not_allowed",
        AttestationError::MeasurementNotAllowed { .. } => "measurement_not_allowed",
        AttestationError::KindNotAllowed(_) => "kind_not_allowed",
        AttestationError::ReportDataMismatch => "report_data_mismatch",
        AttestationError::NonceMismatch => "nonce_mismatch",
        AttestationError::PublicKeyMismatch => "public_key_mismatch",
        AttestationError::Stale { .. } => "stale",
        AttestationError::Missing { .. } => "missing",
    }
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

/// The bytes of an `--enclave-key` argument, hex with or without `0x`.
fn enclave_key_arg(text: &str) -> Result<Vec<u8>> {
    hex::decode(text.trim_start_matches("0x")).context("--enclave-key is not hex")
}

/// Hex text, base64 text or raw bytes, in that order. Text in other forms (JSON, PEM) stays as
/// it is: the verifiers read those themselves.
fn decode_binary(bytes: &[u8]) -> Vec<u8> {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return bytes.to_vec();
    };
    let compact: String = text.split_whitespace().collect();
    if compact.is_empty() {
        return bytes.to_vec();
    }
    if let Ok(decoded) = hex::decode(compact.trim_start_matches("0x")) {
        return decoded;
    }
    if let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(&compact) {
        return decoded;
    }
    bytes.to_vec()
}

#[cfg(test)]
mod tests {
    use super::decode_binary;

    #[test]
    fn hex_base64_and_raw_are_told_apart() {
        assert_eq!(decode_binary(b"0a0B\n"), [0x0a, 0x0b]);
        assert_eq!(decode_binary(b"AQID"), [1, 2, 3]);
        assert_eq!(decode_binary(b"{\"a\":1}"), b"{\"a\":1}");
        assert_eq!(decode_binary(&[0xff, 0x00]), [0xff, 0x00]);
        let pem = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
        assert_eq!(decode_binary(pem), pem);
    }
}
