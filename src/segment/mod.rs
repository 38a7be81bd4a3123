//! Named and anonymous shared-memory segments, each starting with a
//! [`header`] that says what it holds.
//!
//! A [`Segment`] owns one mapping. Handles ([`Value`](crate::Value),
//! [`Lock`](crate::Lock), ...) own a segment and know where their in-place
//! object sits in it; [`Segment::create`] and friends also give plain bytes
//! for embedders that place in-place objects themselves.
//!
//! Creation is exclusive (`O_CREAT|O_EXCL`, mode 0600 unless asked
//! otherwise), writes the header (`pwrite`), reserves the memory with
//! `posix_fallocate`, initialises the object, and publishes `READY` last. Opening waits, bounded, for
//! `READY`, then checks the header against the real size and the expected
//! kind and type before anything else is read. `open` refuses a segment
//! that another user owns or whose mode grants more than asked for, unless
//! [`Options`] says otherwise: either lets someone else corrupt it.
//!
//! Each handle records its process in the header's attach table; the
//! [`inventory`] functions ([`list`], [`inspect`], [`remove_stale`]) read it
//! to tell segments in use from debris left by killed processes.

mod attach;
mod descriptor;
pub mod header;
pub mod inventory;
pub(crate) mod name;

use std::ffi::CString;
use std::mem::ManuallyDrop;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use memmap2::{MmapOptions, MmapRaw};

use crate::sys::clock::Deadline;
use crate::sys::{proc, shm};
use crate::{Error, Result};
use header::{Claim, Header, HeaderInfo, Spec, HEADER_SIZE, READY};

pub use header::{Attacher, Fingerprint, Kind, FORMAT_VERSION};
#[cfg(fuzzing)]
pub use inventory::__fuzz_inspect;
pub use inventory::{inspect, list, remove_if_stale, remove_stale, SegmentReport};
pub use name::{unique_name, MAX_NAME_LEN};

/// How segments are created and opened. The defaults suit most uses:
/// mode 0600, the creator removes the name when its last handle drops, and
/// an opener waits up to 2 s for a creator that is still initialising.
#[derive(Debug, Clone)]
pub struct Options {
    pub(crate) mode: u32,
    pub(crate) persist: bool,
    pub(crate) open_timeout: Duration,
    pub(crate) allow_foreign_owner: bool,
    pub(crate) allow_loose_mode: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            mode: 0o600,
            persist: false,
            open_timeout: Duration::from_secs(2),
            allow_foreign_owner: false,
            allow_loose_mode: false,
        }
    }
}

impl Options {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Permission bits for a created segment, applied exactly (the umask
    /// does not narrow them). Default 0600: only the creating user.
    /// For `open`, the loosest mode accepted: a segment that grants any bit
    /// outside it is refused with [`Error::LooseMode`].
    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = mode & 0o777;
        self
    }

    /// Keep the name after the creator's last handle drops (default: the
    /// creator unlinks it). A persisted name is removed by
    /// [`Segment::unlink_name`] or by another `unlink`.
    pub fn persist(mut self, persist: bool) -> Self {
        self.persist = persist;
        self
    }

    /// How long `open` waits for a creator to finish initialising before it
    /// gives [`Error::NotReady`]. Zero: do not wait.
    pub fn open_timeout(mut self, timeout: Duration) -> Self {
        self.open_timeout = timeout;
        self
    }

    /// Let `open` accept a segment owned by another user (default: refused
    /// with [`Error::ForeignOwner`]). Another user's segment may be
    /// rewritten or truncated by that user at any time; accept one only
    /// from a user you trust with this process's memory safety.
    pub fn allow_foreign_owner(mut self, allow: bool) -> Self {
        self.allow_foreign_owner = allow;
        self
    }

    /// Let `open` accept a segment whose permission bits grant more than
    /// [`Options::mode`] (default: refused with [`Error::LooseMode`]): with
    /// the default 0600, a segment that group or others may write (or
    /// read) is refused, since anyone it admits can corrupt it or read it.
    pub fn allow_loose_mode(mut self, allow: bool) -> Self {
        self.allow_loose_mode = allow;
        self
    }
}

