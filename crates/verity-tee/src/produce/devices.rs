//! The two guest devices that speak ioctl: `/dev/sev-guest` and `/dev/nsm`. This is the only
//! unsafe code in Verity: each call hands the kernel a `#[repr(C)]` struct laid out as its UAPI
//! header declares, pointing at buffers that outlive the call.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::Path;

use super::nsm::NsmDevice;
use super::sev_guest::SevGuestDevice;

/// A failed ioctl: the OS error and, for SEV, the firmware's and hypervisor's error codes.
#[derive(Debug)]
pub struct IoctlError {
    pub os: std::io::Error,
    /// SEV: firmware error (low 32 bits) and VMM error (high 32 bits); 0 elsewhere.
    pub exitinfo2: u64,
}

impl IoctlError {
    pub fn os(os: std::io::Error) -> Self {
        Self { os, exitinfo2: 0 }
    }
}

/// A character device of this machine.
pub struct LinuxDevice {
    path: &'static str,
}

impl LinuxDevice {
    pub const fn new(path: &'static str) -> Self {
        Self { path }
    }

    fn open(&self) -> std::io::Result<File> {
        OpenOptions::new().read(true).write(true).open(self.path)
    }
}

/// `_IOWR(kind, nr, size)` from the kernel's `asm-generic/ioctl.h`.
const fn iowr(kind: u8, nr: u8, size: usize) -> u32 {
    (3 << 30) | ((size as u32) << 16) | ((kind as u32) << 8) | nr as u32
}

/// `struct snp_guest_request_ioctl` (`linux/sev-guest.h`).
#[repr(C)]
struct SnpGuestRequest {
    msg_version: u8,
    req_data: u64,
    resp_data: u64,
    exitinfo2: u64,
}

/// `SNP_GET_REPORT`.
const SNP_GET_REPORT: u32 = iowr(b'S', 0, std::mem::size_of::<SnpGuestRequest>());

/// `struct nsm_message` (`linux/nsm.h`): request and response as iovecs.
#[repr(C)]
struct NsmMessage {
    request: libc::iovec,
    response: libc::iovec,
}

/// `NSM_IOCTL_REQUEST`.
const NSM_REQUEST: u32 = iowr(0x0A, 0, std::mem::size_of::<NsmMessage>());

fn ioctl<T>(file: &File, request: u32, arg: &mut T) -> std::io::Result<()> {
    // SAFETY: `arg` is a live, exclusively borrowed #[repr(C)] struct of the size encoded in
    // `request`; the buffers it points at are borrowed by the caller for the whole call.
    let status = unsafe {
        libc::ioctl(
            file.as_raw_fd(),
            request as libc::Ioctl,
            arg as *mut T as *mut libc::c_void,
        )
    };
    if status < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

impl SevGuestDevice for LinuxDevice {
    fn available(&self) -> bool {
        Path::new(self.path).exists()
    }

    fn get_report(&self, request: &[u8; 96], response: &mut [u8; 4000]) -> Result<(), IoctlError> {
        let file = self.open().map_err(IoctlError::os)?;
        let mut message = SnpGuestRequest {
            msg_version: 1,
            req_data: request.as_ptr() as u64,
            resp_data: response.as_mut_ptr() as u64,
            exitinfo2: 0,
        };
        ioctl(&file, SNP_GET_REPORT, &mut message).map_err(|os| IoctlError {
            os,
            exitinfo2: message.exitinfo2,
        })
    }
}

impl NsmDevice for LinuxDevice {
    fn available(&self) -> bool {
        Path::new(self.path).exists()
    }

    fn exchange(&self, request: &[u8], response: &mut [u8]) -> std::io::Result<usize> {
        let file = self.open()?;
        let mut message = NsmMessage {
            request: libc::iovec {
                iov_base: request.as_ptr() as *mut libc::c_void,
                iov_len: request.len(),
            },
            response: libc::iovec {
                iov_base: response.as_mut_ptr() as *mut libc::c_void,
                iov_len: response.len(),
            },
        };
        ioctl(&file, NSM_REQUEST, &mut message)?;
        // The driver shortens the response iovec to what it wrote.
        Ok(message.response.iov_len.min(response.len()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioctl_numbers_match_the_kernel_headers() {
        // Values the C headers give on x86_64 (`_IOWR('S', 0x0, struct snp_guest_request_ioctl)`
        // and `_IOWR(0x0A, 0, struct nsm_message)`).
        assert_eq!(std::mem::size_of::<SnpGuestRequest>(), 32);
        assert_eq!(SNP_GET_REPORT, 0xC020_5300);
        assert_eq!(std::mem::size_of::<NsmMessage>(), 32);
        assert_eq!(NSM_REQUEST, 0xC020_0A00);
    }

    #[test]
    fn an_absent_device_is_reported_not_panicked_on() {
        let device = LinuxDevice::new("/nonexistent/sev-guest");
        assert!(!SevGuestDevice::available(&device));
        let error = device.get_report(&[0; 96], &mut [0; 4000]).unwrap_err();
        assert_eq!(error.os.kind(), std::io::ErrorKind::NotFound);
        assert!(device.exchange(b"", &mut [0; 16]).is_err());
    }
}
