//! What the map and the list share: the root segment, following
//! generations, optimistic reads, and the writer (lock, undo log, growth,
//! commit, repair).
//!
//! ## Root layout (a 512-byte bytes segment; offsets from its data start)
//!
//! | offset | field     | written                                                  |
//! |-------:|-----------|----------------------------------------------------------|
//! |      0 | magic     | last, at creation (Release): openers wait for it         |
//! |      8 | shape     | at creation                                              |
//! |     16 | mode      | at creation: permission bits for every generation        |
//! |     24 | base_len  | at creation: length of the generations' base name        |
//! |     32 | closed    | 1 once the creator dropped its handle (names removed)    |
//! |     40 | nonce     | at creation: a random 32-bit tag in every generation name |
//! |     48 | dirty     | 1 while a dead or failed writer's repair is owed (under the lock) |
//! |     64 | mutex     | [`RawMutex`]: serialises writers; its owner-died hand-over triggers the repair |
//! |    128 | current   | number of the published generation: **the growth commit point** (Release) |
//! |    136 | created   | highest generation number ever created (under the lock, before creating it) |
//! |    144 | oldest    | lowest generation whose name may still be linked         |
//! |    192 | base      | the base name (≤ 255 bytes); generation `n` is `{base}.{nonce:08x}.{n:x}` |
//!
//! The nonce keeps a handle on a removed container from touching the
//! generations of a new container created later under the same name.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::*};
use std::time::{Duration, Instant};

use super::gen::{self, Gen, Sizes, G_BUMP, G_LEN, G_LIVE, G_STATE, G_USED, STATE_LEN};
use super::swap::{Pinned, Swap};
use super::Shape;
use crate::fault::fault_point;
use crate::raw::{LockError, MutexKind, RawMutex, RawMutexGuard};
use crate::segment::{unique_name, MAX_NAME_LEN};
use crate::{Error, NameError, Options, Result, Segment};

const ROOT_MAGIC: u64 = u64::from_le_bytes(*b"SHMCROOT");
const ROOT_SIZE: usize = 512;
const R_MAGIC: u64 = 0;
const R_SHAPE: u64 = 8;
const R_MODE: u64 = 16;
const R_BASE_LEN: u64 = 24;
const R_CLOSED: u64 = 32;
const R_NONCE: u64 = 40;
const R_DIRTY: u64 = 48;
const R_MUTEX: usize = 64;
const R_CURRENT: u64 = 128;
const R_CREATED: u64 = 136;
const R_OLDEST: u64 = 144;
const R_BASE: usize = 192;
const BASE_MAX: usize = 255;
/// Room a generation name needs after the base: `.`, the 8 hex digits of
/// the nonce, `.` and at most 8 hex digits of the number.
const SUFFIX_MAX: usize = 18;
/// The highest generation number (keeps names within `SUFFIX_MAX`).
const MAX_GEN: u64 = u32::MAX as u64;
/// How many taken names a new generation skips before giving up.
const NAME_TRIES: u64 = 16;

/// Optimistic read attempts before a reader takes the lock instead.
const READ_TRIES: u32 = 64;
/// How many stray generation names a repair removes at most.
const STRAY_MAX: u64 = 64;

/// The smallest generation: slots and heap.
const MIN_SLOTS: u64 = 16;
const MIN_HEAP: u64 = 4096;
const MIN_LOG: u64 = 4096;
const MAX_LOG: u64 = 1 << 20;
/// A heap larger than this is compacted once less than an eighth of it
/// is live.
const SHRINK_ABOVE: u64 = 64 << 10;

/// The process-local side of a container handle.
pub(crate) struct Core {
    root: Segment,
    shape: Shape,
    base: String,
    /// The root's nonce, part of every generation name.
    nonce: u64,
    gen_opts: Options,
    /// The generation this handle uses, replaced when it follows growth.
    gens: Swap<Gen>,
    /// The creating process, for a handle that created the container: its
    /// drop removes the names (unless persisted).
    owner: Option<u32>,
    persist: AtomicBool,
    /// The lock wait bound in nanoseconds; `u64::MAX`: none.
    timeout_ns: AtomicU64,
}

