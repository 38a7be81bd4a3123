//! The crate's segments as a cleaner sees them: which exist, who uses them,
//! and which are stale debris that [`remove_stale`] may remove.
//!
//! A segment is **stale** when nobody can be using it: its header is valid,
//! its creator is dead (a recycled pid with another start time counts as
//! dead), no live process is recorded in its attach table, and no attacher
//! overflowed the table. Everything else is kept:
//!
//! - a segment whose creator still runs, even with no handle open (it may
//!   have persisted it on purpose and come back for it);
//! - a segment still being initialised (not `READY`) whose creator runs;
//! - a segment whose table overflowed (in use by processes it could not
//!   record);
//! - a segment created in another pid namespace (a container sharing
//!   `/dev/shm`): its pids mean other processes here, so it is taken for in
//!   use by processes this cleaner cannot see (see
//!   [`SegmentReport::foreign_pid_namespace`]);
//! - a corrupt header, or another format version: reported, never trusted,
//!   never removed (remove it by hand after a look with `shmprim inspect`).
//!
//! Only files that start with the crate's magic are reported. Other files
//! in `/dev/shm` (other programs' objects, POSIX semaphores, files this user
//! may not read) are left out: they are not the crate's to judge. A creator
//! killed before it wrote its header leaves a file without the magic, and
//! so unlisted.
//!
//! Files are opened non-blocking and read only if they are regular files
//! (a FIFO put in `/dev/shm` would block an open or a read for ever).
//! Listing reads each header with `pread` into a private copy: a peer that
//! truncates a file while it is read cannot fault the lister.
//!
//! ## Removal: the cleaner and the opener
//!
//! [`remove_if_stale`] decides from `pread` copies only. It
//!
//! 1. reads the header (a copy) and keeps anything not stale, and anything
//!    owned by another user unless it runs as root (in the sticky
//!    `/dev/shm` it could not unlink it, and must not leave a mark it
//!    cannot follow through);
//! 2. marks the header `doomed` with its pid and start time (a recycled
//!    pid is another process), through a mapping of the header page: the
//!    only write, an atomic compare-and-swap;
//! 3. reads a fresh copy and checks again that nobody uses the segment;
//! 4. on Linux, renames the name to a private one (`renameat2`
//!    `RENAME_NOREPLACE`), checks that what it moved is the object it
//!    judged (`st_dev`, `st_ino`), and unlinks the private name; if it moved
//!    another object (the name was re-created meanwhile) it renames it
//!    back. The check and the unlink act on a name nobody else uses, so
//!    the object removed is the object checked. Elsewhere it checks the
//!    name and unlinks it, with a small window between the two.
//!
//! Every error after the mark withdraws it. An opener records itself in
//! the attach table before it looks at the mark (a Dekker pair, see
//! `Header::attach`): either the cleaner's step 3 sees the opener and keeps
//! the segment, or the opener sees the mark. A live cleaner's mark sends
//! the opener away with [`Error::NotFound`]; a dead cleaner's mark is
//! honoured only if the name no longer names the opener's object (the
//! cleaner finished, or died after step 4's rename: the object then lies
//! under its private name `/.rm-...`, stale, for the next sweep).
//!
//! What remains: if the name is re-created twice in a row, once before the
//! rename and once before the rename back, the rename back fails and the
//! wrong object stays under the private name (an error is returned; it is
//! listed, and removed once its users are gone). And the mark is written
//! through a mapping: an owner that truncates the file between the
//! cleaner's `fstat` and the mark makes that write fault (`SIGBUS`); a
//! cleaner touches only its own user's files, unless it runs as root.

use std::ffi::CString;
use std::fs::File;
use std::mem::ManuallyDrop;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::sync::atomic::{fence, Ordering::SeqCst};

use memmap2::MmapOptions;

use super::header::{Attacher, Header, HeaderCopy, HeaderInfo, HEADER_SIZE, MAGIC, READY};
use super::name;
use crate::sys::{proc, shm};
use crate::{Error, Result};

