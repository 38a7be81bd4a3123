//! Who uses a segment, and stale debris: the attach table, `list`,
//! `inspect`, `remove_if_stale` / `remove_stale`, attach-only processes
//! that never unlink, and the security checks of `open` (owner, mode).
//!
//! Nothing here calls the global `remove_stale` on the real `/dev/shm`
//! (other tests' segments live there): the whole-directory sweep runs in a
//! private mount namespace with its own tmpfs, or is skipped with a message.
#![cfg(target_os = "linux")]

mod harness;
use harness::*;

use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::PathBuf;
use std::time::Duration;

use shmprim::segment::header::{ATTACH_TABLE_OFFSET, DOOMED_OFFSET, OVERFLOW_OFFSET};
use shmprim::segment::{self, Kind};
use shmprim::*;

fn shm_path(name: &str) -> PathBuf {
    PathBuf::from(format!("/dev/shm/{}", name.trim_start_matches('/')))
}

fn my_start() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 1..];
    after.split_whitespace().nth(19).unwrap().parse().unwrap()
}

fn write_u64(name: &str, offset: usize, v: u64) {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(shm_path(name))
        .unwrap();
    f.write_all_at(&v.to_le_bytes(), offset as u64).unwrap();
}

fn write_u32(name: &str, offset: usize, v: u32) {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(shm_path(name))
        .unwrap();
    f.write_all_at(&v.to_le_bytes(), offset as u64).unwrap();
}

fn live_pids(r: &segment::SegmentReport) -> Vec<u32> {
    r.attachers
        .iter()
        .filter(|a| a.alive)
        .map(|a| a.pid)
        .collect()
}

// A child that creates a segment of `name`, persisted (`keep=1`) or not,
// opens `extra` more handles on it, reports, and waits to be killed.
child!(fn holder(ctx) {
    let name = ctx.arg("name");
    let v = Value::<u64>::create_with(&name, 5, &Options::new().persist(true))?;
    let extra: usize = ctx.parse("extra");
    let handles: Vec<Value<u64>> = (0..extra)
        .map(|_| Value::<u64>::open(&name))
        .collect::<Result<_>>()?;
    ctx.send("ready");
    std::thread::sleep(Duration::from_secs(60));
    drop((v, handles));
});

/// A child that created `name` (persisted) and was then SIGKILLed.
fn killed_creator(name: &str, extra: usize) -> u32 {
    let mut kid = spawn("holder")
        .arg("name", name)
        .arg("extra", extra)
        .start();
    kid.expect("ready");
    let pid = kid.pid();
    kid.kill();
    kid.wait();
    pid
}

#[test]
fn the_attach_table_records_every_handle_and_forgets_it_on_drop() {
    let name = unique("table");
    let _rm = RemoveOnDrop(name.clone());
    let me = std::process::id();
    let v = Value::<u64>::create(&name, 1).unwrap();
    let r = segment::inspect(&name).unwrap();
    assert!(r.ready && r.creator_alive && !r.is_stale(), "{r:?}");
    assert_eq!(live_pids(&r), [me]);
    assert_eq!(r.attachers[0].start, my_start());
    let h = r.header.as_ref().unwrap();
    assert_eq!((h.kind, h.creator_pid), (Some(Kind::Value), me));
    let opener = Value::<u64>::open(&name).unwrap();
    assert_eq!(live_pids(&segment::inspect(&name).unwrap()), [me, me]);
    drop(opener);
    assert_eq!(live_pids(&segment::inspect(&name).unwrap()), [me]);
    // Listed too, with the same facts.
    let listed = segment::list().unwrap();
    let mine = listed.iter().find(|r| r.name == name).expect("listed");
    assert_eq!(live_pids(mine), [me]);
    drop(v);
    assert!(!shm_path(&name).exists());
}

#[test]
fn a_killed_creator_leaves_a_stale_segment_that_is_removed() {
    let name = unique("killed");
    let _rm = RemoveOnDrop(name.clone());
    let pid = killed_creator(&name, 0);
    let r = segment::inspect(&name).unwrap();
    assert!(!r.creator_alive, "{r:?}");
    assert_eq!(r.attachers.len(), 1);
    assert_eq!(r.attachers[0].pid, pid);
    assert!(!r.attachers[0].alive);
    assert!(r.is_stale(), "{r:?}");
    let listed = segment::list().unwrap();
    assert!(listed.iter().any(|r| r.name == name && r.is_stale()));
    assert!(segment::remove_if_stale(&name).unwrap());
    assert!(!shm_path(&name).exists());
    assert!(matches!(segment::inspect(&name), Err(Error::NotFound)));
}

