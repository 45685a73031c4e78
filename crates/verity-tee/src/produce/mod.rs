//! Producing evidence inside a TEE (`verity worker --tee`):
//! - TDX and SEV-SNP guests through Linux configfs-tsm (`/sys/kernel/config/tsm/report`),
//! - SEV-SNP guests also through `/dev/sev-guest` (kernels without configfs-tsm),
//! - AWS Nitro Enclaves through the Nitro Secure Module, `/dev/nsm`,
//! - the dev enclave's local key, for devnets.
//!
//! The hardware is not here, so each interface is behind a trait; the tests drive the same code
//! against fakes that answer like the kernel and the firmware do.

mod devices;
mod nsm;
mod sev_guest;
mod tsm;

use std::path::{Path, PathBuf};

use verity_types::AccountKey;

use crate::{Binding, DevReport, Evidence, TeeKind};

pub use devices::{IoctlError, LinuxDevice};
pub use nsm::{nitro_nsm, NsmDevice, NSM_DEVICE};
pub use sev_guest::{sev_guest, SevGuestDevice, SEV_GUEST_DEVICE};
pub use tsm::{configfs_tsm, HostFs, TsmFs, CONFIGFS_TSM};

/// Why evidence could not be produced.
#[derive(Debug, thiserror::Error)]
pub enum ProduceError {
    #[error("no TEE found: {tried} (not a TDX, SEV-SNP or Nitro guest, or the interface is not exposed)")]
    NoTee { tried: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the TSM provider {0:?} is not one Verity knows (tdx_guest, sev_guest)")]
    UnknownProvider(String),
    #[error("another process requested a report at the same time (generation {before} -> {after}); retry")]
    Raced { before: u64, after: u64 },
    #[error("the TSM provider is {got}, not the requested {wanted}")]
    WrongProvider { wanted: TeeKind, got: TeeKind },
    /// The device answered, but not with evidence.
    #[error("{device}: {reason}")]
    Device {
        device: &'static str,
        reason: String,
    },
    #[error("Verity workers do not produce {0} evidence (it needs an SGX enclave runtime); use tdx, snp, nitro or dev")]
    Unsupported(TeeKind),
    #[error("dev evidence needs the dev vendor key")]
    NoDevKey,
}

/// Which TEE to produce evidence with (`verity worker --tee`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TeeSource {
    /// The first interface present: configfs-tsm, then `/dev/sev-guest`, then `/dev/nsm`.
    Auto,
    Hardware(TeeKind),
    Dev,
}

/// What the evidence must carry.
pub struct EvidenceRequest<'a> {
    /// What to bind: report_data is its digest; Nitro documents also carry the nonce and the
    /// enclave key in fields of their own.
    pub binding: Binding<'a>,
    /// Certificates to send along when the interface gives none (SNP: VCEK, ASK, ARK).
    pub certs: &'a [Vec<u8>],
    /// Dev only: the vendor key, the measurement to claim and the time, unix seconds.
    pub dev: Option<(&'a AccountKey, &'a [u8], u64)>,
}

/// The interfaces of the machine evidence is produced on.
pub struct Host<'a> {
    pub tsm: &'a dyn TsmFs,
    pub tsm_root: &'a Path,
    pub sev_guest: &'a dyn SevGuestDevice,
    pub nsm: &'a dyn NsmDevice,
}

impl Host<'static> {
    /// This machine's real interfaces.
    pub fn linux() -> Self {
        static SEV: LinuxDevice = LinuxDevice::new(SEV_GUEST_DEVICE);
        static NSM: LinuxDevice = LinuxDevice::new(NSM_DEVICE);
        Host {
            tsm: &HostFs,
            tsm_root: Path::new(CONFIGFS_TSM),
            sev_guest: &SEV,
            nsm: &NSM,
        }
    }
}

