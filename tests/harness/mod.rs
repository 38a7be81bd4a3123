//! Cross-process test harness.
//!
//! Children are real processes: the test binary re-runs itself with
//! `--exact <child test> --ignored`, and the environment variable
//! [`ROLE_ENV`] tells the child which role to play. This works under plain,
//! multi-threaded `cargo test` (no `fork` of a threaded process) and under
//! nextest. Child roles are declared with [`child!`]: each becomes an
//! ignored test that does nothing unless started by the harness.
//!
//! Arguments travel as environment variables, messages from child to
//! parent as marked lines on the child's stdout, and a watchdog turns every
//! hang (a child that never finishes, a message that never comes) into a
//! test failure with the child's output attached. Children get
//! `PR_SET_PDEATHSIG = SIGKILL`, so a parent test that dies takes them along.
//!
//! The shape (spawn by role, args, messages, wait with a deadline, kill) is
//! meant to grow into the crate's public `Process` API later.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The variable naming the role a re-run test binary plays.
pub const ROLE_ENV: &str = "SHMPRIM_CHILD_ROLE";
const ARG_PREFIX: &str = "SHMPRIM_ARG_";
const MSG_MARK: &str = "@@shmprim-msg@@ ";
/// How long a child may run unless a test says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// Declares a child role: `child!(fn name(ctx) { ... })`. The body runs in
/// a child process started with [`spawn`]`("name")`; it fails the child by
/// panicking (or returning `Err`).
#[macro_export]
macro_rules! child {
    ($(#[$m:meta])* fn $name:ident($ctx:ident) $body:block) => {
        $(#[$m])*
        #[test]
        #[ignore = "child role: started by the cross-process harness"]
        fn $name() {
            $crate::harness::run_child(stringify!($name), module_path!(), |$ctx: &$crate::harness::Ctx| -> Result<(), Box<dyn std::error::Error>> {
                $body
                #[allow(unreachable_code)]
                Ok(())
            });
        }
    };
}

/// What a child sees: its arguments and a way to talk to the parent.
pub struct Ctx {
    args: HashMap<String, String>,
}

impl Ctx {
    /// The argument `key` as given to [`Spawn::arg`]; panics if missing.
    pub fn arg(&self, key: &str) -> String {
        self.args
            .get(key)
            .cloned()
            .unwrap_or_else(|| panic!("child: missing argument {key:?}"))
    }

    /// The argument `key`, parsed.
    pub fn parse<T: std::str::FromStr>(&self, key: &str) -> T
    where
        T::Err: std::fmt::Debug,
    {
        self.arg(key)
            .parse()
            .expect("child: argument does not parse")
    }

    /// Sends one line to the parent ([`Child::expect`], [`Child::recv`]).
    pub fn send(&self, msg: &str) {
        assert!(!msg.contains('\n'), "messages are single lines");
        let mut out = std::io::stdout().lock();
        writeln!(out, "{MSG_MARK}{msg}").unwrap();
        out.flush().unwrap();
    }
}

/// Runs `body` if this process was started for `role`; otherwise returns
/// at once (a plain `cargo test -- --ignored` run does nothing here).
pub fn run_child(
    role: &str,
    module: &str,
    body: impl FnOnce(&Ctx) -> Result<(), Box<dyn std::error::Error>>,
) {
    if std::env::var(ROLE_ENV).ok().as_deref() != Some(&qualified(module, role)) {
        return;
    }
    let args = std::env::vars()
        .filter_map(|(k, v)| k.strip_prefix(ARG_PREFIX).map(|k| (k.to_owned(), v)))
        .collect();
    if let Err(e) = body(&Ctx { args }) {
        panic!("child role {role} failed: {e}");
    }
}

/// `module::role` without the crate name, as libtest names the test.
fn qualified(module: &str, role: &str) -> String {
    match module.split_once("::") {
        Some((_, rest)) => format!("{rest}::{role}"),
        None => role.to_owned(),
    }
}

/// Starts building a child that plays `role` (declared with [`child!`] in
/// the same test file, at the crate root of the test unless `module` says
/// otherwise).
pub fn spawn(role: &str) -> Spawn {
    Spawn {
        role: role.to_owned(),
        args: Vec::new(),
        timeout: DEFAULT_TIMEOUT,
        wrapper: Vec::new(),
    }
}

/// A child being configured.
pub struct Spawn {
    role: String,
    args: Vec<(String, String)>,
    timeout: Duration,
    wrapper: Vec<String>,
}

impl Spawn {
    /// Passes `key = value` to the child ([`Ctx::arg`]).
    pub fn arg(mut self, key: &str, value: impl ToString) -> Self {
        self.args.push((key.to_owned(), value.to_string()));
        self
    }

    /// How long the child may live before the watchdog kills it and fails
    /// the test.
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }

    /// Runs the child through a wrapper command (`unshare ...`), which is
    /// given the test binary and its arguments to run.
    pub fn under(mut self, wrapper: &[&str]) -> Self {
        self.wrapper = wrapper.iter().map(|s| s.to_string()).collect();
        self
    }

    /// Starts the child.
    pub fn start(self) -> Child {
        let exe = std::env::current_exe().expect("current_exe");
        let mut cmd = match self.wrapper.split_first() {
            None => Command::new(exe),
            Some((program, rest)) => {
                let mut c = Command::new(program);
                c.args(rest).arg(exe);
                c
            }
        };
        cmd.args([
            "--exact",
            &self.role,
            "--ignored",
            "--nocapture",
            "--test-threads=1",
            "-q",
        ])
        .env(ROLE_ENV, &self.role)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        for (k, v) in &self.args {
            cmd.env(format!("{ARG_PREFIX}{k}"), v);
        }
        // SAFETY: prctl is async-signal-safe and touches no memory of ours;
        // it is the only thing done between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                #[cfg(target_os = "linux")]
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut inner = cmd.spawn().expect("spawn child");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = channel();
        let out = inner.stdout.take().unwrap();
        let err = inner.stderr.take().unwrap();
        let log_out = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                match line.strip_prefix(MSG_MARK) {
                    Some(msg) => {
                        let _ = tx.send(msg.to_owned());
                    }
                    None => log_out.lock().unwrap().push(line),
                }
            }
        });
        let log_err = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                log_err.lock().unwrap().push(line);
            }
        });
        Child {
            inner,
            role: self.role,
            rx,
            log,
            deadline: Instant::now() + self.timeout,
            done: None,
        }
    }
}