#[test]
fn a_live_attacher_keeps_a_segment_whose_creator_died() {
    let name = unique("kept");
    let _rm = RemoveOnDrop(name.clone());
    killed_creator(&name, 0);
    let v = Value::<u64>::open(&name).unwrap();
    assert_eq!(v.get().unwrap(), 5);
    let r = segment::inspect(&name).unwrap();
    assert!(!r.creator_alive && r.in_use() && !r.is_stale(), "{r:?}");
    assert!(!segment::remove_if_stale(&name).unwrap());
    assert!(shm_path(&name).exists());
    // Once it lets go, the dead creator's row or its own may be reused:
    // the segment is stale.
    drop(v);
    assert!(segment::inspect(&name).unwrap().is_stale());
    assert!(segment::remove_if_stale(&name).unwrap());
    assert!(!shm_path(&name).exists());
}

#[test]
fn a_segment_whose_creator_runs_is_never_stale() {
    let name = unique("persist");
    let _rm = RemoveOnDrop(name.clone());
    drop(Value::<u64>::create_with(&name, 1, &Options::new().persist(true)).unwrap());
    let r = segment::inspect(&name).unwrap();
    assert!(r.attachers.is_empty(), "{r:?}");
    assert!(r.creator_alive && !r.is_stale());
    assert!(!segment::remove_if_stale(&name).unwrap());
    assert!(shm_path(&name).exists());
    Segment::unlink_name(&name).unwrap();
}

/// A row naming a live pid with another start time is a recycled pid: dead.
#[test]
fn a_recycled_pid_counts_as_dead() {
    let name = unique("recycle");
    let _rm = RemoveOnDrop(name.clone());
    killed_creator(&name, 0);
    let me = std::process::id();
    let word = (1u64 << 33) | u64::from(me);
    write_u64(&name, ATTACH_TABLE_OFFSET, word);
    write_u64(&name, ATTACH_TABLE_OFFSET + 8, my_start() + 1);
    let r = segment::inspect(&name).unwrap();
    assert_eq!(r.attachers[0].pid, me);
    assert!(!r.attachers[0].alive, "{r:?}");
    assert!(r.is_stale());
    // The same pid with its real start time is this process: in use.
    write_u64(&name, ATTACH_TABLE_OFFSET + 8, my_start());
    let r = segment::inspect(&name).unwrap();
    assert!(r.attachers[0].alive && !r.is_stale(), "{r:?}");
    assert!(!segment::remove_if_stale(&name).unwrap());
    write_u64(&name, ATTACH_TABLE_OFFSET, 0);
    assert!(segment::remove_if_stale(&name).unwrap());
}

/// More handles than rows: the rest are counted, and a count left by a
/// dead process keeps the segment for ever (documented degradation).
#[test]
fn a_full_attach_table_is_counted_and_never_stale() {
    let name = unique("overflow");
    let _rm = RemoveOnDrop(name.clone());
    killed_creator(&name, segment::header::ATTACH_SLOTS + 3);
    let r = segment::inspect(&name).unwrap();
    assert_eq!(r.attachers.len(), segment::header::ATTACH_SLOTS);
    assert_eq!(r.overflow, 4, "{r:?}");
    assert!(r.attachers.iter().all(|a| !a.alive));
    assert!(r.in_use() && !r.is_stale());
    assert!(!segment::remove_if_stale(&name).unwrap());
    // A new opener reuses a dead row rather than overflowing further.
    let v = Value::<u64>::open(&name).unwrap();
    let r = segment::inspect(&name).unwrap();
    assert_eq!(r.overflow, 4);
    assert_eq!(live_pids(&r), [std::process::id()]);
    drop(v);
    write_u32(&name, OVERFLOW_OFFSET, 0);
    assert!(segment::remove_if_stale(&name).unwrap());
}

