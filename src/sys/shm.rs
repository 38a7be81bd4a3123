//! Shared-memory objects: `shm_open`, `shm_unlink`, `memfd_create`,
//! `posix_fallocate`, `fstat`, `fchmod`.

use std::ffi::CStr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::{Error, Result};

/// How `open` treats an existing or missing object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpenMode {
    /// Create; fail with `AlreadyExists` if it is there (`O_CREAT|O_EXCL`).
    CreateExclusive,
    /// Open an existing object; fail with `NotFound` if it is not there.
    Existing,
    /// Open an existing object read-only (to identify it).
    ReadOnly,
}

/// Opens or creates the POSIX shared-memory object `name`, read-write and
/// close-on-exec. On Linux, where the name is a file under `/dev/shm` that
/// anyone with write access there can replace with a FIFO, the open is
/// non-blocking: opening a FIFO read-only would otherwise wait for a writer
/// for ever (callers that read must check [`Stat::is_file`]).
pub(crate) fn shm_open(name: &CStr, mode: OpenMode, perm: u32) -> Result<OwnedFd> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let nonblock = libc::O_NONBLOCK;
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let nonblock = 0;
    let flags = libc::O_CLOEXEC
        | match mode {
            OpenMode::CreateExclusive => libc::O_RDWR | libc::O_CREAT | libc::O_EXCL,
            OpenMode::Existing => libc::O_RDWR | nonblock,
            OpenMode::ReadOnly => libc::O_RDONLY | nonblock,
        };
    // macOS declares shm_open variadic, where the mode is promoted to
    // `unsigned`; elsewhere it is a `mode_t` parameter.
    #[cfg(target_vendor = "apple")]
    let perm = perm as libc::c_uint;
    #[cfg(not(target_vendor = "apple"))]
    let perm = perm as libc::mode_t;
    // SAFETY: `name` is a NUL-terminated string that outlives the call; the
    // flags and mode are plain integers.
    let fd = unsafe { libc::shm_open(name.as_ptr(), flags, perm) };
    if fd < 0 {
        return Err(Error::last_os("shm_open"));
    }
    // SAFETY: `fd` was just returned by shm_open, is open, and nothing else
    // owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Removes the name `name`. Mappings and descriptors stay valid.
pub(crate) fn shm_unlink(name: &CStr) -> Result<()> {
    // SAFETY: `name` is a NUL-terminated string that outlives the call.
    let rc = unsafe { libc::shm_unlink(name.as_ptr()) };
    if rc != 0 {
        return Err(Error::last_os("shm_unlink"));
    }
    Ok(())
}

/// A fresh name `/<prefix>-<pid>-<counter>-<noise>` that fits every
/// platform's limit (31 bytes): `prefix` is cut to 8 bytes and any `/` or
/// NUL in it becomes `_`. Collisions are unlikely, not impossible: create
/// with `create` and retry on [`Error::AlreadyExists`].
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let prefix: String = prefix
        .chars()
        .filter(char::is_ascii)
        .take(8)
        .map(|c| if c == '/' || c == '\0' { '_' } else { c })
        .collect();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let noise = (super::clock::monotonic_ns() as u32) ^ (n.rotate_left(16));
    let mut s = format!(
        "/{prefix}-{:x}-{:x}-{:x}",
        std::process::id(),
        n,
        noise & 0xffff
    );
    s.truncate(31);
    s
}

/// An unnamed shared-memory object for an anonymous segment, inherited across
/// `fork` through its mapping. Linux: `memfd_create`. Elsewhere: a uniquely
/// named POSIX object, unlinked at once.
pub(crate) fn anonymous_fd() -> Result<OwnedFd> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        // SAFETY: the name is a NUL-terminated literal; MFD_CLOEXEC is a
        // valid flag.
        let fd = unsafe { libc::memfd_create(c"shmprim-anon".as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(Error::last_os("memfd_create"));
        }
        // SAFETY: `fd` is a fresh descriptor owned by nothing else.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        for _ in 0..16 {
            let name = unique_name("anon");
            let c = std::ffi::CString::new(name).map_err(|_| Error::InvalidArgument("name"))?;
            match shm_open(&c, OpenMode::CreateExclusive, 0o600) {
                Ok(fd) => {
                    shm_unlink(&c)?;
                    return Ok(fd);
                }
                Err(Error::AlreadyExists) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Error::AlreadyExists)
    }
}

/// Sizes `fd` to `len` bytes (`ftruncate`), without reserving memory.
/// (macOS allows one `ftruncate` per shared-memory object: there, only
/// [`reserve`] sizes it.)
pub(crate) fn set_len(fd: &OwnedFd, len: u64) -> Result<()> {
    let len_off = libc::off_t::try_from(len).map_err(|_| Error::InvalidArgument("size"))?;
    // SAFETY: `fd` is an open descriptor we own; `len_off` is non-negative.
    if unsafe { libc::ftruncate(fd.as_raw_fd(), len_off) } != 0 {
        return Err(Error::last_os("ftruncate"));
    }
    Ok(())
}

