//! Against a real IPFS daemon: js-ipfs 0.66.1 from npm (pinned by scripts/npm's lockfile), which
//! this test starts itself, offline, with no swarm and no bootstrap peers. Its CIDs equal ours
//! for 5 B, 1 MiB and 10 MiB files, and what it serves back is checked against them.

#[path = "support/jsipfs.rs"]
mod jsipfs;

use std::time::Duration;

use verity_data::ipfs::Ipfs;
use verity_data::unixfs;
use verity_data::BlobStore;

fn file(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| {
            (i as u64)
                .wrapping_mul(2_654_435_761)
                .wrapping_add(u64::from(seed)) as u8
        })
        .collect()
}

#[test]
#[ignore = "needs VERITY_JSIPFS; scripts/test runs it"]
fn a_js_ipfs_daemon_names_files_as_we_do_and_serves_them_back() {
    let (_daemon, url) = jsipfs::start();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let ipfs = Ipfs::new(&url);
        for data in [b"hello".to_vec(), file(1 << 20, 1), file(10 << 20, 2)] {
            let ours = unixfs::file_cid(&data);
            // `add` itself refuses a CID other than ours.
            let cid = ipfs.add(data.clone()).await.unwrap();
            assert_eq!(cid.to_string(), ours, "{} bytes", data.len());
            assert_eq!(ipfs.cat(&cid).await.unwrap(), data);
            let (root, blocks) = unixfs::blocks(&data);
            let root_block = &blocks.last().unwrap().1;
            assert_eq!(&ipfs.block(&root).await.unwrap(), root_block);
        }
        // A block it does not hold: js-ipfs looks for it without end, even offline, so the
        // blob store gives up after its own timeout and says it has no such blob.
        let store_dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(store_dir.path(), 1 << 30)
            .unwrap()
            .with_ipfs(ipfs.clone());
        let answer = tokio::time::timeout(
            Duration::from_secs(40),
            store.fetch(&verity_types::sha256(b"never added")),
        )
        .await
        .expect("the blob store bounds its wait for a block IPFS lacks");
        assert!(matches!(answer, Ok(None)), "{answer:?}");
    });
}
