//! Segment names: validated before any system call, generated to fit the
//! smallest platform limit.

use std::ffi::CString;

use crate::error::NameError;
use crate::{Error, Result};

pub use crate::sys::shm::unique_name;

/// The longest name accepted, leading `/` included: 256 on Linux, where
/// glibc makes the name a file under `/dev/shm` and the 255 bytes after the
/// `/` are one path component (`NAME_MAX`); 31 on macOS (`PSHMNAMLEN`,
/// slash included); 256 elsewhere (a `/` and `NAME_MAX` bytes).
#[cfg(target_os = "macos")]
pub const MAX_NAME_LEN: usize = 31;
/// The longest name accepted, leading `/` included: 256 on Linux, where
/// glibc makes the name a file under `/dev/shm` and the 255 bytes after the
/// `/` are one path component (`NAME_MAX`); 31 on macOS (`PSHMNAMLEN`,
/// slash included); 256 elsewhere (a `/` and `NAME_MAX` bytes).
#[cfg(not(target_os = "macos"))]
pub const MAX_NAME_LEN: usize = 256;

/// Checks a segment name the way every create and open does, before any
/// system call: one leading `/`, 1 to [`MAX_NAME_LEN`]` - 1` bytes after
/// it, no other `/`, no NUL, not `/.` or `/..`. [`Error::InvalidName`]
/// (with a [`NameError`] saying why) otherwise, so a caller can validate a
/// name it was given before creating anything.
pub fn check_name(name: &str) -> Result<()> {
    validate(name).map(drop)
}

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
