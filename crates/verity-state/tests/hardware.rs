//! Hardware evidence through consensus: a RegisterEnclave carrying each real vector (TDX, SGX,
//! SEV-SNP, Nitro) is applied by the state machine in a block stamped at the vector's time. The
//! vendor verification passes, so the chain gets as far as the binding, and refuses there for
//! the precise reason: the vector's report_data binds another enclave, not this chain's nonce
//! and key. This is the path a real worker's evidence takes; the dev kind skips none of it.

mod common;

use common::{Net, Worker};
use verity_state::TxFailure;
use verity_tee::Policy;
use verity_types::{AccountKey, Action};

fn vector(path: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/../verity-tee/tests/vectors/{path}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap_or_else(|e| panic!("vector {path}: {e}"))
}

struct Vector {
    kind: &'static str,
    /// Unix seconds at which the vector's certificates and collateral are valid.
    valid_at: u64,
    report: Vec<u8>,
    collateral: Vec<u8>,
    certs: Vec<Vec<u8>>,
}

fn vectors() -> Vec<Vector> {
    let snp_report = hex::decode(
        String::from_utf8(vector("snp/report_milan.hex"))
            .unwrap()
            .trim(),
    )
    .unwrap();
    vec![
        Vector {
            kind: "tdx",
            valid_at: 1_751_500_000,
            report: vector("dcap/tdx_quote"),
            collateral: vector("dcap/tdx_quote_collateral.json"),
            certs: vec![],
        },
        Vector {
            kind: "sgx",
            valid_at: 1_751_500_000,
            report: vector("dcap/sgx_quote"),
            collateral: vector("dcap/sgx_quote_collateral.json"),
            certs: vec![],
        },
        Vector {
            kind: "snp",
            valid_at: 1_700_000_000,
            report: snp_report,
            collateral: vec![],
            certs: vec![vector("snp/vcek_milan.der"), vector("snp/cert_chain_milan")],
        },
        Vector {
            kind: "nitro",
            valid_at: 1_736_179_625,
            report: vector("nitro/attestation.cose"),
            collateral: vec![],
            certs: vec![],
        },
    ]
}

/// A chain at the vector's time, under a policy that accepts every hardware kind and the
/// vectors' TCB statuses, so that nothing but the binding can refuse them.
fn chain_at(valid_at: u64, gov: &AccountKey, worker: &Worker) -> Net {
    // Genesis two blocks before the vector's time: the RegisterEnclave lands on it.
    let mut net = Net::starting_at(
        &[gov.address(), worker.account.address()],
        (valid_at - 3) * 1000,
    );
    let policy = serde_json::to_vec(&Policy::permissive()).unwrap();
    let set = net.tx(gov, Action::SetAttestationPolicy { policy });
    net.ok(&[set]);
    net
}

fn register(net: &mut Net, worker: &Worker, vector: &Vector) -> Option<TxFailure> {
    let (nonce_height, _) = net.nonce();
    let tx = net.tx(
        &worker.account,
        Action::RegisterEnclave {
            kind: vector.kind.into(),
            enclave_key: worker.enclave.public(),
            nonce_height,
            report: vector.report.clone(),
            collateral: vector.collateral.clone(),
            certs: vector.certs.clone(),
        },
    );
    net.block(&[tx]).remove(0)
}

#[test]
fn each_real_vector_is_verified_on_chain_and_refused_for_its_binding() {
    for vector in vectors() {
        let gov = AccountKey::generate();
        let worker = Worker::generate();
        let mut net = chain_at(vector.valid_at, &gov, &worker);
        let failure = register(&mut net, &worker, &vector);
        match failure {
            Some(TxFailure::Attestation { reason, detail }) => {
                assert_eq!(
                    reason,
                    "report_data does not bind this enclave key for this chain, worker and nonce",
                    "{}: {detail}",
                    vector.kind
                );
            }
            other => panic!("{}: {other:?}", vector.kind),
        }
        assert_eq!(
            net.chain.enclave(&worker.account.address()).unwrap(),
            None,
            "{}: nothing registered",
            vector.kind
        );
    }
}

/// The same DCAP evidence in blocks 40 days later: its collateral has expired by the chain's
/// clock, so the vendor verification refuses it. The block time decides, not the worker's clock.
#[test]
fn the_chains_block_time_is_the_time_evidence_is_verified_at() {
    for vector in vectors()
        .into_iter()
        .filter(|v| v.kind == "tdx" || v.kind == "sgx")
    {
        let gov = AccountKey::generate();
        let worker = Worker::generate();
        let mut net = chain_at(vector.valid_at + 40 * 86_400, &gov, &worker);
        match register(&mut net, &worker, &vector) {
            Some(TxFailure::Attestation { reason, .. }) => assert_eq!(
                reason,
                format!("{} evidence failed its vendor verification", vector.kind),
            ),
            other => panic!("{}: {other:?}", vector.kind),
        }
    }
}
