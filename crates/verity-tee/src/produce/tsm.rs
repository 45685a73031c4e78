//! Linux configfs-tsm (`/sys/kernel/config/tsm/report`): TDX and SEV-SNP guests. The filesystem
//! is behind a trait so the tests drive the same code against a fake kernel.

use std::path::Path;

use super::ProduceError;
use crate::{Evidence, TeeKind};

/// Where Linux exposes the TSM report interface.
pub const CONFIGFS_TSM: &str = "/sys/kernel/config/tsm/report";

/// The configfs operations the TSM protocol needs.
pub trait TsmFs {
    fn exists(&self, path: &Path) -> bool;
    fn create_dir(&self, path: &Path) -> std::io::Result<()>;
    fn remove_dir(&self, path: &Path) -> std::io::Result<()>;
    fn write(&self, path: &Path, bytes: &[u8]) -> std::io::Result<()>;
    fn read(&self, path: &Path) -> std::io::Result<Vec<u8>>;
}

/// The real filesystem.
pub struct HostFs;

impl TsmFs for HostFs {
    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }
    fn create_dir(&self, path: &Path) -> std::io::Result<()> {
        std::fs::create_dir(path)
    }
    fn remove_dir(&self, path: &Path) -> std::io::Result<()> {
        std::fs::remove_dir(path)
    }
    fn write(&self, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
        std::fs::write(path, bytes)
    }
    fn read(&self, path: &Path) -> std::io::Result<Vec<u8>> {
        std::fs::read(path)
    }
}

pub(super) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ProduceError + '_ {
    move |source| ProduceError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Requests a report binding `report_data` through configfs-tsm under `root`. `wanted`, when
/// given, must match the provider the kernel reports.
pub fn configfs_tsm(
    fs: &dyn TsmFs,
    root: &Path,
    report_data: &[u8; 64],
    wanted: Option<TeeKind>,
) -> Result<(TeeKind, Evidence), ProduceError> {
    if !fs.exists(root) {
        return Err(ProduceError::NoTee {
            tried: format!("{} does not exist", root.display()),
        });
    }
    // One entry per request, removed afterwards; the name only has to be unique.
    let entry = root.join(format!("verity-{}-{}", std::process::id(), unique()));
    fs.create_dir(&entry).map_err(io(&entry))?;
    let result = request(fs, &entry, report_data, wanted);
    let _ = fs.remove_dir(&entry);
    result
}

fn request(
    fs: &dyn TsmFs,
    entry: &Path,
    report_data: &[u8; 64],
    wanted: Option<TeeKind>,
) -> Result<(TeeKind, Evidence), ProduceError> {
    let read = |name: &str| {
        let path = entry.join(name);
        fs.read(&path).map_err(io(&path))
    };
    let generation =
        |bytes: Vec<u8>| -> u64 { String::from_utf8_lossy(&bytes).trim().parse().unwrap_or(0) };
    let provider = String::from_utf8_lossy(&read("provider")?)
        .trim()
        .to_string();
    let kind = match provider.as_str() {
        "tdx_guest" => TeeKind::Tdx,
        "sev_guest" => TeeKind::Snp,
        _ => return Err(ProduceError::UnknownProvider(provider)),
    };
    if let Some(wanted) = wanted.filter(|w| *w != kind) {
        return Err(ProduceError::WrongProvider { wanted, got: kind });
    }
    let inblob = entry.join("inblob");
    fs.write(&inblob, report_data).map_err(io(&inblob))?;
    let before = generation(read("generation")?);
    let report = read("outblob")?;
    // SNP puts the VCEK (and ASK/ARK) beside the report when the host supplies them.
    let certs = match kind {
        TeeKind::Snp => match read("auxblob") {
            Ok(table) if !table.is_empty() => cert_table(&table)?,
            _ => Vec::new(),
        },
        _ => Vec::new(),
    };
    let after = generation(read("generation")?);
    // Every write bumps the generation: a change means someone else's inblob may be in ours.
    if after != before {
        return Err(ProduceError::Raced { before, after });
    }
    Ok((
        kind,
        Evidence {
            report,
            collateral: None,
            certs,
        },
    ))
}

