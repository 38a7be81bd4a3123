//! `SharedMap` and `SharedList`: the operations, growth followed by other
//! handles, any sizes, eight processes writing at once, a full `/dev/shm`.
//! (Writers killed mid-operation: `fault_containers.rs`.)
#![cfg(target_os = "linux")]

mod harness;
use harness::*;
use shmprim::{Error, SharedList, SharedMap};

use std::collections::BTreeMap;
use std::time::Duration;

fn shm_entries(prefix: &str) -> Vec<String> {
    let p = prefix.trim_start_matches('/');
    std::fs::read_dir("/dev/shm")
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(p))
        .collect()
}

#[test]
fn map_operations_and_snapshots() {
    let name = unique("mapops");
    {
        let m = SharedMap::create(&name).unwrap();
        assert!(m.is_empty().unwrap());
        assert!(!m.insert(b"a", b"1").unwrap());
        assert!(m.insert(b"a", b"2").unwrap());
        assert!(!m.insert(b"", b"empty key").unwrap());
        assert!(!m.insert(b"novalue", b"").unwrap());
        assert_eq!(m.get(b"a").unwrap().unwrap(), b"2");
        assert_eq!(m.get(b"").unwrap().unwrap(), b"empty key");
        assert_eq!(m.get(b"novalue").unwrap().unwrap(), b"");
        assert_eq!(m.get(b"zz").unwrap(), None);
        assert!(m.contains(b"a").unwrap());
        assert_eq!(m.len().unwrap(), 3);
        assert_eq!(m.remove(b"a").unwrap().unwrap(), b"2");
        assert_eq!(m.remove(b"a").unwrap(), None);
        assert!(!m.contains(b"a").unwrap());
        let mut keys = m.keys().unwrap();
        keys.sort();
        assert_eq!(keys, [b"".to_vec(), b"novalue".to_vec()]);
        assert_eq!(m.values().unwrap().len(), 2);
        assert_eq!(m.items().unwrap().len(), 2);

        // Atomic read-modify-write and get-or-insert.
        for _ in 0..10 {
            m.update_as::<u32, u64>(&7, |v| Some(v.unwrap_or(0) + 1))
                .unwrap();
        }
        assert_eq!(m.get_as::<u32, u64>(&7).unwrap(), Some(10));
        assert!(matches!(
            m.get_as::<u32, u32>(&7),
            Err(Error::LengthMismatch { .. })
        ));
        assert_eq!(
            m.get_or_insert_with(b"g", || b"first".to_vec()).unwrap(),
            b"first"
        );
        assert_eq!(
            m.get_or_insert_with(b"g", || b"second".to_vec()).unwrap(),
            b"first"
        );
        m.update(b"g", |_| None).unwrap();
        assert!(!m.contains(b"g").unwrap());

        // A transaction is all or nothing.
        let r: Result<(), Error> = m.transaction(|tx| {
            tx.insert(b"t1", b"x")?;
            tx.remove(b"novalue")?;
            assert!(tx.contains(b"t1")?);
            Err(Error::InvalidArgument("abort"))
        });
        assert!(r.is_err());
        assert!(!m.contains(b"t1").unwrap());
        assert!(m.contains(b"novalue").unwrap());
        m.transaction(|tx| {
            tx.insert(b"t1", b"x")?;
            tx.insert(b"t2", b"y")?;
            tx.remove(b"novalue")
        })
        .unwrap();
        assert_eq!(m.len().unwrap(), 4);

        // Another handle sees everything.
        let other = SharedMap::open(&name).unwrap();
        assert_eq!(other.get(b"t2").unwrap().unwrap(), b"y");
        m.clear().unwrap();
        assert_eq!(other.len().unwrap(), 0);
        assert!(matches!(
            SharedList::open(&name),
            Err(Error::KindMismatch { .. })
        ));
    }
    assert!(shm_entries(&name).is_empty(), "{:?}", shm_entries(&name));
}