/// An opener that finds a live cleaner's mark backs off with `NotFound`;
/// a dead cleaner's mark is ignored.
#[test]
fn an_opener_backs_off_from_a_segment_being_removed() {
    let name = unique("doomed");
    let _rm = RemoveOnDrop(name.clone());
    let v = Value::<u64>::create(&name, 3).unwrap();
    let mut cleaner = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    write_u32(&name, DOOMED_OFFSET, cleaner.id());
    assert!(matches!(Value::<u64>::open(&name), Err(Error::NotFound)));
    // Backing off left no row behind.
    assert_eq!(
        live_pids(&segment::inspect(&name).unwrap()),
        [std::process::id()]
    );
    cleaner.kill().unwrap();
    cleaner.wait().unwrap();
    assert_eq!(Value::<u64>::open(&name).unwrap().get().unwrap(), 3);
    drop(v);
}

child!(fn attach_only(ctx) {
    let name = ctx.arg("name");
    let v = Value::<u64>::open(&name)?;
    v.set(9)?;
    match ctx.arg("how").as_str() {
        "drop" => drop(v),
        "exit" => std::process::exit(0),
        "panic" => panic!("attach_only: deliberate panic"),
        other => panic!("unknown way out {other}"),
    }
});

/// A process that only opened a segment never removes its name, however it
/// ends (cpython gh-82300).
#[test]
fn a_process_that_only_attached_never_unlinks() {
    let name = unique("attach");
    let _rm = RemoveOnDrop(name.clone());
    let v = Value::<u64>::create(&name, 0).unwrap();
    for how in ["drop", "exit", "panic"] {
        let mut kid = spawn("attach_only")
            .arg("name", &name)
            .arg("how", how)
            .start();
        kid.wait();
        assert!(shm_path(&name).exists(), "{how}: the opener unlinked");
        assert_eq!(v.get().unwrap(), 9);
        v.set(0).unwrap();
    }
    // And nothing of it stays in the table.
    assert_eq!(
        live_pids(&segment::inspect(&name).unwrap()),
        [std::process::id()]
    );
}

/// Corrupt headers are reported, never removed; files without the magic
/// are not listed.
#[test]
fn corrupt_headers_are_reported_and_foreign_files_ignored() {
    let bad = unique("corrupt");
    let foreign = unique("foreign");
    let _rm = (RemoveOnDrop(bad.clone()), RemoveOnDrop(foreign.clone()));
    let mut bytes = vec![0xA5u8; 4096];
    bytes[..8].copy_from_slice(b"SHMPRIM\0");
    std::fs::write(shm_path(&bad), &bytes).unwrap();
    std::fs::write(shm_path(&foreign), b"not ours").unwrap();
    let listed = segment::list().unwrap();
    let r = listed
        .iter()
        .find(|r| r.name == bad)
        .expect("corrupt listed");
    assert!(r.header.is_err() && !r.is_stale(), "{r:?}");
    assert!(!listed.iter().any(|r| r.name == foreign));
    assert!(!segment::remove_if_stale(&bad).unwrap());
    assert!(shm_path(&bad).exists());
    assert!(matches!(segment::inspect(&foreign), Err(Error::Corrupt(_))));
}

// ------------------------------------------------------------- security

#[test]
fn open_refuses_looser_modes_unless_allowed() {
    let name = unique("loose");
    let _rm = RemoveOnDrop(name.clone());
    let _v = Value::<u64>::create_with(&name, 1, &Options::new().mode(0o644)).unwrap();
    match Value::<u64>::open(&name) {
        Err(Error::LooseMode { mode, requested }) => {
            assert_eq!((mode, requested), (0o644, 0o600))
        }
        other => panic!("expected LooseMode, got {:?}", other.map(|_| ())),
    }
    Value::<u64>::open_with(&name, &Options::new().mode(0o644)).unwrap();
    Value::<u64>::open_with(&name, &Options::new().allow_loose_mode(true)).unwrap();
    // Tighter than asked is fine.
    std::fs::set_permissions(shm_path(&name), std::fs::Permissions::from_mode(0o400)).unwrap();
    if unsafe_is_root() {
        Value::<u64>::open(&name).unwrap();
    }
}

fn unsafe_is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

