//! `Pipe` / `Connection` across processes: echo, argument errors, a million
//! checked messages, boundaries and `poll`, a 16 MiB message through a small
//! ring, peer death in both directions, timeouts under a signal storm,
//! claims, close, typed, serde and zero-copy messages.
#![cfg(target_os = "linux")]

mod harness;
use harness::*;
use shmprim::*;

use std::time::{Duration, Instant};

const SLACK: Duration = Duration::from_secs(2);

fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn checksum(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &c| {
        (h ^ c as u64).wrapping_mul(0x100_0000_01b3)
    })
}

// ---------------------------------------------------------------------------
// Child roles
// ---------------------------------------------------------------------------

// Connects end B and echoes every message until the peer disconnects.
child!(fn echo(ctx) {
    let pipe = Pipe::open(&ctx.arg("pipe"))?;
    let mut c = pipe.connect(End::B)?;
    ctx.send("ready");
    loop {
        match c.recv_bytes() {
            Ok(m) => c.send_bytes(&m)?,
            Err(Error::Disconnected) => break,
            Err(e) => return Err(e.into()),
        }
    }
    ctx.send("done");
});

// Sends n messages [seq u64][checksum of payload u64][payload 0..=40 bytes].
child!(fn sequence_sender(ctx) {
    let pipe = Pipe::open(&ctx.arg("pipe"))?;
    let mut c = pipe.connect(End::B)?;
    let n: u64 = ctx.parse("n");
    let mut buf = [0u8; 64];
    for seq in 0..n {
        let len = (seq % 41) as usize;
        for (i, b) in buf[16..16 + len].iter_mut().enumerate() {
            *b = (seq as u8).wrapping_add(i as u8);
        }
        let sum = checksum(&buf[16..16 + len]) ^ seq;
        buf[..8].copy_from_slice(&seq.to_le_bytes());
        buf[8..16].copy_from_slice(&sum.to_le_bytes());
        c.send_bytes(&buf[..16 + len])?;
    }
    c.close();
});

// Sends the lengths given in `lens` (comma separated) as patterned messages.
child!(fn lengths_sender(ctx) {
    let pipe = Pipe::open(&ctx.arg("pipe"))?;
    let mut c = pipe.connect(End::B)?;
    for (i, l) in ctx.arg("lens").split(',').enumerate() {
        let len: usize = l.parse()?;
        c.send_bytes(&pattern(i as u64, len))?;
    }
    ctx.send("sent");
    // Stay until told, so that the data, not a close, is what the parent sees.
    let _ = c.recv_bytes();
});

// Connects the given end, says "ready", and then sleeps until killed.
child!(fn connect_and_sleep(ctx) {
    let pipe = Pipe::open(&ctx.arg("pipe"))?;
    let end = if ctx.arg("end") == "A" { End::A } else { End::B };
    let _c = pipe.connect(end)?;
    ctx.send("ready");
    std::thread::sleep(Duration::from_secs(60));
});

// Tries to claim end A and reports the outcome.
child!(fn claim_a(ctx) {
    let pipe = Pipe::open(&ctx.arg("pipe"))?;
    match pipe.connect(End::A) {
        Ok(_) => ctx.send("ok"),
        Err(e) => ctx.send(&format!("{e:?}")),
    }
});

// Sends 10 numbered messages, closes, exits.
child!(fn send_ten_and_close(ctx) {
    let pipe = Pipe::open(&ctx.arg("pipe"))?;
    let mut c = pipe.connect(End::B)?;
    for i in 0u32..10 {
        c.send(&i)?;
    }
    c.close();
    match c.send(&0u32) {
        Err(Error::Closed) => {}
        other => return Err(format!("send after close: {other:?}").into()),
    }
});

// Zero copy: reserves and fills `n` messages of `len` bytes (one dropped
// uncommitted first), then receives the parent's in-place replies.
child!(fn zero_copy_peer(ctx) {
    let pipe = Pipe::open(&ctx.arg("pipe"))?;
    let mut c = pipe.connect(End::B)?;
    let n: u64 = ctx.parse("n");
    let len: usize = ctx.parse("len");
    {
        let mut r = c.reserve(len)?;
        r.fill(0xEE);
        // dropped: nothing sent
    }
    for i in 0..n {
        let mut r = c.reserve(len)?;
        r.copy_from_slice(&pattern(i, len));
        r.commit()?;
    }
    for i in 0..n {
        let m = c.recv_in_place()?;
        if m[..] != (i as u32).to_le_bytes() {
            return Err(format!("reply {i}: {:?}", &m[..]).into());
        }
    }
    ctx.send("done");
});