#[test]
fn map_grows_with_any_sizes_and_other_handles_follow() {
    let name = unique("mapgrow");
    {
        let m = SharedMap::create(&name).unwrap();
        let other = SharedMap::open(&name).unwrap();
        let mut model = BTreeMap::new();
        for i in 0u32..3000 {
            let k = format!("key{i}").into_bytes();
            let v = vec![i as u8; (i as usize * 37) % 300];
            m.insert(&k, &v).unwrap();
            model.insert(k, v);
        }
        // Megabyte values, and overwrites of every size.
        let big = vec![7u8; 3 << 20];
        m.insert(b"big", &big).unwrap();
        model.insert(b"big".to_vec(), big);
        for i in (0u32..3000).step_by(3) {
            let k = format!("key{i}").into_bytes();
            if i % 2 == 0 {
                m.remove(&k).unwrap();
                model.remove(&k);
            } else {
                let v = vec![1u8; 5 + i as usize % 7];
                m.insert(&k, &v).unwrap();
                model.insert(k, v);
            }
        }
        assert_eq!(other.len().unwrap(), model.len());
        let got: BTreeMap<_, _> = other.items().unwrap().into_iter().collect();
        assert_eq!(got, model);
        // Only the current generation (and the root) are linked.
        assert_eq!(shm_entries(&name).len(), 2, "{:?}", shm_entries(&name));
        // Removing most of it and growing again reclaims the space.
        m.remove(b"big").unwrap();
        for i in 0..200u32 {
            m.insert(b"churn", &vec![i as u8; 1000 + i as usize])
                .unwrap();
        }
        let file = shm_entries(&name)
            .into_iter()
            .find(|n| n.contains('.'))
            .unwrap();
        let size = std::fs::metadata(format!("/dev/shm/{file}")).unwrap().len();
        assert!(size < 2 << 20, "space not reclaimed: {size}");
    }
    assert!(shm_entries(&name).is_empty(), "{:?}", shm_entries(&name));
}

#[test]
fn list_operations() {
    let name = unique("listops");
    {
        let l = SharedList::create(&name).unwrap();
        let other = SharedList::open(&name).unwrap();
        let mut model: Vec<Vec<u8>> = Vec::new();
        for i in 0..500u32 {
            let v = vec![i as u8; i as usize % 50];
            l.push(&v).unwrap();
            model.push(v);
        }
        l.insert(0, b"front").unwrap();
        model.insert(0, b"front".to_vec());
        l.insert(100, b"middle").unwrap();
        model.insert(100, b"middle".to_vec());
        assert_eq!(l.remove(3).unwrap(), model.remove(3));
        l.set(5, b"five").unwrap();
        model[5] = b"five".to_vec();
        l.set(6, &[9; 2000]).unwrap();
        model[6] = vec![9; 2000];
        assert_eq!(l.pop().unwrap(), model.pop());
        l.extend([b"x".to_vec(), b"y".to_vec()]).unwrap();
        model.extend([b"x".to_vec(), b"y".to_vec()]);
        assert_eq!(other.snapshot().unwrap(), model);
        assert_eq!(other.get(1).unwrap(), Some(model[1].clone()));
        assert_eq!(other.get(100_000).unwrap(), None);
        assert!(matches!(l.set(100_000, b""), Err(Error::OutOfRange { .. })));
        assert!(matches!(
            l.insert(100_000, b""),
            Err(Error::OutOfRange { .. })
        ));
        l.truncate(10).unwrap();
        model.truncate(10);
        assert_eq!(other.iter().unwrap().collect::<Vec<_>>(), model);
        l.push_as(&42u64).unwrap();
        assert_eq!(other.get_as::<u64>(10).unwrap(), Some(42));
        l.clear().unwrap();
        assert_eq!(other.len().unwrap(), 0);
        assert_eq!(other.pop().unwrap(), None);
    }
    assert!(shm_entries(&name).is_empty(), "{:?}", shm_entries(&name));
}