/// One shared-memory mapping with its header.
///
/// Only the size found at open is checked against the header: a peer that
/// later truncates the object (`ftruncate` on `/dev/shm/NAME`) can still
/// make an access fault with `SIGBUS`. That needs write access to the
/// object, which mode 0600 keeps to your own user.
///
/// The creator's handle removes the name when dropped, unless persisted;
/// handles that only opened never unlink (PITFALLS.md, "Segments"). A child
/// that inherited the creator's handle through `fork` does not unlink
/// either: only the creating process does.
///
/// Every handle on a named segment records its process (pid and start
/// time) in the header's attach table while it lives, so that
/// [`remove_stale`] can tell a segment in use from debris. A `fork` child
/// inherits its parent's handles but not their rows: it counts as a user
/// of the segment only through handles it opens itself (a child that
/// outlives its parent and keeps using an inherited handle should open its
/// own). Anonymous segments are never in `/dev/shm` and record nobody.
pub struct Segment {
    map: ManuallyDrop<MmapRaw>,
    name: Option<(String, CString)>,
    creator: bool,
    creator_pid: u32,
    /// The object's identity (`st_dev`, `st_ino`) when this handle created
    /// it: the name is removed on drop only if it still names this object.
    identity: Option<(u64, u64)>,
    unlink_on_drop: AtomicBool,
    info: HeaderInfo,
    /// This handle's row in the header's attach table, and the process
    /// that claimed it (a `fork` child inherits the handle, not the row).
    claim: Option<(Claim, u32)>,
    /// Asked on drop: must the mapping stay (a robust mutex in it is held
    /// by a thread of this process)?
    keep_mapped: Option<fn(&Segment) -> bool>,
    /// An anonymous segment's descriptor (see [`Segment::anonymous_fd`]).
    fd: Option<OwnedFd>,
}

/// Mappings that were still needed when their last handle dropped (a lock
/// in them held by this process), with the question to ask again. Swept at
/// every segment drop and creation: once the answer is no, they are
/// unmapped.
///
/// The lock is only ever tried, never waited for: a child forked while
/// another thread held it inherits it held for ever. A sweep that finds it
/// busy skips; a burial that finds it busy leaks the mapping instead (safe,
/// and rare). Nothing is evaluated or dropped while it is held.
static GRAVEYARD: Mutex<Vec<Segment>> = Mutex::new(Vec::new());
static BURIED: AtomicUsize = AtomicUsize::new(0);

fn try_graveyard() -> Option<std::sync::MutexGuard<'static, Vec<Segment>>> {
    match GRAVEYARD.try_lock() {
        Ok(g) => Some(g),
        Err(std::sync::TryLockError::Poisoned(p)) => Some(p.into_inner()),
        Err(std::sync::TryLockError::WouldBlock) => None,
    }
}

/// Unmaps the buried mappings that are no longer needed.
fn sweep_graveyard() {
    if BURIED.load(Ordering::Relaxed) == 0 {
        return;
    }
    let Some(mut g) = try_graveyard() else { return };
    let buried = std::mem::take(&mut *g);
    BURIED.store(0, Ordering::Relaxed);
    drop(g);
    let (keep, free): (Vec<_>, Vec<_>) = buried
        .into_iter()
        .partition(|s| s.keep_mapped.is_some_and(|keep| keep(s)));
    for s in keep {
        bury(s);
    }
    // A drop asks again and may bury its segment anew.
    drop(free);
}

/// Puts a still-needed mapping in the graveyard (or, if that is busy,
/// leaks it).
fn bury(s: Segment) {
    match try_graveyard() {
        Some(mut g) => {
            g.push(s);
            BURIED.store(g.len(), Ordering::Relaxed);
        }
        None => std::mem::forget(s),
    }
}

impl std::fmt::Debug for Segment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Segment")
            .field("name", &self.name())
            .field("len", &self.len())
            .field("creator", &self.creator)
            .field("info", &self.info)
            .finish()
    }
}

// Handles share segments across threads; the mapping is plain shared
// memory, and everything in it is reached through atomics or a lock.
static_assertions::assert_impl_all!(Segment: Send, Sync);

/// Where a new segment goes.
#[derive(Clone, Copy)]
pub(crate) enum Place<'a> {
    Named(&'a str),
    Anonymous,
}

/// Removes a freshly created name again if creation fails half-way.
struct UnlinkOnFailure(Option<CString>);

