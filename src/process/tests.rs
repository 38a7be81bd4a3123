//! Unit tests of the codec, the function token and the wire format; and
//! one spawn from the library's own test binary, through the entry macro.

use super::boot::{decode_head, encode_head, Head, Report};
use super::message::{decode, encode, Decoder, Encoder, Message};
use super::target::FnRef;
use super::{Builder, Method};

crate::process_test_entry!();

fn round<T: Message + PartialEq + std::fmt::Debug>(v: T) {
    let (b, fds) = encode(&v).unwrap();
    assert!(fds.is_empty());
    assert_eq!(decode::<T>(&b, &mut []).unwrap(), v);
    // Every strict prefix is refused, never a panic.
    for n in 0..b.len() {
        assert!(
            decode::<T>(&b[..n], &mut []).is_err(),
            "prefix {n} of {v:?}"
        );
    }
    let mut longer = b.clone();
    longer.push(0);
    assert!(decode::<T>(&longer, &mut []).is_err());
}

#[test]
fn values_round_trip_and_truncations_are_refused() {
    round(7u64);
    round([1u32, 2, 3]);
    round(true);
    round(String::from("héllo"));
    round(vec![Some(1u16), None, Some(3)]);
    round((1u8, String::from("x"), vec![vec![2u64]], (false, -5i32)));
    round(((), 1.5f64));
}

#[test]
fn garbage_never_panics() {
    let mut x = 0x1234_5678_9abc_def0u64;
    for _ in 0..2000 {
        let n = (x % 64) as usize;
        let bytes: Vec<u8> = (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let _ = decode::<(String, Vec<Option<u32>>, bool)>(&bytes, &mut []);
        let _ = decode::<Vec<Vec<()>>>(&bytes, &mut []);
        let _ = decode::<FnRef<u32, u32>>(&bytes, &mut []);
        let _ = decode::<crate::Queue>(&[1, 0, 0, 0, 0, 0, 0, 0, 0][..n.min(9)], &mut []);
        let _ = Report::decode(&bytes);
        let mut fds = Vec::new();
        let _ = decode_head(&mut Decoder::new(&bytes, &mut fds));
    }
    // A huge count is refused before anything is allocated for it.
    let mut e = Encoder::new();
    e.put_u64(u64::MAX);
    let (b, _) = e.finish();
    assert!(decode::<String>(&b, &mut []).is_err());
    assert!(decode::<Vec<u64>>(&b, &mut []).is_err());
    assert!(decode::<bool>(&[2], &mut []).is_err());
}

/// Zero-byte items (`()`) consume no input: hostile counts, nested, must
/// be refused at once instead of looping 2^32 (or 2^64) times.
#[test]
fn zero_byte_items_are_bounded() {
    let start = std::time::Instant::now();
    for count in [u64::MAX, u64::from(u32::MAX), 1 << 20, 4097] {
        let mut e = Encoder::new();
        for _ in 0..8 {
            e.put_u64(count);
        }
        let (b, _) = e.finish();
        assert!(decode::<Vec<()>>(&b[..8], &mut []).is_err(), "{count}");
        assert!(decode::<Vec<Vec<()>>>(&b, &mut []).is_err(), "{count}");
        assert!(decode::<Vec<Vec<Vec<()>>>>(&b, &mut []).is_err(), "{count}");
    }
    // Real zero-byte sequences within the budget still round-trip.
    let v = vec![vec![(); 1000], vec![(); 3000]];
    let (b, _) = encode(&v).unwrap();
    assert_eq!(decode::<Vec<Vec<()>>>(&b, &mut []).unwrap(), v);
    // Generous bound: the failure mode was an hour.
    assert!(start.elapsed() < std::time::Duration::from_secs(5));
}

fn triple(x: u32) -> u32 {
    x * 3
}

#[test]
fn function_tokens_check_types_and_integrity() {
    let f = FnRef::new(triple);
    assert_eq!(f.call(5), 15);
    let (b, _) = encode(&f).unwrap();
    assert_eq!(decode::<FnRef<u32, u32>>(&b, &mut []).unwrap().call(2), 6);
    // Other argument or result types: refused.
    assert!(decode::<FnRef<u64, u32>>(&b, &mut []).is_err());
    assert!(decode::<FnRef<u32, String>>(&b, &mut []).is_err());
    // Any flipped bit: refused by the checksum or the identity check.
    for i in 0..b.len() {
        let mut c = b.clone();
        c[i] ^= 0x10;
        assert!(
            decode::<FnRef<u32, u32>>(&c, &mut []).is_err(),
            "bit in byte {i}"
        );
    }
}

#[test]
fn start_message_head_round_trips() {
    let head = Head {
        flags: 1,
        parent: 42,
        name: "w".into(),
        parent_name: "MainProcess".into(),
        token: FnRef::new(triple).raw(),
    };
    let mut e = Encoder::new();
    encode_head(&mut e, &head);
    9u32.encode(&mut e).unwrap();
    let (b, _) = e.finish();
    let mut fds = Vec::new();
    let mut d = Decoder::new(&b, &mut fds);
    let got = decode_head(&mut d).unwrap();
    assert_eq!((got.flags, got.parent, got.name.as_str()), (1, 42, "w"));
    assert_eq!(got.token, head.token);
    assert_eq!(u32::decode(&mut d).unwrap(), 9);
    for r in [
        Report::CheckedIn,
        Report::Result(vec![1, 2]),
        Report::Panic("p".into()),
        Report::Refused("r".into()),
    ] {
        assert_eq!(Report::decode(&r.encode()).unwrap(), r);
    }
}

#[test]
fn spawn_from_the_library_test_binary() {
    let mut p = Builder::new()
        .method(Method::Spawn)
        .start(triple, 7)
        .unwrap();
    assert_eq!(p.join().unwrap(), 21);
}