/// A thread's hold on the handle's generation for one operation.
pub(crate) type Pin<'a> = Pinned<'a, Gen>;

fn root_word(root: &Segment, off: u64) -> &AtomicU64 {
    debug_assert!(off % 8 == 0 && off as usize + 8 <= ROOT_SIZE);
    // SAFETY: `off` is one of the fixed, 8-aligned root offsets below
    // ROOT_SIZE, and every root segment was checked to hold ROOT_SIZE
    // bytes at a 64-aligned start; an AtomicU64 is valid for any bits.
    unsafe { &*root.data_ptr().add(off as usize).cast::<AtomicU64>() }
}

fn check_root_segment(seg: &Segment) -> Result<()> {
    if seg.data_len() < ROOT_SIZE || seg.data_ptr() as usize % 64 != 0 {
        return Err(Error::Corrupt(
            "container root: short or misaligned segment",
        ));
    }
    Ok(())
}

fn gen_name(base: &str, nonce: u64, n: u64) -> String {
    format!("{base}.{nonce:08x}.{n:x}")
}

/// A fresh nonce: distinct containers of one name get distinct
/// generation names (collisions are only unlikely; creation skips a taken
/// name rather than remove it).
fn new_nonce() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut x = now
        ^ (u64::from(std::process::id()) << 32)
        ^ COUNTER.fetch_add(0x9e37_79b9_7f4a_7c15, Relaxed);
    // splitmix64's finaliser spreads the bits.
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (x ^ (x >> 31)) & MAX_GEN
}

/// Creates a generation numbered `first` or, where that name is taken
/// (another container's, or debris), the next free number; `record` is
/// told each number before its segment is created. Never removes a name
/// it did not create.
fn create_gen(
    base: &str,
    nonce: u64,
    opts: &Options,
    shape: Shape,
    first: u64,
    s: Sizes,
    mut record: impl FnMut(u64),
) -> Result<Gen> {
    let mut n = first;
    loop {
        if n > MAX_GEN {
            return Err(Error::OutOfSpace);
        }
        record(n);
        match Gen::create(&gen_name(base, nonce, n), opts, shape, n, s) {
            Err(Error::AlreadyExists) if n - first < NAME_TRIES => n += 1,
            r => return r,
        }
    }
}

/// `opts` for generations: each records the root's creator as its own,
/// whichever writer created it, so that a cleaner (`shmprim clean`) keeps
/// the generations of a container whose creator still runs.
fn with_root_creator(mut opts: Options, root: &Segment) -> Options {
    let i = root.info();
    opts.creator = Some((i.creator_pid, i.creator_start, i.creator_pidns));
    opts
}

/// Where a new container's root goes.
pub(crate) enum Place<'a> {
    Named(&'a str, &'a Options),
    Anonymous,
}

impl Core {
    /// Creates a container: its root and an empty first generation.
    pub fn create(place: Place<'_>, shape: Shape) -> Result<Core> {
        let (root, base, opts) = match place {
            Place::Named(name, opts) => {
                if name.len() + SUFFIX_MAX > MAX_NAME_LEN.min(BASE_MAX + SUFFIX_MAX) {
                    return Err(Error::InvalidName {
                        name: name.to_owned(),
                        reason: NameError::TooLong,
                    });
                }
                let root = Segment::create_with(name, ROOT_SIZE, opts)?;
                (root, name.to_owned(), opts.clone())
            }
            Place::Anonymous => {
                let root = Segment::anonymous(ROOT_SIZE)?;
                (root, unique_name("shmc"), Options::new())
            }
        };
        Self::init(root, shape, base, opts)
    }

    /// Opens `name`, or creates it; exactly one of racing callers creates.
    pub fn open_or_create(name: &str, shape: Shape) -> Result<Core> {
        if name.len() + SUFFIX_MAX > MAX_NAME_LEN.min(BASE_MAX + SUFFIX_MAX) {
            return Err(Error::InvalidName {
                name: name.to_owned(),
                reason: NameError::TooLong,
            });
        }
        let mut tries = 0;
        loop {
            let root = Segment::open_or_create(name, ROOT_SIZE)?;
            let r = if root.is_creator() {
                Self::init(root, shape, name.to_owned(), Options::new())
            } else {
                Self::attach(root, shape, &Options::new())
            };
            match r {
                // An abandoned root was removed: create it anew (once).
                Err(Error::NotFound) if tries == 0 => tries += 1,
                r => return r,
            }
        }
    }

