//! Random bytes as a ring's control block and data, and as a whole pipe
//! segment: attaching and then every operation must give an error
//! (`Corrupt` for bad control words) or a sane answer, never an
//! out-of-bounds access, a panic, or an endless loop.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shmprim::raw::spsc::SpscRing;

const REGION: usize = 256 + 4096;

fuzz_target!(|data: &[u8]| {
    // A 64-aligned region holding the input (zero-padded).
    let mut words = vec![0u64; REGION / 8 + 8];
    let base = words.as_mut_ptr() as *mut u8;
    let ptr = base.wrapping_add(base.align_offset(64));
    let n = data.len().min(REGION);
    // SAFETY: `ptr..ptr + REGION` lies inside `words` (8 spare words cover
    // the alignment offset); `data` does not overlap it.
    unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), ptr, n) };
    // SAFETY: aligned, REGION bytes valid while `words` lives; nothing else
    // touches them.
    if let Ok(ring) = unsafe { SpscRing::attach(ptr, REGION) } {
        let mut buf = vec![0u8; ring.capacity()];
        // SAFETY: the only consumer.
        if let Ok(mut c) = unsafe { ring.consumer() } {
            for _ in 0..64 {
                match c.try_pop(&mut buf) {
                    Ok(Some(_)) => {}
                    _ => break,
                }
            }
        }
        // SAFETY: the only producer.
        if let Ok(mut p) = unsafe { ring.producer() } {
            for i in 0..64 {
                if !matches!(p.try_push(&buf[..(i * 37) % 300], 0), Ok(true)) {
                    break;
                }
            }
        }
    }
    let _ = shmprim::__fuzz::open_pipe(data);
});