#[test]
fn anonymous_containers_cross_fork_and_leave_nothing() {
    // Anonymous containers' generations are named `/shmc-<pid>-...`.
    let mine = format!("shmc-{:x}-", std::process::id());
    {
        let m = SharedMap::anonymous().unwrap();
        let l = SharedList::anonymous().unwrap();
        m.insert(b"parent", b"1").unwrap();
        let pid = fork_child(|| {
            // Grow both from the child: the parent follows.
            for i in 0..2000u32 {
                if m.insert_as(&i, &[i; 4]).is_err() || l.push_as(&i).is_err() {
                    return 1;
                }
            }
            0
        });
        assert_eq!(reap(pid), 0);
        assert_eq!(m.len().unwrap(), 2001);
        assert_eq!(m.get_as::<u32, [u32; 4]>(&1999).unwrap(), Some([1999; 4]));
        assert_eq!(l.len().unwrap(), 2000);
        assert_eq!(l.get_as::<u32>(1234).unwrap(), Some(1234));
    }
    assert!(shm_entries(&mine).is_empty(), "{:?}", shm_entries(&mine));
}

#[cfg(feature = "serde")]
#[test]
fn serde_keys_and_values() {
    let m = SharedMap::anonymous().unwrap();
    m.insert_obj(&("k", 1u32), &vec![String::from("v")])
        .unwrap();
    let v: Option<Vec<String>> = m.get_obj(&("k", 1u32)).unwrap();
    assert_eq!(v.unwrap(), ["v"]);
    let l = SharedList::anonymous().unwrap();
    l.push_obj(&(1u8, "x")).unwrap();
    assert_eq!(
        l.get_obj::<(u8, String)>(0).unwrap().unwrap(),
        (1, "x".into())
    );
}

// ------------------------------------------------------ eight processes

const PROCS: u32 = 8;
const KEYS: u32 = 300;

child!(fn map_worker(ctx) {
    let me: u32 = ctx.parse("me");
    let m = SharedMap::open(&ctx.arg("map"))?;
    let l = SharedList::open(&ctx.arg("list"))?;
    for i in 0..KEYS {
        // Disjoint keys: inserted, then every third removed.
        m.insert_as(&[me, i], &(i as u64 * 3))?;
        // Overlapping keys: everyone increments the same counters.
        m.update_as::<u32, u64>(&(i % 10), |v| Some(v.unwrap_or(0) + 1))?;
        if i % 3 == 0 {
            m.remove_as(&[me, i])?;
        }
        l.push_as(&[me, i])?;
    }
});

#[test]
fn eight_processes_give_the_exact_final_state() {
    let _w = watchdog("eight_processes", Duration::from_secs(120));
    let (mn, ln) = (unique("map8"), unique("list8"));
    let m = SharedMap::create(&mn).unwrap();
    let l = SharedList::create(&ln).unwrap();
    let kids: Vec<_> = (0..PROCS)
        .map(|me| {
            spawn("map_worker")
                .arg("me", me)
                .arg("map", &mn)
                .arg("list", &ln)
                .start()
        })
        .collect();
    join_all(kids);
    for c in 0..10u32 {
        assert_eq!(
            m.get_as::<u32, u64>(&c).unwrap(),
            Some(u64::from(PROCS * KEYS / 10)),
            "counter {c}"
        );
    }
    for me in 0..PROCS {
        for i in 0..KEYS {
            let want = (i % 3 != 0).then_some(i as u64 * 3);
            assert_eq!(m.get_as::<[u32; 2], u64>(&[me, i]).unwrap(), want);
        }
    }
    assert_eq!(
        m.len().unwrap() as u32,
        10 + PROCS * (KEYS - KEYS.div_ceil(3))
    );
    let all = l.snapshot().unwrap();
    assert_eq!(all.len() as u32, PROCS * KEYS);
    // Each process's pushes appear in its own order.
    let mut next = vec![0u32; PROCS as usize];
    for b in all {
        let (me, i): (u32, u32) = (
            u32::from_ne_bytes(b[..4].try_into().unwrap()),
            u32::from_ne_bytes(b[4..].try_into().unwrap()),
        );
        assert_eq!(next[me as usize], i);
        next[me as usize] += 1;
    }
    drop((m, l));
    assert!(shm_entries(&mn).is_empty() && shm_entries(&ln).is_empty());
}

// ------------------------------------------------------- out of space

