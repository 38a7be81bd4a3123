//! `shmprim`: list, inspect and clean the crate's shared-memory segments.
//!
//! ```text
//! shmprim list                      a table of every segment in /dev/shm
//! shmprim inspect NAME              header, parameters, object state, owners
//! shmprim clean [--dry-run] [NAME]  remove stale segments (all, or those named)
//! ```
//!
//! Exit codes: 0 success; 1 an operation failed (no such segment, a
//! system error, a platform without `/dev/shm` for `list`); 2 usage
//! error; 3 `inspect` found a segment whose header is refused (corrupt,
//! another format version), after printing what it could.
//!
//! The tool only reads, except `clean`, which unlinks stale segments
//! (creator dead, no live attacher; see `shmprim::segment::remove_stale`).
//! `inspect` opens the object through the public API to read its state,
//! and is recorded as an attacher for that moment.

use std::process::ExitCode;
use std::time::Duration;

use shmprim::segment::{self, Attacher, Kind, SegmentReport};
use shmprim::{
    Barrier, BoundedSemaphore, Condition, Event, JoinableQueue, Lock, Options, Pipe, Queue, RLock,
    Semaphore,
};

const USAGE: &str = "\
usage: shmprim list
       shmprim inspect NAME
       shmprim clean [--dry-run] [NAME...]

  list      every shmprim segment in /dev/shm: kind, size, creator, attachers
  inspect   one segment: header, parameters, object state, owners alive or dead
  clean     remove stale segments (creator dead, no live attacher);
            --dry-run only prints what would be removed

exit codes: 0 ok, 1 error, 2 usage, 3 inspected header refused";

const EXIT_ERROR: u8 = 1;
const EXIT_USAGE: u8 = 2;
const EXIT_REFUSED: u8 = 3;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match args.as_slice() {
        ["list"] => list(),
        ["inspect", name] => inspect(name),
        ["clean", rest @ ..] => clean(rest),
        ["help" | "--help" | "-h"] => {
            println!("{USAGE}");
            Ok(())
        }
        ["--version" | "-V"] => {
            println!("shmprim {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        _ => Err(Failure::Usage(match args.first().copied() {
            None => "no command given".to_owned(),
            Some(cmd @ ("list" | "inspect" | "clean")) => format!("wrong arguments for {cmd}"),
            Some(cmd) => format!("unknown command {cmd:?}"),
        })),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(why)) => {
            eprintln!("shmprim: {why}\n{USAGE}");
            ExitCode::from(EXIT_USAGE)
        }
        Err(Failure::Error(why)) => {
            eprintln!("shmprim: {why}");
            ExitCode::from(EXIT_ERROR)
        }
        Err(Failure::Refused) => ExitCode::from(EXIT_REFUSED),
    }
}

enum Failure {
    Usage(String),
    Error(String),
    /// Already reported on stderr.
    Refused,
}

fn error(context: &str, e: shmprim::Error) -> Failure {
    Failure::Error(format!("{context}: {e}"))
}

fn kind_name(r: &SegmentReport) -> String {
    match &r.header {
        Ok(h) => match h.kind {
            Some(k) => format!("{k:?}"),
            None => format!("kind#{}", h.kind_code),
        },
        Err(_) => "?".to_owned(),
    }
}

fn status(r: &SegmentReport) -> String {
    match &r.header {
        Err(e) => format!("refused: {e}"),
        Ok(_) if r.is_stale() => "stale".to_owned(),
        Ok(_) if r.foreign_pid_namespace => "other pid namespace".to_owned(),
        Ok(_) if !r.ready => "initialising".to_owned(),
        Ok(_) => "in use".to_owned(),
    }
}

/// The creator's liveness, or why it cannot be told.
fn creator_liveness(r: &SegmentReport) -> &'static str {
    if r.foreign_pid_namespace {
        "other pid namespace"
    } else {
        liveness(r.creator_alive)
    }
}

fn liveness(alive: bool) -> &'static str {
    if alive {
        "alive"
    } else {
        "dead"
    }
}

fn creator(r: &SegmentReport) -> String {
    match &r.header {
        Ok(h) => format!("{} ({})", h.creator_pid, creator_liveness(r)),
        Err(_) => "-".to_owned(),
    }
}

fn attached(r: &SegmentReport) -> String {
    let live = r.attachers.iter().filter(|a| a.alive).count();
    let mut s = format!("{live}/{}", r.attachers.len());
    if r.overflow > 0 {
        s.push_str(&format!("+{}", r.overflow));
    }
    s
}

fn list() -> Result<(), Failure> {
    let all = segment::list().map_err(|e| error("list", e))?;
    let rows: Vec<[String; 6]> = all
        .iter()
        .map(|r| {
            [
                r.name.clone(),
                kind_name(r),
                r.size.to_string(),
                creator(r),
                attached(r),
                status(r),
            ]
        })
        .collect();
    let head = ["NAME", "KIND", "SIZE", "CREATOR", "ATTACHED", "STATUS"].map(str::to_owned);
    let mut widths = head.clone().map(|h| h.len());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    for row in std::iter::once(&head).chain(&rows) {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        println!("{}", line.join("  ").trim_end());
    }
    Ok(())
}