impl Drop for UnlinkOnFailure {
    fn drop(&mut self) {
        if let Some(name) = &self.0 {
            let _ = shm::shm_unlink(name);
        }
    }
}

impl Segment {
    /// Creates the segment `name` holding `size` zeroed bytes; fails with
    /// [`Error::AlreadyExists`] if the name is taken.
    pub fn create(name: &str, size: usize) -> Result<Segment> {
        Self::create_with(name, size, &Options::default())
    }

    /// [`Segment::create`] with options.
    pub fn create_with(name: &str, size: usize, opts: &Options) -> Result<Segment> {
        Self::create_object(
            Place::Named(name),
            &bytes_spec(size),
            opts,
            None,
            |_| Ok(()),
        )
    }

    /// Opens the bytes segment `name`.
    pub fn open(name: &str) -> Result<Segment> {
        Self::open_with(name, &Options::default())
    }

    /// [`Segment::open`] with options.
    pub fn open_with(name: &str, opts: &Options) -> Result<Segment> {
        let seg = Self::open_object(name, &bytes_spec(0), opts)?;
        Ok(seg)
    }

    /// Opens `name`, or creates it with `size` zeroed bytes if it does not
    /// exist. Safe when many processes race: exactly one creates. An
    /// existing segment of another size is [`Error::LengthMismatch`], so a
    /// caller never writes past what is really there.
    pub fn open_or_create(name: &str, size: usize) -> Result<Segment> {
        let opts = Options::default();
        let seg = Self::open_or_create_object(name, &bytes_spec(size), &opts, None, |_| Ok(()))?;
        if seg.info.len != size as u64 || seg.info.object_size != size as u64 {
            return Err(Error::LengthMismatch {
                found: seg.info.object_size,
                expected: size as u64,
            });
        }
        Ok(seg)
    }

    /// A segment with no name, shared with children forked after this call.
    pub fn anonymous(size: usize) -> Result<Segment> {
        let opts = Options::default();
        Self::create_object(Place::Anonymous, &bytes_spec(size), &opts, None, |_| Ok(()))
    }

    /// Removes the name now. Processes that have it mapped keep working; a
    /// later `open` gets [`Error::NotFound`]. Removing a name that is gone
    /// already gives `NotFound`. Anonymous segments have no name:
    /// [`Error::InvalidArgument`].
    pub fn unlink(&self) -> Result<()> {
        let (_, c) = self
            .name
            .as_ref()
            .ok_or(Error::InvalidArgument("anonymous segment has no name"))?;
        self.unlink_on_drop.store(false, Ordering::Relaxed);
        shm::shm_unlink(c)
    }

    /// Removes the name `name` without opening it (a cleaner's call).
    pub fn unlink_name(name: &str) -> Result<()> {
        shm::shm_unlink(&name::validate(name)?)
    }

    /// Keeps the name after this handle drops, even if it created it.
    pub fn persist(&self) {
        self.unlink_on_drop.store(false, Ordering::Relaxed);
    }

    /// The name, or `None` for an anonymous segment.
    pub fn name(&self) -> Option<&str> {
        self.name.as_ref().map(|(s, _)| s.as_str())
    }

    /// Whether this handle created the segment (for `open_or_create`: it
    /// was this caller that won the race).
    pub fn is_creator(&self) -> bool {
        self.creator
    }

    /// Total bytes mapped, header included.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Never true: a segment holds at least its header.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// What the header said when this handle was made.
    pub fn info(&self) -> &HeaderInfo {
        &self.info
    }

    /// Start of the object (for a bytes segment: the caller's bytes).
    /// Other processes may write these bytes at any moment: access them
    /// through atomics or raw copies, never through `&`/`&mut` references
    /// unless a protocol grants exclusive access.
    pub fn data_ptr(&self) -> *mut u8 {
        // SAFETY: `object_offset + object_size <= len` was checked when the
        // header was validated or written, so the result is in bounds.
        unsafe { self.map.as_mut_ptr().add(self.info.object_offset as usize) }
    }

    /// Bytes available at [`Segment::data_ptr`].
    pub fn data_len(&self) -> usize {
        self.info.object_size as usize
    }

