//! Task and result records: the bytes that cross the pool's queues.
//!
//! Everything is little-endian; nothing read is trusted (every length is
//! checked before use, every count bounded by the bytes that hold it).
//!
//! A task record (parent to worker), in a worker's task queue:
//!
//! | offset | size | field                                             |
//! |--------|------|---------------------------------------------------|
//! | 0      | 4    | magic `TASK_MAGIC`                                |
//! | 4      | 1    | kind: 1 task, 2 stop (finish and exit)            |
//! | 5      | 1    | 0: body inline; 1: body spilled (a [`Ticket`])    |
//! | 6      | 2    | zero                                              |
//! | 8      | 8    | task sequence number                              |
//! | 16     | 4    | item count (the chunk's size)                     |
//! | 20     | 4    | zero                                              |
//! | 24     | ...  | body, or a spill ticket naming it                 |
//!
//! A task's body is the function's token (`[len u32][token]`, an
//! [`AnyFn`](crate::process::AnyFn)) followed by the items.
//!
//! A result record (worker to parent), in the pool's result queue:
//!
//! | offset | size | field                                              |
//! |--------|------|----------------------------------------------------|
//! | 0      | 4    | magic `RESULT_MAGIC`                               |
//! | 4      | 1    | kind: 1 results                                    |
//! | 5      | 1    | 0: items inline; 1: items spilled                  |
//! | 6      | 2    | the worker's slot                                  |
//! | 8      | 8    | task sequence number                               |
//! | 16     | 4    | item count                                         |
//! | 20     | 4    | zero                                               |
//! | 24     | ...  | items, or a spill ticket naming them               |
//!
//! Items are a sequence of `[status u8][len u32][bytes]` (the status byte
//! only in results; see [`Status`]).

use crate::spill::Ticket;

/// First word of a task record.
pub(crate) const TASK_MAGIC: u32 = u32::from_le_bytes(*b"SPT1");
/// First word of a result record.
pub(crate) const RESULT_MAGIC: u32 = u32::from_le_bytes(*b"SPR1");
/// Bytes before a task record's body.
pub(crate) const TASK_HEADER: usize = 24;
/// Bytes before a result record's items.
pub(crate) const RESULT_HEADER: usize = 24;

/// A task record's kind byte.
pub(crate) const KIND_TASK: u8 = 1;
/// Stop: finish and exit with status 0.
pub(crate) const KIND_STOP: u8 = 2;
/// A result record's kind byte.
pub(crate) const KIND_RESULTS: u8 = 1;

/// Why a record was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordError(pub &'static str);

impl std::fmt::Display for RecordError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "bad pool record: {}", self.0)
    }
}

impl std::error::Error for RecordError {}

/// How one item of a chunk ended in the worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Status {
    /// The bytes are the encoded result.
    Ok = 0,
    /// The function panicked; the bytes are the message.
    Panicked = 1,
    /// The argument did not decode; the bytes say why.
    DecodeArg = 2,
    /// The result did not encode; the bytes say why.
    EncodeResult = 3,
    /// The task named a function the worker refused.
    BadFunction = 4,
}

impl Status {
    fn from_u8(b: u8) -> Result<Status, RecordError> {
        Ok(match b {
            0 => Status::Ok,
            1 => Status::Panicked,
            2 => Status::DecodeArg,
            3 => Status::EncodeResult,
            4 => Status::BadFunction,
            _ => return Err(RecordError("unknown item status")),
        })
    }
}

/// The payload of a record: its items inline, or a ticket for them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Payload<'a> {
    Inline(&'a [u8]),
    Spilled(Ticket),
}

/// A decoded task record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TaskRecord<'a> {
    pub kind: u8,
    pub seq: u64,
    pub count: u32,
    pub payload: Payload<'a>,
}

/// A decoded result record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ResultRecord<'a> {
    pub slot: u16,
    pub seq: u64,
    pub count: u32,
    pub payload: Payload<'a>,
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(w)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