/// One of the crate's segments, as found by [`list`] or [`inspect`].
#[derive(Debug)]
#[non_exhaustive]
pub struct SegmentReport {
    /// The segment's name, with its leading `/`.
    pub name: String,
    /// Bytes in the object (`fstat`).
    pub size: u64,
    /// The owner's uid.
    pub owner: u32,
    /// The permission bits.
    pub mode: u32,
    /// Whether the creator has published the segment (`READY`).
    pub ready: bool,
    /// The checked header, or why it was refused (corrupt, another format
    /// version, shorter than a header).
    pub header: Result<HeaderInfo>,
    /// Whether the creator recorded in the header still runs (false when
    /// the header was refused: nothing in it is trusted, or when it was
    /// created in another pid namespace).
    pub creator_alive: bool,
    /// Whether the segment was created in another pid namespace than this
    /// process's, or was ever opened from another than its creator's: its
    /// pids cannot all be judged here, and it counts as in use.
    pub foreign_pid_namespace: bool,
    /// The processes recorded in the attach table, alive or dead.
    pub attachers: Vec<Attacher>,
    /// Attachers that found the table full and were only counted.
    pub overflow: u32,
}

impl SegmentReport {
    /// Whether some live process may be using the segment: its creator, a
    /// recorded attacher, one only counted in the overflow, or processes of
    /// another pid namespace, which this one cannot see.
    pub fn in_use(&self) -> bool {
        self.creator_alive
            || self.foreign_pid_namespace
            || self.overflow > 0
            || self.attachers.iter().any(|a| a.alive)
    }

    /// Whether [`remove_stale`] would remove it: a valid header and nobody
    /// alive using it (see the [module docs](self)).
    pub fn is_stale(&self) -> bool {
        self.header.is_ok() && !self.in_use()
    }
}

/// Reads the header of the object `name` (leading `/`) without mapping it.
/// `Ok(None)`: not one of the crate's segments (not a regular file, or no
/// magic).
fn read(name: &str, fd: &OwnedFd) -> Result<Option<SegmentReport>> {
    let st = shm::fstat(fd)?;
    if !st.is_file {
        return Ok(None);
    }
    // SAFETY: the descriptor stays owned by `fd`, which outlives `file`;
    // `ManuallyDrop` keeps `file` from closing it.
    let file = ManuallyDrop::new(unsafe { File::from_raw_fd(fd.as_raw_fd()) });
    let mut copy = HeaderCopy::zeroed();
    let mut got = 0;
    while got < HEADER_SIZE {
        match file.read_at(&mut copy.0[got..], got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                return Err(Error::Os {
                    call: "pread",
                    source: e,
                })
            }
        }
    }
    if got < 8 || copy.0[..8] != MAGIC.to_le_bytes() {
        return Ok(None);
    }
    let mut report = SegmentReport {
        name: name.to_owned(),
        size: st.size,
        owner: st.uid,
        mode: st.mode & 0o777,
        ready: false,
        header: Err(Error::Corrupt("segment smaller than its header")),
        creator_alive: false,
        foreign_pid_namespace: false,
        attachers: Vec::new(),
        overflow: 0,
    };
    if got < HEADER_SIZE {
        return Ok(Some(report));
    }
    let header = copy.header();
    let state = header.state();
    report.ready = state == READY;
    report.header = match state {
        0 | READY => header.info(),
        _ => Err(Error::Corrupt("bad segment state word")),
    };
    report.header = report.header.and_then(|info| {
        if info.total_size == st.size {
            Ok(info)
        } else {
            Err(Error::Corrupt(
                "segment size differs from its header (truncated?)",
            ))
        }
    });
    if let Ok(info) = &report.header {
        let creator_here = info.creator_pidns == proc::pid_namespace();
        report.foreign_pid_namespace = !creator_here || header.has_foreign();
        report.creator_alive = creator_here && proc::is_alive(info.creator_pid, info.creator_start);
        (report.attachers, report.overflow) = header.attachers();
    }
    Ok(Some(report))
}