    fn init(root: Segment, shape: Shape, base: String, opts: Options) -> Result<Core> {
        check_root_segment(&root)?;
        let opts = with_root_creator(opts, &root);
        let nonce = new_nonce();
        let first = create_gen(
            &base,
            nonce,
            &opts,
            shape,
            1,
            Sizes {
                nslots: MIN_SLOTS,
                heap: MIN_HEAP,
                log_cap: MIN_LOG,
            },
            |_| {},
        )?;
        let w = |off, v| root_word(&root, off).store(v, Relaxed);
        w(R_SHAPE, shape as u64);
        w(R_MODE, u64::from(opts.mode_bits()));
        w(R_BASE_LEN, base.len() as u64);
        w(R_NONCE, nonce);
        w(R_CURRENT, first.number);
        w(R_CREATED, first.number);
        w(R_OLDEST, first.number);
        // SAFETY: R_BASE + BASE_MAX <= ROOT_SIZE (checked segment); this
        // process created the root and nobody uses it before the magic.
        unsafe {
            std::ptr::copy_nonoverlapping(
                base.as_ptr(),
                root.data_ptr().add(R_BASE),
                base.len().min(BASE_MAX),
            );
        }
        // SAFETY: offset 64 of a 64-aligned region of ROOT_SIZE bytes holds
        // RawMutex::SIZE bytes; nobody else touches the root before the
        // magic is published below.
        unsafe { RawMutex::init(root.data_ptr().add(R_MUTEX).cast(), MutexKind::Normal)? };
        root_word(&root, R_MAGIC).store(ROOT_MAGIC, Release);
        let owner = Some(std::process::id());
        Ok(Self::with(root, shape, base, nonce, opts, first, owner))
    }

    fn with(
        root: Segment,
        shape: Shape,
        base: String,
        nonce: u64,
        gen_opts: Options,
        first: Gen,
        owner: Option<u32>,
    ) -> Core {
        Core {
            root,
            shape,
            base,
            nonce,
            gen_opts,
            gens: Swap::new(first),
            owner,
            persist: AtomicBool::new(false),
            timeout_ns: AtomicU64::new(u64::MAX),
        }
    }

    /// Opens the container `name`.
    pub fn open(name: &str, shape: Shape, opts: &Options) -> Result<Core> {
        let root = Segment::open_with(name, opts)?;
        Self::attach(root, shape, opts)
    }