#[test]
fn open_refuses_another_users_segment_unless_allowed() {
    let name = unique("owner");
    let _rm = RemoveOnDrop(name.clone());
    let _v = Value::<u64>::create(&name, 1).unwrap();
    let other = 65534; // nobody
    if std::os::unix::fs::chown(shm_path(&name), Some(other), None).is_err() {
        eprintln!(
            "open_refuses_another_users_segment_unless_allowed: skipped, cannot chown (not root)"
        );
        return;
    }
    match Value::<u64>::open(&name) {
        Err(e @ Error::ForeignOwner { owner, .. }) => {
            assert_eq!(owner, other);
            assert!(e.to_string().contains("allow_foreign_owner"), "{e}");
        }
        other => panic!("expected ForeignOwner, got {:?}", other.map(|_| ())),
    }
    Value::<u64>::open_with(&name, &Options::new().allow_foreign_owner(true)).unwrap();
}

/// An exec'd child sees no descriptor on any segment, whatever the crate
/// did before (create, open, inspect, list, anonymous). The flag itself is
/// checked on every descriptor by `sys::shm`'s
/// `every_descriptor_is_close_on_exec` unit test.
#[test]
fn no_descriptor_reaches_an_execd_child() {
    let name = unique("cloexec");
    let _rm = RemoveOnDrop(name.clone());
    let _v = Value::<u64>::create(&name, 1).unwrap();
    let _o = Value::<u64>::open(&name).unwrap();
    let _r = segment::inspect(&name).unwrap();
    let _l = segment::list().unwrap();
    let _a = Value::<u64>::anonymous(1).unwrap();
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg("for f in /proc/self/fd/*; do readlink $f; done")
        .output()
        .unwrap();
    let fds = String::from_utf8_lossy(&out.stdout);
    assert!(
        !fds.contains("/dev/shm") && !fds.contains("memfd"),
        "descriptors leaked into the child:\n{fds}"
    );
}

// ------------------------------------------------ remove_stale, whole dir

child!(fn private_shm_sweep(ctx) {
    // A private /dev/shm: the sweep sees nothing of other tests.
    if let Err(why) = private_dev_shm(c"size=4m") {
        ctx.send(&format!("skip: {why}"));
        return Ok(());
    }
    // A stale segment: made by a forked child that exits without dropping.
    // SAFETY: the child only creates a segment and _exits.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        // Forgotten, not dropped: as if killed.
        let ok = Value::<u64>::create("/stale", 1).map(std::mem::forget).is_ok();
        // SAFETY: ends the forked child at once, without unwinding.
        unsafe { libc::_exit(if ok { 0 } else { 1 }) };
    }
    let mut status = 0;
    // SAFETY: reaps our own child.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert_eq!(status, 0);
    let live = Value::<u64>::create("/live", 2)?;
    std::fs::write("/dev/shm/foreign", b"hello")?;
    let names = |v: Vec<segment::SegmentReport>| -> Vec<String> { v.into_iter().map(|r| r.name).collect() };
    assert_eq!(names(segment::list()?), ["/live", "/stale"]);
    // The CLI, in the same namespace: dry run first.
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_shmprim")).args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let table = cli(&["list"]);
    assert!(table.lines().count() == 3 && table.contains("stale") && table.contains("in use"), "{table}");
    assert_eq!(cli(&["clean", "--dry-run"]), "would remove /stale\n");
    assert!(std::path::Path::new("/dev/shm/stale").exists());
    assert_eq!(segment::remove_stale()?, ["/stale"]);
    assert_eq!(names(segment::list()?), ["/live"]);
    assert_eq!(cli(&["clean"]), "");
    assert!(std::path::Path::new("/dev/shm/foreign").exists());
    drop(live);
    ctx.send("ok");
});

#[test]
fn remove_stale_sweeps_only_stale_segments() {
    let kid = spawn("private_shm_sweep").start();
    let msg = kid
        .recv(Duration::from_secs(60))
        .unwrap_or_else(|| panic!("no report\n{}", kid.output()));
    if let Some(why) = msg.strip_prefix("skip: ") {
        eprintln!(
            "remove_stale_sweeps_only_stale_segments: skipped, no private mount namespace ({why})"
        );
    } else {
        assert_eq!(msg, "ok", "{}", kid.output());
    }
    kid.join();
}

// ------------------------------------- fault points: creator and cleaner

/// Stops this process for good at `point` (the parent kills it).
#[cfg(feature = "fault-injection")]
fn stop_at(point: &'static str) {
    if point == std::env::var("STOP_AT_POINT").as_deref().unwrap_or("") {
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    }
}

