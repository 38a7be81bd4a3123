//! Process identity: pid, process start time, liveness.
//!
//! A pid alone does not name a process for long: pids are recycled. The pair
//! (pid, start time) does, which is what segment headers record about their
//! creator (PITFALLS.md, "Robust locks": owner liveness). Pids are local to a
//! pid namespace: segment headers also record the creator's
//! ([`pid_namespace`]), and a cleaner in another one judges nothing by them.

/// The calling process's pid.
pub(crate) fn pid() -> u32 {
    std::process::id()
}

/// The calling process's effective user id (the owner of what it creates).
pub(crate) fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// The calling process's pid namespace: the inode number of
/// `/proc/self/ns/pid`, or 0 where unknown (no procfs, not Linux). Two
/// processes compare pids meaningfully only if these agree.
pub(crate) fn pid_namespace() -> u64 {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        use std::os::unix::fs::MetadataExt;
        OWN_PIDNS
            .get(|| std::fs::metadata("/proc/self/ns/pid").ok().map(|m| m.ino()))
            .unwrap_or(0)
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        0
    }
}

/// Whether `/proc` numbers processes as the caller's pid namespace does:
/// `/proc/self` names the caller by its pid there. A procfs mounted for
/// another namespace (a process that entered a new pid namespace without
/// mounting its own `/proc`) names it otherwise, and every id looked up
/// in it would mean another task.
pub(crate) fn procfs_is_ours() -> bool {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        std::fs::read_link("/proc/self")
            .ok()
            .and_then(|p| p.to_str()?.parse::<u32>().ok())
            == Some(pid())
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        false
    }
}

/// The calling process's boot-time offset (its time namespace's, from
/// `/proc/self/timens_offsets`) in clock ticks; 0 where there is none or
/// it cannot be read. Start times in `/proc` include the reader's offset.
pub(crate) fn boottime_offset_ticks() -> i64 {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        std::fs::read("/proc/self/timens_offsets")
            .ok()
            .and_then(|t| parse_boottime_offset(&t, clock_ticks_per_second()))
            .unwrap_or(0)
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        0
    }
}

/// Clock ticks per second (`_SC_CLK_TCK`), the unit of `/proc` start times.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn clock_ticks_per_second() -> i64 {
    // SAFETY: sysconf has no preconditions.
    match unsafe { libc::sysconf(libc::_SC_CLK_TCK) } {
        // `c_long`: 64 bits here, 32 on 32-bit targets.
        #[allow(clippy::unnecessary_cast)]
        n if n > 0 => n as i64,
        _ => 100,
    }
}

/// The `boottime` line of a `timens_offsets` file (`boottime <s> <ns>`)
/// in ticks, rounded down; `None` if there is no such line.
#[cfg_attr(not(any(target_os = "linux", target_os = "android")), allow(dead_code))]
fn parse_boottime_offset(text: &[u8], ticks_per_second: i64) -> Option<i64> {
    let text = std::str::from_utf8(text).ok()?;
    let line = text
        .lines()
        .find(|l| l.split_whitespace().next() == Some("boottime"))?;
    let mut f = line.split_whitespace().skip(1);
    let secs: i64 = f.next()?.parse().ok()?;
    let nanos: i64 = f.next().map_or(Some(0), |n| n.parse().ok())?;
    let total = i128::from(secs) * 1_000_000_000 + i128::from(nanos);
    let ticks = (total * i128::from(ticks_per_second)).div_euclid(1_000_000_000);
    i64::try_from(ticks).ok()
}

/// The start time of process `pid` in clock ticks since boot (field 22 of
/// `/proc/PID/stat`), or `None` where unknown (no such process, no procfs).
pub(crate) fn start_time(pid: u32) -> Option<u64> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        if pid == self::pid() {
            return OWN_START.get(|| parse_start_time(&read_stat("/proc/self/stat")?));
        }
        parse_start_time(&read_stat(&format!("/proc/{pid}/stat"))?)
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        let _ = pid;
        None
    }
}

