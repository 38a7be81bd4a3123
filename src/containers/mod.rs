//! Growable shared containers: [`SharedMap`] (Python's `Manager().dict()`)
//! and [`SharedList`] (`Manager().list()`), in shared memory, with no
//! server process.
//!
//! This layer is written against the crate's public API, as an outside
//! library would be: bytes [`Segment`](crate::Segment)s, a
//! [`RawMutex`](crate::RawMutex), and [`SeqCount`](crate::raw::SeqCount)
//! (the one piece added below for it).
//!
//! ## Decisions
//!
//! * **Generations.** A container is a small fixed *root* segment (its
//!   name is the container's) and one *generation* segment,
//!   `{name}.{nonce:08x}.{n:x}`, holding the data (the nonce, random per
//!   container and kept in the root, keeps a handle on a removed container
//!   away from the generations of a later one of the same name; a name
//!   found taken is skipped, never removed). A write that does not fit (heap, slot table, undo
//!   log) copies the live data, compactly, into generation `n + 1` — twice
//!   the live size — and publishes it with one store of `n + 1` into the
//!   root's `current` word. Handles compare `current` with their own
//!   generation on every operation and re-map: growth is followed without
//!   re-opening. Old generations are unlinked by the writer that replaced
//!   them (a handle never needs an old name: it only ever opens the
//!   current one); handles unmap them once no thread of theirs reads them
//!   (`swap::Swap`: a pin count read by RMW, modelled under loom).
//!   Space freed by removes and overwrites is reclaimed at the next move
//!   (`clear` moves to an empty generation at once).
//! * **Crash safety: an undo log, or a fresh generation.** Writers hold the
//!   root's robust lock. A write in place first copies what it will change
//!   (the state block, a slot, a value overwritten in place) into the
//!   generation's undo log; emptying the log is the commit point. A write
//!   that moved to a new generation needs no log: the generation is
//!   invisible until the `current` store. The next locker of a dead
//!   writer's lock gets the owner-died hand-over, replays the undo log
//!   backwards (the state before the operation), removes generation names
//!   the writer created but never published (the root records the highest
//!   number ever created, before creating it), and marks the lock
//!   consistent: no caller action. The lock is made consistent before
//!   any step of the repair that can fail, with a `dirty` word in the root
//!   set: a repair that fails (or panics) leaves the repair owed to the
//!   next locker, never a lock that nobody can take. Transactions
//!   ([`SharedMap::transaction`]) are the same mechanism over several
//!   operations; an `Err` or panic in one rolls back the same way.
//! * **Readers take no lock.** Each generation has a sequence word
//!   ([`SeqCount`](crate::raw::SeqCount)), odd while a writer changes it in
//!   place. Readers copy what they need (bounds-checking every offset and
//!   length: a torn read may be garbage) and keep it only if the word did
//!   not move. After a few failed tries — a long write, or a writer that
//!   died with the word odd — a reader takes the lock instead; the lock's
//!   dead-owner check is then the longest a reader waits on a dead writer.
//! * **Any size.** Keys and values are byte strings of any length (empty to
//!   gigabytes), stored as records in the generation's heap: `klen`,
//!   `vlen`, bytes. Values of the same length (up to 1 KiB) are
//!   overwritten in place through the undo log; others get a new record.
//! * **Full `/dev/shm`.** A generation is reserved with `posix_fallocate`
//!   when created: a full `/dev/shm` is [`Error::OutOfSpace`]
//!   from the write that needed the space, after which the container is
//!   exactly as before that write.
//! * **Names.** The creator's handle removes the root and generation names
//!   when it drops (unless persisted); handles that still map the
//!   container keep working, but can no longer follow growth, and a write
//!   that would need a new generation gets [`Error::NotFound`]. Every
//!   generation records the root's creator as its own creator, so that
//!   `shmprim clean` keeps it while that process runs, whichever writer
//!   created it.
//! * **Timeouts: one bound per handle, no `try_`/`_timeout` forms.** The
//!   crate's rule is a `try_op` and an `op_timeout` beside every blocking
//!   `op`. Here the only wait is for the writers' lock, held by a writer
//!   for the bounded time of one operation (or of a transaction's
//!   closure), and handed on at once if that writer dies; readers never
//!   wait for it unless writers keep interfering. Doubling every method
//!   (`insert`, `remove`, `update`, `push`, ... each thrice) would add
//!   twenty-odd methods for that one wait, so a handle carries one bound
//!   instead: `set_timeout(Some(d))` makes every wait for the lock give up
//!   with [`Error::Timeout`] after `d` (`Duration::ZERO`: one attempt,
//!   the `try_` behaviour). Handles are cheap to open, so a caller that
//!   needs two policies opens two.
//!   Anonymous containers have an anonymous root and uniquely named
//!   generations, removed when the creating process's handle drops.
//!
//! ## Costs
//!
//! A read is a few loads plus the copy out; a write takes the lock and logs
//! about 100 bytes. Moving to a new generation costs a segment creation
//! (tens of microseconds) plus a copy of the live data, amortised by
//! doubling. `SharedList::insert`/`remove` in the middle shift the slot
//! table (8 bytes an element).

pub(crate) mod core;
mod gen;
mod list;
mod map;
mod swap;

pub use list::SharedList;
pub use map::{MapTx, SharedMap};

use crate::{Error, Plain, Result};

/// Values up to this size whose length does not change are overwritten in
/// place (through the undo log) rather than given a new record.
pub(crate) const INPLACE_MAX: u64 = 1024;

/// Which container a root or generation holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    Map = 1,
    List = 2,
}

