//! The segment layer (`src/segment`) and the typed errors of every `open`:
//! name validation, exclusive creation and modes, garbage and tampered
//! headers, wrong types and kinds, racing `open_or_create`, unlink while
//! attached, descriptor hygiene, persistence, and a full `/dev/shm`.
#![cfg(target_os = "linux")] // /dev/shm, procfs and mount namespaces

mod harness;
use harness::*;

use std::fs::OpenOptions;
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::PathBuf;
use std::sync::{PoisonError, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use shmprim::segment::{Kind, FORMAT_VERSION, MAX_NAME_LEN};
use shmprim::*;

// ---------------------------------------------------------------- helpers

/// One test here may fill `/dev/shm` for a moment (see
/// `out_of_space_when_dev_shm_is_full`); it takes this for writing, every
/// other test for reading, so none of them sees a spurious `OutOfSpace`.
static SHM_SPACE: RwLock<()> = RwLock::new(());

fn space() -> RwLockReadGuard<'static, ()> {
    SHM_SPACE.read().unwrap_or_else(PoisonError::into_inner)
}

/// Where glibc keeps the POSIX shared-memory object `name`.
fn shm_path(name: &str) -> PathBuf {
    PathBuf::from(format!("/dev/shm/{}", name.trim_start_matches('/')))
}

/// Writes `bytes` as a file of mode 0600, as the crate would create it:
/// opening a looser one is refused before its header is read.
fn write_0600(path: &std::path::Path, bytes: &[u8]) {
    std::fs::write(path, bytes).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// Open options for garbage: do not wait long for a "creator".
fn short() -> Options {
    Options::new().open_timeout(SHORT)
}
const SHORT: Duration = Duration::from_millis(50);
/// A very generous upper bound for calls that should return at once (or
/// right after `SHORT`): only catches hangs, never measures speed.
const GENEROUS: Duration = Duration::from_secs(5);

/// The error of `r`, which must have failed.
fn fail<T>(what: &str, r: Result<T>) -> Error {
    match r {
        Ok(_) => panic!("{what}: expected an error, got Ok"),
        Err(e) => e,
    }
}

/// A fixed-seed xorshift64, for reproducible garbage.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// Every typed opener, as `(what, open)`.
type Opener = (&'static str, fn(&str, &Options) -> Result<()>);

fn openers() -> [Opener; 6] {
    [
        ("Value<u64>", |n, o| Value::<u64>::open_with(n, o).map(drop)),
        ("Array<u32>", |n, o| Array::<u32>::open_with(n, o).map(drop)),
        ("Lock", |n, o| Lock::open_with(n, o).map(drop)),
        ("RLock", |n, o| RLock::open_with(n, o).map(drop)),
        ("AtomicValue<u64>", |n, o| {
            AtomicValue::<u64>::open_with(n, o).map(drop)
        }),
        ("Segment", |n, o| Segment::open_with(n, o).map(drop)),
    ]
}

/// Descriptors of this process whose target satisfies `pred`, as
/// `"fd -> target"`.
fn fds_where(pred: impl Fn(&str) -> bool) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd").expect("read /proc/self/fd") {
        let entry = entry.expect("fd entry");
        if let Ok(target) = std::fs::read_link(entry.path()) {
            let target = target.to_string_lossy().into_owned();
            if pred(&target) {
                out.push(format!(
                    "{} -> {target}",
                    entry.file_name().to_string_lossy()
                ));
            }
        }
    }
    out
}

/// Descriptors pointing at the shared-memory object `name` (unlinked or
/// not).
fn fds_at(name: &str) -> Vec<String> {
    let path = shm_path(name).to_string_lossy().into_owned();
    fds_where(|t| t == path || t.strip_prefix(path.as_str()) == Some(" (deleted)"))
}