// Sends one `len`-byte patterned message (fragmented if long), twice.
child!(fn big_sender(ctx) {
    let pipe = Pipe::open(&ctx.arg("pipe"))?;
    let mut c = pipe.connect(End::B)?;
    let len: usize = ctx.parse("len");
    let m = pattern(7, len);
    c.send_bytes(&m)?;
    c.send_bytes(&m)?;
    c.send_bytes(b"end")?;
    let _ = c.recv_bytes(); // wait for the parent's goodbye (or its close)
});

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[test]
fn duplex_echo_across_processes() {
    let _w = watchdog("duplex_echo_across_processes", Duration::from_secs(30));
    let name = unique("echo");
    let pipe = Pipe::create(&name, 4096).unwrap();
    let mut a = pipe.connect(End::A).unwrap();
    let child = spawn("echo").arg("pipe", &name).start();
    child.expect("ready");
    for i in 0..2000u64 {
        let m = pattern(i, (i as usize * 37) % 3000);
        a.send_bytes(&m).unwrap();
        assert_eq!(a.recv_bytes().unwrap(), m, "echo {i}");
    }
    a.close();
    child.expect("done");
    child.join();
}

#[test]
fn offset_size_and_length_errors() {
    let (mut a, mut b) = Pipe::anonymous(4096).unwrap();
    let buf = [1u8, 2, 3, 4, 5];
    assert!(matches!(
        a.send_bytes_range(&buf, 6, None),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        a.send_bytes_range(&buf, 2, Some(4)),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        a.send_bytes_range(&buf, 5, Some(1)),
        Err(Error::InvalidArgument(_))
    ));
    assert!(
        matches!(b.try_recv_bytes(), Err(Error::Empty)),
        "nothing was sent"
    );
    a.send_bytes_range(&buf, 1, Some(3)).unwrap();
    a.send_bytes_range(&buf, 5, None).unwrap();
    // BufferTooShort carries the length; the message stays.
    let mut small = [0u8; 2];
    assert!(matches!(
        b.recv_bytes_into(&mut small),
        Err(Error::BufferTooShort { needed: 3 })
    ));
    let mut out = [0u8; 8];
    assert!(matches!(
        b.recv_bytes_into_at(&mut out, 9),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        b.recv_bytes_into_at(&mut out, 6),
        Err(Error::BufferTooShort { needed: 3 })
    ));
    assert!(matches!(
        b.recv_bytes_max(2),
        Err(Error::MessageTooLarge { size: 3, max: 2 })
    ));
    assert!(matches!(
        b.recv::<u64>(),
        Err(Error::LengthMismatch {
            found: 3,
            expected: 8
        })
    ));
    assert_eq!(b.recv_bytes_into_at(&mut out, 5).unwrap(), 3);
    assert_eq!(&out[5..], &[2, 3, 4]);
    assert_eq!(b.recv_bytes_into(&mut out).unwrap(), 0);
    // Too large a reservation fails at once.
    assert!(matches!(
        a.reserve(4096),
        Err(Error::MessageTooLarge {
            size: 4096,
            max: 4088
        })
    ));
    // A fragmented message: the exact total is known before anything is
    // consumed.
    let big = pattern(3, 10_000);
    std::thread::scope(|s| {
        s.spawn(|| a.send_bytes(&big).unwrap());
        let mut short = vec![0u8; 9_999];
        let mut r = b.recv_bytes_into(&mut short);
        while matches!(r, Err(Error::Timeout)) {
            r = b.recv_bytes_into(&mut short);
        }
        assert!(
            matches!(r, Err(Error::BufferTooShort { needed: 10_000 })),
            "{r:?}"
        );
        assert!(matches!(
            b.recv_in_place(),
            Err(Error::MessageTooLarge { size: 10_000, .. })
        ));
        let mut fit = vec![0u8; 10_000];
        assert_eq!(b.recv_bytes_into(&mut fit).unwrap(), 10_000);
        assert_eq!(fit, big);
    });
    // Simplex ends have one direction each.
    let (mut r, mut w) = Pipe::anonymous_simplex(256).unwrap();
    assert!(r.readable() && !r.writable() && w.writable() && !w.readable());
    assert!(matches!(r.send_bytes(b"x"), Err(Error::InvalidArgument(_))));
    assert!(matches!(w.try_recv_bytes(), Err(Error::InvalidArgument(_))));
    assert!(matches!(
        Pipe::anonymous(1000),
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
fn a_million_messages_arrive_once_in_order_intact() {
    let _w = watchdog("a_million_messages", Duration::from_secs(120));
    let name = unique("million");
    let pipe = Pipe::create_simplex(&name, 64 * 1024).unwrap();
    let mut r = pipe.connect(End::A).unwrap();
    let n = 1_000_000u64;
    let child = spawn("sequence_sender")
        .arg("pipe", &name)
        .arg("n", n)
        .timeout(Duration::from_secs(110))
        .start();
    let mut buf = [0u8; 64];
    for want in 0..n {
        let len = r.recv_bytes_into(&mut buf).unwrap();
        assert_eq!(len, 16 + (want % 41) as usize, "length of message {want}");
        let seq = u64::from_le_bytes(buf[..8].try_into().unwrap());
        assert_eq!(seq, want, "lost, duplicated or reordered");
        let sum = u64::from_le_bytes(buf[8..16].try_into().unwrap());
        assert_eq!(sum, checksum(&buf[16..len]) ^ seq, "payload of {seq}");
    }
    assert!(matches!(r.recv_bytes(), Err(Error::Disconnected)));
    child.join();
}

#[test]
fn boundaries_are_kept_empty_messages_count_and_poll_does_not_consume() {
    let _w = watchdog("boundaries", Duration::from_secs(30));
    let name = unique("bounds");
    let pipe = Pipe::create(&name, 1024).unwrap();
    let mut r = pipe.connect(End::A).unwrap();
    let lens = [
        0usize, 1, 0, 0, 7, 8, 9, 0, 300, 0, 500, 1, 0, 2000, 0, 16, 0,
    ];
    let list = lens
        .iter()
        .map(|l| l.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let child = spawn("lengths_sender")
        .arg("pipe", &name)
        .arg("lens", list)
        .start();
    for (i, &len) in lens.iter().enumerate() {
        assert!(r.poll(Some(Duration::from_secs(10))).unwrap(), "poll {i}");
        assert!(
            r.poll(Some(Duration::ZERO)).unwrap(),
            "poll consumed message {i}"
        );
        assert_eq!(
            r.recv_bytes().unwrap(),
            pattern(i as u64, len),
            "message {i}"
        );
    }
    child.expect("sent");
    assert!(!r.poll(Some(Duration::from_millis(20))).unwrap());
    assert!(matches!(r.try_recv_bytes(), Err(Error::Empty)));
    drop(r);
    child.join();
}

#[test]
fn sixteen_mib_through_a_64_kib_ring() {
    let _w = watchdog("sixteen_mib", Duration::from_secs(60));
    let name = unique("big");
    let pipe = Pipe::create(&name, 64 * 1024).unwrap();
    let mut a = pipe.connect(End::A).unwrap();
    let len = 16 << 20;
    let child = spawn("big_sender")
        .arg("pipe", &name)
        .arg("len", len)
        .start();
    let want = pattern(7, len);
    let got = a.recv_bytes().unwrap();
    assert!(got == want, "first copy differs");
    let mut buf = vec![0u8; len];
    assert!(matches!(
        a.recv_bytes_into(&mut buf[..len - 1]),
        Err(Error::BufferTooShort { needed }) if needed == len
    ));
    assert_eq!(a.recv_bytes_into(&mut buf).unwrap(), len);
    assert!(buf == want, "second copy differs");
    assert_eq!(a.recv_bytes().unwrap(), b"end");
    a.close();
    child.join();
}

fn kill_after(mut child: Child, after: Duration) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        std::thread::sleep(after);
        child.kill();
    })
}

#[test]
fn a_killed_writer_wakes_a_blocked_reader() {
    let _w = watchdog("killed_writer", Duration::from_secs(30));
    let name = unique("killw");
    let pipe = Pipe::create(&name, 4096).unwrap();
    let mut a = pipe.connect(End::A).unwrap();
    let child = spawn("connect_and_sleep")
        .arg("pipe", &name)
        .arg("end", "B")
        .start();
    child.expect("ready");
    let killer = kill_after(child, Duration::from_millis(200));
    let t = Instant::now();
    let r = a.recv_bytes();
    let took = t.elapsed();
    assert!(matches!(r, Err(Error::Disconnected)), "{r:?}");
    assert!(took < Duration::from_secs(5), "noticed only after {took:?}");
    killer.join().unwrap();
}

#[test]
fn a_killed_reader_wakes_a_blocked_writer() {
    let _w = watchdog("killed_reader", Duration::from_secs(30));
    let name = unique("killr");
    let pipe = Pipe::create(&name, 4096).unwrap();
    let mut a = pipe.connect(End::A).unwrap();
    let child = spawn("connect_and_sleep")
        .arg("pipe", &name)
        .arg("end", "B")
        .start();
    child.expect("ready");
    while a.try_send_bytes(&[0; 100]).is_ok() {}
    let killer = kill_after(child, Duration::from_millis(200));
    let t = Instant::now();
    let r = a.send_bytes(&[0; 100]);
    let took = t.elapsed();
    assert!(matches!(r, Err(Error::Disconnected)), "{r:?}");
    assert!(took < Duration::from_secs(5), "noticed only after {took:?}");
    killer.join().unwrap();
}

extern "C" fn on_signal(_: libc::c_int) {}

#[test]
fn a_timed_recv_under_a_signal_storm_returns_at_about_t() {
    let _w = watchdog("signal_storm", Duration::from_secs(30));
    // SAFETY: installs a handler that does nothing (async-signal-safe) for
    // SIGUSR2, which nothing else in this test binary uses; SA_RESTART is
    // left off so that the futex wait sees EINTR.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
        libc::sigaction(libc::SIGUSR2, &sa, std::ptr::null_mut());
    }
    let (mut a, _b) = Pipe::anonymous(4096).unwrap();
    a.claim().unwrap();
    let t_out = Duration::from_millis(300);
    let (tx, rx) = std::sync::mpsc::channel();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let storm = std::thread::spawn(move || {
        // Sent as an integer: pthread_t is a pointer on musl (not Send).
        let target = rx.recv().unwrap() as libc::pthread_t;
        let mut sent = 0u32;
        while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
            // SAFETY: `target` is the receiving thread, alive until `stop`.
            unsafe { libc::pthread_kill(target, libc::SIGUSR2) };
            sent += 1;
            std::thread::sleep(Duration::from_millis(1));
        }
        sent
    });
    // SAFETY: pthread_self has no preconditions.
    tx.send(unsafe { libc::pthread_self() } as usize).unwrap();
    let t = Instant::now();
    let r = a.recv_bytes_timeout(t_out);
    let took = t.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let sent = storm.join().unwrap();
    assert!(matches!(r, Err(Error::Timeout)), "{r:?}");
    assert!(took >= t_out, "returned early, after {took:?}");
    assert!(took < t_out + SLACK, "returned late, after {took:?}");
    assert!(sent > 10, "the storm sent only {sent} signals");
}