#[cfg(feature = "fault-injection")]
child!(fn paused_creator(ctx) {
    std::env::set_var("STOP_AT_POINT", ctx.arg("point"));
    shmprim::fault::set_hook(Some(stop_at));
    let _v = Value::<u64>::create(&ctx.arg("name"), 1)?;
    panic!("the fault point was not reached");
});

/// Polls `f` until it gives `Some`, for at most 30 s.
#[cfg(feature = "fault-injection")]
fn poll<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let t = std::time::Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(t.elapsed() < Duration::from_secs(30), "{what}: gave up");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A segment not yet `READY` is being created: kept while its creator
/// runs, stale once it died.
#[cfg(feature = "fault-injection")]
#[test]
fn a_segment_being_created_is_stale_only_once_its_creator_died() {
    let name = unique("paused");
    let _rm = RemoveOnDrop(name.clone());
    let mut kid = spawn("paused_creator")
        .arg("name", &name)
        .arg("point", "segment.create.before_publish")
        .start();
    let r = poll("header written", || {
        segment::inspect(&name).ok().filter(|r| r.header.is_ok())
    });
    assert!(!r.ready && r.creator_alive && !r.is_stale(), "{r:?}");
    assert!(!segment::remove_if_stale(&name).unwrap());
    let short = Options::new().open_timeout(Duration::from_millis(50));
    assert!(matches!(
        Value::<u64>::open_with(&name, &short),
        Err(Error::NotReady)
    ));
    kid.kill();
    kid.wait();
    let r = segment::inspect(&name).unwrap();
    assert!(!r.ready && !r.creator_alive && r.is_stale(), "{r:?}");
    assert!(segment::remove_if_stale(&name).unwrap());
    assert!(!shm_path(&name).exists());
}

#[cfg(feature = "fault-injection")]
child!(fn paused_cleaner(ctx) {
    std::env::set_var("STOP_AT_POINT", "segment.clean.after_doom");
    shmprim::fault::set_hook(Some(stop_at));
    segment::remove_if_stale(&ctx.arg("name"))?;
    panic!("the fault point was not reached");
});

/// The Dekker pair between a cleaner and an opener: while a live cleaner
/// has marked a segment, openers back off with `NotFound`; a killed
/// cleaner's mark is ignored, and the opener that then attaches keeps the
/// segment from the next cleaner.
#[cfg(feature = "fault-injection")]
#[test]
fn openers_back_off_from_a_live_cleaner_and_ignore_a_dead_one() {
    let name = unique("cleaner");
    let _rm = RemoveOnDrop(name.clone());
    killed_creator(&name, 0);
    let mut cleaner = spawn("paused_cleaner").arg("name", &name).start();
    let pid = cleaner.pid();
    poll("doomed mark", || {
        let mut word = [0u8; 4];
        let f = std::fs::File::open(shm_path(&name)).ok()?;
        f.read_exact_at(&mut word, DOOMED_OFFSET as u64).ok()?;
        (u32::from_le_bytes(word) == pid).then_some(())
    });
    assert!(matches!(Value::<u64>::open(&name), Err(Error::NotFound)));
    assert!(
        !segment::remove_if_stale(&name).unwrap(),
        "two cleaners at once"
    );
    cleaner.kill();
    cleaner.wait();
    let v = Value::<u64>::open(&name).unwrap();
    assert_eq!(v.get().unwrap(), 5);
    assert!(!segment::remove_if_stale(&name).unwrap());
    drop(v);
    assert!(segment::remove_if_stale(&name).unwrap());
}

// ------------------------------------------ review fixes (segments review)

/// The start time of process `pid` (field 22 of `/proc/PID/stat`).
fn start_of(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 1..];
    after.split_whitespace().nth(19).unwrap().parse().unwrap()
}

fn read_u32(name: &str, offset: usize) -> u32 {
    let mut word = [0u8; 4];
    std::fs::File::open(shm_path(name))
        .unwrap()
        .read_exact_at(&mut word, offset as u64)
        .unwrap();
    u32::from_le_bytes(word)
}

