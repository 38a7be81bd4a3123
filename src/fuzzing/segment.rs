//! Arbitrary bytes as a segment of every handle kind.

use super::{attach, fp};
use crate::segment::{Fingerprint, Kind};
use crate::*;
use std::time::Duration;

/// Opens `bytes` as every kind in turn, exercising each object's checks.
/// Returns how many kinds accepted them.
pub fn open_all(bytes: &[u8]) -> usize {
    let opts = Options::new().open_timeout(Duration::ZERO);
    let mut ok = 0;
    if let Ok(seg) = attach(bytes, Kind::Value, fp::<u64>()) {
        if let Ok(v) = Value::<u64>::__attach(seg, &opts) {
            let _ = v.try_lock().map(|g| *g);
            ok += 1;
        }
    }
    if let Ok(seg) = attach(bytes, Kind::Array, fp::<u32>()) {
        if let Ok(a) = Array::<u32>::__attach(seg, &opts) {
            let _ = a
                .try_lock()
                .map(|g| g.iter().fold(0u32, |x, y| x.wrapping_add(*y)));
            ok += 1;
        }
    }
    if let Ok(seg) = attach(bytes, Kind::AtomicValue, fp::<u64>()) {
        if let Ok(a) = AtomicValue::<u64>::__attach(seg) {
            a.fetch_add(1);
            ok += 1;
        }
    }
    if let Ok(seg) = attach(bytes, Kind::RawArray, fp::<u64>()) {
        if let Ok(a) = RawArray::<u64>::__attach(seg) {
            let _ = a.to_vec();
            ok += 1;
        }
    }
    if let Ok(seg) = attach(bytes, Kind::Lock, Fingerprint::NONE) {
        if let Ok(l) = Lock::__attach(seg) {
            let _ = l.try_lock().map(|_| ());
            ok += 1;
        }
    }
    if let Ok(seg) = attach(bytes, Kind::RLock, Fingerprint::NONE) {
        if let Ok(l) = RLock::__attach(seg) {
            let _ = l.try_lock().map(|_| ());
            ok += 1;
        }
    }
    if attach(bytes, Kind::Bytes, Fingerprint::NONE).is_ok() {
        ok += 1;
    }
    ok
}