/// Writes all of `bytes` at `offset` (`pwrite`, retried on `EINTR`).
/// Linux only: macOS shared memory does not take `pwrite`.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn write_at(fd: &OwnedFd, bytes: &[u8], offset: u64) -> Result<()> {
    use std::os::unix::fs::FileExt;
    let file = std::mem::ManuallyDrop::new(
        // SAFETY: the descriptor stays owned by `fd`, which outlives this
        // `File`; `ManuallyDrop` keeps the `File` from closing it.
        unsafe { std::fs::File::from_raw_fd(fd.as_raw_fd()) },
    );
    file.write_all_at(bytes, offset).map_err(|e| Error::Os {
        call: "pwrite",
        source: e,
    })
}

/// Sizes `fd` to `len` bytes and reserves the memory, so that a full
/// `/dev/shm` fails here with `OutOfSpace` rather than as `SIGBUS` on first
/// touch. Where the platform refuses `posix_fallocate` on shared memory
/// (FreeBSD), the object is only truncated to size.
pub(crate) fn reserve(fd: &OwnedFd, len: u64) -> Result<()> {
    set_len(fd, len)?;
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let len_off = libc::off_t::try_from(len).map_err(|_| Error::InvalidArgument("size"))?;
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        // SAFETY: as above; posix_fallocate returns the error number instead
        // of setting errno.
        let rc = unsafe { libc::posix_fallocate(fd.as_raw_fd(), 0, len_off) };
        if rc != 0 {
            return Err(Error::from_errno("posix_fallocate", rc));
        }
    }
    Ok(())
}

/// What `fstat` says about a shared-memory object.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stat {
    pub(crate) size: u64,
    pub(crate) dev: u64,
    pub(crate) ino: u64,
    pub(crate) uid: u32,
    pub(crate) mode: u32,
    /// A regular file (not a FIFO, a device, a directory).
    pub(crate) is_file: bool,
}

/// `fstat` on `fd`.
pub(crate) fn fstat(fd: &OwnedFd) -> Result<Stat> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `fd` is open; `st` is a writable buffer of the right type.
    if unsafe { libc::fstat(fd.as_raw_fd(), st.as_mut_ptr()) } != 0 {
        return Err(Error::last_os("fstat"));
    }
    // SAFETY: fstat returned 0, so it filled `st`.
    let st = unsafe { st.assume_init() };
    Ok(Stat {
        size: u64::try_from(st.st_size).unwrap_or(0),
        #[allow(clippy::useless_conversion, clippy::unnecessary_cast)] // widths differ by OS
        dev: st.st_dev as u64,
        #[allow(clippy::useless_conversion, clippy::unnecessary_cast)]
        ino: st.st_ino as u64,
        uid: st.st_uid,
        #[allow(clippy::useless_conversion)] // mode_t is u16 on some Unixes
        mode: u32::from(st.st_mode) & 0o7777,
        is_file: st.st_mode & libc::S_IFMT == libc::S_IFREG,
    })
}

/// Renames `/dev/shm/FROM` to `/dev/shm/TO` (names with their leading
/// `/`), failing with `AlreadyExists` if `to` exists (`RENAME_NOREPLACE`):
/// a cleaner moves a name out of reach before it checks what the name
/// held (see `segment::inventory`).
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn rename_noreplace(from: &CStr, to: &CStr) -> Result<()> {
    let path = |n: &CStr| {
        let mut p = b"/dev/shm".to_vec();
        p.extend_from_slice(n.to_bytes());
        std::ffi::CString::new(p).map_err(|_| Error::InvalidArgument("name"))
    };
    let (from, to) = (path(from)?, path(to)?);
    // SAFETY: both paths are NUL-terminated strings that outlive the call;
    // AT_FDCWD with absolute paths; RENAME_NOREPLACE is a valid flag. The
    // raw system call, since not every C library wraps renameat2.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if rc != 0 {
        return Err(Error::last_os("renameat2"));
    }
    Ok(())
}

/// Sets the permission bits exactly, undoing the process umask that
/// `shm_open` applied.
pub(crate) fn fchmod(fd: &OwnedFd, perm: u32) -> Result<()> {
    // SAFETY: `fd` is open; `perm` is a plain mode value.
    if unsafe { libc::fchmod(fd.as_raw_fd(), perm as libc::mode_t) } != 0 {
        return Err(Error::last_os("fchmod"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cloexec(fd: &OwnedFd) -> bool {
        // SAFETY: F_GETFD on an open descriptor we own reads its flags.
        let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFD) };
        assert!(flags >= 0, "fcntl: {}", std::io::Error::last_os_error());
        flags & libc::FD_CLOEXEC != 0
    }

    /// Every descriptor the crate opens is close-on-exec, so none reaches a
    /// program a thread `exec`s while another holds it open.
    #[test]
    fn every_descriptor_is_close_on_exec() {
        let name = unique_name("cloexec");
        let c = std::ffi::CString::new(name).unwrap();
        let created = shm_open(&c, OpenMode::CreateExclusive, 0o600).unwrap();
        let opened = shm_open(&c, OpenMode::Existing, 0).unwrap();
        let read_only = shm_open(&c, OpenMode::ReadOnly, 0).unwrap();
        shm_unlink(&c).unwrap();
        let anon = anonymous_fd().unwrap();
        for (what, fd) in [
            ("created", &created),
            ("opened", &opened),
            ("read-only", &read_only),
            ("anonymous", &anon),
        ] {
            assert!(cloexec(fd), "{what} descriptor lacks FD_CLOEXEC");
        }
    }
}