    fn attach(root: Segment, shape: Shape, opts: &Options) -> Result<Core> {
        check_root_segment(&root)?;
        let until = Instant::now() + Duration::from_secs(2);
        while root_word(&root, R_MAGIC).load(Acquire) != ROOT_MAGIC {
            if root_word(&root, R_MAGIC).load(Relaxed) != 0 {
                return Err(Error::Corrupt("container root: bad magic"));
            }
            if Instant::now() > until {
                return Err(Self::abandoned(root));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let found = root_word(&root, R_SHAPE).load(Relaxed);
        if found != shape as u64 {
            return Err(Error::KindMismatch {
                found: found as u32,
                expected: shape as u32,
            });
        }
        // SAFETY: the root holds ROOT_SIZE bytes (checked) and the mutex was
        // initialised before the magic was published (Acquire above).
        let mutex = unsafe { &*root.data_ptr().add(R_MUTEX).cast::<RawMutex>() };
        mutex.check_layout()?;
        let blen = root_word(&root, R_BASE_LEN).load(Relaxed) as usize;
        if blen == 0 || blen > BASE_MAX {
            return Err(Error::Corrupt("container root: base name length"));
        }
        let mut raw = vec![0u8; blen];
        // SAFETY: R_BASE + blen <= R_BASE + BASE_MAX <= ROOT_SIZE.
        unsafe {
            std::ptr::copy_nonoverlapping(root.data_ptr().add(R_BASE), raw.as_mut_ptr(), blen)
        };
        let base = String::from_utf8(raw)
            .map_err(|_| Error::Corrupt("container root: base name not UTF-8"))?;
        if !base.starts_with('/') || base[1..].contains('/') || base.contains('\0') {
            return Err(Error::Corrupt("container root: base name"));
        }
        let nonce = root_word(&root, R_NONCE).load(Relaxed);
        if nonce > MAX_GEN {
            return Err(Error::Corrupt("container root: nonce"));
        }
        let mode = root_word(&root, R_MODE).load(Relaxed) as u32 & 0o777;
        let gen_opts = with_root_creator(opts.clone().mode(mode), &root);
        let (first, _) = open_current(&root, &base, nonce, shape, &gen_opts)?;
        Ok(Self::with(root, shape, base, nonce, gen_opts, first, None))
    }

    /// A root whose magic never came: its creator may have been killed
    /// between creating it and publishing the container. If it is stale
    /// (creator dead, no live attacher: the cleaner's own check, race-free
    /// against openers) its name is removed and the caller gets
    /// `NotFound`, so that the name can be created again; otherwise
    /// `NotReady`.
    fn abandoned(root: Segment) -> Error {
        let name = root.name().map(str::to_owned);
        // Our own attachment would keep it in use.
        drop(root);
        match name.map(|n| crate::segment::inventory::remove_if_stale(&n)) {
            Some(Ok(true)) => Error::NotFound,
            _ => Error::NotReady,
        }
    }

    /// Overwrites the root's words other than the magic (a zero magic
    /// only makes openers wait) and the lock with `bytes`.
    #[cfg(fuzzing)]
    pub fn __fuzz_patch_root(&self, bytes: &[u8]) {
        for (i, c) in bytes.chunks(8).enumerate() {
            let off = match i {
                0..=6 => 8 + i as u64 * 8,
                _ => 128 + (i as u64 - 7) * 8,
            };
            if off + 8 > ROOT_SIZE as u64 {
                break;
            }
            let mut b = [0u8; 8];
            b[..c.len()].copy_from_slice(c);
            self.rw(off).store(u64::from_le_bytes(b), Relaxed);
        }
    }

    /// The name of the handle's generation (the fuzz entry overwrites it).
    #[cfg(fuzzing)]
    pub fn __fuzz_gen_name(&self) -> String {
        gen_name(&self.base, self.nonce, self.pin().get().number)
    }

    fn rw(&self, off: u64) -> &AtomicU64 {
        root_word(&self.root, off)
    }

    fn mutex(&self) -> &RawMutex {
        // SAFETY: checked at creation or attach (layout, initialisation);
        // lives as long as the root segment.
        unsafe { &*self.root.data_ptr().add(R_MUTEX).cast::<RawMutex>() }
    }

    pub fn name(&self) -> Option<&str> {
        self.root.name()
    }

    pub fn persist(&self) {
        self.persist.store(true, Relaxed);
        self.root.persist();
    }

    pub fn set_timeout(&self, t: Option<Duration>) {
        let ns = t.map_or(u64::MAX, |t| {
            t.as_nanos().min(u128::from(u64::MAX - 1)) as u64
        });
        self.timeout_ns.store(ns, Relaxed);
    }

    /// Removes the names now (root and every generation); handles keep
    /// working on what they map, but the container can no longer grow.
    pub fn unlink(&self) -> Result<()> {
        self.rw(R_CLOSED).store(1, SeqCst);
        self.unlink_generations(None);
        self.root.unlink()
    }

    fn unlink_generations(&self, keep: Option<u64>) {
        // SeqCst: the other half of the Dekker pair in `migrate_with`.
        let created = self.rw(R_CREATED).load(SeqCst);
        // `oldest` is a shared word: one above `created` (garbage) would
        // make the range empty and leave every name behind.
        let oldest = self
            .rw(R_OLDEST)
            .load(Acquire)
            .min(created)
            .max(created.saturating_sub(STRAY_MAX));
        // A handle that opened a root with a garbage nonce names its
        // generations with it: those names are removed too (they share
        // this container's base, so they are no one else's).
        let shared_nonce = self.rw(R_NONCE).load(Relaxed);
        let nonces = [
            Some(self.nonce),
            (shared_nonce != self.nonce).then_some(shared_nonce),
        ];
        for nonce in nonces.into_iter().flatten() {
            for n in oldest..=created {
                if Some(n) != keep {
                    let _ = Segment::unlink_name(&gen_name(&self.base, nonce, n));
                }
            }
        }
    }

    /// Pins the handle's current generation for one operation.
    pub fn pin(&self) -> Pin<'_> {
        self.gens.pin()
    }

    /// Makes `g` the handle's generation, unless it already uses one as new.
    fn adopt(&self, g: Gen) {
        self.gens
            .replace_unless(g, |cur, new| cur.number >= new.number);
    }

    /// Moves the handle to the published generation.
    fn follow(&self) -> Result<()> {
        let (g, _) = open_current(
            &self.root,
            &self.base,
            self.nonce,
            self.shape,
            &self.gen_opts,
        )?;
        self.adopt(g);
        Ok(())
    }

    /// A pin on the published generation.
    fn current(&self) -> Result<Pin<'_>> {
        for _ in 0..100 {
            let pin = self.pin();
            if self.rw(R_CURRENT).load(Acquire) == pin.get().number {
                return Ok(pin);
            }
            drop(pin);
            self.follow()?;
        }
        Err(Error::Corrupt("container: generation keeps changing"))
    }

