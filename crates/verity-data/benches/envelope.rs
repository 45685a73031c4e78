//! Encrypting and decrypting a 10 MiB file to a password, ours (rpgp) against GnuPG on the same
//! file in the same run, and naming it as IPFS does. gpg runs as a process, as a contributor
//! runs it; its start-up (a few ms) is inside its figure.
//!
//!     cargo bench -p verity-data --bench envelope
//!
//! Needs `gpg` on PATH (Debian: gnupg). Throughput is reported per group.

use std::io::Write as _;
use std::process::{Command, Stdio};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use pgp::crypto::hash::HashAlgorithm;
use pgp::types::StringToKey;
use verity_data::{envelope, unixfs};

const SIZE: usize = 10 << 20;
const PASSWORD: &str = "4abea94a3c28fd54b856a257bbf412bd1f52f1fff4dbeff58d46e199801517d5799378b2d46261e8afd78dd0f685b34ce372976cf84a88c20310f6134808955f1b";

fn gpg(home: &std::path::Path, args: &[&str], input: &[u8]) -> Vec<u8> {
    let mut child = Command::new("gpg")
        .args(["--homedir", home.to_str().unwrap(), "--batch", "--no-tty"])
        .args(["--pinentry-mode", "loopback", "--passphrase", PASSWORD])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("gpg on PATH");
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(out.status.success(), "gpg {args:?} failed");
    out.stdout
}

fn bench(c: &mut Criterion) {
    // SplitMix64 output: bytes that do not compress, like encrypted or already-compressed data.
    let mut state = 0u64;
    let data: Vec<u8> = (0..SIZE / 8)
        .flat_map(|_| {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            (z ^ (z >> 31)).to_le_bytes()
        })
        .collect();
    let home = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        home.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    // GnuPG's default for symmetric data is to compress it first; these bytes do not compress
    // (its file is as large as ours), so both sides encrypt 10 MiB.
    let theirs = gpg(
        home.path(),
        &["--symmetric", "--cipher-algo", "AES256", "--armor"],
        &data,
    );
    assert_eq!(envelope::decrypt(&theirs, PASSWORD).unwrap(), data);
    assert!(
        theirs.len() > SIZE,
        "gpg's file is not smaller than the data"
    );

    let mut group = c.benchmark_group("encrypt 10 MiB");
    group.throughput(Throughput::Bytes(SIZE as u64));
    group.sample_size(10);
    group.bench_function("gpg (baseline)", |b| {
        b.iter(|| {
            gpg(
                home.path(),
                &["--symmetric", "--cipher-algo", "AES256", "--armor"],
                &data,
            )
        })
    });
    group.bench_function("verity", |b| {
        b.iter(|| envelope::encrypt(&data, PASSWORD).unwrap())
    });
    group.finish();

    // gpg 2.2 derives its key with SHA-1 (S2K hash 2) over 65,011,712 bytes; ours uses SHA-256
    // over the same count. Each side decrypts each file, so the key derivation's share shows.
    let ours = envelope::encrypt(&data, PASSWORD).unwrap();
    for (name, file) in [
        ("gpg's file, SHA-1 key derivation", theirs.as_slice()),
        ("verity's file, SHA-256 key derivation", ours.as_bytes()),
    ] {
        let mut group = c.benchmark_group(format!("decrypt 10 MiB, {name}"));
        group.throughput(Throughput::Bytes(SIZE as u64));
        group.sample_size(10);
        group.bench_function("gpg (baseline)", |b| {
            b.iter(|| gpg(home.path(), &["--decrypt"], file))
        });
        group.bench_function("verity", |b| {
            b.iter(|| envelope::decrypt(file, PASSWORD).unwrap())
        });
        group.finish();
    }

    // The key derivation alone, as rpgp does it: a fixed cost per file, whatever its size.
    let mut group = c.benchmark_group("key derivation, 65,011,712 bytes hashed");
    group.sample_size(10);
    for (name, hash) in [
        ("SHA-1 (collision-detecting)", HashAlgorithm::Sha1),
        ("SHA-256", HashAlgorithm::Sha256),
    ] {
        let s2k = StringToKey::new_iterated(rand_core::OsRng, hash, 255);
        group.bench_function(name, |b| {
            b.iter(|| s2k.derive_key(PASSWORD.as_bytes(), 32).unwrap())
        });
    }
    group.finish();

    let mut group = c.benchmark_group("IPFS CID of 10 MiB");
    group.throughput(Throughput::Bytes(SIZE as u64));
    group.sample_size(10);
    group.bench_function("verity", |b| b.iter(|| unixfs::file_cid(&data)));
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
