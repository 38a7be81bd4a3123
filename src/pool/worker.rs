//! The worker's side: open the pool's objects, run the initializer, then
//! take tasks from this worker's queue until told to stop.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use super::core::{result_spill_name, Objects};
use super::record::{self, Payload, Status};
use super::table::{State, Table};
use super::wait;
use crate::process::{AnyFn, CallError, FnRef};
use crate::spill::Spill;
use crate::{Error, Queue};

/// Longest pool base name, in bytes.
pub(crate) const MAX_BASE: usize = 32;

crate::plain_struct! {
    /// What a worker is told at start: where the pool's objects are, which
    /// slot it fills, and its limits.
    pub(crate) struct Start {
        pub base: [u8; MAX_BASE],
        pub slot: u32,
        pub gen: u32,
        /// Tasks before the worker retires; 0: no limit.
        pub maxtasks: u64,
        /// The pool's process: a worker that finds its parent gone exits.
        pub parent: u32,
        pub _pad: u32,
    }
}

impl Start {
    pub(crate) fn new(base: &str, slot: usize, gen: u32, maxtasks: Option<u64>) -> Start {
        let mut b = [0u8; MAX_BASE];
        b[..base.len()].copy_from_slice(base.as_bytes());
        Start {
            base: b,
            slot: slot as u32,
            gen,
            maxtasks: maxtasks.unwrap_or(0),
            parent: std::process::id(),
            _pad: 0,
        }
    }

    fn base(&self) -> Result<&str, Error> {
        let end = self.base.iter().position(|&b| b == 0).unwrap_or(MAX_BASE);
        std::str::from_utf8(&self.base[..end]).map_err(|_| Error::Corrupt("pool name"))
    }
}

/// How often an idle worker checks that its parent still runs.
const PARENT_CHECK: Duration = Duration::from_millis(500);

/// Exit code of a worker that could not open the pool's objects or read
/// a task record.
pub(crate) const EXIT_BROKEN: i32 = 70;

/// What a worker is started with: where things are, its objects, and
/// the initializer with its argument.
pub(crate) type Args<I> = (Start, Objects, Option<(FnRef<I, ()>, I)>);

/// The worker's main: what the pool starts in each child.
pub(crate) fn main<I: crate::process::Message + 'static>((start, objects, init): Args<I>) {
    if let Err(e) = run(start, objects, init) {
        eprintln!("shmprim pool worker: {e}");
        std::process::exit(EXIT_BROKEN);
    }
}

fn run<I: crate::process::Message + 'static>(
    start: Start,
    (table, results, tasks): Objects,
    init: Option<(FnRef<I, ()>, I)>,
) -> Result<(), Error> {
    let base = start.base()?;
    let slot = start.slot as usize;
    table.start(slot, std::process::id());
    if let Some((f, arg)) = init {
        // A panic here ends the process (the parent reads the message
        // from the join and breaks the pool: every worker would fail).
        f.call(arg);
    }
    table.set(slot, State::Idle);
    let mut done = 0u64;
    // Buffers kept from task to task: no allocation per task.
    let mut task = vec![0u8; tasks.slot_size()];
    let mut out = Vec::new();
    let mut reply = Vec::new();
    let mut cache = None;
    let mut spin = wait::Spin::default();
    loop {
        let n = match wait::recv_into(&tasks, &mut task, &mut spin, PARENT_CHECK) {
            Ok(n) => n,
            Err(Error::Timeout) => {
                if std::os::unix::process::parent_id() != start.parent {
                    return Ok(());
                }
                continue;
            }
            Err(Error::Closed) => return Ok(()),
            Err(e) => return Err(e),
        };
        let t = record::parse_task(&task[..n]).map_err(|e| Error::Corrupt(e.0))?;
        if t.kind == record::KIND_STOP {
            return Ok(());
        }
        table.set_item(slot, 0);
        // SYNC POINT: after this store the parent counts the task as
        // started; nothing of it has run before.
        table.set(slot, State::Running(t.seq));
        out.clear();
        run_task(&table, slot, &t, &mut cache, &mut out);
        finish(
            base,
            slot as u16,
            t.seq,
            t.count,
            &out,
            &results,
            &mut reply,
        )?;
        table.count_done(slot);
        table.set(slot, State::Idle);
        done += 1;
        if start.maxtasks != 0 && done >= start.maxtasks {
            table.set(slot, State::Retired);
            return Ok(());
        }
    }
}

