//! Reads every regular file of an NFSv3 export the way a kernel client would (READDIRPLUS to
//! walk, 1 MiB READs), with N connections, and prints the time: the NFS half of the
//! NFS-vs-FUSE comparison in the README.
//!
//!     crfs nfs --listen 127.0.0.1:0 BLOB &          # note the port
//!     cargo run --release -p crfs-nfs --example readall -- PORT [JOBS]

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a measuring tool

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

#[path = "../tests/support/client.rs"]
mod client;

use client::{Client, mount as connect};
use nfs3_client::nfs3_types::nfs3::*;

/// Every regular file under `root`: (handle, size).
async fn walk(c: &mut Client, root: nfs_fh3) -> Vec<(nfs_fh3, u64)> {
    let (mut dirs, mut files) = (vec![root], Vec::new());
    while let Some(dir) = dirs.pop() {
        let (mut cookie, mut verf) = (0, cookieverf3::default());
        loop {
            let args =
                READDIRPLUS3args { dir: dir.clone(), cookie, cookieverf: verf, dircount: 65536, maxcount: 1 << 20 };
            let Nfs3Result::Ok(page) = c.readdirplus(&args).await.unwrap() else { panic!("readdirplus failed") };
            verf = page.cookieverf;
            for e in page.reply.entries.0 {
                cookie = e.cookie;
                if e.name.0.as_ref() == b"." || e.name.0.as_ref() == b".." {
                    continue;
                }
                let (Nfs3Option::Some(attr), Nfs3Option::Some(fh)) = (e.name_attributes, e.name_handle) else {
                    panic!("entry without attributes or handle")
                };
                match attr.type_ {
                    ftype3::NF3DIR => dirs.push(fh),
                    ftype3::NF3REG => files.push((fh, attr.size)),
                    _ => {}
                }
            }
            if page.reply.eof {
                break;
            }
        }
    }
    files
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let port: u16 = args.get(1).expect("usage: readall PORT [JOBS]").parse().unwrap();
    let jobs: usize = args.get(2).map_or(4, |j| j.parse().unwrap());
    let start = Instant::now();
    let (root, mut c) = connect(port).await;
    let files = Arc::new(walk(&mut c, root).await);
    let walked = start.elapsed();
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..jobs {
        let (files, next) = (Arc::clone(&files), Arc::clone(&next));
        tasks.push(tokio::spawn(async move {
            let (_, mut c) = connect(port).await;
            let mut bytes = 0u64;
            while let Some((fh, size)) = files.get(next.fetch_add(1, Ordering::Relaxed)) {
                let mut offset = 0;
                loop {
                    let args = READ3args { file: fh.clone(), offset, count: 1 << 20 };
                    let Nfs3Result::Ok(r) = c.read(&args).await.unwrap() else { panic!("read failed") };
                    offset += r.data.len() as u64;
                    if r.eof || r.data.is_empty() {
                        break;
                    }
                }
                assert_eq!(offset, *size, "short file");
                bytes += offset;
            }
            bytes
        }));
    }
    let mut bytes = 0;
    for t in tasks {
        bytes += t.await.unwrap();
    }
    let total = start.elapsed();
    println!(
        "{} files, {} bytes in {:.2} s (walk {:.2} s) with {jobs} connections: {:.0} MB/s",
        files.len(),
        bytes,
        total.as_secs_f64(),
        walked.as_secs_f64(),
        bytes as f64 / total.as_secs_f64() / 1e6
    );
}