/// A mark left by another thread of this process (a cleaner running in
/// it) sends openers away like any live cleaner's (review finding 4).
#[test]
fn a_mark_of_this_very_process_sends_openers_away() {
    let name = unique("selfmark");
    let _rm = RemoveOnDrop(name.clone());
    let v = Value::<u64>::create(&name, 3).unwrap();
    write_u32(&name, DOOMED_OFFSET, std::process::id());
    write_u64(&name, DOOMED_OFFSET + 8, my_start());
    assert!(matches!(Value::<u64>::open(&name), Err(Error::NotFound)));
    write_u64(&name, DOOMED_OFFSET, 0);
    assert_eq!(Value::<u64>::open(&name).unwrap().get().unwrap(), 3);
    drop(v);
}

/// A cleaner's mark names its process by pid and start time: a live
/// process that reuses the pid is not the cleaner, and openers ignore its
/// mark (review finding 7, recycled cleaner pid).
#[test]
fn a_mark_whose_pid_was_recycled_is_ignored() {
    let name = unique("recycmark");
    let _rm = RemoveOnDrop(name.clone());
    let v = Value::<u64>::create(&name, 4).unwrap();
    let mut other = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    let start = start_of(other.id());
    write_u32(&name, DOOMED_OFFSET, other.id());
    write_u64(&name, DOOMED_OFFSET + 8, start + 1);
    let opened = Value::<u64>::open(&name).map(|o| o.get().unwrap());
    // With its real start time, the same pid is a live cleaner.
    write_u64(&name, DOOMED_OFFSET + 8, start);
    let refused = Value::<u64>::open(&name).map(|o| o.get().unwrap());
    other.kill().unwrap();
    other.wait().unwrap();
    assert_eq!(opened.unwrap(), 4, "a recycled pid's mark was honoured");
    assert!(matches!(refused, Err(Error::NotFound)), "{refused:?}");
    drop(v);
}

/// A FIFO (or anything but a regular file) under a segment's name is
/// refused at once by `inspect`, `remove_if_stale` and `list`, never waited
/// on (review finding 3).
#[test]
fn a_fifo_in_dev_shm_blocks_no_reader() {
    let name = unique("fifo");
    let _rm = RemoveOnDrop(name.clone());
    let path =
        std::ffi::CString::new(shm_path(&name).into_os_string().into_encoded_bytes()).unwrap();
    // SAFETY: a NUL-terminated path that outlives the call.
    assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0);
    let (tx, rx) = std::sync::mpsc::channel();
    let n = name.clone();
    std::thread::spawn(move || {
        let inspected = segment::inspect(&n).map(|_| ());
        let removed = segment::remove_if_stale(&n);
        let listed = segment::list().map(|l| l.iter().any(|r| r.name == n));
        let _ = tx.send((inspected, removed, listed));
    });
    let (inspected, removed, listed) = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("a reader hangs on a FIFO");
    assert!(matches!(inspected, Err(Error::Corrupt(_))), "{inspected:?}");
    assert!(!removed.unwrap());
    assert!(!listed.unwrap());
    assert!(shm_path(&name).exists());
}

child!(fn unprivileged_cleaner(ctx) {
    // SAFETY: setuid has no memory preconditions; it changes every thread.
    if unsafe { libc::setuid(65534) } != 0 {
        ctx.send(&format!("skip: setuid: {}", std::io::Error::last_os_error()));
        return Ok(());
    }
    let r = segment::remove_if_stale(&ctx.arg("name"));
    ctx.send(&format!("{r:?}"));
    // Stay alive, as a cleaner daemon would.
    std::thread::sleep(Duration::from_secs(60));
});