/// The certificates of an SNP `auxblob`: the GHCB certificate table (entries of a 16-byte GUID,
/// a u32 offset and a u32 length, little-endian, ended by an all-zero entry), each entry's bytes
/// at its offset from the start of the blob.
fn cert_table(blob: &[u8]) -> Result<Vec<Vec<u8>>, ProduceError> {
    const ENTRY: usize = 24;
    let malformed = |reason: String| ProduceError::Device {
        device: "configfs-tsm auxblob",
        reason,
    };
    let mut certs = Vec::new();
    for (index, entry) in blob.chunks(ENTRY).enumerate() {
        if entry.len() < ENTRY {
            return Err(malformed(format!(
                "the certificate table has no terminating entry (entry {index} is cut off)"
            )));
        }
        if entry.iter().all(|&b| b == 0) {
            return Ok(certs);
        }
        let word = |at: usize| u32::from_le_bytes(entry[at..at + 4].try_into().expect("4 bytes"));
        let (offset, len) = (word(16) as usize, word(20) as usize);
        let cert = offset
            .checked_add(len)
            .and_then(|end| blob.get(offset..end))
            .ok_or_else(|| {
                malformed(format!(
                    "entry {index} points at {len} bytes at {offset}, outside the {} byte blob",
                    blob.len()
                ))
            })?;
        certs.push(cert.to_vec());
    }
    Err(malformed(
        "the certificate table has no terminating entry".into(),
    ))
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    /// A kernel that answers like configfs-tsm: entries appear with `provider` and
    /// `generation`; writing `inblob` produces `outblob` (here: a tag plus the inblob) and bumps
    /// the generation.
    struct FakeKernel {
        provider: &'static str,
        files: RefCell<BTreeMap<PathBuf, Vec<u8>>>,
        dirs: RefCell<Vec<PathBuf>>,
        /// Simulates another writer between our reads.
        interloper: bool,
    }

    impl FakeKernel {
        fn new(provider: &'static str) -> Self {
            Self {
                provider,
                files: RefCell::default(),
                dirs: RefCell::new(vec![PathBuf::from(CONFIGFS_TSM)]),
                interloper: false,
            }
        }
    }

    impl TsmFs for FakeKernel {
        fn exists(&self, path: &Path) -> bool {
            self.dirs.borrow().iter().any(|d| d == path)
        }
        fn create_dir(&self, path: &Path) -> std::io::Result<()> {
            self.dirs.borrow_mut().push(path.to_path_buf());
            let mut files = self.files.borrow_mut();
            files.insert(path.join("provider"), format!("{}\n", self.provider).into());
            files.insert(path.join("generation"), b"0\n".to_vec());
            Ok(())
        }
        fn remove_dir(&self, path: &Path) -> std::io::Result<()> {
            self.dirs.borrow_mut().retain(|d| d != path);
            self.files.borrow_mut().retain(|f, _| !f.starts_with(path));
            Ok(())
        }
        fn write(&self, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
            let dir = path.parent().unwrap();
            let mut files = self.files.borrow_mut();
            files.insert(path.to_path_buf(), bytes.to_vec());
            if path.ends_with("inblob") {
                let mut out = b"QUOTE:".to_vec();
                out.extend_from_slice(bytes);
                files.insert(dir.join("outblob"), out);
                files.insert(dir.join("auxblob"), table(&[b"VCEK", b"ASK"]));
                files.insert(dir.join("generation"), b"1\n".to_vec());
            }
            Ok(())
        }
        fn read(&self, path: &Path) -> std::io::Result<Vec<u8>> {
            if self.interloper && path.ends_with("outblob") {
                let dir = path.parent().unwrap();
                self.files
                    .borrow_mut()
                    .insert(dir.join("generation"), b"2\n".to_vec());
            }
            self.files
                .borrow()
                .get(path)
                .cloned()
                .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound))
        }
    }

    const ROOT: &str = CONFIGFS_TSM;

    /// A GHCB certificate table holding `certs` (the GUIDs are not read).
    fn table(certs: &[&[u8]]) -> Vec<u8> {
        let header = 24 * (certs.len() + 1);
        let mut entries = Vec::new();
        let mut data = Vec::new();
        for cert in certs {
            entries.extend_from_slice(&[0xaa; 16]);
            entries.extend_from_slice(&((header + data.len()) as u32).to_le_bytes());
            entries.extend_from_slice(&(cert.len() as u32).to_le_bytes());
            data.extend_from_slice(cert);
        }
        entries.extend_from_slice(&[0; 24]);
        entries.extend_from_slice(&data);
        entries
    }

    #[test]
    fn the_snp_certificate_table_is_split_into_its_certificates_and_bad_tables_refused() {
        assert_eq!(
            cert_table(&table(&[b"VCEK", b"ASK", b"ARK"])).unwrap(),
            [b"VCEK".to_vec(), b"ASK".to_vec(), b"ARK".to_vec()]
        );
        assert_eq!(cert_table(&[0; 24]).unwrap(), Vec::<Vec<u8>>::new());
        let mut beyond = table(&[b"VCEK"]);
        beyond[20] = 200;
        let text = cert_table(&beyond).unwrap_err().to_string();
        assert!(text.contains("entry 0 points at 200 bytes"), "{text}");
        // One empty entry at offset 0, then a cut-off one.
        let mut unterminated = vec![0xaa; 16];
        unterminated.extend_from_slice(&[0; 8]);
        unterminated.extend_from_slice(&[0xaa; 6]);
        let text = cert_table(&unterminated).unwrap_err().to_string();
        assert!(text.contains("no terminating entry"), "{text}");
        let mut huge = table(&[b"VCEK"]);
        huge[16..24].copy_from_slice(&[0xff; 8]);
        assert!(cert_table(&huge).is_err());
    }

    #[test]
    fn tdx_and_snp_reports_carry_the_report_data_and_the_entry_is_removed() {
        let data = [7u8; 64];
        for (provider, kind) in [("tdx_guest", TeeKind::Tdx), ("sev_guest", TeeKind::Snp)] {
            let kernel = FakeKernel::new(provider);
            let (got, evidence) = configfs_tsm(&kernel, Path::new(ROOT), &data, None).unwrap();
            assert_eq!(got, kind);
            assert_eq!(&evidence.report[6..], &data);
            assert_eq!(evidence.certs.len(), 2 * usize::from(kind == TeeKind::Snp));
            assert_eq!(
                kernel.dirs.borrow().len(),
                1,
                "the request entry is removed"
            );
        }
    }

    #[test]
    fn absent_interface_wrong_provider_and_races_are_errors() {
        let kernel = FakeKernel::new("tdx_guest");
        let data = [0u8; 64];
        assert!(matches!(
            configfs_tsm(&kernel, Path::new("/nonexistent"), &data, None),
            Err(ProduceError::NoTee { .. })
        ));
        assert!(matches!(
            configfs_tsm(&kernel, Path::new(ROOT), &data, Some(TeeKind::Snp)),
            Err(ProduceError::WrongProvider { .. })
        ));
        assert!(matches!(
            configfs_tsm(
                &FakeKernel::new("arm_cca_guest"),
                Path::new(ROOT),
                &data,
                None
            ),
            Err(ProduceError::UnknownProvider(_))
        ));
        let mut racy = FakeKernel::new("sev_guest");
        racy.interloper = true;
        assert!(matches!(
            configfs_tsm(&racy, Path::new(ROOT), &data, None),
            Err(ProduceError::Raced { .. })
        ));
        assert_eq!(racy.dirs.borrow().len(), 1, "removed after a failure too");
    }
}
