//! `RawArray<T>` and `RawValue<T>`: typed shared data with no lock, read
//! and written element by element at any time, and lent as a slice in
//! phases that a `Barrier` orders.
#![cfg(target_os = "linux")]

mod harness;
use harness::*;
use shmprim::*;

use std::time::Duration;

shmprim::plain_struct! {
    /// A 24-byte element wider than one copy chunk.
    #[derive(Debug, PartialEq)]
    pub struct Frame {
        /// The round that wrote it.
        pub seq: u64,
        /// A coordinate.
        pub x: f64,
        /// Another.
        pub y: f64,
    }
}

#[test]
fn elements_read_and_write_without_a_lock() {
    let a = RawArray::<u32>::from_slice(&[1, 2, 3, 4]).unwrap();
    assert_eq!(a.len(), 4);
    assert_eq!(a.load(2).unwrap(), 3);
    a.store(2, 30).unwrap();
    assert_eq!(a.to_vec(), [1, 2, 30, 4]);
    assert!(matches!(
        a.load(4),
        Err(Error::OutOfRange { index: 4, len: 4 })
    ));
    assert!(matches!(a.store(9, 0), Err(Error::OutOfRange { .. })));
    a.write_from(1, &[7, 8]).unwrap();
    let mut two = [0; 2];
    a.read_into(2, &mut two).unwrap();
    assert_eq!(two, [8, 4]);
    assert!(a.read_into(3, &mut two).is_err());
    assert!(a.write_from(usize::MAX, &[1]).is_err());
    a.fill(5);
    // SAFETY: this thread alone uses `a` (anonymous, nothing forked).
    assert_eq!(unsafe { a.as_slice() }, [5, 5, 5, 5]);
    // SAFETY: as above; no other slice of it lives.
    unsafe { a.as_mut_slice()[0] = 6 };
    assert_eq!(a.load(0).unwrap(), 6);

    let f = Frame {
        seq: 1,
        x: 0.5,
        y: -2.0,
    };
    let frames = RawArray::<Frame>::anonymous(3).unwrap();
    frames.store(1, f).unwrap();
    assert_eq!(frames.load(1).unwrap(), f);
    assert_eq!(frames.load(0).unwrap().seq, 0, "zero-filled");

    let v = RawValue::<u128>::anonymous(u128::MAX - 1).unwrap();
    assert_eq!(v.load(), u128::MAX - 1);
    v.store(3);
    assert_eq!(v.load(), 3);
    assert_eq!(v.as_array().len(), 1);
}

#[test]
fn named_arrays_check_kind_type_and_length() {
    let name = unique("rawarr");
    let a = RawArray::<u64>::create(&name, 8).unwrap();
    a.store(7, 77).unwrap();
    let b = RawArray::<u64>::open(&name).unwrap();
    assert_eq!((b.len(), b.load(7).unwrap()), (8, 77));
    assert!(matches!(
        RawArray::<u64>::open_len(&name, 9),
        Err(Error::LengthMismatch {
            found: 8,
            expected: 9
        })
    ));
    assert!(matches!(
        RawArray::<u32>::open(&name),
        Err(Error::LayoutMismatch { .. })
    ));
    assert!(matches!(
        Array::<u64>::open(&name),
        Err(Error::KindMismatch { .. })
    ));
    assert!(matches!(
        RawValue::<u64>::open(&name),
        Err(Error::LengthMismatch { .. })
    ));
    assert_eq!(
        RawArray::<u64>::open_or_create(&name, 8)
            .unwrap()
            .load(7)
            .unwrap(),
        77
    );
    let vname = unique("rawval");
    let v = RawValue::<f64>::create(&vname, 1.25).unwrap();
    assert_eq!(RawValue::<f64>::open(&vname).unwrap().load(), 1.25);
    assert_eq!(RawArray::<f64>::open(&vname).unwrap().to_vec(), [1.25]);
    drop((a, b, v));
    assert!(RawArray::<u64>::open(&name).is_err(), "the creator unlinks");
}

/// Frames a child writes in place between barriers.
const FRAMES: usize = 64;
const ROUNDS: u64 = 50;

child!(
    /// Writes round `r`'s frames in place, then passes the barrier; the
    /// parent reads them in the next phase.
    fn writes_frames(ctx) {
        let a = RawArray::<Frame>::open_len(&ctx.arg("frames"), FRAMES)?;
        let b = Barrier::open(&ctx.arg("barrier"))?;
        for r in 0..ROUNDS {
            {
                // SAFETY: the writer's phase: the parent touches no frame
                // until the barrier below, and read the last round's before
                // the barrier above.
                let frames = unsafe { a.as_mut_slice() };
                for (i, f) in frames.iter_mut().enumerate() {
                    *f = Frame {
                        seq: r,
                        x: i as f64,
                        y: r as f64 * 0.5,
                    };
                }
            }
            b.wait_timeout(Duration::from_secs(20))?; // frames written
            b.wait_timeout(Duration::from_secs(20))?; // frames read
        }
    }
);

/// The zero-copy frame exchange a pool runs: a child writes frames in
/// place, a barrier ends its phase, the parent reads them in place; and
/// the element-wise reads agree with the slice.
#[test]
fn phases_ordered_by_a_barrier_share_frames_in_place() {
    let frames = unique("frames");
    let barrier = unique("framebar");
    let a = RawArray::<Frame>::create(&frames, FRAMES).unwrap();
    let b = Barrier::create(&barrier, 2, None).unwrap();
    let child = spawn("writes_frames")
        .arg("frames", &frames)
        .arg("barrier", &barrier)
        .start();
    for r in 0..ROUNDS {
        b.wait_timeout(Duration::from_secs(20)).unwrap();
        {
            // SAFETY: the reader's phase: the child writes no frame between
            // the two barriers.
            let s = unsafe { a.as_slice() };
            for (i, f) in s.iter().enumerate() {
                assert_eq!((f.seq, f.x, f.y), (r, i as f64, r as f64 * 0.5));
            }
        }
        assert_eq!(a.load(FRAMES - 1).unwrap().seq, r);
        b.wait_timeout(Duration::from_secs(20)).unwrap();
    }
    child.join();
}

/// A reader racing a writer, element by element, never sees a torn `u64`
/// and never crashes on the wider frames (whose chunks may mix rounds).
#[test]
fn racing_element_copies_are_sound() {
    let a = RawArray::<u64>::anonymous(16).unwrap();
    let f = RawArray::<Frame>::anonymous(4).unwrap();
    let (a2, f2) = (a.clone(), f.clone());
    let writer = std::thread::spawn(move || {
        for n in 1..=20_000u64 {
            let v = n * 0x0001_0001_0001_0001;
            a2.store((n % 16) as usize, v).unwrap();
            f2.store(
                (n % 4) as usize,
                Frame {
                    seq: n,
                    x: n as f64,
                    y: n as f64,
                },
            )
            .unwrap();
        }
    });
    while !writer.is_finished() {
        for i in 0..16 {
            let v = a.load(i).unwrap();
            let lane = v & 0xffff;
            assert_eq!(v, lane * 0x0001_0001_0001_0001, "torn u64 {v:#x}");
        }
        let _ = f.to_vec();
    }
    writer.join().unwrap();
}
