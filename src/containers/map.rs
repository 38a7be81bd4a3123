//! [`SharedMap`]: a growable map of byte keys to byte values in shared
//! memory (Python's `Manager().dict()`), open addressing over a slot table
//! with the key's hash, records in the generation's heap.

use std::time::Duration;

use super::core::{Core, Need, Place, Writer};
use super::gen::{self, Gen, Rec, G_LEN, G_LIVE, G_USED};
use super::{as_bytes, from_bytes, hash, Shape, INPLACE_MAX};
use crate::fault::fault_point;
use crate::{Error, Options, Plain, Result};

/// A map of byte strings to byte strings in shared memory, shared by
/// every process that opens it by name (or inherits it across `fork`),
/// growing without limit until `/dev/shm` is full.
///
/// Every operation is atomic; a writer killed at any instant leaves the
/// map as it was before that operation or after it, and the next process
/// to use it repairs it without being asked. Reads take no lock (see the
/// [module docs](crate::containers)).
///
/// ```
/// let m = shmprim::SharedMap::anonymous().unwrap();
/// m.insert(b"apples", b"3").unwrap();
/// m.update(b"apples", |v| Some([v.unwrap_or(b""), b"!"].concat())).unwrap();
/// assert_eq!(m.get(b"apples").unwrap().as_deref(), Some(&b"3!"[..]));
/// ```
pub struct SharedMap {
    core: Core,
}

impl std::fmt::Debug for SharedMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedMap")
            .field("name", &self.core.name())
            .finish()
    }
}

/// Where `key` is in a generation's table.
struct Probe {
    /// The slot (its offset) and record holding `key`.
    hit: Option<(u64, Rec)>,
    /// The first slot `key` could be inserted at (a tombstone or the empty
    /// slot ending the probe), and whether it is a tombstone.
    free: Option<(u64, bool)>,
}

fn find(g: &Gen, key: &[u8], h: u64) -> Result<Probe> {
    let mask = g.nslots - 1;
    let mut i = h & mask;
    let mut tomb = None;
    for _ in 0..g.nslots {
        let s = g.slot(i);
        match g.get(s + 8) {
            gen::EMPTY => {
                return Ok(Probe {
                    hit: None,
                    free: Some(tomb.map_or((s, false), |t| (t, true))),
                })
            }
            gen::TOMBSTONE => {
                tomb.get_or_insert(s);
            }
            off => {
                if g.get(s) == h {
                    let r = g.rec(off)?;
                    if r.klen == key.len() as u64 && g.eq_at(r.key_off(), key) {
                        return Ok(Probe {
                            hit: Some((s, r)),
                            free: None,
                        });
                    }
                }
            }
        }
        i = (i + 1) & mask;
    }
    Ok(Probe {
        hit: None,
        free: tomb.map(|t| (t, true)),
    })
}

fn value_of(g: &Gen, r: &Rec, out: &mut Vec<u8>) {
    out.clear();
    out.resize(r.vlen as usize, 0);
    g.copy_out(r.val_off(), out);
}

fn key_of(g: &Gen, r: &Rec) -> Vec<u8> {
    let mut k = vec![0; r.klen as usize];
    g.copy_out(r.key_off(), &mut k);
    k
}

/// The live records of a generation, in slot order. Garbage cannot make
/// the caller allocate without bound: more records than counted, or more
/// bytes than the heap holds (slots naming one record many times), is
/// `Corrupt`.
fn entries(g: &Gen, mut f: impl FnMut(Rec)) -> Result<()> {
    let (len, mut budget) = (g.len(), g.heap_cap());
    let mut n = 0u64;
    for i in 0..g.nslots {
        let off = g.get(g.slot(i) + 8);
        if off != gen::EMPTY && off != gen::TOMBSTONE {
            let r = g.rec(off)?;
            n += 1;
            budget = budget
                .checked_sub(r.size())
                .filter(|_| n <= len)
                .ok_or(Error::Corrupt("container: entry count"))?;
            f(r);
        }
    }
    if n != g.len() {
        return Err(Error::Corrupt("container: entry count"));
    }
    Ok(())
}

