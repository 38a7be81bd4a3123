//! Random bytes as a ring's control block and data, and as a whole pipe
//! segment: attaching and then every operation must give an error
//! (`Corrupt` for bad control words) or a sane answer, never an
//! out-of-bounds access, a panic, or an endless loop.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shmprim::raw::spsc::SpscRing;

const MAX_DATA: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        raw(rest);
    } else {
        near_valid(rest);
    }
    let _ = shmprim::__fuzz::open_pipe(rest);
});

/// A region of exactly control block + `cap` data bytes, so that any
/// access past the data area leaves the allocation (AddressSanitizer
/// reports it).
fn with_region(cap: usize, fill: impl FnOnce(&mut [u8])) {
    let region = 256 + cap;
    let layout = std::alloc::Layout::from_size_align(region, 64).unwrap();
    // SAFETY: non-zero size.
    let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
    assert!(!ptr.is_null());
    // SAFETY: `ptr` has `region` zeroed bytes, ours alone until freed.
    fill(unsafe { std::slice::from_raw_parts_mut(ptr, region) });
    run(ptr, region);
    // SAFETY: allocated above with this layout.
    unsafe { std::alloc::dealloc(ptr, layout) };
}

/// The input as the whole region; the data size is the input's capacity
/// word when that is a plausible one, else the largest.
fn raw(data: &[u8]) {
    let cap = data
        .get(8..16)
        .map(|b| u64::from_le_bytes(b.try_into().unwrap()) as usize)
        .filter(|c| c.is_power_of_two() && (256..=MAX_DATA).contains(c))
        .unwrap_or(MAX_DATA);
    with_region(cap, |r| {
        let n = data.len().min(r.len());
        r[..n].copy_from_slice(&data[..n]);
    });
}

/// A valid magic and capacity with garbage positions near each other and
/// garbage records: reaches the record checks far more often than raw
/// bytes do.
fn near_valid(data: &[u8]) {
    if data.len() < 8 {
        return;
    }
    let cap = 256usize << (data[0] % 5);
    let head = u32::from_le_bytes(data[1..5].try_into().unwrap()) as u64;
    let tail = head.wrapping_add(u16::from_le_bytes(data[5..7].try_into().unwrap()) as u64);
    let body = &data[7..];
    // Half the inputs get the lap tag of their position stamped on every
    // word, so that garbage headers pass the "published" test and reach
    // the length and flag checks (format 3: tag in bits 40..64).
    let stamp = data[0] & 0x80 != 0;
    with_region(cap, |r| {
        r[..8].copy_from_slice(b"shmspsc3");
        r[8..16].copy_from_slice(&(cap as u64).to_le_bytes());
        r[64..72].copy_from_slice(&tail.to_le_bytes());
        r[128..136].copy_from_slice(&head.to_le_bytes());
        for (i, b) in r[256..].iter_mut().enumerate() {
            if !body.is_empty() {
                *b = body[i % body.len()];
            }
        }
        if stamp {
            let lap = |pos: u64| (((pos >> cap.trailing_zeros()) & 0x7F_FFFF) << 1) | 1;
            for (k, w) in r[256..].chunks_exact_mut(8).enumerate() {
                // The position of this word in the lap of `head`, or the next.
                let off = (k * 8) as u64;
                let base = head & !(cap as u64 - 1);
                let pos = if base + off >= head {
                    base + off
                } else {
                    base + cap as u64 + off
                };
                let word = u64::from_le_bytes(w.try_into().unwrap()) & ((1 << 40) - 1);
                w.copy_from_slice(&(word | lap(pos) << 40).to_le_bytes());
            }
        }
    });
}

fn run(ptr: *mut u8, region: usize) {
    // SAFETY: aligned, `region` bytes valid until the caller frees them;
    // nothing else touches them.
    if let Ok(ring) = unsafe { SpscRing::attach(ptr, region) } {
        let mut buf = vec![0u8; ring.capacity()];
        // The batch fast path first (it reads the same garbage headers).
        // SAFETY: the only consumer.
        if let Ok(mut c) = unsafe { ring.consumer() } {
            let mut total = 0usize;
            c.begin_batch();
            c.pop_plain_many(64, |m| total = total.wrapping_add(m.len()));
            c.end_batch();
            std::hint::black_box(total);
        }
        // SAFETY: the only consumer (the batch's is gone).
        if let Ok(mut c) = unsafe { ring.consumer() } {
            for _ in 0..64 {
                match c.try_pop(&mut buf) {
                    Ok(Some(_)) => {}
                    _ => break,
                }
            }
        }
        // SAFETY: the only consumer (the one above is gone).
        if let Ok(mut c) = unsafe { ring.consumer() } {
            // The plain fast paths, one at a time and batched.
            for _ in 0..16 {
                if !matches!(c.try_pop_plain(&mut buf), Ok(Some(_))) {
                    break;
                }
            }
            c.begin_batch();
            let mut seen = 0usize;
            for _ in 0..16 {
                if !matches!(c.try_pop_plain_with(|b| seen += b.len()), Ok(true)) {
                    break;
                }
            }
            c.end_batch();
            assert!(seen <= 16 * ring.capacity());
        }
        // SAFETY: the only producer.
        if let Ok(mut p) = unsafe { ring.producer() } {
            for i in 0..64 {
                if !matches!(p.try_push(&buf[..(i * 37) % buf.len()], 0), Ok(true)) {
                    break;
                }
            }
            p.begin_batch();
            for i in 0..16 {
                if !p.try_push_plain(&buf[..(i * 53) % buf.len()]) {
                    break;
                }
            }
            p.end_batch();
        }
        // SAFETY: the only producer (the one above is gone).
        if let Ok(mut p) = unsafe { ring.producer() } {
            let msgs: Vec<&[u8]> = (0..64).map(|i| &buf[..(i * 29) % buf.len()]).collect();
            let mut it = msgs.iter();
            let mut next = it.next();
            p.begin_batch();
            p.push_plain_many(&mut next, &mut it);
            p.end_batch();
        }
    }
}