fn inspect(name: &str) -> Result<(), Failure> {
    let r = segment::inspect(name).map_err(|e| error(name, e))?;
    println!("name:       {}", r.name);
    println!("size:       {} bytes", r.size);
    println!("owner:      uid {}, mode {:#o}", r.owner, r.mode);
    println!(
        "ready:      {}",
        if r.ready { "yes" } else { "no (initialising)" }
    );
    let h = match &r.header {
        Ok(h) => h,
        Err(e) => {
            eprintln!("shmprim: {name}: header refused: {e}");
            return Err(Failure::Refused);
        }
    };
    println!("kind:       {}", kind_name(&r));
    println!("version:    {}", h.version);
    println!(
        "object:     {} bytes at offset {}",
        h.object_size, h.object_offset
    );
    if h.fingerprint.tag != 0 || h.fingerprint.size != 0 {
        println!(
            "type:       size {}, align {}, tag {:#018x}",
            h.fingerprint.size, h.fingerprint.align, h.fingerprint.tag
        );
    }
    println!("len:        {}", h.len);
    println!("capacity:   {}", h.capacity);
    if let Some(link) = &h.link {
        println!("lock link:  {link}");
    }
    println!(
        "creator:    pid {} start {} ({})",
        h.creator_pid,
        h.creator_start,
        creator_liveness(&r)
    );
    print_attachers(&r.attachers, r.overflow);
    if r.ready {
        match h.kind.map(|k| object_state(name, k)) {
            Some(Ok(Some(state))) => println!("state:      {state}"),
            Some(Ok(None)) | None => {}
            Some(Err(e)) => println!("state:      unreadable ({e})"),
        }
    }
    println!("status:     {}", status(&r));
    Ok(())
}

fn print_attachers(attachers: &[Attacher], overflow: u32) {
    if attachers.is_empty() {
        println!("attached:   none");
    }
    for (i, a) in attachers.iter().enumerate() {
        let label = if i == 0 { "attached:" } else { "" };
        println!(
            "{label:<11} pid {} start {} ({})",
            a.pid,
            a.start,
            liveness(a.alive)
        );
    }
    if overflow > 0 {
        println!("            +{overflow} more, unrecorded (table full)");
    }
}

/// The object's state through its public read-only accessors; `None` for
/// kinds whose state needs the stored type (`Value`, `Array`, ...).
fn object_state(name: &str, kind: Kind) -> shmprim::Result<Option<String>> {
    // Inspecting is reading: accept what the owner chose.
    let o = Options::new()
        .open_timeout(Duration::ZERO)
        .allow_foreign_owner(true)
        .allow_loose_mode(true);
    let locked = |l: shmprim::Result<bool>| -> shmprim::Result<String> {
        Ok(if l? { "locked" } else { "unlocked" }.to_owned())
    };
    Ok(Some(match kind {
        Kind::Lock => locked(Lock::open_with(name, &o)?.is_locked())?,
        Kind::RLock => locked(RLock::open_with(name, &o)?.is_locked())?,
        Kind::Semaphore => format!("value {}", Semaphore::open_with(name, &o)?.value()),
        Kind::BoundedSemaphore => {
            format!("value {}", BoundedSemaphore::open_with(name, &o)?.value())
        }
        Kind::Event => {
            let set = Event::open_with(name, &o)?.is_set();
            if set { "set" } else { "clear" }.to_owned()
        }
        Kind::Condition => format!("{} waiting", Condition::open_with(name, &o)?.n_waiting()),
        Kind::Barrier => {
            let b = Barrier::open_with(name, &o)?;
            format!(
                "{} of {} parties waiting{}",
                b.n_waiting(),
                b.parties(),
                if b.is_broken() { ", broken" } else { "" }
            )
        }
        Kind::Queue => {
            let q = Queue::open_with(name, &o)?;
            queue_state(&q, None)
        }
        Kind::JoinableQueue => {
            let q = JoinableQueue::open_with(name, &o)?;
            queue_state(&q, Some(q.unfinished()))
        }
        Kind::Pipe => {
            let p = Pipe::open_with(name, &o)?;
            format!("ring capacity {} bytes", p.capacity())
        }
        _ => return Ok(None),
    }))
}

fn queue_state(q: &Queue, unfinished: Option<u64>) -> String {
    let mut s = format!(
        "{} of {} slots used, slot size {}",
        q.len(),
        q.capacity(),
        q.slot_size()
    );
    if let Some(n) = unfinished {
        s.push_str(&format!(", {n} unfinished tasks"));
    }
    if q.is_closed() {
        s.push_str(", closed");
    }
    s
}

fn clean(args: &[&str]) -> Result<(), Failure> {
    let mut dry_run = false;
    let mut names = Vec::new();
    for &a in args {
        match a {
            "--dry-run" | "-n" => dry_run = true,
            s if s.starts_with('-') => {
                return Err(Failure::Usage(format!("unknown option {s:?} for clean")))
            }
            s => names.push(s),
        }
    }
    let candidates: Vec<SegmentReport> = if names.is_empty() {
        segment::list().map_err(|e| error("list", e))?
    } else {
        names
            .iter()
            .map(|n| segment::inspect(n).map_err(|e| error(n, e)))
            .collect::<Result<_, _>>()?
    };
    let mut failed = false;
    for r in candidates.iter().filter(|r| r.is_stale()) {
        if dry_run {
            println!("would remove {}", r.name);
            continue;
        }
        match segment::remove_if_stale(&r.name) {
            Ok(true) => println!("removed {}", r.name),
            Ok(false) => println!("kept {} (in use again)", r.name),
            Err(shmprim::Error::NotFound) => {}
            Err(e) => {
                eprintln!("shmprim: {}: {e}", r.name);
                failed = true;
            }
        }
    }
    if failed {
        Err(Failure::Error(
            "some stale segments could not be removed".into(),
        ))
    } else {
        Ok(())
    }
}