/// A running child process.
pub struct Child {
    inner: std::process::Child,
    role: String,
    rx: Receiver<String>,
    log: Arc<Mutex<Vec<String>>>,
    deadline: Instant,
    done: Option<ExitStatus>,
}

impl Child {
    /// The child's pid.
    pub fn pid(&self) -> u32 {
        self.inner.id()
    }

    /// The next message, or `None` if none came within `timeout`.
    pub fn recv(&self, timeout: Duration) -> Option<String> {
        self.rx.recv_timeout(timeout).ok()
    }

    /// Waits for the message `want` (panics with the child's output if
    /// another message, or nothing, comes within the child's deadline).
    pub fn expect(&self, want: &str) {
        let left = self.deadline.saturating_duration_since(Instant::now());
        match self.rx.recv_timeout(left) {
            Ok(m) if m == want => {}
            Ok(m) => panic!(
                "child {}: expected message {want:?}, got {m:?}\n{}",
                self.role,
                self.output()
            ),
            Err(_) => panic!(
                "child {}: no message {want:?} before its deadline\n{}",
                self.role,
                self.output()
            ),
        }
    }

    /// Kills the child with `SIGKILL` and reaps it.
    pub fn kill(&mut self) {
        if self.done.is_none() {
            let _ = self.inner.kill();
            self.done = self.inner.wait().ok();
        }
    }