/// The report on segment `name`: header, kind, parameters, creator and
/// attachers, alive or dead. [`Error::Corrupt`] if it is not one of the
/// crate's segments; a refused header is in [`SegmentReport::header`].
pub fn inspect(name: &str) -> Result<SegmentReport> {
    let c = name::validate(name)?;
    let fd = shm::shm_open(&c, shm::OpenMode::ReadOnly, 0)?;
    read(name, &fd)?.ok_or(Error::Corrupt("not a shmprim segment (bad magic)"))
}

/// Every segment of the crate in `/dev/shm` that this user can read,
/// sorted by name (see the [module docs](self) for what is left out).
/// [`Error::Unsupported`] where the platform keeps shared-memory objects
/// in no directory (every Unix but Linux).
pub fn list() -> Result<Vec<SegmentReport>> {
    let mut out = Vec::new();
    for file in shm_dir_entries()? {
        let name = format!("/{file}");
        let Ok(c) = name::validate(&name) else {
            continue;
        };
        // Gone since the scan, or not ours to read: not listed.
        let Ok(fd) = shm::shm_open(&c, shm::OpenMode::ReadOnly, 0) else {
            continue;
        };
        if let Ok(Some(report)) = read(&name, &fd) {
            out.push(report);
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// The names of the regular files in `/dev/shm`.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn shm_dir_entries() -> Result<Vec<String>> {
    let dir = std::fs::read_dir("/dev/shm").map_err(|e| Error::Os {
        call: "opendir /dev/shm",
        source: e,
    })?;
    Ok(dir
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| e.file_name().into_string().ok())
        .collect())
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn shm_dir_entries() -> Result<Vec<String>> {
    Err(Error::Unsupported(
        "listing shared-memory objects (no /dev/shm directory on this platform)",
    ))
}

/// Removes every stale segment in `/dev/shm` (see the [module docs](self));
/// returns the names removed. A segment that changed under the scan (a
/// process attached, the name was re-created) is kept.
pub fn remove_stale() -> Result<Vec<String>> {
    let mut removed = Vec::new();
    for report in list()? {
        if report.is_stale() && remove_if_stale(&report.name).unwrap_or(false) {
            removed.push(report.name);
        }
    }
    Ok(removed)
}

/// Removes segment `name` if it is stale; `Ok(false)` if it is kept (in
/// use, corrupt, owned by another user, or changed while checked). See the
/// [module docs](self) for the protocol with openers.
pub fn remove_if_stale(name: &str) -> Result<bool> {
    let c = name::validate(name)?;
    let fd = shm::shm_open(&c, shm::OpenMode::Existing, 0)?;
    let st = shm::fstat(&fd)?;
    let Some(report) = read(name, &fd)? else {
        return Ok(false);
    };
    if !report.is_stale() {
        return Ok(false);
    }
    // In the sticky `/dev/shm` only the owner (or root) may remove a name:
    // a mark this cleaner could not follow through would only lock openers
    // out.
    let euid = proc::euid();
    if st.uid != euid && euid != 0 {
        return Ok(false);
    }
    // The one write: the mark, an atomic on the header page (see the
    // module docs for the truncation that can still fault it).
    let map = MmapOptions::new()
        .len(HEADER_SIZE)
        .map_raw(fd.as_raw_fd())
        .map_err(|e| Error::Os {
            call: "mmap",
            source: e,
        })?;
    // SAFETY: the mapping is HEADER_SIZE bytes, page-aligned; `Header` is
    // made only of atomics, valid for any bits and for concurrent access by
    // other processes; `map` outlives the reference.
    let header = unsafe { &*map.as_ptr().cast::<Header>() };
    let me = proc::pid();
    let Some(mark) = header.doom(me, proc::start_time(me).unwrap_or(0)) else {
        return Ok(false);
    };
    let removed = remove_marked(name, &c, &fd, &st);
    if !matches!(removed, Ok(true)) {
        header.undoom(mark);
    }
    removed
}

/// Steps 3 and 4 of the module docs, once the segment is marked.
fn remove_marked(name: &str, c: &CString, fd: &OwnedFd, st: &shm::Stat) -> Result<bool> {
    // Marked, not yet re-checked: openers now back off; a cleaner killed
    // here leaves a mark that openers ignore (its process is dead and the
    // name still names the object).
    crate::fault::fault_point!("segment.clean.after_doom");
    // SYNC POINT (SeqCst): the mark (a SeqCst compare-and-swap) is ordered
    // before the loads that `pread` makes of the attach table below, the
    // cleaner's half of the Dekker pair with `Header::attach`; the fence
    // keeps the kernel's copy after the mark on weakly ordered CPUs.
    fence(SeqCst);
    match read(name, fd)? {
        Some(now) if now.is_stale() => {}
        _ => return Ok(false),
    }
    crate::fault::fault_point!("segment.clean.before_unlink");
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        let private = match move_aside(c) {
            Ok(private) => private,
            // Removed by someone else meanwhile: nothing left to remove.
            Err(Error::NotFound) => return Ok(false),
            Err(e) => return Err(e),
        };
        let moved = shm::shm_open(&private, shm::OpenMode::ReadOnly, 0)
            .and_then(|fd| shm::fstat(&fd))
            .is_ok_and(|now| (now.dev, now.ino) == (st.dev, st.ino));
        if moved {
            shm::shm_unlink(&private)?;
            return Ok(true);
        }
        // Another object took the name before the rename: give it back.
        shm::rename_noreplace(&private, c)?;
        Ok(false)
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        let same_object = shm::shm_open(c, shm::OpenMode::ReadOnly, 0)
            .and_then(|fd| shm::fstat(&fd))
            .is_ok_and(|now| (now.dev, now.ino) == (st.dev, st.ino));
        if !same_object {
            return Ok(false);
        }
        shm::shm_unlink(c)?;
        Ok(true)
    }
}

/// Renames `name` to a fresh private name, which it returns.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn move_aside(c: &CString) -> Result<CString> {
    let mut last = Error::AlreadyExists;
    for _ in 0..8 {
        let private = name::validate(&name::unique_name(".rm"))?;
        match shm::rename_noreplace(c, &private) {
            Ok(()) => return Ok(private),
            Err(Error::AlreadyExists) => last = Error::AlreadyExists,
            Err(e) => return Err(e),
        }
    }
    Err(last)
}

/// Arbitrary bytes as a segment seen by a cleaner: the report [`inspect`]
/// would give, then a claim, a scan and a release of the attach table and
/// the cleaner's mark, on a private copy. For the fuzz targets; returns
/// whether the bytes passed for a stale segment.
#[cfg(fuzzing)]
pub fn __fuzz_inspect(bytes: &[u8]) -> bool {
    let Ok(fd) = super::Segment::__fuzz_fd(bytes) else {
        return false;
    };
    let stale = matches!(read("/fuzz", &fd), Ok(Some(r)) if r.is_stale());
    if bytes.len() >= HEADER_SIZE {
        if let Ok(map) = MmapOptions::new().len(HEADER_SIZE).map_raw(fd.as_raw_fd()) {
            // SAFETY: the mapping is HEADER_SIZE bytes of a private memfd,
            // page-aligned; `Header` is only atomics, valid for any bits.
            let header = unsafe { &*map.as_ptr().cast::<Header>() };
            let me = proc::pid();
            let claim = header.attach(me, 1);
            let _ = header.attachers();
            let _ = header.doomed_by();
            if let Some(mark) = header.doom(me, 1) {
                header.undoom(mark);
            }
            header.detach(claim);
        }
    }
    stale
}
