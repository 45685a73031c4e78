//! SEV-SNP reports through `/dev/sev-guest` (`SNP_GET_REPORT`), for guest kernels without
//! configfs-tsm. The device gives the report only; the VCEK, ASK and ARK travel from the
//! worker's configuration.

use super::devices::IoctlError;
use super::ProduceError;
use crate::{Evidence, TeeKind};

/// The SEV guest device.
pub const SEV_GUEST_DEVICE: &str = "/dev/sev-guest";

/// Size of an attestation report (SNP ABI, `ATTESTATION_REPORT`).
const REPORT_LEN: usize = 1184;
/// Where the firmware's `MSG_REPORT_RSP` puts the report.
const REPORT_OFFSET: usize = 32;
/// Where report_data sits inside the report.
const REPORT_DATA_OFFSET: usize = 0x50;

/// The `SNP_GET_REPORT` ioctl: a 96-byte `snp_report_req` in, a 4000-byte `snp_report_resp` out.
pub trait SevGuestDevice {
    fn available(&self) -> bool;
    fn get_report(&self, request: &[u8; 96], response: &mut [u8; 4000]) -> Result<(), IoctlError>;
}

fn device_error(reason: String) -> ProduceError {
    ProduceError::Device {
        device: SEV_GUEST_DEVICE,
        reason,
    }
}

/// Requests a report binding `report_data` at VMPL 0.
pub fn sev_guest(
    device: &dyn SevGuestDevice,
    report_data: &[u8; 64],
) -> Result<(TeeKind, Evidence), ProduceError> {
    if !device.available() {
        return Err(ProduceError::NoTee {
            tried: format!("{SEV_GUEST_DEVICE} does not exist"),
        });
    }
    // snp_report_req: user_data[64], vmpl (u32 LE, 0: the most privileged level), rsvd[28].
    let mut request = [0u8; 96];
    request[..64].copy_from_slice(report_data);
    let mut response = [0u8; 4000];
    device.get_report(&request, &mut response).map_err(|e| {
        device_error(format!(
            "SNP_GET_REPORT failed: {} (firmware error {:#x}, VMM error {:#x})",
            e.os,
            e.exitinfo2 & 0xffff_ffff,
            e.exitinfo2 >> 32
        ))
    })?;
    let report = report_of(&response)?;
    if &report[REPORT_DATA_OFFSET..REPORT_DATA_OFFSET + 64] != report_data.as_slice() {
        return Err(device_error(
            "the report does not carry the requested report_data".into(),
        ));
    }
    Ok((
        TeeKind::Snp,
        Evidence {
            report: report.to_vec(),
            ..Evidence::default()
        },
    ))
}

/// The report inside a `MSG_REPORT_RSP`: status u32, report_size u32, 24 reserved bytes, report.
fn report_of(response: &[u8; 4000]) -> Result<&[u8], ProduceError> {
    let word = |at: usize| u32::from_le_bytes(response[at..at + 4].try_into().expect("4 bytes"));
    let status = word(0);
    if status != 0 {
        let meaning = match status {
            0x16 => " (invalid parameters)",
            0x27 => " (invalid key)",
            _ => "",
        };
        return Err(device_error(format!(
            "the firmware answered status {status:#x}{meaning}"
        )));
    }
    let size = word(4) as usize;
    if !(REPORT_LEN..=response.len() - REPORT_OFFSET).contains(&size) {
        return Err(device_error(format!(
            "the firmware's report is {size} bytes; expected at least {REPORT_LEN}"
        )));
    }
    Ok(&response[REPORT_OFFSET..REPORT_OFFSET + size])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    /// Firmware that answers like SNP_GET_REPORT: a report carrying the request's user data.
    struct FakeFirmware {
        status: u32,
        size: u32,
        /// Makes the ioctl itself fail with this exitinfo2.
        fail: Option<u64>,
        /// Ignores the request's user data (a confused host).
        wrong_data: bool,
        asked_vmpl: Cell<Option<u32>>,
    }

    impl FakeFirmware {
        fn good() -> Self {
            Self {
                status: 0,
                size: REPORT_LEN as u32,
                fail: None,
                wrong_data: false,
                asked_vmpl: Cell::new(None),
            }
        }
    }

    impl SevGuestDevice for FakeFirmware {
        fn available(&self) -> bool {
            true
        }
        fn get_report(
            &self,
            request: &[u8; 96],
            response: &mut [u8; 4000],
        ) -> Result<(), IoctlError> {
            if let Some(exitinfo2) = self.fail {
                return Err(IoctlError {
                    os: std::io::Error::from_raw_os_error(libc::EIO),
                    exitinfo2,
                });
            }
            self.asked_vmpl.set(Some(u32::from_le_bytes(
                request[64..68].try_into().unwrap(),
            )));
            response[..4].copy_from_slice(&self.status.to_le_bytes());
            response[4..8].copy_from_slice(&self.size.to_le_bytes());
            let report = &mut response[REPORT_OFFSET..];
            report[0] = 2; // version
            if !self.wrong_data {
                report[REPORT_DATA_OFFSET..REPORT_DATA_OFFSET + 64].copy_from_slice(&request[..64]);
            }
            Ok(())
        }
    }

    #[test]
    fn the_report_carries_the_report_data_at_vmpl_0() {
        let firmware = FakeFirmware::good();
        let data = [0x5a; 64];
        let (kind, evidence) = sev_guest(&firmware, &data).unwrap();
        assert_eq!(kind, TeeKind::Snp);
        assert_eq!(evidence.report.len(), REPORT_LEN);
        assert_eq!(evidence.report[0], 2);
        assert_eq!(&evidence.report[0x50..0x90], &data);
        assert_eq!(firmware.asked_vmpl.get(), Some(0));
    }

    #[test]
    fn firmware_and_ioctl_failures_are_explained() {
        let data = [1; 64];
        let refused = FakeFirmware {
            status: 0x16,
            ..FakeFirmware::good()
        };
        let text = sev_guest(&refused, &data).unwrap_err().to_string();
        assert!(text.contains("0x16 (invalid parameters)"), "{text}");

        let failed = FakeFirmware {
            fail: Some(0x0000_0002_0000_0027),
            ..FakeFirmware::good()
        };
        let text = sev_guest(&failed, &data).unwrap_err().to_string();
        assert!(
            text.contains("firmware error 0x27, VMM error 0x2"),
            "{text}"
        );

        let short = FakeFirmware {
            size: 100,
            ..FakeFirmware::good()
        };
        assert!(sev_guest(&short, &data)
            .unwrap_err()
            .to_string()
            .contains("100 bytes"));
        let huge = FakeFirmware {
            size: u32::MAX,
            ..FakeFirmware::good()
        };
        assert!(sev_guest(&huge, &data).is_err());

        let confused = FakeFirmware {
            wrong_data: true,
            ..FakeFirmware::good()
        };
        assert!(sev_guest(&confused, &data)
            .unwrap_err()
            .to_string()
            .contains("requested report_data"));
    }
}