    /// Registers the question asked on drop: if `keep` says so, the mapping
    /// is left in place (leaked) instead of unmapped. The handle layer uses
    /// it for segments holding a robust mutex that a thread of this process
    /// holds (a guard forgotten with `mem::forget`, an `acquire()` never
    /// released): the thread's record of held locks is keyed by the
    /// mutex's address, which a later mapping must not reuse.
    pub(crate) fn keep_mapped_while(&mut self, keep: fn(&Segment) -> bool) {
        self.keep_mapped = Some(keep);
    }

    /// Whether the process that created the segment still runs (same pid
    /// and start time). A recycled pid counts as dead.
    pub fn creator_alive(&self) -> bool {
        proc::is_alive(self.info.creator_pid, self.info.creator_start)
    }

    /// Creates a segment, writes its header, lets `init` fill the object
    /// (zeroed memory, `spec.object_size` bytes at its alignment), then
    /// publishes it.
    pub(crate) fn create_object(
        place: Place<'_>,
        spec: &Spec,
        opts: &Options,
        link: Option<&str>,
        init: impl FnOnce(*mut u8) -> Result<()>,
    ) -> Result<Segment> {
        sweep_graveyard();
        let total = spec.total_size()?;
        let (fd, name) = match place {
            Place::Named(n) => {
                let c = name::validate(n)?;
                let fd = shm::shm_open(&c, shm::OpenMode::CreateExclusive, opts.mode)?;
                (fd, Some((n.to_owned(), c)))
            }
            Place::Anonymous => (shm::anonymous_fd()?, None),
        };
        let mut undo = UnlinkOnFailure(name.as_ref().map(|(_, c)| c.clone()));
        let mut identity = None;
        if name.is_some() {
            shm::fchmod(&fd, opts.mode)?;
            let st = shm::fstat(&fd)?;
            identity = Some((st.dev, st.ino));
        }
        let me = proc::pid();
        let my_start = proc::start_time(me).unwrap_or(0);
        let creator = (me, my_start, proc::pid_namespace());
        // On Linux the header goes in first, by `pwrite` into the sized
        // file, and only then is the memory reserved: a creator killed
        // during a long `posix_fallocate` leaves a segment that a cleaner
        // can list and judge by its creator, not a big file without the
        // magic. (macOS shared memory takes neither `pwrite` nor a second
        // `ftruncate`; elsewhere nothing lists segments.)
        #[cfg(any(target_os = "linux", target_os = "android"))]
        {
            shm::set_len(&fd, total)?;
            let mut copy = header::HeaderCopy::zeroed();
            copy.header().write(spec, total, creator, link)?;
            shm::write_at(&fd, &copy.0, 0)?;
            crate::fault::fault_point!("segment.create.before_reserve");
        }
        shm::reserve(&fd, total)?;
        let map = map_fd(&fd, total)?;
        let header = header_of(&map);
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        header.write(spec, total, creator, link)?;
        let claim = name.is_some().then(|| (header.attach(me, my_start), me));
        let offset = spec.object_offset()? as usize;
        // SAFETY: `offset + object_size <= total` (Spec::total_size), so the
        // pointer is inside the mapping; the segment is fresh and unpublished,
        // so nobody else touches the object while `init` runs.
        init(unsafe { map.as_mut_ptr().add(offset) })?;
        let info = header.info()?;
        // Header and object written, not yet READY: a creator killed here
        // leaves a segment that openers wait for and cleaners judge by the
        // creator's liveness.
        crate::fault::fault_point!("segment.create.before_publish");
        header.publish();
        undo.0 = None;
        let fd = matches!(place, Place::Anonymous).then_some(fd);
        Ok(Segment {
            map: ManuallyDrop::new(map),
            name,
            creator: true,
            creator_pid: me,
            identity,
            unlink_on_drop: AtomicBool::new(!opts.persist),
            info,
            claim,
            keep_mapped: None,
            fd,
        })
    }