fn payload(spilled: u8, rest: &[u8]) -> Result<Payload<'_>, RecordError> {
    match spilled {
        0 => Ok(Payload::Inline(rest)),
        1 if rest.len() == Ticket::SIZE => Ticket::from_bytes(rest)
            .map(Payload::Spilled)
            .map_err(|_| RecordError("bad spill ticket")),
        1 => Err(RecordError("spill ticket of the wrong size")),
        _ => Err(RecordError("bad spill flag")),
    }
}

/// Writes a task record's header (items follow).
pub(crate) fn task_header(out: &mut Vec<u8>, kind: u8, spilled: bool, seq: u64, count: u32) {
    out.extend_from_slice(&task_header_bytes(kind, spilled, seq, count));
}

/// A task record's header, to write in place.
pub(crate) fn task_header_bytes(
    kind: u8,
    spilled: bool,
    seq: u64,
    count: u32,
) -> [u8; TASK_HEADER] {
    header(TASK_MAGIC, [kind, spilled as u8, 0, 0], seq, count)
}

fn header(magic: u32, flags: [u8; 4], seq: u64, count: u32) -> [u8; 24] {
    let mut h = [0u8; 24];
    h[..4].copy_from_slice(&magic.to_le_bytes());
    h[4..8].copy_from_slice(&flags);
    h[8..16].copy_from_slice(&seq.to_le_bytes());
    h[16..20].copy_from_slice(&count.to_le_bytes());
    h
}

/// Splits a task body into the function's token and the items' bytes.
pub(crate) fn split_body(b: &[u8]) -> Result<(&[u8], &[u8]), RecordError> {
    let (len, rest) = b
        .split_first_chunk::<4>()
        .ok_or(RecordError("task body truncated"))?;
    let n = u32::from_le_bytes(*len) as usize;
    if rest.len() < n {
        return Err(RecordError("function token longer than its record"));
    }
    Ok(rest.split_at(n))
}

/// Decodes a task record.
pub(crate) fn parse_task(b: &[u8]) -> Result<TaskRecord<'_>, RecordError> {
    if b.len() < TASK_HEADER {
        return Err(RecordError("task record truncated"));
    }
    if u32_at(b, 0) != TASK_MAGIC {
        return Err(RecordError("task record magic"));
    }
    let kind = b[4];
    if kind != KIND_TASK && kind != KIND_STOP {
        return Err(RecordError("task record kind"));
    }
    if b[6] != 0 || b[7] != 0 || u32_at(b, 20) != 0 {
        return Err(RecordError("task record reserved bytes"));
    }
    Ok(TaskRecord {
        kind,
        seq: u64_at(b, 8),
        count: u32_at(b, 16),
        payload: payload(b[5], &b[TASK_HEADER..])?,
    })
}

/// Writes a result record's header (items follow).
#[cfg(test)]
pub(crate) fn result_header(out: &mut Vec<u8>, spilled: bool, slot: u16, seq: u64, count: u32) {
    out.extend_from_slice(&result_header_bytes(spilled, slot, seq, count));
}

/// A result record's header, to write in place.
pub(crate) fn result_header_bytes(
    spilled: bool,
    slot: u16,
    seq: u64,
    count: u32,
) -> [u8; RESULT_HEADER] {
    let s = slot.to_le_bytes();
    header(
        RESULT_MAGIC,
        [KIND_RESULTS, spilled as u8, s[0], s[1]],
        seq,
        count,
    )
}

/// Decodes a result record.
pub(crate) fn parse_result(b: &[u8]) -> Result<ResultRecord<'_>, RecordError> {
    if b.len() < RESULT_HEADER {
        return Err(RecordError("result record truncated"));
    }
    if u32_at(b, 0) != RESULT_MAGIC {
        return Err(RecordError("result record magic"));
    }
    if b[4] != KIND_RESULTS || u32_at(b, 20) != 0 {
        return Err(RecordError("result record kind"));
    }
    Ok(ResultRecord {
        slot: u16::from_le_bytes([b[6], b[7]]),
        seq: u64_at(b, 8),
        count: u32_at(b, 16),
        payload: payload(b[5], &b[RESULT_HEADER..])?,
    })
}