/// A cleaner that may not unlink a stale segment (another user's, in the
/// sticky `/dev/shm`) keeps it and leaves no mark behind: openers are not
/// locked out while it lives (review finding 2).
#[test]
fn a_cleaner_that_cannot_unlink_leaves_no_mark() {
    if !unsafe_is_root() {
        eprintln!("a_cleaner_that_cannot_unlink_leaves_no_mark: skipped, needs root to setuid");
        return;
    }
    let name = unique("foreignrm");
    let _rm = RemoveOnDrop(name.clone());
    killed_creator(&name, 0);
    std::fs::set_permissions(shm_path(&name), std::fs::Permissions::from_mode(0o666)).unwrap();
    let mut kid = spawn("unprivileged_cleaner").arg("name", &name).start();
    let msg = kid
        .recv(Duration::from_secs(30))
        .unwrap_or_else(|| panic!("no report\n{}", kid.output()));
    if let Some(why) = msg.strip_prefix("skip: ") {
        eprintln!("a_cleaner_that_cannot_unlink_leaves_no_mark: skipped ({why})");
        kid.kill();
        kid.wait();
        return;
    }
    let mark = read_u32(&name, DOOMED_OFFSET);
    let opened = Value::<u64>::open_with(&name, &Options::new().allow_loose_mode(true))
        .map(|v| v.get().unwrap());
    kid.kill();
    kid.wait();
    assert_eq!(msg, "Ok(false)");
    assert_eq!(mark, 0, "the cleaner left its mark");
    assert_eq!(opened.unwrap(), 5);
    assert!(segment::remove_if_stale(&name).unwrap());
}

child!(fn cleaner_in_new_pid_namespace(ctx) {
    // SAFETY: unshare changes which pid namespace this process's later
    // children are born in; nothing else.
    if unsafe { libc::unshare(libc::CLONE_NEWPID) } != 0 {
        ctx.send(&format!("skip: unshare: {}", std::io::Error::last_os_error()));
        return Ok(());
    }
    let name = ctx.arg("name");
    // SAFETY: the child (pid 1 of the new namespace) only runs the
    // cleaner and _exits.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        let code = match segment::remove_if_stale(&name) {
            Ok(false) => 0,
            Ok(true) => 1,
            Err(_) => 2,
        };
        // SAFETY: ends the forked child at once, without unwinding.
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: reaps our own child.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    ctx.send(&format!("exit {}", libc::WEXITSTATUS(status)));
});

/// A cleaner in another pid namespace cannot see the processes that use a
/// segment (their pids mean nothing there): it keeps the segment, however
/// dead they look from there (review finding 7, pid namespaces).
#[test]
fn a_cleaner_in_another_pid_namespace_keeps_segments() {
    let name = unique("pidns");
    let _rm = RemoveOnDrop(name.clone());
    let v = Value::<u64>::create(&name, 6).unwrap();
    let kid = spawn("cleaner_in_new_pid_namespace")
        .arg("name", &name)
        .start();
    let msg = kid
        .recv(Duration::from_secs(30))
        .unwrap_or_else(|| panic!("no report\n{}", kid.output()));
    kid.join();
    if let Some(why) = msg.strip_prefix("skip: ") {
        eprintln!("a_cleaner_in_another_pid_namespace_keeps_segments: skipped ({why})");
        return;
    }
    assert_eq!(msg, "exit 0", "the cleaner removed a segment in use");
    assert!(shm_path(&name).exists());
    assert_eq!(v.get().unwrap(), 6);
}

/// A segment that a process of another pid namespace opened (its `foreign`
/// word set) is never judged by pids again: in use, kept.
#[test]
fn a_segment_opened_from_another_pid_namespace_is_kept() {
    let name = unique("foreignns");
    let _rm = RemoveOnDrop(name.clone());
    killed_creator(&name, 0);
    assert!(segment::inspect(&name).unwrap().is_stale());
    write_u32(&name, OVERFLOW_OFFSET + 4, 1);
    let r = segment::inspect(&name).unwrap();
    assert!(
        r.foreign_pid_namespace && r.in_use() && !r.is_stale(),
        "{r:?}"
    );
    assert!(!segment::remove_if_stale(&name).unwrap());
    assert!(shm_path(&name).exists());
}