impl Shape {
    fn slot_size(self) -> u64 {
        match self {
            Shape::Map => 16,
            Shape::List => 8,
        }
    }
}

/// A stable 64-bit hash of a key (the same in every process and build):
/// 8 bytes at a time, multiply-rotate, then murmur3's finaliser.
pub(crate) fn hash(key: &[u8]) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut h = (key.len() as u64).wrapping_mul(K);
    let mut chunks = key.chunks_exact(8);
    for c in &mut chunks {
        let mut b = [0u8; 8];
        b.copy_from_slice(c);
        h = (h ^ u64::from_le_bytes(b)).wrapping_mul(K).rotate_left(29);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut b = [0u8; 8];
        b[..rest.len()].copy_from_slice(rest);
        h = (h ^ u64::from_le_bytes(b)).wrapping_mul(K).rotate_left(29);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// The bytes of a `Plain` value.
pub(crate) fn as_bytes<T: Plain>(v: &T) -> &[u8] {
    // SAFETY: `Plain` types are plain data with no pointers, whose padding
    // (if any) the trait's contract accepts carrying over; the slice covers
    // exactly the value and borrows it.
    unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), std::mem::size_of::<T>()) }
}

/// A `Plain` value from exactly its size in bytes.
pub(crate) fn from_bytes<T: Plain>(b: &[u8]) -> Result<T> {
    if b.len() != std::mem::size_of::<T>() {
        return Err(Error::LengthMismatch {
            found: b.len() as u64,
            expected: std::mem::size_of::<T>() as u64,
        });
    }
    // SAFETY: `b` holds size_of::<T>() bytes (checked); every bit pattern
    // is a valid `Plain` value; read_unaligned needs no alignment.
    Ok(unsafe { std::ptr::read_unaligned(b.as_ptr().cast::<T>()) })
}

/// The fuzz entry: a named map and a named list whose first generation's
/// bytes (and, from the second half of the input, the root's fields other
/// than the lock) are overwritten with `bytes`; then the container is
/// opened anew and used through both handles. Every call must end in a
/// value or a typed error, without hanging. Returns how many succeeded.
#[cfg(fuzzing)]
pub fn __fuzz_open(bytes: &[u8]) -> usize {
    use crate::Segment;
    let (gen_bytes, root_bytes) = bytes.split_at(bytes.len() / 2 + bytes.len() % 2);
    let mut ok = 0;
    for shape in [Shape::Map, Shape::List] {
        let name = crate::segment::unique_name("fzc");
        let Ok(core) = core::Core::create(core::Place::Named(&name, &crate::Options::new()), shape)
        else {
            continue;
        };
        core.set_timeout(Some(std::time::Duration::from_millis(1)));
        if let Ok(seg) = Segment::open(&core.__fuzz_gen_name()) {
            let n = gen_bytes.len().min(seg.data_len());
            // SAFETY: `n` bytes fit the segment's data; nothing else of
            // this process reads them during the copy.
            unsafe { std::ptr::copy_nonoverlapping(gen_bytes.as_ptr(), seg.data_ptr(), n) };
        }
        core.__fuzz_patch_root(root_bytes);
        let reopened = core::Core::open(&name, shape, &crate::Options::new());
        let cores = std::iter::once(core).chain(reopened.ok());
        for c in cores {
            c.set_timeout(Some(std::time::Duration::from_millis(1)));
            ok += match shape {
                Shape::Map => fuzz_map(SharedMap::__from_core(c)),
                Shape::List => fuzz_list(SharedList::__from_core(c)),
            };
        }
        // Every handle is gone: no name of this container may be left
        // (a leak is a finding, as a crash is).
        #[cfg(target_os = "linux")]
        if let Ok(dir) = std::fs::read_dir("/dev/shm") {
            let prefix = name.trim_start_matches('/');
            let left: Vec<_> = dir
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n == prefix || n.starts_with(&format!("{prefix}.")))
                .collect();
            assert!(left.is_empty(), "container names left behind: {left:?}");
        }
    }
    ok
}

#[cfg(fuzzing)]
fn fuzz_map(m: SharedMap) -> usize {
    let r = [
        m.len().is_ok(),
        m.get(b"k").is_ok(),
        m.items().is_ok(),
        m.insert(b"k", b"v").is_ok(),
        m.insert(b"k", b"w").is_ok(),
        m.insert(b"big", &[1; 5000]).is_ok(),
        m.remove(b"k").is_ok(),
        m.update(b"n", |_| Some(vec![1])).is_ok(),
        m.keys().is_ok(),
    ];
    r.iter().filter(|&&b| b).count()
}

#[cfg(fuzzing)]
fn fuzz_list(l: SharedList) -> usize {
    let r = [
        l.len().is_ok(),
        l.get(0).is_ok(),
        l.snapshot().is_ok(),
        l.push(b"x").is_ok(),
        l.insert(0, b"y").is_ok(),
        l.set(0, b"zz").is_ok(),
        l.remove(0).is_ok(),
        l.pop().is_ok(),
        l.truncate(1).is_ok(),
    ];
    r.iter().filter(|&&b| b).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_stable_and_spreads() {
        assert_eq!(hash(b""), hash(b""));
        assert_ne!(hash(b"a"), hash(b"b"));
        assert_ne!(hash(b"abcdefgh"), hash(b"abcdefgh\0"));
        let mut seen = std::collections::HashSet::new();
        for i in 0u64..1000 {
            seen.insert(hash(&i.to_le_bytes()) & 1023);
        }
        assert!(seen.len() > 500, "{}", seen.len());
    }
}