/// Appends one task item (`[len u32][bytes]`).
#[cfg(test)]
pub(crate) fn put_arg(out: &mut Vec<u8>, arg: &[u8]) -> Result<(), RecordError> {
    let n = u32::try_from(arg.len()).map_err(|_| RecordError("item over 4 GiB"))?;
    out.extend_from_slice(&n.to_le_bytes());
    out.extend_from_slice(arg);
    Ok(())
}

/// Starts one result item: status and a length to patch; returns where
/// the length is, for [`end_item`].
pub(crate) fn begin_item(out: &mut Vec<u8>) -> usize {
    out.push(0);
    out.extend_from_slice(&[0; 4]);
    out.len() - 4
}

/// Finishes the item [`begin_item`] started: its status, and the length
/// of what was appended since.
pub(crate) fn end_item(out: &mut [u8], at: usize, status: Status) -> Result<(), RecordError> {
    let n = u32::try_from(out.len() - at - 4).map_err(|_| RecordError("item over 4 GiB"))?;
    out[at - 1] = status as u8;
    out[at..at + 4].copy_from_slice(&n.to_le_bytes());
    Ok(())
}

/// Splits task items: exactly `count` of them, filling `b` exactly. The
/// bytes are checked whole first; the items are then walked without
/// allocating (a `Vec` per task was a malloc and a free per task on both
/// sides, callgrind).
pub(crate) fn split_args(b: &[u8], count: u32) -> Result<Items<'_, false>, RecordError> {
    Items::checked(b, count)
}

/// Splits result items as [`split_args`] does, each with its status.
pub(crate) fn split_results(b: &[u8], count: u32) -> Result<Items<'_, true>, RecordError> {
    Items::checked(b, count)
}

/// Checked items of a record: `[len u32][bytes]` each, with a status
/// byte before the length when `STATUS` (result items).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Items<'a, const STATUS: bool> {
    rest: &'a [u8],
    left: u32,
}

impl<'a, const STATUS: bool> Items<'a, STATUS> {
    const HEAD: usize = 4 + STATUS as usize;

    fn checked(b: &'a [u8], count: u32) -> Result<Self, RecordError> {
        // Each item takes at least its head: a count beyond that is
        // garbage, refused before any work is done for it.
        if count as usize > b.len() / Self::HEAD {
            return Err(RecordError("more items than bytes"));
        }
        let mut walk = Self {
            rest: b,
            left: count,
        };
        while walk.left > 0 {
            let (status, _) = walk.step()?;
            Status::from_u8(status)?;
        }
        if !walk.rest.is_empty() {
            return Err(RecordError("bytes after the last item"));
        }
        Ok(Self {
            rest: b,
            left: count,
        })
    }

    /// The next item's status byte (0 without one) and bytes.
    fn step(&mut self) -> Result<(u8, &'a [u8]), RecordError> {
        let (status, b) = if STATUS {
            let (&st, rest) = self
                .rest
                .split_first()
                .ok_or(RecordError("item truncated"))?;
            (st, rest)
        } else {
            (0, self.rest)
        };
        let (len, rest) = b
            .split_first_chunk::<4>()
            .ok_or(RecordError("item truncated"))?;
        let n = u32::from_le_bytes(*len) as usize;
        if rest.len() < n {
            return Err(RecordError("item longer than its record"));
        }
        let (item, rest) = rest.split_at(n);
        self.rest = rest;
        self.left -= 1;
        Ok((status, item))
    }

    /// How many items are left.
    pub(crate) fn len(&self) -> usize {
        self.left as usize
    }
}

impl<'a> Iterator for Items<'a, false> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        if self.left == 0 {
            return None;
        }
        // Checked whole at construction: `step` cannot fail here (and
        // would end the walk if it did).
        self.step().ok().map(|(_, b)| b)
    }
}

