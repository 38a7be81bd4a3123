//! The fuzz entry point over ring memory (`cfg(fuzzing)`).

use super::*;

/// Fuzz entry: `data` as ring memory, then a bounded run of operations.
/// The first byte picks the mode: garbage in every byte (attach must refuse
/// it or cope), or a valid ring whose control words (positions, stamps,
/// lengths, flags) are then overwritten with garbage.
#[cfg(fuzzing)]
pub fn __fuzz_garbage(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let valid = mode & 1 == 1;
    let cap = (mode as usize >> 1) % 9 + 1;
    let slot = rest.first().map_or(8, |&b| b as usize % 40);
    // Garbage mode: the input is the ring, however long. Valid mode: a
    // ring of exactly the chosen geometry, whatever the input's length (a
    // buffer sized by the input made this mode unreachable below 4672
    // bytes, past libFuzzer's default input length).
    let len = if valid {
        match MpmcRing::bytes_for(cap, slot) {
            Ok(n) => n,
            Err(_) => return,
        }
    } else {
        rest.len().clamp(std::mem::size_of::<MpmcRing>(), 1 << 16)
    };
    let Ok(layout) = std::alloc::Layout::from_size_align(len, 64) else {
        return;
    };
    // SAFETY: `len >= size_of::<MpmcRing>()`, non-zero.
    let p = unsafe { std::alloc::alloc_zeroed(layout) };
    if p.is_null() {
        return;
    }
    let view = if !valid {
        // SAFETY: `p` holds `len >= rest.len().min(len)` bytes.
        unsafe { std::ptr::copy_nonoverlapping(rest.as_ptr(), p, rest.len().min(len)) };
        // SAFETY: our allocation, alive until the end of this function.
        unsafe { MpmcRing::attach(p, len) }
    } else {
        // SAFETY: `len == bytes_for(cap, slot)` bytes of our fresh allocation.
        unsafe { MpmcRing::init(p, cap, slot, mode as u32 >> 7).unwrap() };
        // Overwrite control words: each 9-byte record is an offset (into
        // the ring, 8-aligned) and a value.
        for rec in rest.chunks_exact(9).take(32) {
            let off = (u16::from_le_bytes([rec[0], 0]) as usize * 8) % len;
            let off = off & !7;
            let v = u64::from_le_bytes(rec[1..9].try_into().unwrap());
            // SAFETY: an aligned u64 inside our allocation, only read
            // atomically elsewhere; no other thread runs.
            unsafe { (*p.add(off).cast::<AtomicU64>()).store(v, Relaxed) };
        }
        // SAFETY: as above.
        unsafe { MpmcRing::attach(p, len) }
    };
    if let Ok(r) = view {
        for i in 0..64u32 {
            let _ = r.len();
            if i % 3 == 0 {
                if let Ok(s) = r.try_reserve() {
                    let n = r.slot_size().min(4);
                    // SAFETY: the reserved slot holds `slot_size >= n` bytes.
                    unsafe { std::ptr::write_bytes(r.payload_ptr(&s), 0xab, n) };
                    if i % 2 == 0 {
                        let _ = r.commit(s, n);
                    } else {
                        let _ = r.cancel(s);
                    }
                }
            } else if let Ok(s) = r.try_claim(|_| Ok(())) {
                // SAFETY: claimed: `len <= slot_size` was checked.
                let b = unsafe { std::slice::from_raw_parts(r.payload_ptr(&s), s.len()) };
                std::hint::black_box(b.iter().fold(0u8, |a, x| a ^ x));
                let _ = r.release(s);
            }
            let _ = r.task_done();
            if i % 8 == 0 {
                // Garbage peer entries, stamps and positions: recovery must
                // end, and take nothing it cannot prove dead.
                let _ = r.recover();
                let _ = r.stalled(i % 16 == 0);
                let _ = r.abandoned();
            }
            let _ = r.join_until(Some(Deadline::PASSED));
            let _ = r.reserve_until(Some(Deadline::PASSED)).map(|s| r.cancel(s));
        }
    }
    // SAFETY: allocated above with `layout`; nothing refers to it now (the
    // view is dropped and its atomics need no drop outside loom).
    unsafe { std::alloc::dealloc(p, layout) };
}
