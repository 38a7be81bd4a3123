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
//! - a corrupt header, or another format version: reported, never trusted,
//!   never removed (remove it by hand after a look with `shmprim inspect`).
//!
//! Only files that start with the crate's magic are reported. Other files
//! in `/dev/shm` (other programs' objects, POSIX semaphores, files this user
//! may not read) are left out: they are not the crate's to judge. A creator
//! killed before it wrote its header leaves a file without the magic, and
//! so unlisted.
//!
//! Listing reads each header with `pread` into a private copy: a peer that
//! truncates a file while it is read cannot fault the lister. Removal maps
//! the header, marks it `doomed` (the cleaner's pid), re-reads the attach
//! table, checks the name still names the same object, and only then
//! unlinks. An opener records itself before it looks at the mark, and
//! gives [`Error::NotFound`] if a live cleaner marked the segment (a
//! Dekker pair, see `Header::attach`): either the cleaner sees the opener
//! and keeps the segment, or the opener sees the mark and backs off.

use std::fs::File;
use std::os::fd::OwnedFd;
use std::os::unix::fs::FileExt;

use memmap2::MmapOptions;

use super::header::{Attacher, Header, HeaderInfo, HEADER_SIZE, MAGIC, READY};
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
    /// the header was refused: nothing in it is trusted).
    pub creator_alive: bool,
    /// The processes recorded in the attach table, alive or dead.
    pub attachers: Vec<Attacher>,
    /// Attachers that found the table full and were only counted.
    pub overflow: u32,
}

impl SegmentReport {
    /// Whether some live process may be using the segment: its creator, a
    /// recorded attacher, or one only counted in the overflow.
    pub fn in_use(&self) -> bool {
        self.creator_alive || self.overflow > 0 || self.attachers.iter().any(|a| a.alive)
    }

    /// Whether [`remove_stale`] would remove it: a valid header and nobody
    /// alive using it (see the [module docs](self)).
    pub fn is_stale(&self) -> bool {
        self.header.is_ok() && !self.in_use()
    }
}

/// 64-byte-aligned room for a header copy.
#[repr(C, align(64))]
struct HeaderCopy([u8; HEADER_SIZE]);

/// Reads the header of the object `name` (leading `/`) without mapping it.
/// `Ok(None)`: not one of the crate's segments (no magic).
fn read(name: &str, fd: OwnedFd) -> Result<Option<SegmentReport>> {
    let st = shm::fstat(&fd)?;
    let file = File::from(fd);
    let mut copy = Box::new(HeaderCopy([0; HEADER_SIZE]));
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
        attachers: Vec::new(),
        overflow: 0,
    };
    if got < HEADER_SIZE {
        return Ok(Some(report));
    }
    // SAFETY: `copy` is HEADER_SIZE bytes, 64-aligned, and lives until the
    // end of this function; `Header` is made only of atomics, valid for any
    // bits; the copy is private, so nobody else writes it.
    let header = unsafe { &*copy.0.as_ptr().cast::<Header>() };
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
        report.creator_alive = proc::is_alive(info.creator_pid, info.creator_start);
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
    read(name, fd)?.ok_or(Error::Corrupt("not a shmprim segment (bad magic)"))
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
        if let Ok(Some(report)) = read(&name, fd) {
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
/// use, corrupt, or changed while checked). The last check is made on the
/// live header after marking it `doomed`, right before the unlink.
pub fn remove_if_stale(name: &str) -> Result<bool> {
    let c = name::validate(name)?;
    let fd = shm::shm_open(&c, shm::OpenMode::Existing, 0)?;
    let st = shm::fstat(&fd)?;
    let Some(report) = read(
        name,
        fd.try_clone().map_err(|e| Error::Os {
            call: "dup",
            source: e,
        })?,
    )?
    else {
        return Ok(false);
    };
    if !report.is_stale() {
        return Ok(false);
    }
    // The header was complete a moment ago; a peer truncating it now (it
    // needs write access, which 0600 keeps to this user) could still make
    // the accesses below fault.
    let map = MmapOptions::new()
        .len(HEADER_SIZE)
        .map_raw(&File::from(fd))
        .map_err(|e| Error::Os {
            call: "mmap",
            source: e,
        })?;
    // SAFETY: the mapping is HEADER_SIZE bytes, page-aligned; `Header` is
    // made only of atomics, valid for any bits and for concurrent access by
    // other processes; `map` outlives the reference.
    let header = unsafe { &*map.as_ptr().cast::<Header>() };
    let me = proc::pid();
    if !header.doom(me) {
        return Ok(false);
    }
    // Marked, not yet re-checked: openers now back off; a cleaner killed
    // here leaves a mark that openers ignore (its pid is dead).
    crate::fault::fault_point!("segment.clean.after_doom");
    let (attachers, overflow) = header.attachers();
    let creator_alive = header
        .info()
        .map_or(true, |i| proc::is_alive(i.creator_pid, i.creator_start));
    let same_object = shm::shm_open(&c, shm::OpenMode::ReadOnly, 0)
        .and_then(|fd| shm::fstat(&fd))
        .is_ok_and(|now| (now.dev, now.ino) == (st.dev, st.ino));
    if creator_alive || overflow > 0 || attachers.iter().any(|a| a.alive) || !same_object {
        header.undoom(me);
        return Ok(false);
    }
    shm::shm_unlink(&c)?;
    Ok(true)
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
    let Ok(dup) = fd.try_clone() else {
        return false;
    };
    let stale = matches!(read("/fuzz", dup), Ok(Some(r)) if r.is_stale());
    if bytes.len() >= HEADER_SIZE {
        if let Ok(map) = MmapOptions::new().len(HEADER_SIZE).map_raw(&File::from(fd)) {
            // SAFETY: the mapping is HEADER_SIZE bytes of a private memfd,
            // page-aligned; `Header` is only atomics, valid for any bits.
            let header = unsafe { &*map.as_ptr().cast::<Header>() };
            let me = proc::pid();
            let claim = header.attach(me, 1);
            let _ = header.attachers();
            let _ = header.doomed_by();
            if header.doom(me) {
                header.undoom(me);
            }
            header.detach(claim);
        }
    }
    stale
}
