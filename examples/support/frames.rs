//! The frame job shared by `examples/frames.rs` and the peers suite's
//! `W7-frames` (both include this file by `#[path]`, so the two measure
//! the same work): synthetic 1920x1080 RGB frames made by the program,
//! and a per-frame filter (grayscale, 3x3 box blur, 256-bin histogram)
//! reduced to one checksum. `benches/peers/python/peers_frames.py` is
//! the numpy twin of both, checked to give the same checksums.

#![allow(dead_code)] // each includer uses its own part

/// Frame width, in pixels.
pub const W: usize = 1920;
/// Frame height, in pixels.
pub const H: usize = 1080;
/// Bytes of one RGB frame.
pub const FRAME: usize = W * H * 3;

/// Frame `i` (a deterministic pattern with xorshift noise).
pub fn make_frame(i: usize) -> Vec<u8> {
    let mut f = vec![0u8; FRAME];
    let mut x = 0x9e37_79b9u32 ^ (i as u32).wrapping_mul(0x85eb_ca6b);
    for (k, px) in f.chunks_exact_mut(3).enumerate() {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let (r, c) = (k / W, k % W);
        px[0] = (r + i) as u8 ^ (x as u8 & 7);
        px[1] = (c / 4) as u8;
        px[2] = ((r * c) >> 6) as u8 ^ (x >> 8) as u8;
    }
    f
}

/// Grayscale, 3x3 box blur, histogram; the checksum of all three.
pub fn filter(rgb: &[u8]) -> u64 {
    let mut gray = vec![0u16; W * H];
    for (g, px) in gray.iter_mut().zip(rgb.chunks_exact(3)) {
        *g = (77 * px[0] as u16 + 150 * px[1] as u16 + 29 * px[2] as u16) >> 8;
    }
    let mut hist = [0u64; 256];
    let mut sum = 0u64;
    for r in 1..H - 1 {
        for c in 1..W - 1 {
            let mut s = 0u16;
            for dr in [r - 1, r, r + 1] {
                let row = &gray[dr * W + c - 1..dr * W + c + 2];
                s += row[0] + row[1] + row[2];
            }
            let b = (s / 9) as usize;
            hist[b] += 1;
            sum = sum.wrapping_add(b as u64);
        }
    }
    hist.iter().enumerate().fold(sum, |h, (i, &n)| {
        h.wrapping_mul(31).wrapping_add(n ^ i as u64)
    })
}

/// One checksum over every frame's, in order.
pub fn combine(sums: &[u64]) -> u64 {
    sums.iter()
        .fold(0u64, |h, &x| h.wrapping_mul(1_000_003) ^ x)
}

/// A frame's bytes as one task argument: one length-prefixed copy (what
/// Python's pickling of a numpy frame amounts to), not an element by
/// element `Vec<u8>` encoding.
pub struct Frame(pub Vec<u8>);

impl shmprim::process::Message for Frame {
    fn encode(&self, out: &mut shmprim::process::Encoder) -> shmprim::Result<()> {
        out.put_bytes(&self.0);
        Ok(())
    }
    fn decode(input: &mut shmprim::process::Decoder<'_>) -> shmprim::Result<Self> {
        Ok(Frame(input.take_bytes()?.to_vec()))
    }
}

/// The copying pool's task: the frame travels in it.
pub fn filter_copied(f: Frame) -> u64 {
    filter(&f.0)
}

/// Every frame back to back, given once to each worker (the pool's
/// initializer): no lock, nothing copied per task.
static SHARED: std::sync::OnceLock<shmprim::RawArray<u8>> = std::sync::OnceLock::new();

/// The zero-copy pool's initializer: keeps the frames' array, and
/// touches one byte of each page so that the tasks do not pay this
/// process's page faults on the shared mapping (about 1500 per frame; a
/// thread pool reads memory whose pages are mapped already).
pub fn keep_frames(a: shmprim::RawArray<u8>) {
    // SAFETY: as in `filter_shared`: the frames were written before this
    // worker started, and nothing writes them any more.
    let all = unsafe { a.as_slice() };
    let touched = all.iter().step_by(4096).fold(0u8, |x, &b| x ^ b);
    std::hint::black_box(touched);
    let _ = SHARED.set(a);
}

/// All `frames` in one anonymous shared array, ready for
/// [`keep_frames`]: written before any worker exists.
pub fn share_frames(frames: &[Vec<u8>]) -> shmprim::Result<shmprim::RawArray<u8>> {
    let a = shmprim::RawArray::<u8>::anonymous(frames.len() * FRAME)?;
    // SAFETY: the array is anonymous and new: no other handle, thread or
    // process can touch it until it is handed to the pool's workers,
    // after this slice is gone.
    let all = unsafe { a.as_mut_slice() };
    for (dst, f) in all.chunks_exact_mut(FRAME).zip(frames) {
        dst.copy_from_slice(f);
    }
    Ok(a)
}

/// The zero-copy pool's task: filters frame `i` in place, in the array
/// the initializer kept. Panics (failing the task, not the pool) when
/// `i` is out of range.
pub fn filter_shared(i: u64) -> u64 {
    let a = SHARED.get().expect("the initializer kept the frames");
    // SAFETY: the parent wrote every frame before it started the workers
    // (process start orders those writes before anything the worker
    // reads), and nothing writes the array while tasks run: a read-only
    // phase.
    let all = unsafe { a.as_slice() };
    let frame = all.chunks_exact(FRAME).nth(i as usize);
    filter(frame.expect("a frame index in range"))
}