/// Several map operations applied as one atomic step: see
/// [`SharedMap::transaction`]. Reads see the transaction's own writes.
pub struct MapTx<'a> {
    w: Writer<'a>,
}

impl std::fmt::Debug for MapTx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MapTx").finish_non_exhaustive()
    }
}

impl MapTx<'_> {
    /// The value of `key`.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let g = self.w.gen();
        Ok(find(g, key, hash(key))?.hit.map(|(_, r)| {
            let mut v = Vec::new();
            value_of(g, &r, &mut v);
            v
        }))
    }

    /// Whether `key` is present.
    pub fn contains(&self, key: &[u8]) -> Result<bool> {
        Ok(find(self.w.gen(), key, hash(key))?.hit.is_some())
    }

    /// Entries.
    pub fn len(&self) -> usize {
        self.w.gen().len() as usize
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sets `key` to `value`; true if it replaced a value.
    pub fn insert(&mut self, key: &[u8], value: &[u8]) -> Result<bool> {
        let (k, v) = (key.len() as u64, value.len() as u64);
        let h = hash(key);
        let in_place = |p: &Probe| matches!(p.hit, Some((_, r)) if r.vlen == v && v <= INPLACE_MAX);
        // An overwrite in place needs no heap: it works in a full /dev/shm.
        let first = find(self.w.gen(), key, h)?;
        let need = if in_place(&first) {
            Need {
                log: gen::log_entry_size(v),
                ..Need::default()
            }
        } else {
            Need {
                heap: gen::rec_size(k, v),
                slots: 1,
                log: gen::log_entry_size(16),
            }
        };
        let probe = Some(first);
        let before = self.w.gen().number;
        self.w.ensure(need)?;
        let g = self.w.gen();
        // Found again only if the write moved to a new generation.
        let p = match probe {
            Some(p) if g.number == before => p,
            _ => find(g, key, h)?,
        };
        let inplace = in_place(&p);
        if let Some((s, old)) = p.hit {
            if inplace && need.heap == 0 {
                self.w.log(old.val_off(), v)?;
                g.copy_in(old.val_off(), value);
            } else {
                let off = g.alloc(key, value)?;
                self.w.log(s + 8, 8)?;
                g.set(s + 8, off);
                g.set(G_LIVE, g.get(G_LIVE).wrapping_sub(old.size()));
            }
            fault_point!("container.map.insert");
            return Ok(true);
        }
        let (s, tomb) = p.free.ok_or(Error::Corrupt("container: table full"))?;
        let count = |at| {
            g.get(at)
                .checked_add(1)
                .ok_or(Error::Corrupt("container: entry count"))
        };
        let len = count(G_LEN)?;
        let used = if tomb { g.get(G_USED) } else { count(G_USED)? };
        let off = g.alloc(key, value)?;
        self.w.log(s, 16)?;
        g.set(s, h);
        g.set(s + 8, off);
        g.set(G_LEN, len);
        g.set(G_USED, used);
        fault_point!("container.map.insert");
        Ok(false)
    }

    /// Removes `key`; its value, if it was there.
    pub fn remove(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.w.ensure(Need {
            log: gen::log_entry_size(8),
            ..Need::default()
        })?;
        let g = self.w.gen();
        let Some((s, r)) = find(g, key, hash(key))?.hit else {
            return Ok(None);
        };
        let mut old = Vec::new();
        value_of(g, &r, &mut old);
        self.w.log(s + 8, 8)?;
        g.set(s + 8, gen::TOMBSTONE);
        g.set(G_LEN, g.get(G_LEN).wrapping_sub(1));
        g.set(G_LIVE, g.get(G_LIVE).wrapping_sub(r.size()));
        fault_point!("container.map.remove");
        Ok(Some(old))
    }

    /// Removes every entry.
    pub fn clear(&mut self) -> Result<()> {
        self.w.clear()
    }
}