    /// Runs `f` on a committed state: optimistically (no lock, validated
    /// by the generation's sequence word), and under the lock if writers
    /// keep interfering or one died mid-write (the lock's dead-owner check
    /// then hands it over and the repair runs first). `f` must only read.
    pub fn read<R>(&self, mut f: impl FnMut(&Gen) -> Result<R>) -> Result<R> {
        for i in 0..READ_TRIES {
            let pin = self.pin();
            let g = pin.get();
            if let Some(s) = g.seq().read_begin() {
                if self.rw(R_CURRENT).load(Acquire) != g.number {
                    drop(pin);
                    self.follow()?;
                    continue;
                }
                let r = f(g);
                if g.seq().read_validate(s) {
                    return r;
                }
            }
            drop(pin);
            if i < 16 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        let w = self.write()?;
        f(w.gen())
    }

    /// Takes the writers' lock (repairing after a dead writer) and starts
    /// a write on the published generation.
    pub fn write(&self) -> Result<Writer<'_>> {
        let r = match self.timeout_ns.load(Relaxed) {
            u64::MAX => self.mutex().lock(),
            ns => self.mutex().lock_timeout(Duration::from_nanos(ns)),
        };
        let guard = match r {
            Ok(g) => g,
            Err(LockError::OwnerDied(died)) => {
                // The repair is owed from here on, and the lock is made
                // consistent before any step that can fail or panic: a
                // failed repair leaves `dirty` set and the lock usable,
                // and the next locker tries again (instead of a lock that
                // is not recoverable for everyone, for ever).
                self.rw(R_DIRTY).store(1, Relaxed);
                died.make_consistent()?
            }
            Err(LockError::Failed(e)) => return Err(e),
        };
        if self.rw(R_DIRTY).load(Relaxed) != 0 {
            self.repair()?;
            self.rw(R_DIRTY).store(0, Relaxed);
        }
        let pin = self.current()?;
        Ok(Writer {
            core: self,
            guard: Some(guard),
            pin: Some(pin),
            work: None,
            began: false,
            done: false,
        })
    }

    /// The owner-died repair (the lock is held): undo the dead writer's
    /// in-place changes, reopen the sequence word to readers, remove the
    /// names of generations it created but never published or retired but
    /// never unlinked.
    fn repair(&self) -> Result<()> {
        let pin = self.current()?;
        let g = pin.get();
        g.roll_back()?;
        if g.seq().is_writing() {
            g.seq().force_even();
        }
        let cur = g.number;
        drop(pin);
        if self.rw(R_CREATED).load(Relaxed) < cur {
            self.rw(R_CREATED).store(cur, Relaxed);
        }
        self.unlink_generations(Some(cur));
        self.rw(R_OLDEST).store(cur, Relaxed);
        Ok(())
    }
}