/// Produces evidence for `request` from `source` on `host`.
pub fn produce(
    source: TeeSource,
    request: &EvidenceRequest<'_>,
    host: &Host<'_>,
) -> Result<(TeeKind, Evidence), ProduceError> {
    let tsm_present = host.tsm.exists(host.tsm_root);
    let report_data = &request.binding.report_data();
    let (kind, mut evidence) = match source {
        TeeSource::Dev => {
            let (key, measurement, now) = request.dev.ok_or(ProduceError::NoDevKey)?;
            let report = DevReport::sign(key, measurement, report_data, now);
            let evidence = Evidence {
                report: report.to_bytes(),
                ..Evidence::default()
            };
            (TeeKind::Dev, evidence)
        }
        TeeSource::Hardware(TeeKind::Tdx) => {
            configfs_tsm(host.tsm, host.tsm_root, report_data, Some(TeeKind::Tdx))?
        }
        TeeSource::Hardware(TeeKind::Snp) if tsm_present => {
            configfs_tsm(host.tsm, host.tsm_root, report_data, Some(TeeKind::Snp))?
        }
        TeeSource::Hardware(TeeKind::Snp) => sev_guest(host.sev_guest, report_data)?,
        TeeSource::Hardware(TeeKind::Nitro) => nitro_nsm(host.nsm, &request.binding)?,
        TeeSource::Hardware(kind @ (TeeKind::Sgx | TeeKind::Dev)) => {
            return Err(ProduceError::Unsupported(kind))
        }
        TeeSource::Auto if tsm_present => configfs_tsm(host.tsm, host.tsm_root, report_data, None)?,
        TeeSource::Auto if host.sev_guest.available() => sev_guest(host.sev_guest, report_data)?,
        TeeSource::Auto if host.nsm.available() => nitro_nsm(host.nsm, &request.binding)?,
        TeeSource::Auto => {
            return Err(ProduceError::NoTee {
                tried: format!(
                    "none of {}, {}, {} exists",
                    host.tsm_root.display(),
                    SEV_GUEST_DEVICE,
                    NSM_DEVICE
                ),
            })
        }
    };
    if kind == TeeKind::Snp && evidence.certs.is_empty() {
        evidence.certs = request.certs.to_vec();
    }
    Ok((kind, evidence))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{verify, Policy};
    use verity_types::Address;

    /// A machine with no TEE interface at all.
    struct Nothing;

    impl TsmFs for Nothing {
        fn exists(&self, _: &Path) -> bool {
            false
        }
        fn create_dir(&self, _: &Path) -> std::io::Result<()> {
            Err(std::io::ErrorKind::NotFound.into())
        }
        fn remove_dir(&self, _: &Path) -> std::io::Result<()> {
            Err(std::io::ErrorKind::NotFound.into())
        }
        fn write(&self, _: &Path, _: &[u8]) -> std::io::Result<()> {
            Err(std::io::ErrorKind::NotFound.into())
        }
        fn read(&self, _: &Path) -> std::io::Result<Vec<u8>> {
            Err(std::io::ErrorKind::NotFound.into())
        }
    }

    impl SevGuestDevice for Nothing {
        fn available(&self) -> bool {
            false
        }
        fn get_report(&self, _: &[u8; 96], _: &mut [u8; 4000]) -> Result<(), IoctlError> {
            Err(IoctlError::os(std::io::ErrorKind::NotFound.into()))
        }
    }

    impl NsmDevice for Nothing {
        fn available(&self) -> bool {
            false
        }
        fn exchange(&self, _: &[u8], _: &mut [u8]) -> std::io::Result<usize> {
            Err(std::io::ErrorKind::NotFound.into())
        }
    }

    fn nothing() -> Host<'static> {
        Host {
            tsm: &Nothing,
            tsm_root: Path::new(CONFIGFS_TSM),
            sev_guest: &Nothing,
            nsm: &Nothing,
        }
    }

    const WORKER: Address = Address([4; 20]);

    fn binding() -> Binding<'static> {
        Binding {
            chain_id: "c",
            worker: &WORKER,
            enclave_key: b"key",
            nonce: &[0; 32],
        }
    }

    fn request<'a>(dev: Option<(&'a AccountKey, &'a [u8], u64)>) -> EvidenceRequest<'a> {
        EvidenceRequest {
            binding: binding(),
            certs: &[],
            dev,
        }
    }

    #[test]
    fn dev_evidence_verifies_under_a_dev_policy_and_binds_the_request() {
        let key = AccountKey::generate();
        let (kind, evidence) = produce(
            TeeSource::Dev,
            &request(Some((&key, b"worker".as_slice(), 50))),
            &nothing(),
        )
        .unwrap();
        let enclave = verify(kind, &evidence, &Policy::devnet(), 60).unwrap();
        enclave.check_binding(&binding()).unwrap();
    }

    #[test]
    fn without_any_interface_auto_names_what_it_looked_for() {
        let error = produce(TeeSource::Auto, &request(None), &nothing()).unwrap_err();
        let text = error.to_string();
        for path in [CONFIGFS_TSM, SEV_GUEST_DEVICE, NSM_DEVICE] {
            assert!(text.contains(path), "{text}");
        }
        assert!(matches!(
            produce(TeeSource::Dev, &request(None), &nothing()),
            Err(ProduceError::NoDevKey)
        ));
        assert!(matches!(
            produce(
                TeeSource::Hardware(TeeKind::Sgx),
                &request(None),
                &nothing()
            ),
            Err(ProduceError::Unsupported(TeeKind::Sgx))
        ));
    }
}