impl SharedMap {
    /// Creates the map `name` (exclusive: [`Error::AlreadyExists`] if
    /// taken). Generations are named `name.N`: the name must leave 17
    /// bytes of room below the platform's limit.
    pub fn create(name: &str) -> Result<Self> {
        Self::create_with(name, &Options::new())
    }

    /// [`SharedMap::create`] with options (mode, persist).
    pub fn create_with(name: &str, opts: &Options) -> Result<Self> {
        let core = Core::create(Place::Named(name, opts), Shape::Map)?;
        if opts.persist_requested() {
            core.persist();
        }
        Ok(SharedMap { core })
    }

    /// Opens the map `name`.
    pub fn open(name: &str) -> Result<Self> {
        Self::open_with(name, &Options::new())
    }

    /// [`SharedMap::open`] with options.
    pub fn open_with(name: &str, opts: &Options) -> Result<Self> {
        Ok(SharedMap {
            core: Core::open(name, Shape::Map, opts)?,
        })
    }

    /// Opens `name`, or creates it empty; exactly one racing caller creates.
    pub fn open_or_create(name: &str) -> Result<Self> {
        Ok(SharedMap {
            core: Core::open_or_create(name, Shape::Map)?,
        })
    }

    /// A map with no name, shared with children forked after this call.
    /// Its generations still need names in `/dev/shm` (so that every
    /// process can follow growth): unique ones, removed when the creating
    /// process's handle drops.
    pub fn anonymous() -> Result<Self> {
        Ok(SharedMap {
            core: Core::create(Place::Anonymous, Shape::Map)?,
        })
    }

    /// The name, or `None` for an anonymous map.
    pub fn name(&self) -> Option<&str> {
        self.core.name()
    }

    /// Keeps the names after the creator's handle drops.
    pub fn persist(&self) {
        self.core.persist()
    }

    /// Removes the names now: handles keep working on what they have
    /// mapped, but a handle that has not followed the latest growth gets
    /// [`Error::NotFound`].
    pub fn unlink(&self) -> Result<()> {
        self.core.unlink()
    }

    /// Bounds every wait for the writers' lock (default: none): a writer
    /// that holds it longer makes operations fail with [`Error::Timeout`].
    pub fn set_timeout(&self, timeout: Option<Duration>) {
        self.core.set_timeout(timeout)
    }

    /// Entries.
    pub fn len(&self) -> Result<usize> {
        self.core.read(|g| Ok(g.len() as usize))
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// The value of `key`.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let mut v = Vec::new();
        Ok(self.get_into(key, &mut v)?.then_some(v))
    }

    /// Copies the value of `key` into `out` (replacing its contents);
    /// false if absent. Reuses `out`'s allocation.
    pub fn get_into(&self, key: &[u8], out: &mut Vec<u8>) -> Result<bool> {
        let h = hash(key);
        self.core.read(|g| match find(g, key, h)?.hit {
            Some((_, r)) => {
                value_of(g, &r, out);
                Ok(true)
            }
            None => Ok(false),
        })
    }

    /// Whether `key` is present.
    pub fn contains(&self, key: &[u8]) -> Result<bool> {
        let h = hash(key);
        self.core.read(|g| Ok(find(g, key, h)?.hit.is_some()))
    }

    /// Sets `key` to `value`; true if it replaced a value.
    pub fn insert(&self, key: &[u8], value: &[u8]) -> Result<bool> {
        self.transaction(|tx| tx.insert(key, value))
    }

    /// Removes `key`; its value, if it was there.
    pub fn remove(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.transaction(|tx| tx.remove(key))
    }

    /// Removes every entry (the map shrinks back to its first size).
    pub fn clear(&self) -> Result<()> {
        self.transaction(|tx| tx.clear())
    }