#[test]
fn a_second_claim_is_refused() {
    let _w = watchdog("second_claim", Duration::from_secs(30));
    let name = unique("claim");
    let pipe = Pipe::create(&name, 4096).unwrap();
    let a = pipe.connect(End::A).unwrap();
    assert!(matches!(pipe.connect(End::A), Err(Error::AlreadyClaimed)));
    let child = spawn("claim_a").arg("pipe", &name).start();
    child.expect("AlreadyClaimed");
    child.join();
    drop(a);
    // Ends are never reused, even after their claimant closed.
    assert!(matches!(pipe.connect(End::A), Err(Error::AlreadyClaimed)));
    let _b = pipe.connect(End::B).unwrap();
    assert!(matches!(
        Pipe::open(&name).unwrap().connect(End::B),
        Err(Error::AlreadyClaimed)
    ));
}

#[test]
fn close_drains_then_disconnects() {
    let _w = watchdog("close_drains", Duration::from_secs(30));
    let name = unique("close");
    let pipe = Pipe::create(&name, 4096).unwrap();
    let mut a = pipe.connect(End::A).unwrap();
    let child = spawn("send_ten_and_close").arg("pipe", &name).start();
    child.join(); // gone before we read anything
    for i in 0u32..10 {
        assert_eq!(a.recv::<u32>().unwrap(), i);
    }
    assert!(matches!(a.recv_bytes(), Err(Error::Disconnected)));
    assert!(matches!(a.try_recv_bytes(), Err(Error::Disconnected)));
    assert!(matches!(a.send_bytes(b"x"), Err(Error::Disconnected)));
    assert!(a.poll(Some(Duration::ZERO)).unwrap());
    a.close();
    assert!(matches!(a.recv_bytes(), Err(Error::Closed)));
    assert!(matches!(a.send_bytes(b"x"), Err(Error::Closed)));
}

