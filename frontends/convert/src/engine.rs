//! Compressing the planned members on worker threads and writing them in order.
//!
//! Members are grouped into jobs of about 1 MiB (consecutive members), handed out in order to
//! `threads` workers, which fill each member from the input, digest its chunk and compress it.
//! The calling thread takes the results in order: it writes the compressed bytes and feeds the
//! core's `Assembler` (offsets, DiffID, multi-chunk file digests). Workers never run more than a
//! fixed window of jobs ahead of the writer, so memory stays bounded.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Condvar, Mutex};

use crfs_core::writer::{self, Deflate, GzipMembers, MemberCompressor, Plan, Summary};
use crfs_core::{Digest, Format, ReadAt};
use flate2::{Compress, Compression, FlushCompress, Status};

use crate::{Error, Settings};

/// zlib-rs's deflater (through flate2): pure Rust, deterministic on every CPU, and several
/// times faster than miniz_oxide at the same level with the same or better ratio.
pub struct ZlibDeflate {
    inner: Compress,
}

impl ZlibDeflate {
    /// A raw-DEFLATE compressor at `level` (0 to 9).
    pub fn new(level: u8) -> Self {
        ZlibDeflate { inner: Compress::new(Compression::new(u32::from(level.min(9))), false) }
    }
}

impl Deflate for ZlibDeflate {
    fn deflate(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> Result<(), writer::Error> {
        self.inner.reset();
        out.reserve(input.len() + input.len() / 1024 + 64);
        loop {
            let before = self.inner.total_in();
            let status = self
                .inner
                .compress_vec(input, out, FlushCompress::Finish)
                .map_err(|_| writer::Error::Deflate("zlib-rs failed to compress"))?;
            let consumed = (self.inner.total_in() - before) as usize;
            input = input.get(consumed..).unwrap_or_default();
            match status {
                Status::StreamEnd => return Ok(()),
                Status::Ok | Status::BufError => out.reserve(out.capacity().max(4096)),
            }
        }
    }
}

/// zstd frames from libzstd (the `zstd` crate, single-threaded, so deterministic for a given
/// libzstd), with a content checksum and the content size, as the reference's encoder writes.
/// ruzstd, the core's encoder, has only a level-1-like mode and gave 119.6 MB where this gives
/// 68 MB at level 3 (276 MB Python tree, 4 MiB pieces), at 335 MB/s per core.
pub struct ZstdC {
    level: u8,
    inner: Option<zstd::bulk::Compressor<'static>>,
}

impl ZstdC {
    /// A frame compressor at zstd `level` (1 to 22; 0 is libzstd's default, 3).
    pub fn new(level: u8) -> Self {
        ZstdC { level, inner: None }
    }
}

impl MemberCompressor for ZstdC {
    fn member(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<(), writer::Error> {
        let failed = |_| writer::Error::Deflate("libzstd failed to compress");
        if self.inner.is_none() {
            let mut c = zstd::bulk::Compressor::new(i32::from(self.level)).map_err(failed)?;
            c.include_checksum(true).map_err(failed)?;
            c.include_contentsize(true).map_err(failed)?;
            self.inner = Some(c);
        }
        let c = self.inner.as_mut().ok_or(writer::Error::Deflate("libzstd failed to start"))?;
        let start = out.len();
        out.resize(start + zstd::zstd_safe::compress_bound(data.len()), 0);
        let n = c.compress_to_buffer(data, &mut out[start..]).map_err(failed)?;
        out.truncate(start + n);
        Ok(())
    }
}

/// The compressor for `format` at `level`: zlib-rs gzip members, or libzstd frames.
pub fn compressor(format: Format, level: u8) -> Box<dyn MemberCompressor + Send> {
    // The writer refuses the formats it does not write before a compressor is asked for.
    if format.is_zstd() {
        Box::new(ZstdC::new(level))
    } else {
        Box::new(GzipMembers { deflate: ZlibDeflate::new(level), level })
    }
}

/// Uncompressed bytes per job (consecutive small members are grouped).
const JOB_BYTES: u64 = 1 << 20;
/// Jobs a worker may run ahead of the writer, per worker.
const WINDOW_PER_THREAD: usize = 3;

struct Done {
    data: Vec<u8>,
    compressed: Vec<u8>,
    digest: Option<Digest>,
}

type JobResult = Result<Vec<Done>, writer::Error>;

/// Splits the members into jobs.
fn jobs(plan: &Plan) -> Vec<std::ops::Range<usize>> {
    let mut jobs = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (i, m) in plan.members().iter().enumerate() {
        bytes += m.len;
        if bytes >= JOB_BYTES {
            jobs.push(start..i + 1);
            start = i + 1;
            bytes = 0;
        }
    }
    if start < plan.members().len() {
        jobs.push(start..plan.members().len());
    }
    jobs
}

/// Plans, compresses and writes the blob for the tar in `src`.
pub fn run<R: ReadAt + Sync>(src: &R, settings: &Settings, out: &mut dyn Write) -> Result<Summary, Error> {
    let (plan, mut assembler) = writer::plan(src, &settings.options)?;
    let threads = match settings.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let jobs = jobs(&plan);
    let total = plan.payload_len();
    let (level, format) = (plan.level(), plan.format());
    let next_job = AtomicUsize::new(0);
    let abort = AtomicBool::new(false);
    // How many jobs the writer has consumed, and a condvar for workers waiting on the window.
    let consumed = Mutex::new(0usize);
    let room = Condvar::new();
    let window = threads * WINDOW_PER_THREAD;
    let pool: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

    std::thread::scope(|scope| -> Result<Summary, Error> {
        let (tx, rx) = mpsc::channel::<(usize, JobResult)>();
        for _ in 0..threads {
            let tx = tx.clone();
            let (plan, jobs, next_job, abort, consumed, room, pool) =
                (&plan, &jobs, &next_job, &abort, &consumed, &room, &pool);
            scope.spawn(move || {
                let mut deflater = compressor(format, level);
                let take = || pool.lock().ok().and_then(|mut p| p.pop()).unwrap_or_default();
                loop {
                    let job = next_job.fetch_add(1, Ordering::SeqCst);
                    if job >= jobs.len() || abort.load(Ordering::SeqCst) {
                        return;
                    }
                    // Wait until the job is inside the window.
                    if let Ok(mut done) = consumed.lock() {
                        while job >= *done + window && !abort.load(Ordering::SeqCst) {
                            done = match room.wait(done) {
                                Ok(d) => d,
                                Err(_) => return,
                            };
                        }
                    }
                    let mut results = Vec::with_capacity(jobs[job].len());
                    let mut failed = None;
                    for i in jobs[job].clone() {
                        let mut data = take();
                        let mut compressed = take();
                        compressed.clear();
                        let r = plan
                            .fill_member(src, i, &mut data)
                            .and_then(|()| plan.compress_member(i, &data, deflater.as_mut(), &mut compressed));
                        match r {
                            Ok(digest) => results.push(Done { data, compressed, digest }),
                            Err(e) => {
                                failed = Some(e);
                                break;
                            }
                        }
                    }
                    let msg = match failed {
                        Some(e) => Err(e),
                        None => Ok(results),
                    };
                    if tx.send((job, msg)).is_err() {
                        return;
                    }
                }
            });
        }
        drop(tx);

        let stop = |e: Error| {
            // Under the window's lock, so a worker between its check and its wait cannot miss it.
            let guard = consumed.lock();
            abort.store(true, Ordering::SeqCst);
            room.notify_all();
            drop(guard);
            e
        };
        let mut pending: BTreeMap<usize, Vec<Done>> = BTreeMap::new();
        let mut written_jobs = 0;
        let mut written = 0u64;
        while written_jobs < jobs.len() {
            let Ok((job, msg)) = rx.recv() else {
                return Err(stop(Error::Writer(writer::Error::Deflate("a worker thread stopped"))));
            };
            pending.insert(job, msg.map_err(|e| stop(e.into()))?);
            while let Some(done) = pending.remove(&written_jobs) {
                for d in done {
                    out.write_all(&d.compressed).map_err(|e| stop(Error::io("writing the output", e)))?;
                    assembler.add(&plan, &d.data, d.compressed.len() as u64, d.digest).map_err(|e| stop(e.into()))?;
                    written += d.data.len() as u64;
                    if let Ok(mut p) = pool.lock()
                        && p.len() < 4 * window
                    {
                        p.push(d.data);
                        p.push(d.compressed);
                    }
                }
                written_jobs += 1;
                if let Ok(mut c) = consumed.lock() {
                    *c = written_jobs;
                }
                room.notify_all();
                if let Some(progress) = &settings.progress {
                    progress(written, total);
                }
            }
        }
        let mut tail = Vec::new();
        let summary = assembler.finish(&plan, compressor(format, level).as_mut(), &mut tail)?;
        out.write_all(&tail).map_err(|e| Error::io("writing the output", e))?;
        Ok(summary)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tar in memory whose large reads (payloads, never the 512-byte header reads) fail.
    struct FailingPayloads(Vec<u8>);

    impl ReadAt for FailingPayloads {
        fn size(&self) -> u64 {
            self.0.len() as u64
        }

        fn read_at(&self, offset: u64, buf: &mut [u8]) -> crfs_core::Result<usize> {
            if buf.len() > 4096 {
                return Err(crfs_core::error::IoError { errno: 5, what: "injected failure" }.into());
            }
            self.0.as_slice().read_at(offset, buf)
        }
    }

    fn tar_of_big_files(n: usize) -> Vec<u8> {
        let mut tar = Vec::new();
        for i in 0..n {
            let mut h = [0u8; 512];
            let name = format!("f{i}");
            h[..name.len()].copy_from_slice(name.as_bytes());
            h[100..108].copy_from_slice(b"0000644\0");
            h[108..124].copy_from_slice(b"0000000\x000000000\x00");
            h[124..136].copy_from_slice(format!("{:011o}\0", 200_000).as_bytes());
            h[136..148].copy_from_slice(b"13606670245\0");
            h[156] = b'0';
            h[257..265].copy_from_slice(b"ustar\x0000");
            h[148..156].fill(b' ');
            let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
            h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
            tar.extend_from_slice(&h);
            tar.extend((0..200_000u32).map(|j| (j.wrapping_mul(i as u32 + 7) >> 5) as u8));
            tar.resize(tar.len().div_ceil(512) * 512, 0);
        }
        tar.resize(tar.len() + 1024, 0);
        tar
    }

    #[test]
    fn zstd_frames_decode_back() {
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8 ^ (i / 1000) as u8).collect();
        for level in [0u8, 1, 3, 19] {
            let mut out = vec![0xaa];
            let mut c = ZstdC::new(level);
            c.member(&data, &mut out).unwrap();
            c.member(b"", &mut out).unwrap();
            assert_eq!(out[0], 0xaa);
            let mut back = Vec::with_capacity(data.len() + 1);
            decode_frames(&out[1..], &mut back);
            assert_eq!(back, data, "level {level}");
        }
    }

    /// Decodes concatenated frames with libzstd's streaming decoder.
    fn decode_frames(frames: &[u8], out: &mut Vec<u8>) {
        use std::io::Read;
        zstd::stream::read::Decoder::new(frames).unwrap().read_to_end(out).unwrap();
    }

    #[test]
    fn read_errors_stop_every_worker() {
        let src = FailingPayloads(tar_of_big_files(40));
        for threads in [1, 2, 8] {
            let settings = Settings { threads, ..Settings::default() };
            let mut out = Vec::new();
            let err = run(&src, &settings, &mut out).unwrap_err();
            assert!(err.to_string().contains("injected failure"), "{err}");
        }
    }

    #[test]
    fn same_bytes_for_any_thread_count() {
        let tar = tar_of_big_files(12);
        let mut blobs = Vec::new();
        for threads in [1, 2, 5] {
            let mut settings = Settings { threads, ..Settings::default() };
            settings.options.chunk_size = 50_000;
            settings.options.level = 6;
            let mut out = Vec::new();
            run(&tar.as_slice(), &settings, &mut out).unwrap();
            blobs.push(out);
        }
        assert!(blobs.windows(2).all(|w| w[0] == w[1]));
        let layer = crfs_core::Layer::open(blobs.pop().unwrap()).unwrap();
        assert_eq!(layer.index().len(), 12 + 1);
    }

    #[test]
    fn zlib_members_inflate_back() {
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8 ^ (i / 1000) as u8).collect();
        for level in [0u8, 1, 6, 9] {
            let mut out = Vec::new();
            writer::compress::gzip_member(&mut ZlibDeflate::new(level), level, &data, &mut out).unwrap();
            assert_eq!(crfs_core::gzip::inflate_member(&out, 1 << 20).unwrap(), data);
        }
    }
}
