//! Produce, then verify: each device fake answers with a real vector in the interface's real
//! format (configfs-tsm's outblob and GHCB certificate table, SNP_GET_REPORT's MSG_REPORT_RSP,
//! the NSM's CBOR response), so the evidence the worker would submit parses and verifies at the
//! vector's time. Only the binding fails, because the vector binds another enclave's data.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use verity_tee::produce::{
    produce, EvidenceRequest, Host, IoctlError, NsmDevice, SevGuestDevice, TeeSource, TsmFs,
    CONFIGFS_TSM,
};
use verity_tee::{verify, AttestationError, Binding, Policy, TeeKind};
use verity_types::Address;

fn vector(path: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/vectors/{path}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn snp_report() -> Vec<u8> {
    hex::decode(
        String::from_utf8(vector("snp/report_milan.hex"))
            .unwrap()
            .trim(),
    )
    .unwrap()
}

/// The DER of each certificate in a PEM file.
fn pem_to_der(pem: &[u8]) -> Vec<Vec<u8>> {
    let text = String::from_utf8(pem.to_vec()).unwrap();
    text.split("-----BEGIN CERTIFICATE-----")
        .skip(1)
        .map(|block| {
            let body: String = block
                .split("-----END CERTIFICATE-----")
                .next()
                .unwrap()
                .split_whitespace()
                .collect();
            base64::engine::general_purpose::STANDARD
                .decode(body)
                .unwrap()
        })
        .collect()
}

/// The GHCB certificate table a host hands an SNP guest: VCEK, ASK, ARK with AMD's GUIDs.
fn ghcb_cert_table() -> Vec<u8> {
    let ask_ark = pem_to_der(&vector("snp/cert_chain_milan"));
    let certs = [
        (
            "63da758d-e664-4564-adc5-f4b93be8accd",
            vector("snp/vcek_milan.der"),
        ),
        ("4ab7b379-bbac-4fe4-a02f-05aef327c782", ask_ark[0].clone()),
        ("c0b406a4-a803-4952-9743-3fb6014cd0ae", ask_ark[1].clone()),
    ];
    let header = 24 * (certs.len() + 1);
    let (mut table, mut data) = (Vec::new(), Vec::new());
    for (guid, der) in &certs {
        table.extend_from_slice(uuid_le(guid).as_slice());
        table.extend_from_slice(&((header + data.len()) as u32).to_le_bytes());
        table.extend_from_slice(&(der.len() as u32).to_le_bytes());
        data.extend_from_slice(der);
    }
    table.extend_from_slice(&[0; 24]);
    table.extend_from_slice(&data);
    table
}

/// A GUID in the mixed-endian byte order of EFI tables.
fn uuid_le(text: &str) -> [u8; 16] {
    let bytes = hex::decode(text.replace('-', "")).unwrap();
    let mut out = [0; 16];
    out[..4].copy_from_slice(&[bytes[3], bytes[2], bytes[1], bytes[0]]);
    out[4..6].copy_from_slice(&[bytes[5], bytes[4]]);
    out[6..8].copy_from_slice(&[bytes[7], bytes[6]]);
    out[8..].copy_from_slice(&bytes[8..]);
    out
}

/// configfs-tsm answering with a real quote (TDX) or report and certificate table (SNP).
struct Configfs {
    provider: &'static str,
    outblob: Vec<u8>,
    auxblob: Vec<u8>,
    files: RefCell<BTreeMap<PathBuf, Vec<u8>>>,
}

impl TsmFs for Configfs {
    fn exists(&self, path: &Path) -> bool {
        path == Path::new(CONFIGFS_TSM) || self.files.borrow().keys().any(|f| f.starts_with(path))
    }
    fn create_dir(&self, path: &Path) -> std::io::Result<()> {
        let mut files = self.files.borrow_mut();
        files.insert(path.join("provider"), format!("{}\n", self.provider).into());
        files.insert(path.join("generation"), b"0\n".to_vec());
        Ok(())
    }
    fn remove_dir(&self, path: &Path) -> std::io::Result<()> {
        self.files.borrow_mut().retain(|f, _| !f.starts_with(path));
        Ok(())
    }
    fn write(&self, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
        let dir = path.parent().unwrap();
        let mut files = self.files.borrow_mut();
        files.insert(path.to_path_buf(), bytes.to_vec());
        files.insert(dir.join("outblob"), self.outblob.clone());
        files.insert(dir.join("auxblob"), self.auxblob.clone());
        files.insert(dir.join("generation"), b"1\n".to_vec());
        Ok(())
    }
    fn read(&self, path: &Path) -> std::io::Result<Vec<u8>> {
        self.files
            .borrow()
            .get(path)
            .cloned()
            .ok_or_else(|| std::io::ErrorKind::NotFound.into())
    }
}

/// `/dev/sev-guest` answering SNP_GET_REPORT with the real Milan report in a MSG_REPORT_RSP.
struct SevGuest;

impl SevGuestDevice for SevGuest {
    fn available(&self) -> bool {
        true
    }
    fn get_report(&self, _: &[u8; 96], response: &mut [u8; 4000]) -> Result<(), IoctlError> {
        let report = snp_report();
        response[..4].copy_from_slice(&0u32.to_le_bytes());
        response[4..8].copy_from_slice(&(report.len() as u32).to_le_bytes());
        response[32..32 + report.len()].copy_from_slice(&report);
        Ok(())
    }
}

/// `/dev/nsm` answering an attestation request with the real COSE document, CBOR-encoded as
/// the NSM's `Response::Attestation`.
struct Nsm;

impl NsmDevice for Nsm {
    fn available(&self) -> bool {
        true
    }
    fn exchange(&self, request: &[u8], response: &mut [u8]) -> std::io::Result<usize> {
        use aws_nitro_enclaves_nsm_api::api::{Request, Response};
        let request: Request = serde_cbor::from_slice(request).unwrap();
        assert!(
            matches!(request, Request::Attestation { .. }),
            "{request:?}"
        );
        let answer = serde_cbor::to_vec(&Response::Attestation {
            document: vector("nitro/attestation.cose"),
        })
        .unwrap();
        response[..answer.len()].copy_from_slice(&answer);
        Ok(answer.len())
    }
}

/// No interface at all: each test plugs in the one it exercises.
struct Absent;

impl TsmFs for Absent {
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

impl SevGuestDevice for Absent {
    fn available(&self) -> bool {
        false
    }
    fn get_report(&self, _: &[u8; 96], _: &mut [u8; 4000]) -> Result<(), IoctlError> {
        unreachable!("never called when unavailable")
    }
}

impl NsmDevice for Absent {
    fn available(&self) -> bool {
        false
    }
    fn exchange(&self, _: &[u8], _: &mut [u8]) -> std::io::Result<usize> {
        unreachable!("never called when unavailable")
    }
}

const WORKER: Address = Address([9; 20]);

fn binding() -> Binding<'static> {
    Binding {
        chain_id: "verity-devnet",
        worker: &WORKER,
        enclave_key: &[4; 32],
        nonce: &[6; 32],
    }
}

fn request() -> EvidenceRequest<'static> {
    EvidenceRequest {
        binding: binding(),
        certs: &[],
        dev: None,
    }
}

