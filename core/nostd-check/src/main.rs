//! Proof that crfs-core is `no_std` + `alloc`: this executable links no std at all.
//!
//! It has its own entry point (`main`, called by the C runtime), panic handler (abort) and global
//! allocator (libc's `malloc`/`free`), and uses crfs-core built with `default-features = false`.
//! Were std anywhere in the core's dependency graph, rustc would refuse to build it (duplicate
//! `panic_impl` lang item). It opens the committed fixtures with `Layer::open`, so the whole read
//! path (footer, TOC inflate, JSON, index, chunk inflate, digests) is compiled and linked, and
//! exits 0 only if the results are right.

#![no_std]
#![no_main]

extern crate alloc;

use alloc::vec::Vec;
use core::alloc::{GlobalAlloc, Layout};
use core::ffi::{c_char, c_int, c_void};
use core::panic::PanicInfo;

use crfs_core::{Digest, Error, Format, Layer};

const ESGZ: &[u8] = include_bytes!("../../../testdata/fixtures/all-types.esgz");
const ESGZ_TOC_DIGEST: &str = include_str!("../../../testdata/fixtures/all-types.esgz.toc-digest");
const ZSTD: &[u8] = include_bytes!("../../../testdata/fixtures/all-types.zstdchunked");
const ZSTD_TOC_DIGEST: &str = include_str!("../../../testdata/fixtures/all-types.zstdchunked.toc-digest");
/// `files/small.txt` in the fixtures, and its sha256 (from all-types.esgz.list).
const SMALL: &[u8] = b"files/small.txt";
const SMALL_SHA256: &str = "sha256:853ff93762a06ddbf722c4ebe9ddd66d8f63ddaea97f521c3ecc20da7c976020";

#[link(name = "c")]
unsafe extern "C" {
    fn malloc(size: usize) -> *mut c_void;
    fn free(ptr: *mut c_void);
    fn realloc(ptr: *mut c_void, size: usize) -> *mut c_void;
    fn posix_memalign(out: *mut *mut c_void, align: usize, size: usize) -> c_int;
    fn write(fd: c_int, buf: *const c_void, len: usize) -> isize;
    fn abort() -> !;
}

/// glibc's malloc alignment on 64-bit targets.
const MALLOC_ALIGN: usize = 16;

struct LibcAlloc;

// SAFETY: malloc/posix_memalign return blocks of at least `size` bytes aligned as asked (or
// null), free releases them, and realloc is used only where malloc's alignment suffices.
unsafe impl GlobalAlloc for LibcAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.align() <= MALLOC_ALIGN {
            // SAFETY: plain libc call.
            return unsafe { malloc(layout.size()) }.cast();
        }
        let mut out = core::ptr::null_mut();
        // SAFETY: `out` is a valid place for the result; the alignment is a power of two and a
        // multiple of the pointer size.
        match unsafe { posix_memalign(&mut out, layout.align(), layout.size()) } {
            0 => out.cast(),
            _ => core::ptr::null_mut(),
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, _: Layout) {
        // SAFETY: `ptr` came from malloc or posix_memalign.
        unsafe { free(ptr.cast()) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if layout.align() <= MALLOC_ALIGN {
            // SAFETY: `ptr` came from malloc (alignment <= 16).
            return unsafe { realloc(ptr.cast(), new_size) }.cast();
        }
        // SAFETY: forwarded to the default (alloc, copy, dealloc) with the caller's contract.
        unsafe {
            let new = self.alloc(Layout::from_size_align_unchecked(new_size, layout.align()));
            if !new.is_null() {
                core::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
            new
        }
    }
}

#[global_allocator]
static ALLOCATOR: LibcAlloc = LibcAlloc;

#[panic_handler]
fn panic(_: &PanicInfo) -> ! {
    say("crfs-nostd-check: panic\n");
    // SAFETY: plain libc call.
    unsafe { abort() }
}

/// The precompiled `alloc` (built with unwinding) refers to the unwinder's personality routine.
/// With `panic = "abort"` nothing unwinds, so it is never called; std would define it (and the
/// duplicate definition would then fail the link: a second tripwire for std leaking in).
#[unsafe(no_mangle)]
pub extern "C" fn rust_eh_personality() {}

/// Likewise the precompiled `alloc`'s landing pads call the unwinder to resume unwinding; with
/// `panic = "abort"` they are unreachable.
#[unsafe(no_mangle)]
pub extern "C" fn _Unwind_Resume() -> ! {
    // SAFETY: plain libc call.
    unsafe { abort() }
}

fn say(s: &str) {
    // SAFETY: writes `s.len()` bytes from a valid buffer to stdout.
    unsafe { write(1, s.as_ptr().cast(), s.len()) };
}

/// Opens `blob`, checks its format and TOC digest, and reads `files/small.txt` back verified.
fn check(blob: &'static [u8], format: Format, toc_digest: &str) -> Result<(), &'static str> {
    let layer = Layer::open(blob).map_err(|_| "Layer::open failed")?;
    if layer.format() != format {
        return Err("wrong format");
    }
    if Some(layer.toc_digest()) != Digest::parse(toc_digest.trim()) {
        return Err("wrong TOC digest");
    }
    let id = layer.index().lookup_path(SMALL).ok_or("files/small.txt is missing")?;
    let mut data = Vec::new();
    layer.read_file_verified(id, &mut data).map_err(|_| "reading files/small.txt failed")?;
    if Some(Digest::of(&data)) != Digest::parse(SMALL_SHA256) {
        return Err("files/small.txt has the wrong contents");
    }
    Ok(())
}

fn run() -> Result<(), &'static str> {
    check(ESGZ, Format::Estargz, ESGZ_TOC_DIGEST)?;
    say("crfs-nostd-check: estargz ok\n");
    if cfg!(feature = "zstd") {
        check(ZSTD, Format::ZstdChunked, ZSTD_TOC_DIGEST)?;
        say("crfs-nostd-check: zstd:chunked ok\n");
    } else {
        // Without the feature the blob is recognised but refused.
        match Layer::open(ZSTD) {
            Err(Error::ZstdUnsupported) => say("crfs-nostd-check: zstd:chunked refused without the zstd feature, ok\n"),
            _ => return Err("zstd:chunked without the zstd feature was not refused"),
        }
    }
    Ok(())
}

/// The C runtime's entry point.
#[unsafe(no_mangle)]
pub extern "C" fn main(_argc: c_int, _argv: *const *const c_char) -> c_int {
    match run() {
        Ok(()) => 0,
        Err(what) => {
            say("crfs-nostd-check: FAILED: ");
            say(what);
            say("\n");
            1
        }
    }
}
