//! AWS Nitro Enclaves: an attestation document from the Nitro Secure Module (`/dev/nsm`). The
//! request and response are CBOR, in the types of AWS's `aws-nitro-enclaves-nsm-api`.

use aws_nitro_enclaves_nsm_api::api::{Request, Response};
use serde_bytes::ByteBuf;

use super::ProduceError;
use crate::{Binding, Evidence, TeeKind};

/// The Nitro Secure Module device.
pub const NSM_DEVICE: &str = "/dev/nsm";

/// The largest response the NSM driver writes.
const RESPONSE_MAX: usize = 0x3000;

/// One request/response exchange with the NSM (`NSM_IOCTL_REQUEST`); returns the response
/// length.
pub trait NsmDevice {
    fn available(&self) -> bool;
    fn exchange(&self, request: &[u8], response: &mut [u8]) -> std::io::Result<usize>;
}

fn device_error(reason: String) -> ProduceError {
    ProduceError::Device {
        device: NSM_DEVICE,
        reason,
    }
}

/// Requests a document with user_data = report_data, nonce = the chain's nonce and
/// public_key = the enclave key.
pub fn nitro_nsm(
    device: &dyn NsmDevice,
    binding: &Binding<'_>,
) -> Result<(TeeKind, Evidence), ProduceError> {
    if !device.available() {
        return Err(ProduceError::NoTee {
            tried: format!("{NSM_DEVICE} does not exist"),
        });
    }
    let attestation = Request::Attestation {
        user_data: Some(ByteBuf::from(binding.report_data().to_vec())),
        nonce: Some(ByteBuf::from(binding.nonce.to_vec())),
        public_key: Some(ByteBuf::from(binding.enclave_key.to_vec())),
    };
    let encoded = serde_cbor::to_vec(&attestation)
        .map_err(|e| device_error(format!("encoding the request: {e}")))?;
    let mut response = vec![0u8; RESPONSE_MAX];
    let len = device
        .exchange(&encoded, &mut response)
        .map_err(|source| ProduceError::Io {
            path: NSM_DEVICE.into(),
            source,
        })?;
    match serde_cbor::from_slice::<Response>(&response[..len.min(RESPONSE_MAX)]) {
        Ok(Response::Attestation { document }) => Ok((
            TeeKind::Nitro,
            Evidence {
                report: document,
                ..Evidence::default()
            },
        )),
        Ok(Response::Error(code)) => Err(device_error(format!(
            "the NSM refused the attestation request: {code:?}"
        ))),
        Ok(other) => Err(device_error(format!(
            "the NSM answered an attestation request with {other:?}"
        ))),
        Err(e) => Err(device_error(format!("undecodable NSM response: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_nitro_enclaves_nsm_api::api::ErrorCode;

    /// An NSM that decodes the request as the real one does and answers with `answer`.
    struct FakeNsm {
        answer: fn(Request) -> Vec<u8>,
    }

    impl NsmDevice for FakeNsm {
        fn available(&self) -> bool {
            true
        }
        fn exchange(&self, request: &[u8], response: &mut [u8]) -> std::io::Result<usize> {
            let request: Request = serde_cbor::from_slice(request)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
            let bytes = (self.answer)(request);
            response[..bytes.len()].copy_from_slice(&bytes);
            Ok(bytes.len())
        }
    }

    /// A "document" that echoes the request's fields, so the test can see what was asked.
    fn echo(request: Request) -> Vec<u8> {
        let Request::Attestation {
            user_data,
            nonce,
            public_key,
        } = request
        else {
            return serde_cbor::to_vec(&Response::Error(ErrorCode::InvalidOperation)).unwrap();
        };
        let document = [user_data, nonce, public_key]
            .into_iter()
            .flat_map(|f| f.unwrap().into_vec())
            .collect();
        serde_cbor::to_vec(&Response::Attestation { document }).unwrap()
    }

    const WORKER: verity_types::Address = verity_types::Address([1; 20]);

    fn request() -> Binding<'static> {
        Binding {
            chain_id: "c",
            worker: &WORKER,
            enclave_key: &[3; 32],
            nonce: &[2; 32],
        }
    }

    #[test]
    fn the_document_is_requested_with_report_data_nonce_and_key() {
        let (kind, evidence) = nitro_nsm(&FakeNsm { answer: echo }, &request()).unwrap();
        assert_eq!(kind, TeeKind::Nitro);
        let expected: Vec<u8> = [request().report_data().as_slice(), &[2; 32], &[3; 32]].concat();
        assert_eq!(evidence.report, expected);
    }

    #[test]
    fn refusals_and_garbage_are_errors() {
        let refused = FakeNsm {
            answer: |_| serde_cbor::to_vec(&Response::Error(ErrorCode::InputTooLarge)).unwrap(),
        };
        let text = nitro_nsm(&refused, &request()).unwrap_err().to_string();
        assert!(text.contains("InputTooLarge"), "{text}");
        let garbage = FakeNsm {
            answer: |_| vec![0xff, 0x00, 0x13],
        };
        let text = nitro_nsm(&garbage, &request()).unwrap_err().to_string();
        assert!(text.contains("undecodable"), "{text}");
        let other = FakeNsm {
            answer: |_| serde_cbor::to_vec(&Response::LockPCRs).unwrap(),
        };
        assert!(nitro_nsm(&other, &request()).is_err());
    }
}