/// This process's start time and pid namespace never change: each is read
/// once, and again in a forked child (the cache is keyed by pid and fork
/// generation). Starting a child used to read the start time four times
/// (segment creation, its header's creator, both pipe claims).
#[cfg(any(target_os = "linux", target_os = "android"))]
struct Own {
    key: std::sync::atomic::AtomicU64,
    /// The value plus one; 0: unknown.
    value: std::sync::atomic::AtomicU64,
}

#[cfg(any(target_os = "linux", target_os = "android"))]
impl Own {
    const fn new() -> Own {
        Own {
            key: std::sync::atomic::AtomicU64::new(0),
            value: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// The cached value, or `read()`'s. No lock (a fork while another
    /// thread held it would hang the child): racing readers of one
    /// process store the same value, published by the Release store of
    /// the key.
    fn get(&self, read: impl FnOnce() -> Option<u64>) -> Option<u64> {
        use std::sync::atomic::Ordering;
        let key = crate::sys::fork::generation() << 32 | u64::from(pid());
        if self.key.load(Ordering::Acquire) != key {
            let v = read().map_or(0, |v| v.wrapping_add(1));
            self.value.store(v, Ordering::Relaxed);
            self.key.store(key, Ordering::Release);
        }
        self.value.load(Ordering::Relaxed).checked_sub(1)
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
static OWN_START: Own = Own::new();
#[cfg(any(target_os = "linux", target_os = "android"))]
static OWN_PIDNS: Own = Own::new();

/// A `/proc/.../stat` file in one read of a stack buffer (and one to see
/// its end): `std::fs::read` sizes the file first and reads in growing
/// probes, eight system calls for a 300-byte line.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn read_stat(path: &str) -> Option<Vec<u8>> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).ok()?;
    let mut buf = [0u8; 1024];
    let mut len = 0;
    loop {
        match f.read(&mut buf[len..]) {
            Ok(0) => return Some(buf[..len].to_vec()),
            Ok(n) => len += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
        if len == buf.len() {
            // Longer than any stat line seen: read the rest the slow way.
            let mut v = buf.to_vec();
            f.read_to_end(&mut v).ok()?;
            return Some(v);
        }
    }
}

/// Fields 3 and on of a `/proc/PID/stat` line, as bytes. The command name
/// (field 2) sits in parentheses and may itself hold spaces, parentheses and
/// bytes that are not UTF-8, so the fields start after the last `)`.
fn stat_fields(stat: &[u8]) -> Option<impl Iterator<Item = &[u8]>> {
    let close = stat.iter().rposition(|&b| b == b')')?;
    Some(
        stat[close + 1..]
            .split(|b| b.is_ascii_whitespace())
            .filter(|f| !f.is_empty()),
    )
}

/// Field `n` (1-based, `n >= 3`) of a `/proc/PID/stat` line as a number.
fn stat_number(stat: &[u8], n: usize) -> Option<u64> {
    let field = stat_fields(stat)?.nth(n.checked_sub(3)?)?;
    std::str::from_utf8(field).ok()?.parse().ok()
}

/// Field 22 of a `/proc/PID/stat` line (the start time).
#[cfg_attr(not(any(target_os = "linux", target_os = "android")), allow(dead_code))]
pub(crate) fn parse_start_time(stat: &[u8]) -> Option<u64> {
    stat_number(stat, 22)
}

/// Field 20 of a `/proc/PID/stat` line (the number of threads).
#[cfg_attr(not(any(target_os = "linux", target_os = "android")), allow(dead_code))]
fn parse_num_threads(stat: &[u8]) -> Option<u64> {
    stat_number(stat, 20)
}

/// Whether `tid` may be a thread of the calling process: yes for the
/// calling thread, for an id listed under `/proc/self/task`, and whenever
/// that listing cannot be trusted: no procfs, or a procfs of another pid
/// namespace (it does not list the calling thread under its own id).
pub(crate) fn may_be_own_thread(tid: u32) -> bool {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        // SAFETY: gettid has no preconditions and cannot fail.
        let me = unsafe { libc::gettid() } as u32;
        if tid == me {
            return true;
        }
        let task = std::path::Path::new("/proc/self/task");
        !task.join(me.to_string()).exists() || task.join(tid.to_string()).exists()
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        let _ = tid;
        true
    }
}

/// Field 3 (the state letter) of a `/proc/PID/stat` line, read after the
/// last `)` as in [`parse_start_time`].
#[cfg_attr(not(any(target_os = "linux", target_os = "android")), allow(dead_code))]
pub(crate) fn parse_state(stat: &[u8]) -> Option<char> {
    match stat_fields(stat)?.next()? {
        &[c] if c.is_ascii() => Some(char::from(c)),
        _ => None,
    }
}

/// Whether a `/proc/PID/stat` state letter means the task has died: a
/// zombie (`Z`, exited but not yet reaped) or dead (`X`, `x`). Of a
/// process's main thread this alone does not mean the process died: a main
/// thread that called `pthread_exit` shows `Z` while the other threads run.
#[cfg_attr(not(any(target_os = "linux", target_os = "android")), allow(dead_code))]
fn is_dead_state(state: char) -> bool {
    matches!(state, 'Z' | 'X' | 'x')
}

/// Whether the process whose main thread's `/proc/PID/stat` line is `stat`
/// has died: that thread is dead and so is every other (a real zombie shows
/// one thread, its dead main thread; a process whose main thread called
/// `pthread_exit` shows more, and a live one under `/proc/PID/task`).
#[cfg(any(target_os = "linux", target_os = "android"))]
fn has_died(pid: u32, stat: &[u8]) -> bool {
    if !parse_state(stat).is_some_and(is_dead_state) {
        return false;
    }
    if !matches!(parse_num_threads(stat), Some(n) if n > 1) {
        return true;
    }
    // Some other thread may still run: dead only if none is listed alive.
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    !tasks.flatten().any(|task| {
        std::fs::read(task.path().join("stat"))
            .ok()
            .is_some_and(|s| parse_state(&s).is_some_and(|c| !is_dead_state(c)))
    })
}

/// The calling thread's id (`gettid`); on systems without it, the process id
/// (only Linux runs the crate's own lock, which needs a real thread id).
pub(crate) fn tid() -> u32 {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        // SAFETY: gettid has no preconditions and cannot fail.
        (unsafe { libc::gettid() }) as u32
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        pid()
    }
}

/// The calling thread's start time in clock ticks since boot (field 22 of
/// `/proc/thread-self/stat`), or `None` where unknown.
pub(crate) fn this_thread_start_time() -> Option<u64> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        parse_start_time(&std::fs::read("/proc/thread-self/stat").ok()?)
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        None
    }
}

