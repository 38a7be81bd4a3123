//! Segments that start with a *valid* header, so that the fuzzer gets past
//! the magic, the checksum and the kind checks and reaches what lies behind
//! them: the per-kind size checks, the in-place mutex's own checks and the
//! lock calls on whatever bytes the object holds, and a cleaner's reading
//! of the attach table (`shmprim::segment::__fuzz_inspect`).
//!
//! The header is copied from a real object made by this build of the crate
//! (`Value::<u64>::anonymous`, `Array::<u32>::anonymous(n)`, ...), so it
//! follows the format without this file knowing it. Then the input decides:
//!
//! | byte | meaning                                                         |
//! |-----:|-----------------------------------------------------------------|
//! |    0 | which template: Value<u64>, Array<u32>, AtomicValue<u64>, Lock, RLock, bytes |
//! |    1 | the template's size parameter (array length, bytes)             |
//! |    2 | mode (low 2 bits), image length flags (bits 2 and 3)            |
//! |   3… | mode 1 and 2: a patch count and the patches                     |
//! | rest | the object: copied over the bytes from the object offset on     |
//!
//! * mode 0 — header intact: only the object part changes.
//! * mode 1 — header bytes flipped (offset, xor) with the checksum left
//!   alone: nearly always "checksum mismatch", except for the bytes it does
//!   not cover (the `state` word, `overflow`, `doomed`, the reserved tail
//!   and the attach table).
//! * mode 2 — header fields overwritten with fuzz values and the checksum
//!   computed again, so that lengths, offsets, sizes, flags and the lock
//!   link reach the checks after the checksum. Flag bit 2 makes the image
//!   as long as the (new) `total_size` field says (up to 1 MiB), bit 3
//!   truncates or extends it to a length taken from the input.
//!
//! The target recomputes the checksum with its own copy of the algorithm
//! (FNV-1a over the fields, as documented in `src/segment/header.rs`) and
//! checks that copy against every fresh template, so a change of format
//! stops the target loudly instead of quietly turning mode 2 into mode 1.
#![no_main]

use std::collections::HashMap;
use std::sync::Mutex;

use libfuzzer_sys::fuzz_target;
use shmprim::{Array, AtomicValue, Lock, RLock, Segment, Value};

const HEADER_SIZE: usize = 1024;
/// The attach table: 32 rows of (word, start).
const TABLE_AT: usize = 512;
const CHECKSUM_AT: usize = 104;
const LINK_AT: usize = 112;
const LINK_LEN: usize = 256;
/// Largest image the target builds (keeps every run fast).
const MAX_IMAGE: usize = 1 << 20;

/// (offset, width) of each header field, in layout order, `state` and the
/// link words included; the checksum itself is left out (it is recomputed).
const FIELDS: &[(usize, usize)] = &[
    (0, 8),   // magic
    (8, 4),   // version
    (12, 4),  // state (not covered by the checksum)
    (16, 4),  // kind
    (20, 4),  // header_size
    (24, 8),  // total_size
    (32, 8),  // object_offset
    (40, 8),  // object_size
    (48, 8),  // type_size
    (56, 8),  // type_align
    (64, 8),  // type_tag
    (72, 8),  // param_len
    (80, 8),  // param_capacity
    (88, 4),  // creator_pid
    (92, 4),  // flags
    (96, 8),  // creator_start
    (112, 8), // link, first word (a name starts here)
    (120, 8), // link, second word
    (128, 8), // link, third word
    (368, 4), // overflow (not covered by the checksum)
    (376, 8), // doomed: word (not covered by the checksum)
    (384, 8), // doomed: start time
    (392, 8), // creator_pidns
    (TABLE_AT, 8),      // attach row 0: word (pid, busy bit, generation)
    (TABLE_AT + 8, 8),  // attach row 0: start time
    (TABLE_AT + 16, 8), // attach row 1: word
    (TABLE_AT + 24, 8), // attach row 1: start time
    (TABLE_AT + 31 * 16, 8), // attach row 31: word
];

/// Checksum-covered fields, as the header's `fields()` lists them: each is
/// hashed as a little-endian u64, then `creator_pidns`, then the link bytes.
const SUMMED: &[(usize, usize)] = &[
    (0, 8),
    (8, 4),
    (16, 4),
    (20, 4),
    (24, 8),
    (32, 8),
    (40, 8),
    (48, 8),
    (56, 8),
    (64, 8),
    (72, 8),
    (80, 8),
    (88, 4),
    (92, 4),
    (96, 8),
];