    /// Waits for the child to exit, killing it at its deadline.
    pub fn wait(&mut self) -> ExitStatus {
        if let Some(s) = self.done {
            return s;
        }
        loop {
            if let Some(s) = self.inner.try_wait().expect("try_wait") {
                self.done = Some(s);
                return s;
            }
            if Instant::now() >= self.deadline {
                self.kill();
                panic!(
                    "child {} hung: killed by the watchdog\n{}",
                    self.role,
                    self.output()
                );
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Waits for the child and panics (with its output) unless it succeeded.
    pub fn join(mut self) {
        let status = self.wait();
        // Let the reader threads drain the pipes before we print.
        std::thread::sleep(Duration::from_millis(20));
        assert!(
            status.success(),
            "child {} failed: {status}\n{}",
            self.role,
            self.output()
        );
    }

    /// Everything the child printed (messages excluded).
    pub fn output(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Waits for every child, failing on the first that failed.
pub fn join_all(children: impl IntoIterator<Item = Child>) {
    for c in children {
        c.join();
    }
}

/// A fresh segment name for a test, under one recognisable prefix.
pub fn unique(tag: &str) -> String {
    let mut name = shmprim::segment::unique_name("sptest");
    name.push_str(
        &tag.chars()
            .filter(char::is_ascii_alphanumeric)
            .take(20)
            .collect::<String>(),
    );
    name
}

/// Removes `name` from `/dev/shm` when dropped: for segments that children
/// create and persist, so a failing test leaves nothing behind either.
pub struct RemoveOnDrop(pub String);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = shmprim::Segment::unlink_name(&self.0);
    }
}

/// Fails the whole test binary if the calling test is still running after
/// `limit`: for hangs in the parent itself (a lock that never comes).
pub struct Watchdog {
    cancel: std::sync::mpsc::Sender<()>,
}

/// Starts a [`Watchdog`]; drop it when the test is done.
pub fn watchdog(what: &'static str, limit: Duration) -> Watchdog {
    let (tx, rx) = channel::<()>();
    std::thread::spawn(move || {
        if let Err(RecvTimeoutError::Timeout) = rx.recv_timeout(limit) {
            eprintln!("watchdog: test {what} still running after {limit:?}: aborting");
            std::process::abort();
        }
    });
    Watchdog { cancel: tx }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        let _ = self.cancel.send(());
    }
}

/// Waits (in a child) until the parent opens the gate `flag` (an
/// `AtomicValue<u32>` created at 0) with [`gate_open`]; returns the value it
/// was opened with. Sleeps on the futex, so many children start together.
/// [`shmprim::Error::Timeout`] after `limit`.
pub fn gate_wait(flag: &shmprim::AtomicValue<u32>, limit: Duration) -> shmprim::Result<u32> {
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match flag.wait_while(0, Some(left)) {
            Err(shmprim::Error::Timeout) if !left.is_zero() => continue,
            other => return other,
        }
    }
}

/// Opens the gate `flag` for every child waiting in [`gate_wait`].
pub fn gate_open(flag: &shmprim::AtomicValue<u32>) {
    flag.store(1);
    flag.wake_all().expect("futex wake");
}

/// Forks; the child runs `body` and `_exit`s with its result.
///
/// Only for tests that serialise their forks (the test harness runs
/// other tests on other threads) and whose child runs code that neither
/// allocates nor takes locks another thread may hold.
#[allow(dead_code)]
pub fn fork_child(body: impl FnOnce() -> i32) -> libc::pid_t {
    // SAFETY: callers serialise their forks and the child runs only code
    // that takes no lock another thread may hold; it leaves with `_exit`,
    // never returning into the test harness.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let code = body();
        // SAFETY: ends the child at once.
        unsafe { libc::_exit(code) };
    }
    pid
}

/// Waits up to 20 s for the child and returns its exit code (killed and
/// failing after that).
#[allow(dead_code)]
pub fn reap(pid: libc::pid_t) -> i32 {
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let mut status = 0;
        // SAFETY: `pid` is our child; `status` is a valid out-pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            assert!(
                libc::WIFEXITED(status),
                "child ended by a signal: {status:#x}"
            );
            return libc::WEXITSTATUS(status);
        }
        if Instant::now() > until {
            // SAFETY: our child, not yet reaped.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            panic!("child still running after 20 s");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Moves the calling thread into a private mount namespace with a fresh
/// tmpfs (`options`, e.g. `c"size=1m"`) on `/dev/shm`, where `shm_open`
/// creates everything: a test sees a `/dev/shm` of its own (full, empty)
/// and nothing of other tests. `Err(why)` where that is not permitted (not
/// root, or no `CAP_SYS_ADMIN`): the caller skips with that message.
#[allow(dead_code)]
#[cfg(not(target_os = "linux"))]
pub fn private_dev_shm(_options: &std::ffi::CStr) -> Result<(), String> {
    Err("private mount namespaces are Linux-only".into())
}

/// See the non-Linux version above: this one does the work.
#[allow(dead_code)]
#[cfg(target_os = "linux")]
pub fn private_dev_shm(options: &std::ffi::CStr) -> Result<(), String> {
    let os_error = |what: &str| format!("{what}: {}", std::io::Error::last_os_error());
    // SAFETY: unshare changes only which namespace this thread belongs to.
    if unsafe { libc::unshare(libc::CLONE_NEWNS) } != 0 {
        return Err(os_error("unshare"));
    }
    // Stop every mount made below from propagating out of the namespace.
    // SAFETY: null source, type and data are allowed for a propagation
    // change; the target is a NUL-terminated literal.
    let rc = unsafe {
        libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(os_error("make-rprivate"));
    }
    // SAFETY: NUL-terminated strings that outlive the call.
    let rc = unsafe {
        libc::mount(
            c"tmpfs".as_ptr(),
            c"/dev/shm".as_ptr(),
            c"tmpfs".as_ptr(),
            0,
            options.as_ptr().cast(),
        )
    };
    if rc != 0 {
        return Err(os_error("mount"));
    }
    Ok(())
}