child!(fn enospc_container_child(ctx) {
    if let Err(why) = private_dev_shm(c"size=2m") {
        ctx.send(&format!("skip: {why}"));
        return Ok(());
    }
    let m = SharedMap::create("/full")?;
    let l = SharedList::create("/fulll")?;
    let mut n = 0u32;
    let err = loop {
        match m.insert_as(&n, &[n; 64]) {
            Ok(_) => n += 1,
            Err(e) => break e,
        }
        assert!(n < 1_000_000, "never ran out");
    };
    assert!(matches!(err, Error::OutOfSpace), "{err:?}");
    // Nothing lost, nothing half-written, and the map still works.
    assert_eq!(m.len()? as u32, n);
    for i in (0..n).step_by(97) {
        assert_eq!(m.get_as::<u32, [u32; 64]>(&i)?, Some([i; 64]));
    }
    let e = m.insert(b"huge", &vec![0; 4 << 20]).unwrap_err();
    assert!(matches!(e, Error::OutOfSpace), "{e:?}");
    assert_eq!(m.len()? as u32, n);
    let e = l.extend((0..100_000u32).map(|i| i.to_le_bytes())).unwrap_err();
    assert!(matches!(e, Error::OutOfSpace), "{e:?}");
    assert_eq!(l.len()?, 0, "a failed extend left elements");
    // Overwrites of the same size need no new space; removes always work.
    m.insert_as(&1u32, &[7u32; 64])?;
    assert_eq!(m.get_as::<u32, [u32; 64]>(&1)?, Some([7; 64]));
    assert!(m.remove_as(&0u32)?);
    assert_eq!(m.len()? as u32, n - 1);
    drop((m, l));
    let left: Vec<_> = std::fs::read_dir("/dev/shm")?.collect();
    assert!(left.is_empty(), "{left:?}");
    ctx.send("ok");
});

#[test]
fn out_of_space_loses_nothing() {
    let kid = spawn("enospc_container_child").start();
    let msg = kid
        .recv(Duration::from_secs(60))
        .unwrap_or_else(|| panic!("no report\n{}", kid.output()));
    if let Some(why) = msg.strip_prefix("skip: ") {
        eprintln!("out_of_space_loses_nothing: skipped ({why})");
    } else {
        assert_eq!(msg, "ok");
    }
    kid.join();
}