fn fnv1a(bytes: &[u8], mut h: u64) -> u64 {
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn read_field(img: &[u8], (at, width): (usize, usize)) -> u64 {
    let mut w = [0u8; 8];
    w[..width].copy_from_slice(&img[at..at + width]);
    u64::from_le_bytes(w)
}

fn write_field(img: &mut [u8], (at, width): (usize, usize), v: u64) {
    img[at..at + width].copy_from_slice(&v.to_le_bytes()[..width]);
}

fn checksum(img: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325;
    for &f in SUMMED {
        h = fnv1a(&read_field(img, f).to_le_bytes(), h);
    }
    h = fnv1a(&read_field(img, (392, 8)).to_le_bytes(), h);
    fnv1a(&img[LINK_AT..LINK_AT + LINK_LEN], h)
}

/// The whole mapping of `seg`, header included, copied out.
fn image_of(seg: &Segment) -> Vec<u8> {
    let offset = seg.info().object_offset as usize;
    let mut out = vec![0u8; seg.len()];
    // SAFETY: `data_ptr()` is `object_offset` bytes past the start of the
    // mapping, so subtracting it gives the mapping's start; the mapping is
    // `seg.len()` bytes long. The segment is anonymous and was created by
    // this thread a moment ago, so no other thread or process writes it
    // during the copy; `out` is a separate allocation of the same length.
    unsafe {
        let start = seg.data_ptr().sub(offset);
        std::ptr::copy_nonoverlapping(start, out.as_mut_ptr(), out.len());
    }
    out
}

/// A fresh, valid segment image of template `which` with parameter `param`.
fn make_template(which: u8, param: u8) -> Vec<u8> {
    let img = match which % 6 {
        0 => image_of(
            Value::<u64>::anonymous(u64::from(param))
                .expect("Value")
                .segment(),
        ),
        1 => image_of(
            Array::<u32>::anonymous(param as usize)
                .expect("Array")
                .segment(),
        ),
        2 => image_of(
            AtomicValue::<u64>::anonymous(u64::from(param))
                .expect("AtomicValue")
                .segment(),
        ),
        3 => image_of(Lock::anonymous().expect("Lock").segment()),
        4 => image_of(RLock::anonymous().expect("RLock").segment()),
        _ => image_of(&Segment::anonymous(param as usize * 8).expect("Segment")),
    };
    // The copy of the checksum algorithm must agree with the crate's, or
    // mode 2 would test nothing.
    assert_eq!(
        read_field(&img, (CHECKSUM_AT, 8)),
        checksum(&img),
        "fuzz target's header checksum disagrees with the crate: update SUMMED"
    );
    // And the template must open as what it is.
    assert!(
        shmprim::__fuzz::open_all(&img) >= 1,
        "a valid template was refused"
    );
    img
}

/// Templates made so far, by (template, parameter).
type Templates = HashMap<(u8, u8), Vec<u8>>;

fn template(which: u8, param: u8) -> Vec<u8> {
    static CACHE: Mutex<Option<Templates>> = Mutex::new(None);
    let key = (
        which % 6,
        if matches!(which % 6, 1 | 5) { param } else { 0 },
    );
    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    cache
        .get_or_insert_with(HashMap::new)
        .entry(key)
        .or_insert_with(|| make_template(key.0, key.1))
        .clone()
}

/// A little cursor over the input.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        let (b, rest) = self.0.split_first().map_or((0, &[][..]), |(b, r)| (*b, r));
        self.0 = rest;
        b
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }

    fn u64(&mut self) -> u64 {
        let mut w = [0u8; 8];
        for b in &mut w {
            *b = self.byte();
        }
        u64::from_le_bytes(w)
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let which = input.byte();
    let param = input.byte();
    let mode = input.byte();
    let mut img = template(which, param);
    let object_offset = read_field(&img, (32, 8)) as usize;

    match mode & 3 {
        0 => {}
        1 => {
            for _ in 0..input.byte() % 16 {
                let at = input.u16() as usize % HEADER_SIZE;
                img[at] ^= input.byte();
            }
        }
        _ => {
            for _ in 0..input.byte() % 8 {
                let field = FIELDS[input.byte() as usize % FIELDS.len()];
                write_field(&mut img, field, input.u64());
            }
            let sum = checksum(&img);
            write_field(&mut img, (CHECKSUM_AT, 8), sum);
            if mode & 4 != 0 {
                let total = read_field(&img, (24, 8));
                if total as usize >= HEADER_SIZE && total as usize <= MAX_IMAGE {
                    img.resize(total as usize, 0);
                }
            }
            if mode & 8 != 0 {
                img.resize(input.u16() as usize, 0);
            }
        }
    }

    // The rest of the input is the object.
    if img.len() > object_offset {
        let object = &mut img[object_offset..];
        let n = object.len().min(input.0.len());
        object[..n].copy_from_slice(&input.0[..n]);
    }

    let _ = shmprim::__fuzz::open_all(&img);
    let _ = shmprim::segment::__fuzz_inspect(&img);
});