    /// Opens `name` and checks it holds what `spec` describes (kind, type;
    /// the handle checks its own parameters).
    pub(crate) fn open_object(name: &str, spec: &Spec, opts: &Options) -> Result<Segment> {
        if let Some(seg) = descriptor::take_pending(name, spec, opts)? {
            return Ok(seg);
        }
        let c = name::validate(name)?;
        let fd = shm::shm_open(&c, shm::OpenMode::Existing, 0)?;
        check_owner_and_mode(&fd, opts)?;
        let mut seg = Self::attach_fd(&fd, spec, opts)?;
        seg.name = Some((name.to_owned(), c.clone()));
        // Record this process, then look for a cleaner's mark (the order
        // matters: see `Header::attach`). A segment being removed as stale
        // is as good as gone: a live cleaner's mark (another thread of this
        // process included) sends the opener away. A dead cleaner may have
        // removed the name (or moved it aside) before it died, so its mark
        // is ignored only while the name still names this very object.
        let me = proc::pid();
        let header = header_of(&seg.map);
        // Checked, not yet recorded: a cleaner may judge the segment stale
        // and remove it now.
        crate::fault::fault_point!("segment.open.before_claim");
        if seg.info.creator_pidns != proc::pid_namespace() {
            header.mark_foreign();
        }
        let claim = header.attach(me, proc::start_time(me).unwrap_or(0));
        let gone = match header.doomed_by() {
            None => false,
            Some(cleaner) if cleaner.alive => true,
            Some(_) => !names_object(&c, &fd),
        };
        if gone {
            header.detach(claim);
            return Err(Error::NotFound);
        }
        seg.claim = Some((claim, me));
        Ok(seg)
    }

    /// Creates `name` or, if another process got there first, opens it.
    pub(crate) fn open_or_create_object(
        name: &str,
        spec: &Spec,
        opts: &Options,
        link: Option<&str>,
        init: impl Fn(*mut u8) -> Result<()>,
    ) -> Result<Segment> {
        // A creator may unlink between our EEXIST and our open; a few rounds
        // settle any realistic race.
        let mut last = Error::NotFound;
        for round in 0..32u32 {
            if round > 0 {
                // The name came and went under us: let the other side
                // finish (a creator publishing, a cleaner unlinking).
                std::thread::sleep(Duration::from_micros(100 << round.min(6)));
            }
            match Self::create_object(Place::Named(name), spec, opts, link, &init) {
                Err(Error::AlreadyExists) => {}
                other => return other,
            }
            match Self::open_object(name, spec, opts) {
                Err(Error::NotFound) => last = Error::NotFound,
                other => return other,
            }
        }
        Err(last)
    }

    /// Maps an open descriptor and validates its header: waits (bounded by
    /// `opts.open_timeout`) for the creator to size and publish it.
    pub(crate) fn attach_fd(fd: &OwnedFd, spec: &Spec, opts: &Options) -> Result<Segment> {
        let deadline = Deadline::after(opts.open_timeout);
        let mut pause = Duration::from_micros(50);
        let nap = |pause: &mut Duration| {
            std::thread::sleep((*pause).min(deadline.remaining()));
            *pause = (*pause * 2).min(Duration::from_millis(5));
        };
        let size = loop {
            let size = shm::fstat(fd)?.size;
            if size >= HEADER_SIZE as u64 {
                break size;
            }
            if deadline.has_passed() {
                return Err(if size == 0 {
                    Error::NotReady
                } else {
                    Error::Corrupt("segment smaller than its header")
                });
            }
            nap(&mut pause);
        };
        if size > isize::MAX as u64 {
            return Err(Error::Corrupt("segment size out of range"));
        }
        let map = map_fd(fd, size)?;
        let header = header_of(&map);
        loop {
            match header.state() {
                READY => break,
                0 if !deadline.has_passed() => nap(&mut pause),
                0 => return Err(Error::NotReady),
                _ => return Err(Error::Corrupt("bad segment state word")),
            }
        }
        let info = header.validate(size, spec)?;
        Ok(Segment::unnamed(map, info, None))
    }

    /// An anonymous segment holding a copy of `bytes`, unvalidated: the
    /// input for [`Segment::attach_fd`] in the fuzz targets.
    #[cfg(fuzzing)]
    pub fn __fuzz_fd(bytes: &[u8]) -> Result<OwnedFd> {
        use std::io::Write;
        let fd = shm::anonymous_fd()?;
        let mut f = std::fs::File::from(fd);
        f.write_all(bytes).map_err(|e| Error::Os {
            call: "write",
            source: e,
        })?;
        Ok(f.into())
    }
}