plain_struct! {
    #[allow(missing_docs)]
    pub struct Sample { pub id: u64, pub value: f64, pub tag: [u8; 8] }
}

#[test]
fn typed_messages() {
    let (mut a, mut b) = Pipe::anonymous(4096).unwrap();
    let s = Sample {
        id: 7,
        value: 2.5,
        tag: *b"abcdefgh",
    };
    a.send(&s).unwrap();
    a.send(&[1u16, 2, 3]).unwrap();
    let got: Sample = b.recv().unwrap();
    assert_eq!((got.id, got.value, got.tag), (7, 2.5, *b"abcdefgh"));
    assert!(matches!(
        b.recv::<u64>(),
        Err(Error::LengthMismatch {
            found: 6,
            expected: 8
        })
    ));
    assert_eq!(b.recv::<[u16; 3]>().unwrap(), [1, 2, 3]);
    assert!(matches!(b.try_recv::<u8>(), Err(Error::Empty)));
    let t = Instant::now();
    assert!(matches!(
        b.recv_timeout::<u8>(Duration::from_millis(50)),
        Err(Error::Timeout)
    ));
    assert!(t.elapsed() >= Duration::from_millis(50));
}

#[cfg(feature = "serde")]
#[test]
fn serde_objects() {
    let (mut a, mut b) = Pipe::anonymous(1024).unwrap();
    let v = (42u32, String::from("hello"), vec![1.5f64; 300]);
    std::thread::scope(|s| {
        // 300 f64 are larger than half the ring: fragments.
        s.spawn(|| a.send_obj(&v).unwrap());
        let got: (u32, String, Vec<f64>) = b.recv_obj().unwrap();
        assert_eq!(got, v);
    });
}