/// Opens the generation the root names as current (retrying while a
/// writer moves it on under us).
///
/// A name that is missing while `current` still names it is final, not a
/// moment to wait out: a writer creates a generation's name before it
/// publishes the number (`commit`), and removes the old name only after
/// moving `current` on, which the re-check sees. So the names were removed
/// (the creator closed the container, or someone removed them by hand) or
/// the root's words are garbage; either way the caller gets `NotFound` at
/// once. (This once waited up to 2 s per call, which a corrupt root turned
/// into 2 s per operation: the `containers` fuzz target's timeout.)
fn open_current(
    root: &Segment,
    base: &str,
    nonce: u64,
    shape: Shape,
    opts: &Options,
) -> Result<(Gen, u64)> {
    let current = root_word(root, R_CURRENT);
    // Each retry follows a writer that published a newer generation;
    // a root whose `current` keeps changing past this many is not
    // followed for ever.
    for _ in 0..1000 {
        let n = current.load(Acquire);
        match Segment::open_with(&gen_name(base, nonce, n), opts) {
            Ok(seg) => return Ok((Gen::open(seg, shape, n)?, n)),
            Err(Error::NotFound) if current.load(Acquire) != n => continue,
            // The creator removed the names (the container lives on only
            // in the mappings that hold it), or the root is garbage.
            Err(e) => return Err(e),
        }
    }
    Err(Error::Corrupt("container: generation keeps changing"))
}

impl Drop for Core {
    fn drop(&mut self) {
        if self.owner == Some(std::process::id()) && !self.persist.load(Relaxed) {
            self.rw(R_CLOSED).store(1, SeqCst);
            self.unlink_generations(None);
            // The root's words may have been overwritten: this handle's
            // own generation goes in any case.
            let n = self.gens.get_mut().number;
            let _ = Segment::unlink_name(&gen_name(&self.base, self.nonce, n));
            // The root segment's own drop removes the root name.
        }
    }
}

/// A write in progress: the writers' lock, the published generation
/// (`base`), and, once the write outgrew it, an unpublished successor
/// (`work`) that the commit publishes. Dropped without `commit`, it undoes
/// everything (an error in a transaction, a panic, `OutOfSpace`).
pub(crate) struct Writer<'a> {
    core: &'a Core,
    guard: Option<RawMutexGuard<'a>>,
    pin: Option<Pin<'a>>,
    /// Boxed: keeps the writer small (it is moved on every write).
    work: Option<Box<Gen>>,
    /// Whether `base` is being changed in place (its sequence word odd,
    /// its undo log in use).
    began: bool,
    done: bool,
}

/// Room one step of a write needs in the generation it writes to.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Need {
    /// Heap bytes for new records.
    pub heap: u64,
    /// New slots (map: occupied slots; list: elements).
    pub slots: u64,
    /// Undo log bytes, if written in place.
    pub log: u64,
}

impl<'a> Writer<'a> {
    /// The generation being written.
    pub fn gen(&self) -> &Gen {
        match &self.work {
            Some(g) => g,
            None => self.base(),
        }
    }