/// Free bytes in `/dev/shm` for an unprivileged writer.
fn shm_free_bytes() -> u64 {
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: the path is a NUL-terminated literal; `st` is a writable
    // statvfs buffer that the call fills on success.
    let rc = unsafe { libc::statvfs(c"/dev/shm".as_ptr(), st.as_mut_ptr()) };
    assert_eq!(
        rc,
        0,
        "statvfs(/dev/shm): {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: statvfs returned 0, so it filled `st`.
    let st = unsafe { st.assume_init() };
    #[allow(clippy::unnecessary_cast)] // the field types differ between targets
    let free = st.f_bavail as u64 * st.f_frsize as u64;
    free
}

/// Header field offsets (src/segment/header.rs).
mod off {
    pub const MAGIC: u64 = 0;
    pub const VERSION: u64 = 8;
    pub const STATE: u64 = 12;
    pub const KIND: u64 = 16;
    pub const HEADER_SIZE: u64 = 20;
    pub const TOTAL_SIZE: u64 = 24;
    pub const OBJECT_OFFSET: u64 = 32;
    pub const OBJECT_SIZE: u64 = 40;
    pub const TYPE_SIZE: u64 = 48;
    pub const PARAM_LEN: u64 = 72;
    pub const FLAGS: u64 = 92;
    pub const CHECKSUM: u64 = 104;
    pub const LINK: u64 = 112;
}
const HEADER: usize = shmprim::segment::header::HEADER_SIZE;
const READY: u32 = 0x5244_5952;

fn fnv1a(bytes: &[u8], mut h: u64) -> u64 {
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The header checksum as documented in src/segment/header.rs: FNV-1a over
/// every field but `state` (each as a little-endian u64, in layout order,
/// then a zero word for the checksum itself), then the 256 link bytes.
fn checksum_of(h: &[u8]) -> u64 {
    let u32_at = |o: usize| u32::from_le_bytes(h[o..o + 4].try_into().unwrap()) as u64;
    let u64_at = |o: usize| u64::from_le_bytes(h[o..o + 8].try_into().unwrap());
    let fields = [
        u64_at(0),
        u32_at(8),
        u32_at(16),
        u32_at(20),
        u64_at(24),
        u64_at(32),
        u64_at(40),
        u64_at(48),
        u64_at(56),
        u64_at(64),
        u64_at(72),
        u64_at(80),
        u32_at(88),
        u32_at(92),
        u64_at(96),
        u64_at(392), // creator_pidns
    ];
    let mut sum = 0xcbf2_9ce4_8422_2325;
    for f in fields {
        sum = fnv1a(&f.to_le_bytes(), sum);
    }
    fnv1a(&h[112..368], sum)
}

/// Reads the header, applies `edit`, recomputes the checksum so that only
/// the deeper checks can catch the edit, and writes it back.
fn reseal(f: &std::fs::File, edit: impl FnOnce(&mut [u8])) {
    let mut h = vec![0u8; HEADER];
    f.read_exact_at(&mut h, 0).unwrap();
    edit(&mut h);
    let sum = checksum_of(&h);
    h[off::CHECKSUM as usize..][..8].copy_from_slice(&sum.to_le_bytes());
    f.write_all_at(&h, 0).unwrap();
}

fn put(h: &mut [u8], offset: u64, bytes: &[u8]) {
    h[offset as usize..][..bytes.len()].copy_from_slice(bytes);
}

// ------------------------------------------------------------------ names

#[test]
fn invalid_names_are_refused_with_their_reason() {
    let _s = space();
    // A name glibc's shm_open would accept: without validation this would
    // create /dev/shm/<it>.
    let no_slash = format!("sptest-noslash-{}", std::process::id());
    let too_long = format!("/{}", "x".repeat(MAX_NAME_LEN));
    let cases: [(&str, NameError); 7] = [
        ("", NameError::Empty),
        (&no_slash, NameError::NoLeadingSlash),
        ("/a/b", NameError::InnerSlash),
        ("//", NameError::InnerSlash),
        ("/a\0b", NameError::Nul),
        (&too_long, NameError::TooLong),
        ("/", NameError::NothingAfterSlash),
    ];
    type Make = (&'static str, fn(&str) -> Result<()>);
    let makers: [Make; 10] = [
        ("segment::check_name", shmprim::segment::check_name),
        ("Segment::create", |n| Segment::create(n, 64).map(drop)),
        ("Segment::open", |n| Segment::open(n).map(drop)),
        ("Segment::open_or_create", |n| {
            Segment::open_or_create(n, 64).map(drop)
        }),
        ("Segment::unlink_name", Segment::unlink_name),
        ("Value::create", |n| Value::<u64>::create(n, 1).map(drop)),
        ("Value::open_or_create", |n| {
            Value::<u64>::open_or_create(n, 1).map(drop)
        }),
        ("Array::create", |n| Array::<u8>::create(n, 4).map(drop)),
        ("Lock::open", |n| Lock::open(n).map(drop)),
        ("AtomicValue::create", |n| {
            AtomicValue::<u32>::create(n, 0).map(drop)
        }),
    ];
    for (what, make) in makers {
        for (name, want) in &cases {
            match make(name) {
                Err(Error::InvalidName { name: got, reason }) => {
                    assert_eq!(reason, *want, "{what}({name:?})");
                    assert_eq!(&got, name, "{what}: the error names the name");
                }
                Err(e) => panic!("{what}({name:?}): expected InvalidName({want:?}), got {e:?}"),
                Ok(()) => panic!("{what}({name:?}): accepted"),
            }
        }
    }
    assert!(
        !shm_path(&no_slash).exists(),
        "a name without '/' reached shm_open"
    );
}

#[test]
fn longest_name_is_accepted_one_more_is_not() {
    let _s = space();
    let mut name = unique("maxlen");
    while name.len() < MAX_NAME_LEN {
        name.push('x');
    }
    let _rm = RemoveOnDrop(name.clone());
    shmprim::segment::check_name(&name).expect("check_name agrees");
    let seg = Segment::create(&name, 64).expect("a name of MAX_NAME_LEN bytes");
    assert!(shm_path(&name).exists());
    assert_eq!(seg.name(), Some(name.as_str()));
    let longer = format!("{name}y");
    #[cfg(target_os = "linux")]
    {
        // Every name the OS accepts: NAME_MAX (255) bytes after the `/`,
        // and the OS itself refuses one more.
        assert_eq!(name.len(), 1 + 255);
        let e = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(shm_path(&longer))
            .expect_err("the OS took a 256-byte name");
        assert_eq!(e.raw_os_error(), Some(libc::ENAMETOOLONG), "{e}");
    }
    assert!(matches!(
        Segment::create(&longer, 64),
        Err(Error::InvalidName {
            reason: NameError::TooLong,
            ..
        })
    ));
    drop(seg);
    assert!(!shm_path(&name).exists(), "creator's drop unlinks");
}

// ----------------------------------------------------- create, open, modes

#[test]
fn create_is_exclusive_and_a_failed_create_keeps_the_original() {
    let _s = space();
    let name = unique("excl");
    let first = Segment::create(&name, 100).unwrap();
    assert!(first.is_creator());
    assert!(first.data_len() >= 100);
    let e = fail("second Segment::create", Segment::create(&name, 100));
    assert!(matches!(e, Error::AlreadyExists), "{e:?}");
    let e = fail("Value::create on it", Value::<u64>::create(&name, 1));
    assert!(matches!(e, Error::AlreadyExists), "{e:?}");
    let e = fail("Lock::create on it", Lock::create(&name));
    assert!(matches!(e, Error::AlreadyExists), "{e:?}");
    let e = fail(
        "AtomicValue::create on it",
        AtomicValue::<u8>::create(&name, 1),
    );
    assert!(matches!(e, Error::AlreadyExists), "{e:?}");
    // The failed creates neither removed nor changed the original.
    assert!(
        shm_path(&name).exists(),
        "a failed create unlinked the name"
    );
    let opened = Segment::open(&name).unwrap();
    assert!(!opened.is_creator());
    assert_eq!(opened.data_len(), first.data_len());
    // SAFETY: both pointers are inside their mappings (data_len >= 100);
    // this test is the only user of the segment; raw accesses, no references.
    unsafe {
        first.data_ptr().add(99).write_volatile(0xA5);
        assert_eq!(
            opened.data_ptr().add(99).read_volatile(),
            0xA5,
            "not the same segment"
        );
    }
    drop(opened);
    assert!(
        shm_path(&name).exists(),
        "an opener's drop unlinked the name"
    );
    drop(first);
    assert!(
        !shm_path(&name).exists(),
        "the creator's drop left the name"
    );
}

#[test]
fn opening_a_missing_name_is_not_found_and_creates_nothing() {
    let _s = space();
    let name = unique("missing");
    for (what, open) in openers() {
        let e = fail(what, open(&name, &Options::new()));
        assert!(matches!(e, Error::NotFound), "{what}: {e:?}");
    }
    assert!(matches!(Value::<u64>::open(&name), Err(Error::NotFound)));
    assert!(matches!(Lock::open(&name), Err(Error::NotFound)));
    assert!(matches!(
        Array::<u8>::open_len(&name, 3),
        Err(Error::NotFound)
    ));
    assert!(!shm_path(&name).exists(), "an open created the name");
}

fn mode_of(name: &str) -> u32 {
    std::fs::metadata(shm_path(name))
        .unwrap()
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn default_mode_is_0600() {
    let _s = space();
    let names: Vec<String> = (0..4).map(|i| unique(&format!("mode{i}"))).collect();
    let seg = Segment::create(&names[0], 64).unwrap();
    let val = Value::<u64>::create(&names[1], 0).unwrap();
    let lock = Lock::create(&names[2]).unwrap();
    let atom = AtomicValue::<u32>::create(&names[3], 0).unwrap();
    for n in &names {
        assert_eq!(mode_of(n), 0o600, "{n}: mode {:o}", mode_of(n));
    }
    drop((seg, val, lock, atom));
}

child!(fn umask_child(ctx) {
    let name = ctx.arg("name");
    let umask = u32::from_str_radix(&ctx.arg("umask"), 8)?;
    let opts = match ctx.arg("mode").as_str() {
        "default" => Options::new(),
        m => Options::new().mode(u32::from_str_radix(m, 8)?),
    };
    // SAFETY: umask only replaces this process's file-creation mask; this
    // child process exists for this one check.
    unsafe { libc::umask(umask as libc::mode_t) };
    let seg = Segment::create_with(&name, 64, &opts)?;
    let seg_mode = mode_of(&name);
    drop(seg);
    let lock = Lock::create_with(&name, &opts)?;
    let lock_mode = mode_of(&name);
    drop(lock);
    ctx.send(&format!("{seg_mode:o} {lock_mode:o}"));
});

#[test]
fn explicit_mode_is_applied_exactly_whatever_the_umask() {
    let _s = space();
    // (umask, mode asked for, mode expected)
    let cases = [
        ("022", "640", "640"),
        ("077", "640", "640"),
        ("022", "666", "666"),
        ("027", "604", "604"),
        ("077", "default", "600"),
        ("000", "default", "600"),
    ];
    let names: Vec<String> = (0..cases.len())
        .map(|i| unique(&format!("umask{i}")))
        .collect();
    let _rm: Vec<RemoveOnDrop> = names.iter().cloned().map(RemoveOnDrop).collect();
    let kids: Vec<Child> = cases
        .iter()
        .zip(&names)
        .map(|((umask, mode, _), name)| {
            spawn("umask_child")
                .arg("name", name)
                .arg("umask", umask)
                .arg("mode", mode)
                .start()
        })
        .collect();
    for (kid, (_, _, want)) in kids.iter().zip(&cases) {
        kid.expect(&format!("{want} {want}"));
    }
    join_all(kids);
    for n in &names {
        assert!(!shm_path(n).exists(), "{n} left behind");
    }
}

// ------------------------------------------------------- garbage headers

/// Writes `bytes` as the shared-memory object of a fresh name, opens it
/// as every kind, and checks each error with `check(what, error, elapsed)`.
/// Also checks that opening changed nothing in the file.
fn open_garbage(tag: &str, bytes: &[u8], check: impl Fn(&str, &Error, Duration)) {
    let name = unique(tag);
    let _rm = RemoveOnDrop(name.clone());
    write_0600(&shm_path(&name), bytes);
    for (what, open) in openers() {
        let t = Instant::now();
        let r = open(&name, &short());
        let elapsed = t.elapsed();
        let e = fail(&format!("{tag}: {what}"), r);
        check(&format!("{tag}: {what}"), &e, elapsed);
        assert!(elapsed < SHORT + GENEROUS, "{tag}: {what} took {elapsed:?}");
    }
    assert_eq!(
        std::fs::read(shm_path(&name)).unwrap(),
        bytes,
        "{tag}: opening modified the object"
    );
    assert!(
        fds_at(&name).is_empty(),
        "{tag}: descriptors left open: {:?}",
        fds_at(&name)
    );
}

fn not_ready_after_timeout(what: &str, e: &Error, elapsed: Duration) {
    assert!(
        matches!(e, Error::NotReady),
        "{what}: expected NotReady, got {e:?}"
    );
    assert!(
        elapsed >= SHORT,
        "{what}: gave up after {elapsed:?}, before the open timeout"
    );
}

fn corrupt(what: &str, e: &Error, _: Duration) {
    assert!(
        matches!(e, Error::Corrupt(_)),
        "{what}: expected Corrupt, got {e:?}"
    );
}

#[test]
fn all_zero_segment_is_not_ready() {
    let _s = space();
    // state 0: looks like a creator still initialising.
    open_garbage("zeros", &[0u8; 4096], not_ready_after_timeout);
}

#[test]
fn empty_segment_is_not_ready() {
    let _s = space();
    // size 0: looks like a creator between shm_open and ftruncate.
    open_garbage("empty", &[], not_ready_after_timeout);
}

#[test]
fn all_ones_segment_is_corrupt() {
    let _s = space();
    open_garbage("ones", &[0xFFu8; 4096], corrupt);
}

#[test]
fn random_segment_is_corrupt() {
    let _s = space();
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    for round in 0..4 {
        let bytes = rng.bytes(512 + 1024 * round);
        open_garbage(&format!("rand{round}"), &bytes, corrupt);
    }
}

#[test]
fn random_segment_with_magic_and_ready_state_is_corrupt() {
    let _s = space();
    // Gets past the state and magic checks: the checksum must catch it.
    let mut rng = XorShift(0x0123_4567_89AB_CDEF);
    let mut bytes = rng.bytes(4096);
    put(&mut bytes, off::MAGIC, b"SHMPRIM\0");
    put(&mut bytes, off::VERSION, &FORMAT_VERSION.to_le_bytes());
    put(&mut bytes, off::STATE, &READY.to_le_bytes());
    open_garbage("randready", &bytes, corrupt);
}

#[test]
fn segment_shorter_than_its_header_is_corrupt() {
    let _s = space();
    // A creator goes from size 0 to its full size in one ftruncate, so a
    // size between 1 and HEADER_SIZE - 1 is never "still initialising": Corrupt, once
    // the open timeout has passed.
    let check = |what: &str, e: &Error, elapsed: Duration| {
        assert!(
            matches!(e, Error::Corrupt(_)),
            "{what}: expected Corrupt, got {e:?}"
        );
        assert!(elapsed >= SHORT, "{what}: gave up after {elapsed:?}");
    };
    open_garbage("short100", &[0xABu8; 100], check);
    open_garbage("short511", &[0u8; HEADER - 1], check);
    open_garbage("short1", &[0u8], check);
}

#[test]
fn valid_header_with_garbage_object_is_corrupt() {
    let _s = space();
    // Real headers (right kind, type, size, checksum) in front of objects
    // that are all ones or all zeros: the mutex check must refuse them.
    let lock_name = unique("gobjlock");
    let rlock_name = unique("gobjrlock");
    let value_name = unique("gobjvalue");
    let array_name = unique("gobjarray");
    let lock = Lock::create(&lock_name).unwrap();
    let rlock = RLock::create(&rlock_name).unwrap();
    let value = Value::<u64>::create(&value_name, 5).unwrap();
    let array = Array::<u32>::create(&array_name, 8).unwrap();
    type Open = fn(&str, &Options) -> Result<()>;
    let cases: [(&str, Open); 4] = [
        (&lock_name, |n, o| Lock::open_with(n, o).map(drop)),
        (&rlock_name, |n, o| RLock::open_with(n, o).map(drop)),
        (&value_name, |n, o| Value::<u64>::open_with(n, o).map(drop)),
        (&array_name, |n, o| Array::<u32>::open_with(n, o).map(drop)),
    ];
    for (orig, open) in cases {
        open(orig, &short()).expect("the original opens");
        let bytes = std::fs::read(shm_path(orig)).unwrap();
        for fill in [0x00u8, 0xFF] {
            let copy = unique("gobjcopy");
            let _rm = RemoveOnDrop(copy.clone());
            let mut garbage = bytes.clone();
            garbage[HEADER..].fill(fill);
            write_0600(&shm_path(&copy), &garbage);
            let e = fail(orig, open(&copy, &short()));
            assert!(
                matches!(e, Error::Corrupt(_)),
                "{orig} object filled with {fill:#x}: {e:?}"
            );
            // The untouched copy opens: it was the object that was refused.
            write_0600(&shm_path(&copy), &bytes);
            open(&copy, &short()).expect("an intact copy opens");
        }
    }
    drop((lock, rlock, value, array));
}

// -------------------------------------------------- a tampered real header

fn open_value(name: &str) -> Result<Value<u64>> {
    Value::<u64>::open_with(name, &short())
}

#[test]
fn tampered_header_fields_are_refused() {
    let _s = space();
    let name = unique("tamper");
    let creator = Value::<u64>::create(&name, 42).unwrap();
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(shm_path(&name))
        .unwrap();
    let mut original = vec![0u8; HEADER];
    f.read_exact_at(&mut original, 0).unwrap();
    let stored_sum = u64::from_le_bytes(original[104..112].try_into().unwrap());
    assert_eq!(
        checksum_of(&original),
        stored_sum,
        "the test's checksum differs from the documented one"
    );
    let restore = || {
        f.write_all_at(&original, 0).unwrap();
        assert_eq!(
            open_value(&name).unwrap().get().unwrap(),
            42,
            "restored header refused"
        );
    };

    // Version: refused before anything else, by every opener.
    f.write_all_at(&(FORMAT_VERSION + 1).to_le_bytes(), off::VERSION)
        .unwrap();
    for (what, open) in openers() {
        match fail(what, open(&name, &short())) {
            Error::VersionMismatch { found, expected } => {
                assert_eq!(
                    (found, expected),
                    (FORMAT_VERSION + 1, FORMAT_VERSION),
                    "{what}"
                );
            }
            e => panic!("{what}: expected VersionMismatch, got {e:?}"),
        }
    }
    restore();

    // Fields under the checksum, changed without resealing: Corrupt.
    let edits: [(&str, u64, Vec<u8>); 7] = [
        ("param_len", off::PARAM_LEN, 2u64.to_le_bytes().to_vec()),
        ("magic", off::MAGIC, b"SHMPRIX\0".to_vec()),
        ("kind", off::KIND, Kind::Lock.code().to_le_bytes().to_vec()),
        (
            "total_size",
            off::TOTAL_SIZE,
            4096u64.to_le_bytes().to_vec(),
        ),
        ("type_size", off::TYPE_SIZE, 4u64.to_le_bytes().to_vec()),
        (
            "checksum",
            off::CHECKSUM,
            (stored_sum ^ 1).to_le_bytes().to_vec(),
        ),
        ("link", off::LINK + 7, vec![b'x']),
    ];
    for (what, at, bytes) in edits {
        f.write_all_at(&bytes, at).unwrap();
        let e = fail(what, open_value(&name));
        assert!(matches!(e, Error::Corrupt(_)), "{what} changed: {e:?}");
        restore();
    }

    // The state word: 0 is "not yet published", anything else but READY
    // is garbage.
    f.write_all_at(&0u32.to_le_bytes(), off::STATE).unwrap();
    let t = Instant::now();
    let e = fail("state 0", open_value(&name));
    assert!(matches!(e, Error::NotReady), "state 0: {e:?}");
    assert!(
        t.elapsed() >= SHORT,
        "state 0: gave up early ({:?})",
        t.elapsed()
    );
    restore();
    f.write_all_at(&1u32.to_le_bytes(), off::STATE).unwrap();
    let e = fail("state 1", open_value(&name));
    assert!(matches!(e, Error::Corrupt(_)), "state 1: {e:?}");
    restore();

    // Resealed (valid checksum): the checks behind the checksum must catch
    // each of these.
    type Edit = fn(&mut [u8]);
    type Check = fn(&Error) -> bool;
    let resealed: [(&str, Edit, Check); 9] = [
        (
            "param_len 2",
            |h| put(h, off::PARAM_LEN, &2u64.to_le_bytes()),
            |e| {
                matches!(
                    e,
                    Error::LengthMismatch {
                        found: 2,
                        expected: 1
                    }
                )
            },
        ),
        (
            "kind Lock",
            |h| put(h, off::KIND, &Kind::Lock.code().to_le_bytes()),
            |e| {
                matches!(e, Error::KindMismatch { found, expected }
                if *found == Kind::Lock.code() && *expected == Kind::Value.code())
            },
        ),
        (
            "type_size 4",
            |h| put(h, off::TYPE_SIZE, &4u64.to_le_bytes()),
            |e| {
                matches!(
                    e,
                    Error::LayoutMismatch {
                        found: (4, _, _),
                        expected: (8, _, _)
                    }
                )
            },
        ),
        (
            "total_size 1 TiB",
            |h| put(h, off::TOTAL_SIZE, &(1u64 << 40).to_le_bytes()),
            |e| matches!(e, Error::Corrupt(_)),
        ),
        (
            "header_size 256",
            |h| put(h, off::HEADER_SIZE, &256u32.to_le_bytes()),
            |e| matches!(e, Error::Corrupt(_)),
        ),
        (
            "object_offset 0",
            |h| put(h, off::OBJECT_OFFSET, &0u64.to_le_bytes()),
            |e| matches!(e, Error::Corrupt(_)),
        ),
        (
            "object_offset misaligned",
            |h| put(h, off::OBJECT_OFFSET, &520u64.to_le_bytes()),
            |e| matches!(e, Error::Corrupt(_)),
        ),
        (
            "object_size huge",
            |h| put(h, off::OBJECT_SIZE, &(u64::MAX - 8).to_le_bytes()),
            |e| matches!(e, Error::Corrupt(_)),
        ),
        (
            "link not UTF-8",
            |h| {
                put(h, off::FLAGS, &1u32.to_le_bytes());
                put(h, off::LINK, &[0xFF; 16]);
            },
            |e| matches!(e, Error::Corrupt(_)),
        ),
    ];
    for (what, edit, ok) in resealed {
        reseal(&f, edit);
        let e = fail(what, open_value(&name));
        assert!(ok(&e), "{what}: unexpected {e:?}");
        restore();
    }
    reseal(&f, |h| {
        put(h, off::FLAGS, &1u32.to_le_bytes());
        put(h, off::LINK, b"no-leading-slash\0");
    });
    let e = fail("link invalid name", open_value(&name));
    assert!(matches!(e, Error::Corrupt(_)), "link invalid name: {e:?}");
    restore();

    // Size changes behind the creator's back: Corrupt, never SIGBUS. The
    // creator's mapping is not touched again: only dropped.
    let total = f.metadata().unwrap().len();
    f.set_len(total + 4096).unwrap();
    let e = fail("grown", open_value(&name));
    assert!(matches!(e, Error::Corrupt(_)), "grown: {e:?}");
    f.set_len(HEADER as u64).unwrap();
    let e = fail("truncated to the header", open_value(&name));
    assert!(
        matches!(e, Error::Corrupt(_)),
        "truncated to the header: {e:?}"
    );
    for (what, open) in openers() {
        let e = fail(what, open(&name, &short()));
        assert!(
            matches!(e, Error::Corrupt(_)),
            "{what} after truncation: {e:?}"
        );
    }
    f.set_len(100).unwrap();
    let e = fail("truncated below the header", open_value(&name));
    assert!(
        matches!(e, Error::Corrupt(_)),
        "truncated below the header: {e:?}"
    );
    drop(f);
    drop(creator);
    assert!(!shm_path(&name).exists());
}

/// A lock header whose object lies at the very end of the segment (size
/// 0) passes every header check but leaves no room for the mutex: the lock
/// handles must refuse it, not read past the mapping.
#[test]
fn lock_object_outside_its_mapping_is_corrupt() {
    let _s = space();
    for rlock in [false, true] {
        let name = unique("lockoob");
        let creator: Box<dyn std::any::Any> = if rlock {
            Box::new(RLock::create(&name).unwrap())
        } else {
            Box::new(Lock::create(&name).unwrap())
        };
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(shm_path(&name))
            .unwrap();
        let total = f.metadata().unwrap().len();
        reseal(&f, |h| {
            put(h, 32, &total.to_le_bytes()); // object_offset = total_size
            put(h, 40, &0u64.to_le_bytes()); // object_size = 0
        });
        let e = if rlock {
            fail("RLock::open", RLock::open_with(&name, &short()))
        } else {
            fail("Lock::open", Lock::open_with(&name, &short()))
        };
        assert!(matches!(e, Error::Corrupt(_)), "{e:?}");
        drop(creator);
    }
}

/// The mutex kind word (object offset 4) flipped from "normal" to
/// "recursive" would let one thread hold two guards, two `&mut T`: refused
/// at open, and at lock time for a handle opened before the flip.
#[test]
fn flipped_mutex_kind_is_corrupt() {
    let _s = space();
    let name = unique("kindflip");
    let creator = Value::<u64>::create(&name, 1).unwrap();
    let before = Value::<u64>::open(&name).unwrap();
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(shm_path(&name))
        .unwrap();
    let object = creator.segment().info().object_offset;
    f.write_all_at(&2u32.to_le_bytes(), object + 4).unwrap();
    let e = fail("Value::open", Value::<u64>::open_with(&name, &short()));
    assert!(matches!(e, Error::Corrupt(_)), "{e:?}");
    let r = before.lock();
    assert!(
        matches!(r, Err(LockError::Failed(Error::Corrupt(_)))),
        "{:?}",
        r.map(|_| ())
    );
    // A Lock flipped to recursive is refused as well.
    let lname = unique("lockflip");
    let lock = Lock::create(&lname).unwrap();
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(shm_path(&lname))
        .unwrap();
    f.write_all_at(&2u32.to_le_bytes(), lock.segment().info().object_offset + 4)
        .unwrap();
    let e = fail("Lock::open", Lock::open_with(&lname, &short()));
    assert!(matches!(e, Error::Corrupt(_)), "{e:?}");
    let r = lock.try_lock();
    assert!(
        matches!(r, Err(LockError::Failed(Error::Corrupt(_)))),
        "{:?}",
        r.map(|_| ())
    );
}

#[test]
fn array_length_behind_the_checksum_is_checked() {
    let _s = space();
    let name = unique("tamperarr");
    let creator = Array::<u32>::create(&name, 4).unwrap();
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(shm_path(&name))
        .unwrap();
    assert_eq!(Array::<u32>::open_with(&name, &short()).unwrap().len(), 4);
    // A longer length with a valid checksum would put elements past the
    // object: the object-size check must refuse it.
    reseal(&f, |h| put(h, off::PARAM_LEN, &5u64.to_le_bytes()));
    let e = fail("param_len 5", Array::<u32>::open_with(&name, &short()));
    assert!(matches!(e, Error::Corrupt(_)), "param_len 5: {e:?}");
    reseal(&f, |h| put(h, off::PARAM_LEN, &u64::MAX.to_le_bytes()));
    let e = fail("param_len max", Array::<u32>::open_with(&name, &short()));
    assert!(matches!(e, Error::Corrupt(_)), "param_len max: {e:?}");
    drop(f);
    drop(creator);
}

// ------------------------------------------------------ wrong type or kind

#[test]
fn wrong_type_or_kind_is_refused() {
    let _s = space();
    let (vi, lk, ar, vu, rl) = (
        unique("i32"),
        unique("lock"),
        unique("arr"),
        unique("u64"),
        unique("rlock"),
    );
    let v = Value::<i32>::create(&vi, -3).unwrap();
    let lock = Lock::create(&lk).unwrap();
    let arr = Array::<u8>::create(&ar, 10).unwrap();
    let vu64 = Value::<u64>::create(&vu, 9).unwrap();
    let rlock = RLock::create(&rl).unwrap();

    match fail("Value<i32> as Value<f32>", Value::<f32>::open(&vi)) {
        Error::LayoutMismatch { found, expected } => {
            assert_eq!(found, (4, 4, i32::TYPE_TAG));
            assert_eq!(expected, (4, 4, f32::TYPE_TAG));
        }
        e => panic!("Value<i32> as Value<f32>: {e:?}"),
    }
    match fail("Value<i32> as Value<u32>", Value::<u32>::open(&vi)) {
        Error::LayoutMismatch { found, expected } => {
            assert_eq!((found.2, expected.2), (i32::TYPE_TAG, u32::TYPE_TAG));
        }
        e => panic!("Value<i32> as Value<u32>: {e:?}"),
    }
    match fail("Value<u64> as Value<u32>", Value::<u32>::open(&vu)) {
        Error::LayoutMismatch { found, expected } => {
            assert_eq!((found.0, expected.0), (8, 4));
        }
        e => panic!("Value<u64> as Value<u32>: {e:?}"),
    }
    let kind = |what: &str, e: Error, found: Kind, expected: Kind| match e {
        Error::KindMismatch {
            found: f,
            expected: x,
        } => {
            assert_eq!((f, x), (found.code(), expected.code()), "{what}");
        }
        e => panic!("{what}: expected KindMismatch, got {e:?}"),
    };
    kind(
        "Lock as RLock",
        fail("", RLock::open(&lk)),
        Kind::Lock,
        Kind::RLock,
    );
    kind(
        "RLock as Lock",
        fail("", Lock::open(&rl)),
        Kind::RLock,
        Kind::Lock,
    );
    kind(
        "Array<u8> as Value<u8>",
        fail("", Value::<u8>::open(&ar)),
        Kind::Array,
        Kind::Value,
    );
    kind(
        "Value<u64> as Array<u64>",
        fail("", Array::<u64>::open(&vu)),
        Kind::Value,
        Kind::Array,
    );
    kind(
        "Value<u64> as AtomicValue<u64>",
        fail("", AtomicValue::<u64>::open(&vu)),
        Kind::Value,
        Kind::AtomicValue,
    );
    kind(
        "Lock as Segment",
        fail("", Segment::open(&lk)),
        Kind::Lock,
        Kind::Bytes,
    );
    kind(
        "Value<i32> as Lock",
        fail("", Lock::open(&vi)),
        Kind::Value,
        Kind::Lock,
    );
    match fail("Array len 10 as 11", Array::<u8>::open_len(&ar, 11)) {
        Error::LengthMismatch {
            found: 10,
            expected: 11,
        } => {}
        e => panic!("Array len 10 as 11: {e:?}"),
    }
    // The refused opens left every object intact and usable.
    assert_eq!(Value::<i32>::open(&vi).unwrap().get().unwrap(), -3);
    assert_eq!(Array::<u8>::open_len(&ar, 10).unwrap().len(), 10);
    assert!(Lock::open(&lk).unwrap().try_lock().is_ok());
    assert!(RLock::open(&rl).unwrap().try_lock().is_ok());
    drop((v, lock, arr, vu64, rlock));
}

// ------------------------------------------------- racing open_or_create

const RACERS: usize = 16;

child!(fn race_child(ctx) {
    let flag = AtomicValue::<u32>::open(&ctx.arg("flag"))?;
    ctx.send("ready");
    gate_wait(&flag, Duration::from_secs(30))?;
    let v = Value::<u64>::open_or_create(&ctx.arg("name"), 7)?;
    // Keep the name when the creator exits: the parent removes it.
    v.segment().persist();
    let seen = v.get()?;
    assert!((7..7 + RACERS as u64).contains(&seen), "saw {seen} right after open");
    v.update(|x| *x += 1)?;
    ctx.send(&format!("creator={}", v.segment().is_creator()));
});

#[test]
fn racing_open_or_create_has_exactly_one_creator() {
    let _s = space();
    let _dog = watchdog(
        "racing_open_or_create_has_exactly_one_creator",
        Duration::from_secs(90),
    );
    let name = unique("race");
    let _rm = RemoveOnDrop(name.clone());
    let flag_name = unique("raceflag");
    let flag = AtomicValue::<u32>::create(&flag_name, 0).unwrap();
    let kids: Vec<Child> = (0..RACERS)
        .map(|_| {
            spawn("race_child")
                .arg("name", &name)
                .arg("flag", &flag_name)
                .start()
        })
        .collect();
    for k in &kids {
        k.expect("ready");
    }
    gate_open(&flag);
    let mut creators = 0;
    for k in &kids {
        let msg = k
            .recv(Duration::from_secs(60))
            .unwrap_or_else(|| panic!("no report\n{}", k.output()));
        match msg.as_str() {
            "creator=true" => creators += 1,
            "creator=false" => {}
            m => panic!("unexpected message {m:?}"),
        }
    }
    join_all(kids);
    assert_eq!(creators, 1, "exactly one process creates");
    let v = Value::<u64>::open(&name).unwrap();
    assert!(!v.segment().is_creator());
    assert_eq!(v.get().unwrap(), 7 + RACERS as u64);
}

// -------------------------------------------------- unlink while attached

child!(fn unlink_child(ctx) {
    let v = Value::<u64>::open(&ctx.arg("name"))?;
    ctx.send("open");
    let deadline = Instant::now() + Duration::from_secs(30);
    while v.get()? == 0 {
        assert!(Instant::now() < deadline, "the parent never said go");
        std::thread::sleep(Duration::from_millis(1));
    }
    for _ in 0..1000 {
        v.update(|x| *x += 1)?;
    }
    ctx.send("done");
});

#[test]
fn unlink_while_attached_keeps_the_mappings_working() {
    let _s = space();
    let _dog = watchdog(
        "unlink_while_attached_keeps_the_mappings_working",
        Duration::from_secs(60),
    );
    let name = unique("unlink");
    let v = Value::<u64>::create(&name, 0).unwrap();
    let kid = spawn("unlink_child").arg("name", &name).start();
    kid.expect("open");
    v.segment().unlink().unwrap();
    assert!(!shm_path(&name).exists(), "unlink left the name");
    let e = fail("open after unlink", Value::<u64>::open(&name));
    assert!(matches!(e, Error::NotFound), "open after unlink: {e:?}");
    // Both processes still share the (now nameless) object.
    v.set(1).unwrap();
    kid.expect("done");
    kid.join();
    assert_eq!(
        v.get().unwrap(),
        1001,
        "the child's increments reach the parent"
    );
    let e = fail("second unlink", v.segment().unlink());
    assert!(matches!(e, Error::NotFound), "second unlink: {e:?}");
    let e = fail("unlink_name after unlink", Segment::unlink_name(&name));
    assert!(
        matches!(e, Error::NotFound),
        "unlink_name after unlink: {e:?}"
    );
    // The name is free again: a new object, unrelated to the old one.
    let again = Value::<u64>::create(&name, 5).unwrap();
    assert_eq!(again.get().unwrap(), 5);
    again.set(6).unwrap();
    assert_eq!(v.get().unwrap(), 1001, "the new segment is a new object");
    drop(v);
    assert!(
        shm_path(&name).exists(),
        "dropping the unlinked creator removed the new name"
    );
    drop(again);
    assert!(!shm_path(&name).exists());
}

#[test]
fn unlink_name_of_a_missing_name_is_not_found() {
    let _s = space();
    let name = unique("nounlink");
    let e = fail("unlink_name", Segment::unlink_name(&name));
    assert!(matches!(e, Error::NotFound), "{e:?}");
}

#[test]
fn open_or_create_of_another_size_is_length_mismatch() {
    let _s = space();
    let name = unique("ocsize");
    let first = Segment::open_or_create(&name, 64).unwrap();
    assert!(first.is_creator());
    let e = fail("open_or_create", Segment::open_or_create(&name, 1 << 20));
    assert!(
        matches!(e, Error::LengthMismatch { found: 64, expected } if expected == 1 << 20),
        "{e:?}"
    );
    let same = Segment::open_or_create(&name, 64).unwrap();
    assert!(!same.is_creator());
    assert_eq!(same.data_len(), 64);
}

// ----------------------------------------------------------- descriptors

#[test]
fn no_descriptor_stays_open_on_a_segment() {
    let _s = space();
    let names: Vec<String> = (0..6).map(|i| unique(&format!("fd{i}"))).collect();
    let seg = Segment::create(&names[0], 100).unwrap();
    let value = Value::<u64>::create(&names[1], 1).unwrap();
    let lock = Lock::create(&names[2]).unwrap();
    let rlock = RLock::create(&names[3]).unwrap();
    let array = Array::<u16>::create(&names[4], 7).unwrap();
    let atom = AtomicValue::<i64>::open_or_create(&names[5], 1).unwrap();
    let opened = (
        Segment::open(&names[0]).unwrap(),
        Value::<u64>::open(&names[1]).unwrap(),
        Lock::open(&names[2]).unwrap(),
        RLock::open(&names[3]).unwrap(),
        Array::<u16>::open(&names[4]).unwrap(),
        AtomicValue::<i64>::open(&names[5]).unwrap(),
    );
    // Failed creates and opens must not leak one either.
    assert!(Segment::create(&names[0], 100).is_err());
    assert!(Value::<u32>::open(&names[1]).is_err());
    assert!(Lock::open(&names[1]).is_err());
    // The scan sees a descriptor when there is one...
    let probe = std::fs::File::open(shm_path(&names[0])).unwrap();
    assert_eq!(
        fds_at(&names[0]).len(),
        1,
        "the descriptor scan does not work"
    );
    drop(probe);
    // ... and there is none: the mapping is all that remains.
    for n in &names {
        assert!(
            fds_at(n).is_empty(),
            "descriptors left on {n}: {:?}",
            fds_at(n)
        );
    }
    value.set(2).unwrap();
    assert_eq!(opened.1.get().unwrap(), 2);
    drop(opened);
    drop((seg, value, lock, rlock, array, atom));
}

child!(fn fd_child(ctx) {
    // Alone in this process: no other test's descriptors to confuse.
    let name = ctx.arg("name");
    let anon_seg = Segment::anonymous(4096)?;
    let anon_value = Value::<u64>::anonymous(1)?;
    let anon_lock = RLock::anonymous()?;
    let anon_atom = AtomicValue::<u32>::anonymous(1)?;
    let named = Value::<u64>::create(&name, 3)?;
    let opened = Value::<u64>::open(&name)?;
    // Named segments keep no descriptor; an anonymous one keeps its memfd
    // (close-on-exec), the one way to hand it to a spawned child.
    let named_fds = fds_where(|t| t.starts_with("/dev/shm/"));
    assert!(named_fds.is_empty(), "named descriptors left open: {named_fds:?}");
    let memfds = fds_where(|t| t.starts_with("/memfd:"));
    assert_eq!(memfds.len(), 4, "one memfd per anonymous segment: {memfds:?}");
    drop((anon_seg, anon_value, anon_lock, anon_atom, opened, named));
    let left = fds_where(|t| t.starts_with("/dev/shm/") || t.starts_with("/memfd:"));
    assert!(left.is_empty(), "descriptors outlive their handles: {left:?}");
    ctx.send("clean");
});

#[test]
fn no_descriptor_stays_open_in_a_fresh_process() {
    let _s = space();
    let name = unique("fdchild");
    let _rm = RemoveOnDrop(name.clone());
    let kid = spawn("fd_child").arg("name", &name).start();
    kid.expect("clean");
    kid.join();
    assert!(!shm_path(&name).exists());
}

// ------------------------------------------- anonymous and persistent names

#[test]
fn anonymous_segments_have_no_name_to_unlink() {
    let _s = space();
    let seg = Segment::anonymous(100).unwrap();
    assert_eq!(seg.name(), None);
    assert!(seg.is_creator());
    assert!(seg.data_len() >= 100);
    let e = fail("anonymous unlink", seg.unlink());
    assert!(matches!(e, Error::InvalidArgument(_)), "{e:?}");
    let v = Value::<u64>::anonymous(3).unwrap();
    let e = fail("anonymous Value unlink", v.segment().unlink());
    assert!(matches!(e, Error::InvalidArgument(_)), "{e:?}");
    assert_eq!(v.get().unwrap(), 3, "the failed unlink harmed nothing");
}

#[test]
fn persisted_segment_outlives_its_creator_until_unlink_name() {
    let _s = space();
    let name = unique("persist");
    let _rm = RemoveOnDrop(name.clone());
    let seg = Segment::create_with(&name, 64, &Options::new().persist(true)).unwrap();
    // SAFETY: the object has at least 64 bytes; only this test uses it.
    unsafe { seg.data_ptr().write_volatile(77) };
    drop(seg);
    assert!(
        shm_path(&name).exists(),
        "a persisted segment was unlinked by its creator"
    );
    let opened = Segment::open(&name).unwrap();
    assert!(!opened.is_creator());
    // SAFETY: as above.
    assert_eq!(unsafe { opened.data_ptr().read_volatile() }, 77);
    drop(opened);
    assert!(shm_path(&name).exists(), "an opener unlinked the name");
    Segment::unlink_name(&name).unwrap();
    assert!(!shm_path(&name).exists());
    assert!(matches!(Segment::open(&name), Err(Error::NotFound)));

    // persist() on a creator's handle does the same.
    let v = Value::<u64>::create(&name, 8).unwrap();
    v.segment().persist();
    drop(v);
    assert_eq!(Value::<u64>::open(&name).unwrap().get().unwrap(), 8);
    Segment::unlink_name(&name).unwrap();

    // Without either, the creator's drop removes it.
    drop(Segment::create(&name, 64).unwrap());
    assert!(!shm_path(&name).exists());
}

// ---------------------------------------------------------- out of space

child!(fn enospc_child(ctx) {
    // A 1 MiB tmpfs on a private /dev/shm: shm_open goes through
    // /dev/shm, so it fills up here and nowhere else.
    if let Err(why) = private_dev_shm(c"size=1m") {
        ctx.send(&format!("skip: {why}"));
        return Ok(());
    }
    let listing = || -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir("/dev/shm")
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    assert!(listing().is_empty(), "not our private /dev/shm: {:?}", listing());
    assert!(shm_free_bytes() <= 1 << 20);

    let e = fail("4 MiB segment", Segment::create("/big", 4 << 20));
    assert!(matches!(e, Error::OutOfSpace), "4 MiB segment: {e:?}");
    let e = fail("2 MiB array", Array::<u8>::create("/bigarray", 2 << 20));
    assert!(matches!(e, Error::OutOfSpace), "2 MiB array: {e:?}");
    let e = fail("2 MiB open_or_create", Segment::open_or_create("/bigorc", 2 << 20));
    assert!(matches!(e, Error::OutOfSpace), "2 MiB open_or_create: {e:?}");
    assert!(listing().is_empty(), "failed creations left names: {:?}", listing());

    // What fits, fits; the failures leaked no space.
    let first = Segment::create("/first", 600 << 10)?;
    let e = fail("second 600 KiB", Segment::create("/second", 600 << 10));
    assert!(matches!(e, Error::OutOfSpace), "second 600 KiB: {e:?}");
    assert_eq!(listing(), ["first"]);
    drop(first);
    assert!(listing().is_empty());
    let second = Segment::create("/second", 600 << 10)?;
    // The reserved memory is really there: touching all of it is no SIGBUS.
    // SAFETY: data_len bytes at data_ptr lie inside the mapping; this
    // process is the only user.
    unsafe { std::ptr::write_bytes(second.data_ptr(), 0x5A, second.data_len()) };
    drop(second);
    assert!(listing().is_empty());
    ctx.send("ok");
});

#[test]
fn out_of_space_in_a_small_private_dev_shm() {
    let kid = spawn("enospc_child").start();
    let msg = kid
        .recv(Duration::from_secs(60))
        .unwrap_or_else(|| panic!("no report\n{}", kid.output()));
    if let Some(why) = msg.strip_prefix("skip: ") {
        eprintln!(
            "out_of_space_in_a_small_private_dev_shm: skipped, no private mount namespace ({why})"
        );
    } else {
        assert_eq!(msg, "ok");
    }
    kid.join();
}

/// Above this much free space in `/dev/shm`, filling it would cost too much
/// memory and time for a unit test: the test is skipped.
const FILL_LIMIT: u64 = 1 << 30;

#[test]
fn out_of_space_when_dev_shm_is_full() {
    let free = shm_free_bytes();
    if free > FILL_LIMIT {
        eprintln!(
            "out_of_space_when_dev_shm_is_full: skipped, /dev/shm has {} MiB free (limit {} MiB)",
            free >> 20,
            FILL_LIMIT >> 20
        );
        return;
    }
    // No other test of this file creates anything while /dev/shm is full.
    let _excl = SHM_SPACE.write().unwrap_or_else(PoisonError::into_inner);
    let name = unique("full");
    let _rm = RemoveOnDrop(name.clone());
    let size = shm_free_bytes() + (64 << 20);
    let e = fail(
        "segment larger than /dev/shm",
        Segment::create(&name, size as usize),
    );
    assert!(matches!(e, Error::OutOfSpace), "{e:?}");
    assert!(
        !shm_path(&name).exists(),
        "the failed creation left its name"
    );
    // The space came back.
    assert!(
        shm_free_bytes() + (16 << 20) >= free,
        "the failed creation kept its memory"
    );
}
