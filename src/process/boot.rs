//! The wire format between a parent and the child it starts: the start
//! message (spawn and forkserver) and the child's reports.
//!
//! ```text
//! start message   "SHMPBOOT" | version u64 | flags u64 | parent pid u64
//!                 | name (len u64, bytes) | parent name (len u64, bytes)
//!                 | function token (see target.rs) | argument (Message)
//! report          one tag byte, then: 'C' nothing (checked in; not sent
//!                                         by a forked child)
//!                                     'R' the encoded result
//!                                     'P' the panic message (UTF-8)
//!                                     'E' why the start message was refused
//! ```
//!
//! The child decodes bytes that arrived through shared memory: every
//! field is checked and a bad one is a refusal, never a panic (the
//! `process_boot` fuzz target holds it to that).

use super::message::{Decoder, Encoder};
use super::target::Raw;
use crate::{Error, Result};

const MAGIC: &[u8; 8] = b"SHMPBOOT";
const VERSION: u64 = 1;
/// Flag: the child dies with its parent (`PR_SET_PDEATHSIG`).
pub(crate) const DIE_WITH_PARENT: u64 = 1;

/// The decoded head of a start message; the argument follows in the
/// decoder.
#[derive(Debug)]
pub(crate) struct Head {
    pub flags: u64,
    pub parent: u32,
    pub name: String,
    pub parent_name: String,
    pub token: Raw,
}

pub(crate) fn encode_head(out: &mut Encoder, head: &Head) {
    out.put(MAGIC);
    out.put_u64(VERSION);
    out.put_u64(head.flags);
    out.put_u64(u64::from(head.parent));
    out.put_bytes(head.name.as_bytes());
    out.put_bytes(head.parent_name.as_bytes());
    head.token.encode(out);
}

fn text(input: &mut Decoder<'_>) -> Result<String> {
    String::from_utf8(input.take_bytes()?.to_vec())
        .map_err(|_| Error::Corrupt("start message: name not UTF-8"))
}

pub(crate) fn decode_head(input: &mut Decoder<'_>) -> Result<Head> {
    if input.take(8)? != MAGIC {
        return Err(Error::Corrupt("start message: bad magic"));
    }
    let v = input.take_u64()?;
    if v != VERSION {
        return Err(Error::VersionMismatch {
            found: v as u32,
            expected: VERSION as u32,
        });
    }
    let flags = input.take_u64()?;
    let parent = u32::try_from(input.take_u64()?)
        .map_err(|_| Error::Corrupt("start message: parent pid"))?;
    let name = text(input)?;
    let parent_name = text(input)?;
    let token = Raw::decode(input)?;
    Ok(Head {
        flags,
        parent,
        name,
        parent_name,
        token,
    })
}

/// A report from the child.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Report {
    CheckedIn,
    Result(Vec<u8>),
    Panic(String),
    Refused(String),
}

impl Report {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let (tag, body): (u8, &[u8]) = match self {
            Report::CheckedIn => (b'C', &[]),
            Report::Result(b) => (b'R', b),
            Report::Panic(m) => (b'P', m.as_bytes()),
            Report::Refused(m) => (b'E', m.as_bytes()),
        };
        let mut v = Vec::with_capacity(1 + body.len());
        v.push(tag);
        v.extend_from_slice(body);
        v
    }

    pub(crate) fn decode(frame: &[u8]) -> Result<Report> {
        let lossy = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        match frame.split_first() {
            Some((b'C', [])) => Ok(Report::CheckedIn),
            Some((b'R', b)) => Ok(Report::Result(b.to_vec())),
            Some((b'P', b)) => Ok(Report::Panic(lossy(b))),
            Some((b'E', b)) => Ok(Report::Refused(lossy(b))),
            _ => Err(Error::Corrupt("child report: unknown tag")),
        }
    }
}

/// Fuzz entry: decodes `bytes` as a start message (head, then an argument
/// of a few shapes) and as a report, without running anything.
#[cfg(fuzzing)]
pub fn __fuzz_boot(bytes: &[u8]) {
    let mut fds: Vec<Option<std::os::fd::OwnedFd>> = Vec::new();
    let mut d = Decoder::new(bytes, &mut fds);
    if decode_head(&mut d).is_ok() {
        let rest = d.take(d.remaining()).unwrap_or_default();
        let mut no_fds: Vec<Option<std::os::fd::OwnedFd>> = Vec::new();
        let _ = super::message::decode::<(u64, String, Vec<Option<u32>>)>(rest, &mut no_fds);
        let _ = super::message::decode::<(bool, Vec<Vec<u8>>)>(rest, &mut no_fds);
    }
    let _ = Report::decode(bytes);
}