fn host<'a>(
    tsm: &'a dyn TsmFs,
    sev_guest: &'a dyn SevGuestDevice,
    nsm: &'a dyn NsmDevice,
) -> Host<'a> {
    Host {
        tsm,
        tsm_root: Path::new(CONFIGFS_TSM),
        sev_guest,
        nsm,
    }
}

fn policy() -> Policy {
    Policy {
        allow_debug: true,
        ..Policy::permissive()
    }
}

#[test]
fn a_tdx_quote_from_configfs_tsm_verifies_up_to_its_binding() {
    let configfs = Configfs {
        provider: "tdx_guest",
        outblob: vector("dcap/tdx_quote"),
        auxblob: Vec::new(),
        files: RefCell::default(),
    };
    let host = host(&configfs, &Absent, &Absent);
    let (kind, mut evidence) = produce(TeeSource::Auto, &request(), &host).unwrap();
    assert_eq!(kind, TeeKind::Tdx);
    assert_eq!(evidence.report, vector("dcap/tdx_quote"));
    // The worker attaches collateral from a PCCS; the vector's is what Intel served then.
    evidence.collateral = Some(vector("dcap/tdx_quote_collateral.json"));
    let enclave = verify(kind, &evidence, &policy(), 1_751_500_000).unwrap();
    assert_eq!(
        enclave.check_binding(&binding()),
        Err(AttestationError::ReportDataMismatch)
    );
}

#[test]
fn an_snp_report_and_certificate_table_from_configfs_tsm_verify_up_to_their_binding() {
    let configfs = Configfs {
        provider: "sev_guest",
        outblob: snp_report(),
        auxblob: ghcb_cert_table(),
        files: RefCell::default(),
    };
    let host = host(&configfs, &Absent, &Absent);
    let (kind, evidence) = produce(TeeSource::Hardware(TeeKind::Snp), &request(), &host).unwrap();
    assert_eq!(kind, TeeKind::Snp);
    assert_eq!(evidence.certs.len(), 3, "VCEK, ASK and ARK from the table");
    let enclave = verify(kind, &evidence, &policy(), 1_700_000_000).unwrap();
    assert_eq!(
        enclave.check_binding(&binding()),
        Err(AttestationError::ReportDataMismatch)
    );
}

#[test]
fn an_snp_report_from_sev_guest_is_checked_against_the_request_then_verifies() {
    let host = host(&Absent, &SevGuest, &Absent);
    // Asked to bind our key, the device's report (another enclave's) is refused at once.
    let error = produce(TeeSource::Auto, &request(), &host).unwrap_err();
    assert_eq!(
        error.to_string(),
        "/dev/sev-guest: the report does not carry the requested report_data"
    );
    // Asked for the data the vector carries, the same report comes back, with the certificates
    // the worker configured, and verifies.
    let report_data: [u8; 64] = snp_report()[0x50..0x90].try_into().unwrap();
    let (kind, evidence) = verity_tee::produce::sev_guest(&SevGuest, &report_data).unwrap();
    let mut evidence = evidence;
    evidence.certs = vec![vector("snp/vcek_milan.der"), vector("snp/cert_chain_milan")];
    let enclave = verify(kind, &evidence, &policy(), 1_700_000_000).unwrap();
    assert_eq!(enclave.report_data, report_data);
    assert_eq!(
        enclave.check_binding(&binding()),
        Err(AttestationError::ReportDataMismatch)
    );
}

#[test]
fn a_nitro_document_from_the_nsm_verifies_up_to_its_binding() {
    let host = host(&Absent, &Absent, &Nsm);
    let (kind, evidence) = produce(TeeSource::Auto, &request(), &host).unwrap();
    assert_eq!(kind, TeeKind::Nitro);
    let enclave = verify(kind, &evidence, &policy(), 1_736_179_625).unwrap();
    assert_eq!(
        enclave.check_binding(&binding()),
        Err(AttestationError::ReportDataMismatch)
    );
}