    /// Every key and value, as one consistent snapshot.
    pub fn items(&self) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.core.read(|g| {
            let mut out = Vec::with_capacity(g.len().min(1 << 20) as usize);
            entries(g, |r| {
                let mut v = Vec::new();
                value_of(g, &r, &mut v);
                out.push((key_of(g, &r), v));
            })?;
            Ok(out)
        })
    }

    /// Every key, as one consistent snapshot.
    pub fn keys(&self) -> Result<Vec<Vec<u8>>> {
        self.core.read(|g| {
            let mut out = Vec::new();
            entries(g, |r| out.push(key_of(g, &r)))?;
            Ok(out)
        })
    }

    /// Every value, as one consistent snapshot.
    pub fn values(&self) -> Result<Vec<Vec<u8>>> {
        self.core.read(|g| {
            let mut out = Vec::new();
            entries(g, |r| {
                let mut v = Vec::new();
                value_of(g, &r, &mut v);
                out.push(v);
            })?;
            Ok(out)
        })
    }

    /// Atomically replaces the value of `key` by `f(current)`: `None` from
    /// `f` removes it. Python's `d[k] += 1` without the lost updates.
    /// Returns the new value.
    pub fn update(
        &self,
        key: &[u8],
        f: impl FnOnce(Option<&[u8]>) -> Option<Vec<u8>>,
    ) -> Result<Option<Vec<u8>>> {
        self.transaction(|tx| {
            let cur = tx.get(key)?;
            fault_point!("container.map.update");
            let new = f(cur.as_deref());
            match &new {
                Some(v) => {
                    tx.insert(key, v)?;
                }
                None => {
                    tx.remove(key)?;
                }
            }
            Ok(new)
        })
    }

    /// The value of `key`, inserting `f()` first if it is absent (one
    /// atomic step: `f` runs at most once, under the lock).
    pub fn get_or_insert_with(&self, key: &[u8], f: impl FnOnce() -> Vec<u8>) -> Result<Vec<u8>> {
        if let Some(v) = self.get(key)? {
            return Ok(v);
        }
        self.transaction(|tx| match tx.get(key)? {
            Some(v) => Ok(v),
            None => {
                let v = f();
                tx.insert(key, &v)?;
                Ok(v)
            }
        })
    }

    /// Runs `f` as one atomic step: other processes see all of its writes
    /// or none; an `Err` from `f` (or a panic, or the writer's death)
    /// undoes them. Writers wait for each other; readers never wait.
    pub fn transaction<R>(&self, f: impl FnOnce(&mut MapTx<'_>) -> Result<R>) -> Result<R> {
        let mut tx = MapTx {
            w: self.core.write()?,
        };
        let r = f(&mut tx)?;
        tx.w.commit()?;
        Ok(r)
    }

    /// The value of a `Plain` key, read as a `Plain` type
    /// ([`Error::LengthMismatch`] if the stored value has another size).
    pub fn get_as<K: Plain, V: Plain>(&self, key: &K) -> Result<Option<V>> {
        let key = as_bytes(key);
        let h = hash(key);
        self.core.read(|g| match find(g, key, h)?.hit {
            Some((_, r)) => {
                let n = std::mem::size_of::<V>() as u64;
                if r.vlen != n {
                    return Err(Error::LengthMismatch {
                        found: r.vlen,
                        expected: n,
                    });
                }
                Ok(Some(g.read_plain::<V>(r.val_off())))
            }
            None => Ok(None),
        })
    }

    /// Sets a `Plain` key to a `Plain` value; true if it replaced one.
    pub fn insert_as<K: Plain, V: Plain>(&self, key: &K, value: &V) -> Result<bool> {
        self.insert(as_bytes(key), as_bytes(value))
    }

    /// Removes a `Plain` key; true if it was there.
    pub fn remove_as<K: Plain>(&self, key: &K) -> Result<bool> {
        Ok(self.remove(as_bytes(key))?.is_some())
    }

    /// [`SharedMap::update`] with `Plain` key and value (a stored value of
    /// another size is [`Error::LengthMismatch`], nothing changed).
    pub fn update_as<K: Plain, V: Plain>(
        &self,
        key: &K,
        f: impl FnOnce(Option<V>) -> Option<V>,
    ) -> Result<Option<V>> {
        let key = as_bytes(key);
        self.transaction(|tx| {
            let cur = tx.get(key)?.map(|b| from_bytes::<V>(&b)).transpose()?;
            fault_point!("container.map.update");
            let new = f(cur);
            match &new {
                Some(v) => {
                    tx.insert(key, as_bytes(v))?;
                }
                None => {
                    tx.remove(key)?;
                }
            }
            Ok(new)
        })
    }

    /// The value of `key` decoded with the crate's serde codec.
    #[cfg(feature = "serde")]
    pub fn get_obj<K, V>(&self, key: &K) -> Result<Option<V>>
    where
        K: serde::Serialize + ?Sized,
        V: serde::de::DeserializeOwned,
    {
        let k = crate::codec::encode(key)?;
        self.get(&k)?.map(|b| crate::codec::decode(&b)).transpose()
    }

    /// Sets a serde key to a serde value; true if it replaced one.
    #[cfg(feature = "serde")]
    pub fn insert_obj<K, V>(&self, key: &K, value: &V) -> Result<bool>
    where
        K: serde::Serialize + ?Sized,
        V: serde::Serialize + ?Sized,
    {
        self.insert(&crate::codec::encode(key)?, &crate::codec::encode(value)?)
    }

    /// Removes a serde key; its decoded value, if it was there.
    #[cfg(feature = "serde")]
    pub fn remove_obj<K, V>(&self, key: &K) -> Result<Option<V>>
    where
        K: serde::Serialize + ?Sized,
        V: serde::de::DeserializeOwned,
    {
        let k = crate::codec::encode(key)?;
        self.remove(&k)?
            .map(|b| crate::codec::decode(&b))
            .transpose()
    }

    #[cfg(fuzzing)]
    pub(crate) fn __from_core(core: Core) -> Self {
        SharedMap { core }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hostile counts and slots: typed errors, no overflow, no allocation
    /// beyond the heap.
    #[test]
    fn garbage_counts_and_repeated_records_are_corrupt() {
        let m = SharedMap::anonymous().unwrap();
        m.insert(b"k", &[7; 1000]).unwrap();
        let pin = m.core.pin();
        let g = pin.get();
        let len = g.get(G_LEN);
        g.set(G_LEN, u64::MAX);
        let r = m.insert(b"other", b"v");
        assert!(matches!(r, Err(Error::Corrupt(_))), "{r:?}");
        g.set(G_LEN, len);
        // Every slot names the one record: more bytes than the heap holds.
        let off = (0..g.nslots)
            .map(|i| g.get(g.slot(i) + 8))
            .find(|&o| o != gen::EMPTY && o != gen::TOMBSTONE)
            .unwrap();
        for i in 0..g.nslots {
            g.set(g.slot(i), 0);
            g.set(g.slot(i) + 8, off);
        }
        g.set(G_LEN, g.nslots);
        assert!(matches!(m.items(), Err(Error::Corrupt(_))));
        g.set(G_LEN, g.nslots - 1);
        assert!(matches!(m.keys(), Err(Error::Corrupt(_))));
    }

    /// A rollback that fails on a write's error path leaves the repair
    /// owed: the next writer gets the error instead of committing over
    /// half a write.
    #[test]
    fn a_failed_rollback_is_not_committed_over() {
        let m = SharedMap::anonymous().unwrap();
        m.insert(b"a", b"1").unwrap();
        let r = m.transaction(|tx| {
            tx.insert(b"a", b"2")?;
            let pin = m.core.pin();
            // A log length that is not whole words cannot be replayed.
            pin.get()
                .log_len()
                .store(12, std::sync::atomic::Ordering::Relaxed);
            Err::<(), _>(Error::InvalidArgument("abort"))
        });
        assert!(matches!(r, Err(Error::InvalidArgument(_))));
        let r = m.insert(b"b", b"1");
        assert!(matches!(r, Err(Error::Corrupt(_))), "{r:?}");
        assert!(matches!(m.get(b"a"), Err(Error::Corrupt(_))));
    }
}