impl<'a> Iterator for Items<'a, true> {
    type Item = (Status, &'a [u8]);
    fn next(&mut self) -> Option<(Status, &'a [u8])> {
        if self.left == 0 {
            return None;
        }
        let (st, b) = self.step().ok()?;
        Some((Status::from_u8(st).ok()?, b))
    }
}

/// Fuzz entry: parses `bytes` as a task record and as a result record,
/// and splits whatever items they carry. Never panics; returns how many
/// items were accepted.
#[cfg(any(fuzzing, test))]
pub(crate) fn fuzz_records(bytes: &[u8]) -> usize {
    let mut n = 0;
    if let Ok(t) = parse_task(bytes) {
        if let Payload::Inline(p) = t.payload {
            if let Ok((_, items)) = split_body(p) {
                n += split_args(items, t.count).map_or(0, |v| v.count());
            }
        }
        // Re-encoding an accepted header gives the same bytes back.
        let mut again = Vec::new();
        let spilled = matches!(t.payload, Payload::Spilled(_));
        task_header(&mut again, t.kind, spilled, t.seq, t.count);
        assert_eq!(&again[..], &bytes[..TASK_HEADER]);
    }
    if let Ok(r) = parse_result(bytes) {
        if let Payload::Inline(p) = r.payload {
            n += split_results(p, r.count).map_or(0, |v| v.count());
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_round_trip() {
        let mut b = Vec::new();
        task_header(&mut b, KIND_TASK, false, 9, 2);
        put_arg(&mut b, b"token").unwrap();
        put_arg(&mut b, b"ab").unwrap();
        put_arg(&mut b, b"").unwrap();
        let t = parse_task(&b).unwrap();
        assert_eq!((t.kind, t.seq, t.count), (KIND_TASK, 9, 2));
        let Payload::Inline(body) = t.payload else {
            panic!()
        };
        let (token, p) = split_body(body).unwrap();
        assert_eq!(token, b"token");
        assert_eq!(
            split_args(p, 2).unwrap().collect::<Vec<_>>(),
            vec![&b"ab"[..], b""]
        );
        assert!(split_args(p, 3).is_err());
        assert!(split_args(p, 1).is_err());
        assert_eq!(fuzz_records(&b), 2);
    }

    #[test]
    fn result_round_trip() {
        let mut b = Vec::new();
        result_header(&mut b, false, 3, 7, 2);
        let at = begin_item(&mut b);
        b.extend_from_slice(b"xyz");
        end_item(&mut b, at, Status::Ok).unwrap();
        let at = begin_item(&mut b);
        b.extend_from_slice(b"boom");
        end_item(&mut b, at, Status::Panicked).unwrap();
        let r = parse_result(&b).unwrap();
        assert_eq!((r.slot, r.seq, r.count), (3, 7, 2));
        let Payload::Inline(p) = r.payload else {
            panic!()
        };
        let items: Vec<_> = split_results(p, 2).unwrap().collect();
        assert_eq!(
            items,
            vec![(Status::Ok, &b"xyz"[..]), (Status::Panicked, b"boom")]
        );
    }

    #[test]
    fn garbage_is_refused() {
        assert!(parse_task(&[0; 23]).is_err());
        assert!(parse_result(&[0; 23]).is_err());
        assert!(split_body(&[9, 0, 0, 0, 1]).is_err());
        let mut b = Vec::new();
        task_header(&mut b, KIND_TASK, true, 1, 1);
        b.extend_from_slice(&[0xff; 56]);
        assert!(parse_task(&b).is_err());
        assert!(split_args(&[0xff; 8], u32::MAX).is_err());
        assert!(split_results(&[9, 0, 0, 0, 0], 1).is_err());
        // Random-ish bytes never panic.
        let mut x = 0x1234_5678u32;
        for len in 0..200 {
            let v: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect();
            fuzz_records(&v);
        }
    }
}