    fn base(&self) -> &'a Gen {
        self.pin.as_ref().expect("pinned until dropped").get()
    }

    /// Whether writes go to the published generation (and need logging).
    fn in_place(&self) -> bool {
        self.work.is_none()
    }

    /// Makes sure the generation written to has room for `need`, moving to
    /// a larger (or compacted) one if not, and starts the in-place write.
    pub fn ensure(&mut self, need: Need) -> Result<()> {
        let g = self.gen();
        let state_log = if self.in_place() && !self.began {
            gen::log_entry_size(STATE_LEN)
        } else {
            0
        };
        let slots_ok = match self.core.shape {
            Shape::Map => g.get(G_USED).saturating_add(need.slots) <= g.nslots / 4 * 3,
            Shape::List => g.len().saturating_add(need.slots) <= g.nslots,
        };
        // Mostly garbage: compact now rather than when the heap is full,
        // so that a map that shrank gives its memory back.
        let heap_cap = g.heap_end - g.heap_off;
        let sparse = heap_cap > SHRINK_ABOVE && g.get(G_LIVE).saturating_mul(8) < heap_cap;
        let fits = slots_ok
            && g.heap_free() >= need.heap
            && (!self.in_place() || g.log_free() >= need.log.saturating_add(state_log));
        if !fits || sparse {
            match self.migrate(need) {
                // Compacting is a nicety: without room for it, go on here.
                Err(Error::OutOfSpace) if fits => {}
                r => r?,
            }
        }
        if self.in_place() && !self.began {
            let g = self.base();
            g.seq().write_begin();
            self.began = true;
            g.log(G_STATE, STATE_LEN)?;
        }
        Ok(())
    }

    /// Logs `len` bytes at `off` before they change, when writing in place.
    pub fn log(&self, off: u64, len: u64) -> Result<()> {
        if self.in_place() {
            self.gen().log(off, len)?;
        }
        Ok(())
    }

    /// Empties the container: the next generation starts empty.
    pub fn clear(&mut self) -> Result<()> {
        self.migrate_with(Need::default(), false)
    }

    fn migrate(&mut self, need: Need) -> Result<()> {
        self.migrate_with(need, true)
    }

    /// Moves the write to a new generation sized for the live data plus
    /// `need` (twice over), copying the live records (`copy`) compactly:
    /// what removes and overwrites freed is reclaimed here.
    fn migrate_with(&mut self, need: Need, copy: bool) -> Result<()> {
        let core = self.core;
        let src = self.gen();
        // Both counts come from shared memory: clamped to what the source
        // can hold, so that garbage sizes the new generation at most twice
        // the old one plus `need`, not at gigabytes (the copy below checks
        // the real records against the new room).
        let (len, live) = if copy {
            (
                src.len().min(src.nslots),
                src.get(G_LIVE).min(src.heap_end - src.heap_off),
            )
        } else {
            (0, 0)
        };
        let want_slots = len
            .saturating_add(need.slots)
            .saturating_mul(2)
            .max(MIN_SLOTS);
        let nslots = want_slots
            .checked_next_power_of_two()
            .ok_or(Error::OutOfSpace)?;
        // `live` comes from shared memory: a garbage count saturates the
        // sums, and rounding it up must not wrap (to a zero-sized heap).
        let heap = live
            .saturating_add(need.heap)
            .saturating_mul(2)
            .max(MIN_HEAP)
            .div_ceil(8)
            .checked_mul(8)
            .ok_or(Error::OutOfSpace)?;
        let log_cap = (heap / 8).clamp(MIN_LOG, MAX_LOG) / 8 * 8;
        if cfg!(fuzzing) && heap > 64 << 20 {
            return Err(Error::OutOfSpace);
        }
        let number = core
            .rw(R_CREATED)
            .load(Relaxed)
            .max(src.number)
            .checked_add(1)
            .ok_or(Error::Corrupt("container root: generation number"))?;
        let g = create_gen(
            &core.base,
            core.nonce,
            &core.gen_opts,
            core.shape,
            number,
            Sizes {
                nslots,
                heap,
                log_cap,
            },
            |n| {
                // Recorded before the segment exists, so that a repair
                // after our death knows which name may be debris.
                // SYNC POINT (Dekker with the creator's drop): `created`
                // is stored before `closed` is read, and the drop stores
                // `closed` before it reads `created` (all SeqCst): either
                // we see `closed`, or the drop sees our number.
                core.rw(R_CREATED).store(n, SeqCst);
                fault_point!("container.grow.before_create");
            },
        );
        if core.rw(R_CLOSED).load(SeqCst) != 0 {
            // The names were removed: a new one would outlive everyone.
            if let Ok(g) = &g {
                let _ = Segment::unlink_name(&gen_name(&core.base, core.nonce, g.number));
            }
            return Err(Error::NotFound);
        }
        let g = g?;
        if copy {
            if let Err(e) = copy_live(src, &g) {
                // Garbage records refused half-way: the new name goes with
                // the write (nothing else would know to remove it).
                let _ = Segment::unlink_name(&gen_name(&core.base, core.nonce, g.number));
                return Err(e);
            }
        }
        fault_point!("container.grow.after_copy");
        if let Some(old) = self.work.replace(Box::new(g)) {
            let _ = Segment::unlink_name(&gen_name(&core.base, core.nonce, old.number));
        }
        Ok(())
    }

    /// Makes the write visible: one store (the undo log emptied, or the
    /// root's `current` moved to the new generation).
    pub fn commit(mut self) -> Result<()> {
        let core = self.core;
        let base = self.base();
        let adopted = if let Some(g) = self.work.take() {
            fault_point!("container.grow.before_publish");
            // SYNC POINT (growth commit): pairs with the Acquire loads of
            // `current` in `read`, `current` and `open_current`: the new
            // generation was fully written before this store.
            core.rw(R_CURRENT).store(g.number, Release);
            fault_point!("container.grow.after_publish");
            // Readers still on `base` fail their validation and follow.
            base.seq().write_end();
            let _ = Segment::unlink_name(&gen_name(&core.base, core.nonce, base.number));
            core.rw(R_OLDEST).store(g.number, Relaxed);
            if core.rw(R_CLOSED).load(SeqCst) != 0 {
                // The creator has gone: nobody would remove this name.
                let _ = Segment::unlink_name(&gen_name(&core.base, core.nonce, g.number));
            }
            Some(*g)
        } else {
            if self.began {
                fault_point!("container.commit.before");
                // The in-place commit point: nothing left to undo.
                base.log_len().store(0, Release);
                base.seq().write_end();
            }
            None
        };
        self.done = true;
        self.guard = None;
        self.pin = None;
        if let Some(g) = adopted {
            core.adopt(g);
        }
        Ok(())
    }
}