impl Segment {
    /// A handle on `map` that owns no name: an opener's (the caller sets the
    /// name afterwards) or a buried mapping's.
    fn unnamed(
        map: MmapRaw,
        info: HeaderInfo,
        keep_mapped: Option<fn(&Segment) -> bool>,
    ) -> Segment {
        Segment {
            map: ManuallyDrop::new(map),
            name: None,
            creator: false,
            creator_pid: 0,
            identity: None,
            unlink_on_drop: AtomicBool::new(false),
            info,
            claim: None,
            keep_mapped,
            fd: None,
        }
    }
}

fn bytes_spec(size: usize) -> Spec {
    Spec {
        kind: Kind::Bytes,
        fingerprint: Fingerprint::NONE,
        len: size as u64,
        capacity: 0,
        object_size: size as u64,
        object_align: 64,
    }
}

fn map_fd(fd: &OwnedFd, len: u64) -> Result<MmapRaw> {
    MmapOptions::new()
        .len(len as usize)
        .map_raw(fd.as_raw_fd())
        .map_err(|e| Error::Os {
            call: "mmap",
            source: e,
        })
}

fn header_of(map: &MmapRaw) -> &Header {
    debug_assert!(map.len() >= HEADER_SIZE, "mapping shorter than the header");
    // SAFETY: every mapping made here is at least HEADER_SIZE long and
    // page-aligned (so 64-aligned); `Header` is made only of atomics, valid
    // for any bit pattern and for concurrent access by other processes; the
    // reference lives no longer than the borrow of `map`.
    unsafe { &*map.as_ptr().cast::<Header>() }
}

/// Whether `name` names the object open as `fd` (same `st_dev`, `st_ino`).
fn names_object(name: &CString, fd: &OwnedFd) -> bool {
    let (Ok(mine), Ok(now)) = (
        shm::fstat(fd),
        shm::shm_open(name, shm::OpenMode::ReadOnly, 0).and_then(|f| shm::fstat(&f)),
    ) else {
        return false;
    };
    (mine.dev, mine.ino) == (now.dev, now.ino)
}

/// Refuses (unless `opts` allows it) a segment that another user owns or
/// whose mode grants more than `opts.mode`.
fn check_owner_and_mode(fd: &OwnedFd, opts: &Options) -> Result<()> {
    let st = shm::fstat(fd)?;
    let me = proc::euid();
    if st.uid != me && !opts.allow_foreign_owner {
        return Err(Error::ForeignOwner {
            owner: st.uid,
            expected: me,
        });
    }
    let mode = st.mode & 0o777;
    if mode & !opts.mode != 0 && !opts.allow_loose_mode {
        return Err(Error::LooseMode {
            mode,
            requested: opts.mode,
        });
    }
    Ok(())
}

impl Drop for Segment {
    fn drop(&mut self) {
        if let Some((claim, pid)) = self.claim.take() {
            if pid == proc::pid() {
                header_of(&self.map).detach(claim);
            }
        }
        if let Some((_, c)) = &self.name {
            if self.unlink_on_drop.load(Ordering::Relaxed) && proc::pid() == self.creator_pid {
                // Only if the name still names what we created: someone may
                // have unlinked it and made a new object under it. A mode
                // that does not even let its creator read it cannot be
                // checked: remove the name as before.
                match shm::shm_open(c, shm::OpenMode::ReadOnly, 0) {
                    Ok(fd) => {
                        if shm::fstat(&fd).is_ok_and(|st| Some((st.dev, st.ino)) == self.identity) {
                            let _ = shm::shm_unlink(c);
                        }
                    }
                    Err(Error::PermissionDenied) => {
                        let _ = shm::shm_unlink(c);
                    }
                    Err(_) => {}
                }
            }
        }
        if self.keep_mapped.is_some_and(|keep| keep(self)) {
            // Still needed (see `keep_mapped_while`): bury the mapping alone,
            // to be unmapped by a later sweep once it is free.
            // SAFETY: `self.map` is taken exactly once, here, and not used
            // again: this drop returns right after burying it.
            let map = unsafe { ManuallyDrop::take(&mut self.map) };
            bury(Segment::unnamed(map, self.info.clone(), self.keep_mapped));
            return;
        }
        // SAFETY: dropped exactly once, here, and nothing uses the mapping
        // after: handles borrow it through `&self` only.
        unsafe { ManuallyDrop::drop(&mut self.map) };
        sweep_graveyard();
    }
}
