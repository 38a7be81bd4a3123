//! Process identity: pid, process start time, liveness.
//!
//! A pid alone does not name a process for long: pids are recycled. The pair
//! (pid, start time) does, which is what segment headers record about their
//! creator (PITFALLS.md, "Robust locks": owner liveness). Pids are local to a
//! pid namespace; processes sharing a segment must share one.

/// The calling process's pid.
pub(crate) fn pid() -> u32 {
    std::process::id()
}

/// The start time of process `pid` in clock ticks since boot (field 22 of
/// `/proc/PID/stat`), or `None` where unknown (no such process, no procfs).
pub(crate) fn start_time(pid: u32) -> Option<u64> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        parse_start_time(&stat)
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        let _ = pid;
        None
    }
}

/// Field 22 of a `/proc/PID/stat` line. The command name (field 2) sits in
/// parentheses and may itself hold spaces and parentheses, so counting starts
/// after the last `)`.
#[cfg_attr(not(any(target_os = "linux", target_os = "android")), allow(dead_code))]
pub(crate) fn parse_start_time(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // `rest` starts at field 3 (state); field 22 is the 20th from there.
    rest.split_ascii_whitespace().nth(19)?.parse().ok()
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
pub(crate) fn parse_state(stat: &str) -> Option<char> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let field = rest.split_ascii_whitespace().next()?;
    let mut chars = field.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) => Some(c),
        _ => None,
    }
}

/// Whether a `/proc/PID/stat` state letter means the process has died: a
/// zombie (`Z`, killed or exited but not yet reaped by its parent) or dead
/// (`X`, `x`). Its pid still exists, but it will never run again.
fn is_dead_state(state: char) -> bool {
    matches!(state, 'Z' | 'X' | 'x')
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
/// succeeds on one) and, where start times are known, it is the same
/// process.
pub(crate) fn is_alive(pid: u32, start: u64) -> bool {
    if !id_exists(pid) {
        return false;
    }
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            if parse_state(&stat).is_some_and(is_dead_state) {
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
    fn parses_field_22_past_odd_command_names() {
        let line = "42 (a b) c)) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 98765 1000 10";
        assert_eq!(parse_start_time(line), Some(98765));
        assert_eq!(parse_start_time("garbage"), None);
        assert_eq!(parse_start_time("1 (x) S 1 2"), None);
    }

    #[test]
    fn parses_the_state_past_odd_command_names() {
        let line = "42 (a) Z (b)) R 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 98765 1000 10";
        assert_eq!(parse_state(line), Some('R'));
        assert_eq!(parse_state("7 (zombie) Z 1 7"), Some('Z'));
        assert_eq!(parse_state("7 (x)"), None);
        assert_eq!(parse_state("7 (x) ZZ 1"), None);
        assert_eq!(parse_state("garbage"), None);
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