#[test]
fn open_or_create_races_and_persisted_names_outlive_the_creator() {
    let name = unique("orc");
    {
        let maps: Vec<SharedMap> = (0..4)
            .map(|_| {
                let n = name.clone();
                std::thread::spawn(move || SharedMap::open_or_create(&n).unwrap())
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().unwrap())
            .collect();
        for (i, m) in maps.iter().enumerate() {
            m.insert_as(&(i as u32), &1u8).unwrap();
        }
        for m in &maps {
            assert_eq!(m.len().unwrap(), 4);
        }
    }
    assert!(shm_entries(&name).is_empty(), "{:?}", shm_entries(&name));

    let opts = shmprim::Options::new().persist(true);
    drop(SharedList::create_with(&name, &opts).unwrap().push(b"kept"));
    let l = SharedList::open(&name).unwrap();
    assert_eq!(l.get(0).unwrap().unwrap(), b"kept");
    for i in 0..1000u32 {
        l.push_as(&i).unwrap(); // grows: the new generation is kept too
    }
    drop(l);
    let l = SharedList::open(&name).unwrap();
    assert_eq!(l.len().unwrap(), 1001);
    l.unlink().unwrap();
    assert!(shm_entries(&name).is_empty(), "{:?}", shm_entries(&name));
    assert!(matches!(SharedList::open(&name), Err(Error::NotFound)));
}

#[test]
fn a_handle_on_a_removed_container_leaves_its_successor_alone() {
    let name = unique("mapreuse");
    let a = SharedMap::create(&name).unwrap();
    let b = SharedMap::open(&name).unwrap();
    drop(a); // removes the names; `b` still maps the old container
    {
        let c = SharedMap::create(&name).unwrap();
        for i in 0u32..2000 {
            c.insert(&i.to_le_bytes(), &[1u8; 64]).unwrap();
        }
        // The old container cannot grow any more: no name of the new
        // one is touched.
        let mut refused = false;
        for i in 0u32..2000 {
            match b.insert(&i.to_le_bytes(), &[2u8; 64]) {
                Ok(_) => {}
                Err(Error::NotFound) => {
                    refused = true;
                    break;
                }
                Err(e) => panic!("{e:?}"),
            }
        }
        assert!(refused);
        let d = SharedMap::open(&name).unwrap();
        assert_eq!(d.len().unwrap(), 2000);
        assert_eq!(d.get(&5u32.to_le_bytes()).unwrap().unwrap(), [1u8; 64]);
    }
    drop(b);
    assert!(shm_entries(&name).is_empty(), "{:?}", shm_entries(&name));
}

#[test]
fn a_generation_grown_by_an_exited_process_is_kept_by_the_cleaner() {
    use shmprim::segment::inventory;
    let name = unique("mapclean");
    {
        let m = SharedMap::create(&name).unwrap();
        let pid = fork_child(|| {
            for i in 0..2000u32 {
                if m.insert_as(&i, &i).is_err() {
                    return 1;
                }
            }
            0
        });
        assert_eq!(reap(pid), 0);
        // The child that created the current generation is gone and this
        // process has not mapped it yet: the root's creator keeps it.
        let gens: Vec<_> = shm_entries(&name)
            .into_iter()
            .filter(|n| n.contains('.'))
            .collect();
        assert_eq!(gens.len(), 1, "{gens:?}");
        let report = inventory::inspect(&format!("/{}", gens[0])).unwrap();
        assert!(report.in_use() && !report.is_stale(), "{report:?}");
        assert!(!inventory::remove_if_stale(&format!("/{}", gens[0])).unwrap());
        assert_eq!(m.len().unwrap(), 2000);
    }
    assert!(shm_entries(&name).is_empty(), "{:?}", shm_entries(&name));
}

#[test]
fn a_root_abandoned_before_its_magic_is_removed_by_the_next_opener() {
    let name = unique("mapabandon");
    // A creator killed between creating the root and publishing the
    // container: a root segment of the right size with no magic.
    let abandon = || {
        let pid = fork_child(|| match shmprim::Segment::create(&name, 512) {
            Ok(seg) => {
                seg.persist();
                0
            }
            Err(_) => 1,
        });
        assert_eq!(reap(pid), 0);
    };
    abandon();
    assert!(matches!(SharedMap::open(&name), Err(Error::NotFound)));
    assert!(shm_entries(&name).is_empty(), "{:?}", shm_entries(&name));
    abandon();
    {
        let m = SharedMap::open_or_create(&name).unwrap();
        m.insert(b"k", b"v").unwrap();
    }
    assert!(shm_entries(&name).is_empty(), "{:?}", shm_entries(&name));
}

#[test]
fn a_generation_removed_by_hand_is_not_found_at_once() {
    let name = unique("mapgone");
    let a = SharedMap::create(&name).unwrap();
    let b = SharedMap::open(&name).unwrap();
    for i in 0u32..2000 {
        a.insert(&i.to_le_bytes(), &[1u8; 64]).unwrap();
    }
    // `a` grew: the published generation is one `b` has not mapped. Its
    // name is removed by hand (or the root's `current` is garbage: the
    // `containers` fuzz target's case).
    let gens: Vec<_> = shm_entries(&name)
        .into_iter()
        .filter(|n| n.contains('.'))
        .collect();
    assert_eq!(gens.len(), 1, "{gens:?}");
    std::fs::remove_file(format!("/dev/shm/{}", gens[0])).unwrap();
    // `b` cannot follow: every call ends in `NotFound`, and none waits
    // for the name to come back (each once waited 2 s: 100 s here; the
    // bound is generous for a loaded machine, and only guards a stall).
    let t = std::time::Instant::now();
    for _ in 0..50 {
        assert!(matches!(b.len(), Err(Error::NotFound)));
    }
    assert!(t.elapsed() < Duration::from_secs(25), "{:?}", t.elapsed());
    // `a` still works on the generation it maps.
    assert_eq!(a.len().unwrap(), 2000);
    drop(b);
    drop(a);
    assert!(shm_entries(&name).is_empty(), "{:?}", shm_entries(&name));
}