/// The last function token accepted, and the function it names.
type FnCache = Option<(Vec<u8>, AnyFn)>;

/// Runs every item of task `t`, appending result items to `out`.
fn run_task(
    table: &Table,
    slot: usize,
    t: &record::TaskRecord<'_>,
    cache: &mut FnCache,
    out: &mut Vec<u8>,
) {
    let spilled;
    let body: &[u8] = match t.payload {
        Payload::Inline(b) => b,
        Payload::Spilled(ticket) => match ticket.read() {
            Ok(b) => {
                spilled = b;
                &spilled
            }
            Err(e) => return refuse_all(t.count, &format!("task spill: {e}"), out),
        },
    };
    let parts = record::split_body(body)
        .and_then(|(tok, items)| Ok((tok, record::split_args(items, t.count)?)));
    let (token, items) = match parts {
        Ok(p) => p,
        Err(e) => return refuse_all(t.count, &e.to_string(), out),
    };
    // A map sends the same token with every task: check it once.
    let f = match cache {
        Some((bytes, f)) if bytes.as_slice() == token => *f,
        _ => match AnyFn::from_bytes(token) {
            Ok(f) => {
                *cache = Some((token.to_vec(), f));
                f
            }
            Err(e) => return refuse_all(t.count, &e.to_string(), out),
        },
    };
    for (i, arg) in items.enumerate() {
        table.set_item(slot, i as u32);
        let at = record::begin_item(out);
        // The result is encoded straight after the item's head; a
        // failure (or a panic, in the function or in the encoding)
        // replaces whatever part of it was written by the reason.
        let status = match catch_unwind(AssertUnwindSafe(|| f.call_into(arg, out))) {
            Ok(Ok(())) => Status::Ok,
            Ok(Err(e)) => {
                out.truncate(at + 4);
                match e {
                    CallError::Argument(e) => {
                        out.extend_from_slice(e.to_string().as_bytes());
                        Status::DecodeArg
                    }
                    CallError::Result(e) => {
                        out.extend_from_slice(e.to_string().as_bytes());
                        Status::EncodeResult
                    }
                }
            }
            Err(p) => {
                out.truncate(at + 4);
                out.extend_from_slice(panic_message(&*p).as_bytes());
                Status::Panicked
            }
        };
        if record::end_item(out, at, status).is_err() {
            out.truncate(at + 4);
            out.extend_from_slice(b"result over 4 GiB");
            let _ = record::end_item(out, at, Status::EncodeResult);
        }
    }
}

fn refuse_all(count: u32, why: &str, out: &mut Vec<u8>) {
    // `count` came from the record: bound the work a garbage one makes.
    for _ in 0..count.min(1 << 20) {
        let at = record::begin_item(out);
        out.extend_from_slice(why.as_bytes());
        let _ = record::end_item(out, at, Status::BadFunction);
    }
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "Box<dyn Any>".to_owned()
    }
}

/// Sends the result record for `items` (spilled when it outgrows a
/// slot), built in `rec` (reused: no allocation per task). A copy into
/// `rec` and the queue's fast copying send cost less than writing into a
/// reservation in place (callgrind: 170 against 300 instructions).
fn finish(
    base: &str,
    slot: u16,
    seq: u64,
    count: u32,
    items: &[u8],
    results: &Queue,
    rec: &mut Vec<u8>,
) -> Result<(), Error> {
    let count = count.min(1 << 20);
    rec.clear();
    if record::RESULT_HEADER + items.len() <= results.slot_size() {
        rec.extend_from_slice(&record::result_header_bytes(false, slot, seq, count));
        rec.extend_from_slice(items);
    } else {
        // The parent takes (and removes) the spill; if this process dies
        // first, the parent removes it by its name.
        let ticket = Spill::create(&result_spill_name(base, seq), items)?.hand_off();
        rec.extend_from_slice(&record::result_header_bytes(true, slot, seq, count));
        rec.extend_from_slice(&ticket.to_bytes());
    }
    results.send_bytes(rec)
}