/// What can be learnt of a thread, by id, from this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(any(target_os = "linux", target_os = "android")), allow(dead_code))]
pub(crate) enum ThreadState {
    /// No such thread: it exited (or never existed) and was reaped.
    Gone,
    /// It has died (zombie or dead), not yet reaped.
    Dead,
    /// It runs; its start time where `/proc` shows it.
    Running(Option<u64>),
}

/// The state of thread `tid` (any process of our pid namespace), from
/// `/proc/TID/stat` (readable for every thread id, though only process ids
/// are listed), falling back on `kill(tid, 0)` where `/proc` hides it (no
/// procfs, `hidepid`). Unlike [`is_alive`], a dead thread is dead even when
/// other threads of its process run: the thread is what holds a lock.
pub(crate) fn thread_state(tid: u32) -> ThreadState {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        if tid != 0 {
            if let Ok(stat) = std::fs::read(format!("/proc/{tid}/stat")) {
                if parse_state(&stat).is_some_and(is_dead_state) {
                    return ThreadState::Dead;
                }
                return ThreadState::Running(parse_start_time(&stat));
            }
        }
    }
    if id_exists(tid) {
        ThreadState::Running(None)
    } else {
        ThreadState::Gone
    }
}

/// Whether a process or thread with this id exists (in our pid namespace).
/// `kill(id, 0)` sends nothing; `EPERM` still proves existence.
pub(crate) fn id_exists(id: u32) -> bool {
    let Ok(id) = libc::pid_t::try_from(id) else {
        return false;
    };
    if id <= 0 {
        return false;
    }
    // SAFETY: signal 0 performs only the existence and permission check.
    let rc = unsafe { libc::kill(id, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Whether the process recorded as (`pid`, `start`) is still alive: the pid
/// exists, it is not a zombie (dead, not yet reaped: `kill(pid, 0)` still
/// succeeds on one; a process whose main thread alone exited is no zombie)
/// and, where start times are known, it is the same process.
pub(crate) fn is_alive(pid: u32, start: u64) -> bool {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if pid == self::pid() {
        // The caller itself (a pipe end it created and has not handed on):
        // alive, if it is the process that was recorded.
        return start == 0 || start_time(pid).map_or(true, |now| now == start);
    }
    if !id_exists(pid) {
        return false;
    }
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        if let Some(stat) = read_stat(&format!("/proc/{pid}/stat")) {
            if has_died(pid, &stat) {
                return false;
            }
            if let Some(now) = parse_start_time(&stat) {
                return start == 0 || now == start;
            }
        }
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let _ = start;
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_boottime_offset() {
        let t = b"monotonic           0         0\nboottime         1000         0\n";
        assert_eq!(parse_boottime_offset(t, 100), Some(100_000));
        let t = b"monotonic 5 0\nboottime -2 500000000\n";
        assert_eq!(parse_boottime_offset(t, 100), Some(-150));
        assert_eq!(parse_boottime_offset(b"monotonic 5 0\n", 100), None);
        assert_eq!(parse_boottime_offset(b"boottime x 0\n", 100), None);
    }

    #[test]
    fn parses_field_22_past_odd_command_names() {
        let line = b"42 (a b) c)) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 3 0 98765 1000 10";
        assert_eq!(parse_start_time(line), Some(98765));
        assert_eq!(parse_num_threads(line), Some(3));
        assert_eq!(parse_start_time(b"garbage"), None);
        assert_eq!(parse_start_time(b"1 (x) S 1 2"), None);
        // A command name that is not UTF-8.
        let odd = b"42 (\xff\xfe) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 777 1000 10";
        assert_eq!(parse_start_time(odd), Some(777));
        assert_eq!(parse_state(odd), Some('S'));
    }

    #[test]
    fn parses_the_state_past_odd_command_names() {
        let line = b"42 (a) Z (b)) R 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 98765 1000 10";
        assert_eq!(parse_state(line), Some('R'));
        assert_eq!(parse_state(b"7 (zombie) Z 1 7"), Some('Z'));
        assert_eq!(parse_state(b"7 (x)"), None);
        assert_eq!(parse_state(b"7 (x) ZZ 1"), None);
        assert_eq!(parse_state(b"7 (x) \xc3\xa9 1"), None);
        assert_eq!(parse_state(b"garbage"), None);
        assert!(is_dead_state('Z') && is_dead_state('X') && !is_dead_state('S'));
    }

    /// A child killed but not reaped is a zombie: its pid exists, but it is
    /// not alive.
    #[cfg(target_os = "linux")]
    #[test]
    fn an_unreaped_killed_child_is_not_alive() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("spawn sleep");
        let id = child.id();
        let start = start_time(id).expect("procfs");
        assert!(is_alive(id, start));
        // SAFETY: sends SIGKILL to our own child, which we have not reaped.
        assert_eq!(unsafe { libc::kill(id as i32, libc::SIGKILL) }, 0);
        let t = std::time::Instant::now();
        while is_alive(id, start) {
            assert!(
                t.elapsed() < std::time::Duration::from_secs(10),
                "still alive"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(id_exists(id), "reaped already?");
        child.wait().unwrap();
    }

    /// A process whose main thread called `pthread_exit` while another
    /// thread runs shows state `Z` in `/proc/PID/stat`, but it is alive
    /// (review 2, finding 1). The child is forked from this test; its main
    /// thread starts a sleeping thread with `pthread_create` (no allocation
    /// in the forked child), then exits alone (the `exit` system call, as
    /// `pthread_exit` does).
    #[cfg(target_os = "linux")]
    #[test]
    fn a_process_whose_main_thread_exited_is_alive() {
        extern "C" fn sleeper(_: *mut libc::c_void) -> *mut libc::c_void {
            // SAFETY: sleep has no preconditions.
            unsafe { libc::sleep(30) };
            std::ptr::null_mut()
        }
        // SAFETY: the child calls only pthread_create, the exit system call
        // and _exit (no allocation, no locks taken by other threads of ours).
        let child = unsafe { libc::fork() };
        assert!(child >= 0, "fork");
        if child == 0 {
            // SAFETY: a zeroed pthread_t is a valid out-slot; `sleeper`
            // matches the start routine's signature and ignores its arg.
            unsafe {
                let mut t: libc::pthread_t = std::mem::zeroed();
                if libc::pthread_create(&mut t, std::ptr::null(), sleeper, std::ptr::null_mut())
                    != 0
                {
                    libc::_exit(1);
                }
                // What pthread_exit does in the end, without its unwinding
                // (which would abort at a Rust frame): exit this thread only.
                libc::syscall(libc::SYS_exit, 0);
                libc::_exit(2);
            }
        }
        let id = child as u32;
        let start = start_time(id).expect("procfs");
        let t = std::time::Instant::now();
        let mut stat = Vec::new();
        // Wait until the main thread has exited (state Z, two threads).
        while t.elapsed() < std::time::Duration::from_secs(10) {
            stat = std::fs::read(format!("/proc/{id}/stat")).unwrap_or_default();
            if parse_state(&stat) == Some('Z') && parse_num_threads(&stat) == Some(2) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let zombie_leader = parse_state(&stat) == Some('Z');
        let alive = is_alive(id, start);
        // SAFETY: our own unreaped child.
        unsafe { libc::kill(child, libc::SIGKILL) };
        // Once killed it is a real zombie: one thread (checked here, the
        // premise of `has_died`), and dead.
        let t = std::time::Instant::now();
        while is_alive(id, start) {
            assert!(
                t.elapsed() < std::time::Duration::from_secs(10),
                "killed, still alive"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let zstat = std::fs::read(format!("/proc/{id}/stat")).unwrap_or_default();
        let mut status = 0;
        // SAFETY: reaps our own child.
        unsafe { libc::waitpid(child, &mut status, 0) };
        assert!(
            zombie_leader,
            "the exited main thread never showed Z: {}",
            String::from_utf8_lossy(&stat)
        );
        assert!(
            alive,
            "a live process whose main thread exited was reported dead: {}",
            String::from_utf8_lossy(&stat)
        );
        assert_eq!(parse_state(&zstat), Some('Z'));
        assert!(
            parse_num_threads(&zstat).is_some_and(|n| n <= 1),
            "{}",
            String::from_utf8_lossy(&zstat)
        );
    }

    /// The cached start time and pid namespace are what `/proc` says now,
    /// and another child's start time is read, not taken from the cache.
    #[cfg(target_os = "linux")]
    #[test]
    fn own_identity_is_cached_correctly() {
        use std::os::unix::fs::MetadataExt;
        let fresh = parse_start_time(&std::fs::read("/proc/self/stat").unwrap());
        assert_eq!(start_time(pid()), fresh);
        assert_eq!(start_time(pid()), fresh, "second (cached) read");
        let ns = std::fs::metadata("/proc/self/ns/pid").unwrap().ino();
        assert_eq!(pid_namespace(), ns);
        assert_eq!(pid_namespace(), ns, "second (cached) read");
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let theirs = start_time(child.id());
        let read = read_stat(&format!("/proc/{}/stat", child.id()));
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(theirs, parse_start_time(&read.unwrap()));
        assert!(is_alive(pid(), fresh.unwrap()));
        assert!(!is_alive(pid(), fresh.unwrap() + 1), "another start time");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_is_alive_and_recycled_pids_are_not() {
        let me = pid();
        let start = start_time(me).expect("procfs");
        assert!(is_alive(me, start));
        assert!(!is_alive(me, start + 1));
        assert!(!id_exists(0));
        assert!(!id_exists(u32::MAX));
    }
}
