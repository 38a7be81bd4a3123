//! Shared by the per-structure targets: an input cursor, an exact-size
//! aligned region (so that AddressSanitizer reports any access past the
//! object), and byte patches that model a peer scribbling on shared memory.
#![allow(dead_code)] // each target uses part of it

use std::alloc::{alloc_zeroed, dealloc, Layout};

use shmprim::Error;

/// Reads the input front to back; past its end every read is zero, so any
/// input is a complete program.
pub struct Input<'a>(pub &'a [u8]);

impl Input<'_> {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }

    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    pub fn u32(&mut self) -> u32 {
        u32::from(self.u16()) | u32::from(self.u16()) << 16
    }

    /// Up to `n` bytes (fewer at the end of the input).
    pub fn take(&mut self, n: usize) -> &[u8] {
        let (a, b) = self.0.split_at(n.min(self.0.len()));
        self.0 = b;
        a
    }
}

/// `size` bytes aligned to `align`, zeroed, allocated on their own: one
/// byte more read or written is an AddressSanitizer report.
pub struct Region {
    ptr: *mut u8,
    layout: Layout,
}

impl Region {
    pub fn new(size: usize, align: usize) -> Region {
        let layout = Layout::from_size_align(size, align).expect("layout");
        // SAFETY: `size` is a nonzero object size.
        let ptr = unsafe { alloc_zeroed(layout) };
        assert!(!ptr.is_null(), "out of memory");
        Region { ptr, layout }
    }

    pub fn len(&self) -> usize {
        self.layout.size()
    }

    pub fn ptr(&self) -> *mut u8 {
        self.ptr
    }

    /// Copies `bytes` over the start of the region.
    pub fn fill(&self, bytes: &[u8]) {
        let n = bytes.len().min(self.len());
        // SAFETY: `n` bytes fit the region; the input is a separate buffer.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.ptr, n) };
    }

    /// Applies up to 8 patches read from `input` (see [`patch`]).
    pub fn patch(&self, input: &mut Input<'_>) {
        // SAFETY: the region is `len()` bytes; only this thread uses it.
        unsafe { patch(self.ptr, self.len(), input) }
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { dealloc(self.ptr, self.layout) };
    }
}

/// Overwrites 1, 2, 4 or 8 bytes at each of up to 8 offsets inside
/// `len` bytes at `ptr` with input bytes: what a buggy or hostile peer
/// does to shared memory. Offsets are taken modulo `len`, and the write
/// is clipped to the end.
///
/// # Safety
/// `ptr..ptr + len` is writable memory that no other thread touches now.
pub unsafe fn patch(ptr: *mut u8, len: usize, input: &mut Input<'_>) {
    let count = input.u8() % 9;
    for _ in 0..count {
        let at = input.u16() as usize % len;
        let width = (1usize << (input.u8() % 4)).min(len - at);
        let bytes = input.take(width).to_vec();
        // SAFETY: `at + bytes.len() <= len` (clipped above).
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), ptr.add(at), bytes.len()) };
    }
}

/// A result that operations on untrusted bytes may give: a value, or one
/// of the listed typed errors. Anything else fails the target.
pub fn allowed<T>(r: &Result<T, Error>, ok: &[fn(&Error) -> bool]) {
    if let Err(e) = r {
        assert!(ok.iter().any(|f| f(e)), "unexpected error: {e:?}");
    }
}

pub fn corrupt(e: &Error) -> bool {
    matches!(e, Error::Corrupt(_))
}
pub fn timeout(e: &Error) -> bool {
    matches!(e, Error::Timeout)
}
pub fn would_block(e: &Error) -> bool {
    matches!(e, Error::WouldBlock)
}
pub fn invalid(e: &Error) -> bool {
    matches!(e, Error::InvalidArgument(_))
}
