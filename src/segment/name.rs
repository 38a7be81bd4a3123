//! Segment names: validated before any system call, generated to fit the
//! smallest platform limit.

use std::ffi::CString;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::error::NameError;
use crate::{Error, Result};

/// The longest name accepted, leading `/` included: `NAME_MAX` (255) on
/// Linux, where glibc puts the name under `/dev/shm`; 31 on macOS
/// (`PSHMNAMLEN`); 255 elsewhere.
#[cfg(target_os = "macos")]
pub const MAX_NAME_LEN: usize = 31;
/// The longest name accepted, leading `/` included: `NAME_MAX` (255) on
/// Linux, where glibc puts the name under `/dev/shm`; 31 on macOS
/// (`PSHMNAMLEN`); 255 elsewhere.
#[cfg(not(target_os = "macos"))]
pub const MAX_NAME_LEN: usize = 255;

/// Checks `name` and returns it as a C string for `shm_open`.
pub(crate) fn validate(name: &str) -> Result<CString> {
    let fail = |reason| Error::InvalidName {
        name: name.to_owned(),
        reason,
    };
    let bytes = name.as_bytes();
    if bytes.is_empty() {
        return Err(fail(NameError::Empty));
    }
    if bytes[0] != b'/' {
        return Err(fail(NameError::NoLeadingSlash));
    }
    if bytes.len() == 1 {
        return Err(fail(NameError::NothingAfterSlash));
    }
    if bytes.contains(&0) {
        return Err(fail(NameError::Nul));
    }
    if bytes[1..].contains(&b'/') {
        return Err(fail(NameError::InnerSlash));
    }
    if bytes == b"/." || bytes == b"/.." {
        return Err(fail(NameError::DotName));
    }
    if bytes.len() > MAX_NAME_LEN {
        return Err(fail(NameError::TooLong));
    }
    CString::new(bytes).map_err(|_| fail(NameError::Nul))
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
    let noise = (crate::sys::clock::monotonic_ns() as u32) ^ (n.rotate_left(16));
    let mut s = format!(
        "/{prefix}-{:x}-{:x}-{:x}",
        std::process::id(),
        n,
        noise & 0xffff
    );
    s.truncate(31);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(name: &str) -> NameError {
        match validate(name) {
            Err(Error::InvalidName { reason, .. }) => reason,
            other => panic!("{name:?}: expected InvalidName, got {other:?}"),
        }
    }

    #[test]
    fn each_fault_has_its_reason() {
        assert_eq!(reason(""), NameError::Empty);
        assert_eq!(reason("abc"), NameError::NoLeadingSlash);
        assert_eq!(reason("/"), NameError::NothingAfterSlash);
        assert_eq!(reason("/a/b"), NameError::InnerSlash);
        assert_eq!(reason("/a\0b"), NameError::Nul);
        assert_eq!(reason("/."), NameError::DotName);
        assert_eq!(reason("/.."), NameError::DotName);
        assert!(validate("/...").is_ok() && validate("/.hidden").is_ok());
        assert_eq!(
            reason(&format!("/{}", "x".repeat(MAX_NAME_LEN))),
            NameError::TooLong
        );
        assert!(validate(&format!("/{}", "x".repeat(MAX_NAME_LEN - 1))).is_ok());
        assert!(validate("/ok.name-1").is_ok());
    }

    #[test]
    fn unique_names_are_valid_distinct_and_short() {
        let a = unique_name("a/very/long/prefix\0");
        let b = unique_name("a/very/long/prefix\0");
        assert_ne!(a, b);
        for n in [&a, &b] {
            assert!(n.len() <= 31, "{n}");
            validate(n).unwrap();
        }
    }
}