#[test]
fn zero_copy_reserve_commit_drop_and_borrow_in_place() {
    let _w = watchdog("zero_copy", Duration::from_secs(30));
    let name = unique("zc");
    let pipe = Pipe::create(&name, 8192).unwrap();
    let mut a = pipe.connect(End::A).unwrap();
    let (n, len) = (500u64, 1000usize);
    let child = spawn("zero_copy_peer")
        .arg("pipe", &name)
        .arg("n", n)
        .arg("len", len)
        .start();
    for i in 0..n {
        let m = a.recv_in_place().unwrap();
        assert!(m[..] == pattern(i, len)[..], "message {i}");
        drop(m);
        let mut r = a.reserve(4).unwrap();
        r.copy_from_slice(&(i as u32).to_le_bytes());
        r.commit().unwrap();
    }
    assert!(matches!(a.try_recv_in_place(), Err(Error::Empty)));
    child.expect("done");
    child.join();
}

#[test]
fn a_fragmented_send_that_fails_half_way_is_not_delivered() {
    let (mut a, mut b) = Pipe::anonymous(1024).unwrap();
    let big = pattern(9, 3000);
    // Some fragments fit, then the ring is full: nothing is delivered.
    assert!(matches!(a.try_send_bytes(&big), Err(Error::Full)));
    // The receiver takes the fragments that came, keeps them, and waits.
    assert!(matches!(b.try_recv_bytes(), Err(Error::Empty)));
    let t = Instant::now();
    assert!(matches!(
        b.recv_bytes_timeout(Duration::from_millis(30)),
        Err(Error::Timeout)
    ));
    assert!(t.elapsed() >= Duration::from_millis(30));
    // The sender's next message aborts the partial one first.
    a.send_bytes(b"next").unwrap();
    assert_eq!(b.recv_bytes().unwrap(), b"next");
    // And a whole fragmented message still goes through afterwards.
    std::thread::scope(|s| {
        s.spawn(|| a.send_bytes(&big).unwrap());
        assert_eq!(b.recv_bytes().unwrap(), big);
    });
    assert!(matches!(b.try_recv_bytes(), Err(Error::Empty)));
}
