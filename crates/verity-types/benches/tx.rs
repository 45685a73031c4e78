//! What admitting one transfer costs a validator: decoding it (baseline) and recovering its
//! sender from the secp256k1 signature, the work every validator repeats for every transaction.

use criterion::{criterion_group, criterion_main, Criterion};
use verity_types::{AccountKey, Action, Address, SignedTx, TxBody};

fn bench(c: &mut Criterion) {
    let bytes = TxBody {
        chain_id: "verity-bench".into(),
        nonce: 7,
        fee: 1_000,
        action: Action::Transfer {
            to: Address([9; 20]),
            amount: 1,
        },
    }
    .sign(&AccountKey::generate())
    .encode();
    let mut group = c.benchmark_group("transfer_admission");
    group.bench_function("decode (baseline)", |b| {
        b.iter(|| SignedTx::decode(&bytes).unwrap())
    });
    group.bench_function("decode + recover sender", |b| {
        b.iter(|| SignedTx::decode(&bytes).unwrap().sender().unwrap())
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
