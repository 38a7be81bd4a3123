//! iceoryx2 publish/subscribe with its loan API, polled. Each side builds
//! its own node after the fork; the parent creates the services, the child
//! opens them, and timing starts only once both sides' ports exist (node
//! and service creation are setup, not messaging). Every port and node is
//! dropped before its process ends, so iceoryx2 removes their files; the
//! run uses a domain of its own (a prefix with the suite's pid), whose
//! global management segment [`cleanup`] removes at the end.

use std::sync::atomic::{AtomicU32, Ordering::*};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use iceoryx2::port::publisher::Publisher;
use iceoryx2::prelude::*;

use crate::common::{Chunks, Total, Warm};
use crate::pipe_bench::{pair, spin_until};
use crate::w1::trips;

/// A fresh service name prefix for one run.
fn name(tag: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "shmprim-peers/{}/{}/{tag}",
        std::process::id(),
        NEXT.fetch_add(1, Relaxed)
    )
}

/// This run's iceoryx2 domain: set up in the suite's process before any
/// fork, so that every child inherits the same one.
fn config() -> &'static Config {
    static CONFIG: OnceLock<Config> = OnceLock::new();
    CONFIG.get_or_init(|| {
        let mut c = Config::default();
        let prefix = format!("iox2_shmprim_peers_{}_", std::process::id());
        c.global.prefix = FileName::new(prefix.as_bytes()).expect("iceoryx2 prefix");
        c
    })
}

/// Fixes this run's domain (call before forking).
pub fn init() {
    config();
}

/// Removes what this run's domain leaves behind once every node is gone:
/// the global management segment in `/dev/shm`, and iceoryx2's directories
/// under `/tmp` if they are empty.
pub fn cleanup() {
    // SAFETY: the domain's prefix holds this process's pid, so no process
    // of another run uses it; every child has exited and every node of this
    // process has been dropped.
    let _ = unsafe { iceoryx2::testing::remove_global_mgmt_segment::<ipc::Service>(config()) };
    let root = config().global.root_path().to_string();
    for d in ["nodes", "services", ""] {
        let _ = std::fs::remove_dir(std::path::Path::new(&root).join(d));
    }
}

fn node() -> Node<ipc::Service> {
    set_log_level(LogLevel::Error);
    NodeBuilder::new()
        .config(config())
        .signal_handling_mode(SignalHandlingMode::Disabled)
        .create::<ipc::Service>()
        .expect("iceoryx2 node")
}

/// The handshake through a shared word: 1 = parent's ports exist, 2 =
/// child's ports exist, 3 = go, 4 = all received.
fn flag() -> &'static AtomicU32 {
    let p = crate::common::shared_zeroed(4096);
    // SAFETY: a fresh zeroed shared mapping, never unmapped; a zero
    // AtomicU32 is valid.
    unsafe { &*p.cast::<AtomicU32>() }
}

fn wait_for(f: &AtomicU32, v: u32) {
    let t = Instant::now();
    while f.load(Acquire) < v {
        assert!(t.elapsed() < Duration::from_secs(120), "iceoryx2 peer hung");
        std::thread::yield_now();
    }
}

/// Round trips of a `u64` over two services (ping, pong).
pub fn ping_pong(n: u64) -> Vec<u64> {
    let (ping, pong) = (name("ping"), name("pong"));
    let f = flag();
    let total = Total::new();
    let mut out = Vec::new();
    let svc = |node: &Node<ipc::Service>, s: &str, create: bool| {
        let b = node
            .service_builder(&s.try_into().unwrap())
            .publish_subscribe::<u64>();
        if create {
            b.max_publishers(1)
                .max_subscribers(1)
                .history_size(0)
                .subscriber_max_buffer_size(1)
                .enable_safe_overflow(false)
                .create()
                .expect("iceoryx2 service")
        } else {
            b.open().expect("iceoryx2 open")
        }
    };
    pair(
        || {
            wait_for(f, 1);
            let node = node();
            let (s1, s2) = (svc(&node, &ping, false), svc(&node, &pong, false));
            let sub = s1.subscriber_builder().create().unwrap();
            let publ = s2
                .publisher_builder()
                .backpressure_strategy(BackpressureStrategy::RetryUntilDelivered)
                .create()
                .unwrap();
            f.store(2, Release);
            let mut i = 0;
            while !total.reached(i) {
                i += 1;
                let mut v = None;
                spin_until(|| {
                    v = sub.receive().unwrap().map(|s| *s.payload());
                    v.is_some()
                });
                publ.loan_uninit()
                    .unwrap()
                    .write_payload(v.unwrap())
                    .send()
                    .unwrap();
            }
        },
        || {
            let node = node();
            let (s1, s2) = (svc(&node, &ping, true), svc(&node, &pong, true));
            let publ = s1
                .publisher_builder()
                .backpressure_strategy(BackpressureStrategy::RetryUntilDelivered)
                .create()
                .unwrap();
            let sub = s2.subscriber_builder().create().unwrap();
            f.store(1, Release);
            wait_for(f, 2);
            out = trips(n, &total, |i| {
                publ.loan_uninit().unwrap().write_payload(i).send().unwrap();
                spin_until(|| sub.receive().unwrap().is_some());
            });
        },
    );
    out
}