impl Drop for Writer<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        if let Some(g) = self.work.take() {
            let _ = Segment::unlink_name(&gen_name(&self.core.base, self.core.nonce, g.number));
        }
        if self.began {
            let base = self.base();
            if base.roll_back().is_ok() {
                base.seq().write_end();
            } else {
                // A log that cannot be replayed stays, the sequence word
                // odd, and the repair is owed: the next locker tries it
                // (and gets the same error) before writing, rather than
                // committing over half a write.
                self.core.rw(R_DIRTY).store(1, Relaxed);
            }
        }
    }
}

/// Copies every live record of `src` into the empty generation `dst`.
fn copy_live(src: &Gen, dst: &Gen) -> Result<()> {
    let mut n = 0u64;
    let copy_rec = |off: u64| -> Result<u64> {
        let r = src.rec(off)?;
        let to = dst.get(G_BUMP);
        if to.saturating_add(r.size()) > dst.heap_end {
            return Err(Error::Corrupt(
                "container: live data exceeds its accounting",
            ));
        }
        dst.set(to, r.klen);
        dst.set(to + 8, r.vlen);
        dst.copy_from(src, r.key_off(), to + gen::REC_HDR, r.klen + r.vlen);
        dst.set(G_BUMP, to + r.size());
        dst.set(G_LIVE, dst.get(G_LIVE) + r.size());
        Ok(to)
    };
    match src.shape {
        Shape::Map => {
            for i in 0..src.nslots {
                let s = src.slot(i);
                let off = src.get(s + 8);
                if off == gen::EMPTY || off == gen::TOMBSTONE {
                    continue;
                }
                let hash = src.get(s);
                let to = copy_rec(off)?;
                let mask = dst.nslots - 1;
                let mut j = hash & mask;
                for _ in 0..dst.nslots {
                    let d = dst.slot(j);
                    if dst.get(d + 8) == gen::EMPTY {
                        dst.set(d, hash);
                        dst.set(d + 8, to);
                        break;
                    }
                    j = (j + 1) & mask;
                }
                n += 1;
                if n > dst.nslots / 2 {
                    return Err(Error::Corrupt("container: more entries than counted"));
                }
            }
            dst.set(G_USED, n);
        }
        Shape::List => {
            let len = src.list_len()?;
            if len > dst.nslots {
                return Err(Error::Corrupt("container: more elements than counted"));
            }
            for i in 0..len {
                let to = copy_rec(src.get(src.slot(i)))?;
                dst.set(dst.slot(i), to);
            }
            n = len;
        }
    }
    dst.set(G_LEN, n);
    Ok(())
}
