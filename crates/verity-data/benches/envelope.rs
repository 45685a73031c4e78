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
    let data: Vec<u8> = (0..SIZE)
        .map(|i| (i as u64).wrapping_mul(2_654_435_761) as u8)
        .collect();
    let home = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        home.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    // GnuPG's default for symmetric data is to compress it first; these bytes barely compress,
    // so both sides encrypt about 10 MiB.
    let theirs = gpg(
        home.path(),
        &["--symmetric", "--cipher-algo", "AES256", "--armor"],
        &data,
    );
    // Both decrypt gpg's file: the same ciphertext, compression included.
    assert_eq!(envelope::decrypt(&theirs, PASSWORD).unwrap(), data);

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

    let mut group = c.benchmark_group("decrypt 10 MiB");
    group.throughput(Throughput::Bytes(SIZE as u64));
    group.sample_size(10);
    group.bench_function("gpg (baseline)", |b| {
        b.iter(|| gpg(home.path(), &["--decrypt"], &theirs))
    });
    group.bench_function("verity", |b| {
        b.iter(|| envelope::decrypt(theirs.as_slice(), PASSWORD).unwrap())
    });
    group.finish();

    let mut group = c.benchmark_group("IPFS CID of 10 MiB");
    group.throughput(Throughput::Bytes(SIZE as u64));
    group.sample_size(10);
    group.bench_function("verity", |b| b.iter(|| unixfs::file_cid(&data)));
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