/// Sends `src` in a loaned slice: retries the loan while every chunk is in
/// flight, and the whole send while it reached no subscriber (it can, at
/// the very start, before the publisher has seen the subscriber).
fn loan(p: &Publisher<ipc::Service, [u8], ()>, src: &[u8]) {
    let mut delivered = false;
    spin_until(|| {
        let Ok(s) = p.loan_slice_uninit(src.len()) else {
            return false;
        };
        delivered = s.write_from_slice(src).send().unwrap() > 0;
        delivered
    });
}

/// `n` messages of `size` bytes child→parent: ns per message. The
/// publisher writes each message into a loaned sample; the subscriber
/// copies it out (`in_place == false`) or reads it where it lies.
pub fn stream(n: u64, size: usize, in_place: bool) -> f64 {
    let s = name("stream");
    let f = flag();
    // About the ring shmprim gets (1 MiB), at least 4 samples.
    let depth = ((1usize << 20) / size).clamp(4, 256);
    let total = Total::new();
    let mut ns = 0.0;
    pair(
        || {
            wait_for(f, 1);
            let node = node();
            let svc = node
                .service_builder(&s.as_str().try_into().unwrap())
                .publish_subscribe::<[u8]>()
                .open()
                .expect("iceoryx2 open");
            let publ = svc
                .publisher_builder()
                .initial_max_slice_len(size)
                .max_loaned_samples(2)
                .backpressure_strategy(BackpressureStrategy::RetryUntilDelivered)
                .create()
                .unwrap();
            let src = vec![7u8; size];
            f.store(2, Release);
            wait_for(f, 3);
            let mut w = Warm::new(total, n);
            while w.more() {
                loan(&publ, &src);
            }
            // Samples not yet received die with their publisher: stay
            // until the subscriber has them all.
            wait_for(f, 4);
        },
        || {
            let node = node();
            let svc = node
                .service_builder(&s.as_str().try_into().unwrap())
                .publish_subscribe::<[u8]>()
                .max_publishers(1)
                .max_subscribers(1)
                .history_size(0)
                .subscriber_max_buffer_size(depth)
                .enable_safe_overflow(false)
                .create()
                .expect("iceoryx2 service");
            let sub = svc
                .subscriber_builder()
                .buffer_size(depth)
                .create()
                .unwrap();
            let mut buf = vec![0u8; size];
            f.store(1, Release);
            wait_for(f, 2);
            let mut c = Chunks::after_warm_up(n, total);
            f.store(3, Release);
            let (mut got, mut idle, started) = (0, 0u32, Instant::now());
            while !c.done() {
                match sub.receive().unwrap() {
                    Some(m) => {
                        let p = m.payload();
                        if in_place {
                            std::hint::black_box(p[p.len() - 1]);
                        } else {
                            buf[..p.len()].copy_from_slice(p);
                        }
                        got += 1;
                        c.add(1);
                    }
                    None => {
                        idle = idle.wrapping_add(1);
                        if idle % 65536 == 0 {
                            assert!(
                                started.elapsed() < Duration::from_secs(120),
                                "iceoryx2 stream hung at {got}/{n}"
                            );
                        }
                        std::hint::spin_loop()
                    }
                }
            }
            ns = c.figure();
            f.store(4, Release);
            std::hint::black_box(&buf);
        },
    );
    ns
}
