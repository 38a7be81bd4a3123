//! Who this process is, its children, and how many CPUs it may use.

use std::sync::Mutex;

use crate::sys::child as os;

/// A process's pid and name (Python's `current_process()`,
/// `parent_process()`, the items of `active_children()`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessInfo {
    /// Process id.
    pub pid: u32,
    /// `MainProcess` for a program's first process; a child's name as its
    /// [`Builder`](super::Builder) gave it.
    pub name: String,
}

struct Identity {
    name: String,
    parent: Option<(u32, String)>,
}

/// This process's identity once it is a child; `None`: the main process.
static IDENTITY: Mutex<Option<Identity>> = Mutex::new(None);

/// A child this process started and has not reaped.
struct Child {
    pid: u32,
    name: String,
    /// Its `Process` was dropped unjoined: a sweep reaps it.
    dropped: bool,
    daemon: bool,
    /// This process is its parent (not the forkserver).
    direct: bool,
}

static CHILDREN: Mutex<Vec<Child>> = Mutex::new(Vec::new());
static AT_EXIT: std::sync::Once = std::sync::Once::new();

fn lock<T>(m: &'static Mutex<T>) -> std::sync::MutexGuard<'static, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Records what a child is (called once in the child, before its target).
/// The children list it inherited through `fork` names its parent's
/// children: cleared.
pub(crate) fn set_identity(name: &str, parent: Option<(u32, String)>) {
    // In a forked child only this thread exists: the locks are free unless
    // this very thread held them across the fork, which the crate never
    // does. `try_lock` keeps even that case from hanging.
    if let Ok(mut g) = IDENTITY.try_lock() {
        *g = Some(Identity {
            name: name.to_owned(),
            parent,
        });
    }
    if let Ok(mut g) = CHILDREN.try_lock() {
        g.clear();
    }
}

/// This process's name (`MainProcess` unless it is a child).
pub(crate) fn current_name() -> String {
    lock(&IDENTITY)
        .as_ref()
        .map_or_else(|| "MainProcess".to_owned(), |i| i.name.clone())
}

/// This process: its pid and name.
pub fn current_process() -> ProcessInfo {
    ProcessInfo {
        pid: std::process::id(),
        name: current_name(),
    }
}

/// The process that started this one through [`Builder`](super::Builder)
/// (`None` in a program's main process). For a forkserver child, the
/// program that asked for it (its actual parent is the server).
pub fn parent_process() -> Option<ProcessInfo> {
    lock(&IDENTITY)
        .as_ref()
        .and_then(|i| i.parent.clone())
        .map(|(pid, name)| ProcessInfo { pid, name })
}

pub(crate) fn register(pid: u32, name: &str, daemon: bool, direct: bool) {
    AT_EXIT.call_once(|| {
        let _ = os::at_exit(at_exit);
    });
    lock(&CHILDREN).push(Child {
        pid,
        name: name.to_owned(),
        dropped: false,
        daemon,
        direct,
    });
}

pub(crate) fn unregister(pid: u32) {
    lock(&CHILDREN).retain(|c| c.pid != pid);
}

/// A running child whose `Process` was dropped: reaped by a later sweep.
pub(crate) fn orphan(pid: u32) {
    if let Some(c) = lock(&CHILDREN).iter_mut().find(|c| c.pid == pid) {
        c.dropped = true;
    }
    sweep();
}

/// Reaps dropped children that have ended.
pub(crate) fn sweep() {
    lock(&CHILDREN)
        .retain(|c| !c.dropped || !matches!(os::wait(c.pid, false), Ok(Some(_)) | Err(_)));
}

/// What Python does at exit: kill the daemon children, then wait for every
/// child still running. Runs at `exit`, and before a child the crate
/// started ends.
pub(crate) fn join_children() {
    // Never wait for the lock at exit: another thread may hold it.
    let Ok(mut g) = CHILDREN.try_lock() else {
        return;
    };
    let children = std::mem::take(&mut *g);
    drop(g);
    for c in children.iter().filter(|c| c.daemon) {
        let _ = os::kill(c.pid, os::SIGKILL);
    }
    for c in &children {
        if c.direct {
            let _ = os::wait(c.pid, true);
        } else if let Ok(fd) = os::Pidfd::open(c.pid) {
            let _ = fd.wait_exited(None);
        }
    }
}

extern "C" fn at_exit() {
    join_children();
}

/// The children of this process that are still running, Python's
/// `active_children()`; like it, reaps the ones that ended and whose
/// [`Process`](super::Process) was dropped.
pub fn active_children() -> Vec<ProcessInfo> {
    sweep();
    lock(&CHILDREN)
        .iter()
        .filter(|c| c.direct && !os::has_exited(c.pid) || !c.direct && os::kill(c.pid, 0).is_ok())
        .map(|c| ProcessInfo {
            pid: c.pid,
            name: c.name.clone(),
        })
        .collect()
}

/// CPUs this process may use: its affinity mask, lowered by a cgroup CPU
/// quota (v2 `cpu.max`, v1 `cpu.cfs_quota_us`), rounded up; at least 1.
/// Python's `os.process_cpu_count()` with the quota that containers set.
pub fn cpu_count() -> usize {
    let mut n = os::affinity_cpus()
        .or_else(|| std::thread::available_parallelism().ok().map(|n| n.get()))
        .unwrap_or(1);
    if let Some(q) = cgroup_quota() {
        n = n.min(q);
    }
    n.max(1)
}

/// The CPU quota of this process's cgroup, in whole CPUs (rounded up).
fn cgroup_quota() -> Option<usize> {
    let groups = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let mut best: Option<usize> = None;
    let mut take = |q: Option<usize>| {
        if let Some(q) = q {
            best = Some(best.map_or(q, |b| b.min(q)));
        }
    };
    for line in groups.lines() {
        let mut f = line.splitn(3, ':');
        let (_, ctrl, path) = (f.next()?, f.next()?, f.next()?);
        if ctrl.is_empty() {
            // v2: this group and every ancestor may set a limit.
            let mut p = std::path::PathBuf::from("/sys/fs/cgroup");
            p.push(path.trim_start_matches('/'));
            loop {
                take(read_v2(&p.join("cpu.max")));
                if p.as_os_str() == "/sys/fs/cgroup" || !p.pop() {
                    break;
                }
            }
        } else if ctrl.split(',').any(|c| c == "cpu") {
            for root in ["/sys/fs/cgroup/cpu,cpuacct", "/sys/fs/cgroup/cpu"] {
                let dir = format!("{root}{path}");
                take(read_v1(&dir).or_else(|| read_v1(root)));
            }
        }
    }
    best
}

fn quota(q: i64, period: i64) -> Option<usize> {
    (q > 0 && period > 0).then(|| usize::try_from((q + period - 1) / period).unwrap_or(1))
}

fn read_v2(file: &std::path::Path) -> Option<usize> {
    let t = std::fs::read_to_string(file).ok()?;
    let mut f = t.split_whitespace();
    let (q, p) = (f.next()?, f.next()?);
    quota(q.parse().ok()?, p.parse().ok()?)
}

fn read_v1(dir: &str) -> Option<usize> {
    let read = |f: &str| -> Option<i64> {
        std::fs::read_to_string(format!("{dir}/{f}"))
            .ok()?
            .trim()
            .parse()
            .ok()
    };
    quota(read("cpu.cfs_quota_us")?, read("cpu.cfs_period_us")?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotas_round_up_and_ignore_max() {
        assert_eq!(quota(150_000, 100_000), Some(2));
        assert_eq!(quota(100_000, 100_000), Some(1));
        assert_eq!(quota(-1, 100_000), None);
        let n = cpu_count();
        assert!(n >= 1 && n <= os::affinity_cpus().unwrap_or(n));
    }
}