/// Stops at the point named by `STOP_AT_POINT` until the file named by
/// `PAUSE_FILE`, which it creates, is removed by the parent.
#[cfg(feature = "fault-injection")]
fn pause_at(point: &'static str) {
    if point == std::env::var("STOP_AT_POINT").as_deref().unwrap_or("") {
        let flag = std::env::var("PAUSE_FILE").unwrap();
        std::fs::write(&flag, b"").unwrap();
        while std::path::Path::new(&flag).exists() {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

#[cfg(feature = "fault-injection")]
child!(fn paused_opener(ctx) {
    std::env::set_var("STOP_AT_POINT", "segment.open.before_claim");
    std::env::set_var("PAUSE_FILE", ctx.arg("flag"));
    shmprim::fault::set_hook(Some(pause_at));
    match Value::<u64>::open(&ctx.arg("name")) {
        Err(Error::NotFound) => ctx.send("not found"),
        Ok(v) => ctx.send(&format!("opened {}", v.get()?)),
        Err(e) => ctx.send(&format!("error {e}")),
    }
});

/// An opener that checked a segment, then stalled while a cleaner removed
/// it and exited, must not attach to the nameless object: the dead
/// cleaner's mark is honoured once the name is gone (review finding 1).
#[cfg(feature = "fault-injection")]
#[test]
fn an_opener_stalled_across_a_finished_cleaner_gets_not_found() {
    let name = unique("finished");
    let _rm = RemoveOnDrop(name.clone());
    killed_creator(&name, 0);
    let flag = std::env::temp_dir().join(format!("shmprim-pause-{}", &name[1..]));
    let _ = std::fs::remove_file(&flag);
    let kid = spawn("paused_opener")
        .arg("name", &name)
        .arg("flag", flag.display())
        .start();
    poll("opener paused", || flag.exists().then_some(()));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_shmprim"))
        .args(["clean", &name])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(!shm_path(&name).exists(), "the cleaner kept it");
    std::fs::remove_file(&flag).unwrap();
    let msg = kid
        .recv(Duration::from_secs(30))
        .unwrap_or_else(|| panic!("no report\n{}", kid.output()));
    kid.join();
    assert_eq!(msg, "not found");
}

/// Re-creates the segment named by `RECREATE` when the cleaner reaches its
/// last instant before removal.
#[cfg(feature = "fault-injection")]
fn recreate_at(point: &'static str) {
    if point == "segment.clean.before_unlink" {
        let name = std::env::var("RECREATE").unwrap();
        Segment::unlink_name(&name).unwrap();
        let v = Value::<u64>::create_with(&name, 77, &Options::new().persist(true)).unwrap();
        drop(v);
    }
}

#[cfg(feature = "fault-injection")]
child!(fn racing_cleaner(ctx) {
    std::env::set_var("RECREATE", ctx.arg("name"));
    shmprim::fault::set_hook(Some(recreate_at));
    let r = segment::remove_if_stale(&ctx.arg("name"))?;
    ctx.send(if r { "removed" } else { "kept" });
});

/// The name is re-created between the cleaner's last check and its
/// removal: the cleaner removes nothing but the object it judged, and the
/// new segment keeps its name (review finding 5).
#[cfg(feature = "fault-injection")]
#[test]
fn a_name_recreated_before_the_unlink_survives_the_cleaner() {
    let name = unique("recreated");
    let _rm = RemoveOnDrop(name.clone());
    killed_creator(&name, 0);
    let kid = spawn("racing_cleaner").arg("name", &name).start();
    let msg = kid
        .recv(Duration::from_secs(30))
        .unwrap_or_else(|| panic!("no report\n{}", kid.output()));
    kid.join();
    assert!(
        shm_path(&name).exists(),
        "the new segment lost its name ({msg})"
    );
    assert_eq!(Value::<u64>::open(&name).unwrap().get().unwrap(), 77);
    assert_eq!(msg, "kept");
    // Nothing was left under a private name either.
    assert!(segment::list()
        .unwrap()
        .iter()
        .all(|r| !r.name.starts_with("/.rm-")));
}

/// A creator killed while reserving memory (before `READY`) has already
/// written its header: its segment is listed, kept while it runs, and
/// stale once it died (review finding 6).
#[cfg(feature = "fault-injection")]
#[test]
fn a_creator_killed_while_reserving_leaves_a_judgeable_segment() {
    let name = unique("reserve");
    let _rm = RemoveOnDrop(name.clone());
    let mut kid = spawn("paused_creator")
        .arg("name", &name)
        .arg("point", "segment.create.before_reserve")
        .start();
    let r = poll("header written", || {
        segment::inspect(&name).ok().filter(|r| r.header.is_ok())
    });
    assert!(!r.ready && r.creator_alive && !r.is_stale(), "{r:?}");
    assert!(segment::list().unwrap().iter().any(|r| r.name == name));
    kid.kill();
    kid.wait();
    assert!(segment::inspect(&name).unwrap().is_stale());
    assert!(segment::remove_if_stale(&name).unwrap());
    assert!(!shm_path(&name).exists());
}
