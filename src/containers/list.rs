//! [`SharedList`]: a growable list of byte strings in shared memory
//! (Python's `Manager().list()`): a table of record offsets in index
//! order, records in the generation's heap.

use std::time::Duration;

use super::core::{Core, Need, Place, Writer};
use super::gen::{self, Gen, G_LEN, G_LIVE};
use super::{as_bytes, from_bytes, Shape, INPLACE_MAX};
use crate::fault::fault_point;
use crate::{Error, Options, Plain, Result};

/// A list of byte strings in shared memory, shared by every process that
/// opens it by name (or inherits it across `fork`), growing without limit
/// until `/dev/shm` is full. Each operation is atomic and survives the
/// death of its writer like [`SharedMap`](crate::SharedMap)'s.
///
/// ```
/// let l = shmprim::SharedList::anonymous().unwrap();
/// l.extend([&b"a"[..], b"b", b"c"]).unwrap();
/// l.insert(1, b"x").unwrap();
/// assert_eq!(l.pop().unwrap().as_deref(), Some(&b"c"[..]));
/// assert_eq!(l.snapshot().unwrap(), [b"a".to_vec(), b"x".to_vec(), b"b".to_vec()]);
/// ```
pub struct SharedList {
    core: Core,
}

impl std::fmt::Debug for SharedList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedList")
            .field("name", &self.core.name())
            .finish()
    }
}

fn element(g: &Gen, i: u64) -> Result<gen::Rec> {
    g.rec(g.get(g.slot(i)))
}

fn value(g: &Gen, i: u64) -> Result<Vec<u8>> {
    let r = element(g, i)?;
    let mut v = vec![0; r.vlen as usize];
    g.copy_out(r.val_off(), &mut v);
    Ok(v)
}

fn out_of_range(index: u64, len: u64) -> Error {
    Error::OutOfRange {
        index: index as usize,
        len: len as usize,
    }
}

/// Appends one element (room ensured by the caller).
fn append(w: &Writer<'_>, v: &[u8]) -> Result<()> {
    let g = w.gen();
    let n = g.list_len()?;
    if n >= g.nslots {
        return Err(Error::Corrupt("container: list table full"));
    }
    let off = g.alloc(&[], v)?;
    g.set(g.slot(n), off);
    g.set(G_LEN, n + 1);
    Ok(())
}

fn push_need(v: &[u8]) -> Need {
    Need {
        heap: gen::rec_size(0, v.len() as u64),
        slots: 1,
        log: 0,
    }
}

impl SharedList {
    /// Creates the list `name` (exclusive). The name must leave 17 bytes of
    /// room below the platform's limit (generations are `name.N`).
    pub fn create(name: &str) -> Result<Self> {
        Self::create_with(name, &Options::new())
    }

    /// [`SharedList::create`] with options (mode, persist).
    pub fn create_with(name: &str, opts: &Options) -> Result<Self> {
        let core = Core::create(Place::Named(name, opts), Shape::List)?;
        if opts.persist_requested() {
            core.persist();
        }
        Ok(SharedList { core })
    }

    /// Opens the list `name`.
    pub fn open(name: &str) -> Result<Self> {
        Self::open_with(name, &Options::new())
    }

    /// [`SharedList::open`] with options.
    pub fn open_with(name: &str, opts: &Options) -> Result<Self> {
        Ok(SharedList {
            core: Core::open(name, Shape::List, opts)?,
        })
    }

    /// Opens `name`, or creates it empty; exactly one racing caller creates.
    pub fn open_or_create(name: &str) -> Result<Self> {
        Ok(SharedList {
            core: Core::open_or_create(name, Shape::List)?,
        })
    }

    /// A list with no name, shared with children forked after this call
    /// (its generations have unique names, removed with the creator's
    /// handle).
    pub fn anonymous() -> Result<Self> {
        Ok(SharedList {
            core: Core::create(Place::Anonymous, Shape::List)?,
        })
    }

    /// The name, or `None` for an anonymous list.
    pub fn name(&self) -> Option<&str> {
        self.core.name()
    }

    /// Keeps the names after the creator's handle drops.
    pub fn persist(&self) {
        self.core.persist()
    }

    /// Removes the names now (see [`SharedMap::unlink`](crate::SharedMap::unlink)).
    pub fn unlink(&self) -> Result<()> {
        self.core.unlink()
    }

    /// Bounds every wait for the writers' lock (default: none).
    pub fn set_timeout(&self, timeout: Option<Duration>) {
        self.core.set_timeout(timeout)
    }

    /// Elements.
    pub fn len(&self) -> Result<usize> {
        self.core.read(|g| Ok(g.list_len()? as usize))
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Element `index`, or `None` past the end.
    pub fn get(&self, index: usize) -> Result<Option<Vec<u8>>> {
        let i = index as u64;
        self.core.read(|g| {
            if i >= g.list_len()? {
                return Ok(None);
            }
            value(g, i).map(Some)
        })
    }

    /// Every element, as one consistent snapshot.
    pub fn snapshot(&self) -> Result<Vec<Vec<u8>>> {
        self.core.read(|g| {
            // Elements naming one record many times cannot make this
            // allocate more than the heap holds.
            let mut budget = g.heap_cap();
            (0..g.list_len()?)
                .map(|i| {
                    budget = budget
                        .checked_sub(element(g, i)?.size())
                        .ok_or(Error::Corrupt("container: elements exceed the heap"))?;
                    value(g, i)
                })
                .collect()
        })
    }

    /// An iterator over a consistent snapshot.
    pub fn iter(&self) -> Result<std::vec::IntoIter<Vec<u8>>> {
        Ok(self.snapshot()?.into_iter())
    }

    /// Replaces element `index` ([`Error::OutOfRange`] past the end).
    pub fn set(&self, index: usize, v: &[u8]) -> Result<()> {
        let i = index as u64;
        let vl = v.len() as u64;
        let mut w = self.core.write()?;
        w.ensure(Need {
            heap: gen::rec_size(0, vl),
            slots: 0,
            log: gen::log_entry_size(8) + gen::log_entry_size(vl.min(INPLACE_MAX)),
        })?;
        let g = w.gen();
        let n = g.list_len()?;
        if i >= n {
            return Err(out_of_range(i, n));
        }
        let old = element(g, i)?;
        if old.vlen == vl && vl <= INPLACE_MAX {
            w.log(old.val_off(), vl)?;
            g.copy_in(old.val_off(), v);
        } else {
            let off = g.alloc(&[], v)?;
            w.log(g.slot(i), 8)?;
            g.set(g.slot(i), off);
            g.set(G_LIVE, g.get(G_LIVE).wrapping_sub(old.size()));
        }
        w.commit()
    }

    /// Appends `v`.
    pub fn push(&self, v: &[u8]) -> Result<()> {
        let mut w = self.core.write()?;
        w.ensure(push_need(v))?;
        append(&w, v)?;
        fault_point!("container.list.push");
        w.commit()
    }

    /// Appends every element of `items` as one atomic step.
    pub fn extend<I>(&self, items: I) -> Result<()>
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
    {
        let mut w = self.core.write()?;
        for v in items {
            w.ensure(push_need(v.as_ref()))?;
            append(&w, v.as_ref())?;
        }
        w.commit()
    }

    /// Removes and returns the last element.
    pub fn pop(&self) -> Result<Option<Vec<u8>>> {
        let mut w = self.core.write()?;
        w.ensure(Need::default())?;
        let g = w.gen();
        let n = g.list_len()?;
        if n == 0 {
            return Ok(None);
        }
        let r = element(g, n - 1)?;
        let v = value(g, n - 1)?;
        g.set(G_LEN, n - 1);
        g.set(G_LIVE, g.get(G_LIVE).wrapping_sub(r.size()));
        fault_point!("container.list.pop");
        w.commit()?;
        Ok(Some(v))
    }

    /// Inserts `v` before element `index` (`index == len` appends;
    /// beyond is [`Error::OutOfRange`]). Shifts the later elements' slots:
    /// in a long list it may copy the list into a new generation.
    pub fn insert(&self, index: usize, v: &[u8]) -> Result<()> {
        let i = index as u64;
        let mut w = self.core.write()?;
        let n = w.gen().list_len()?;
        if i > n {
            return Err(out_of_range(i, n));
        }
        w.ensure(Need {
            log: gen::log_entry_size((n - i + 1) * 8),
            ..push_need(v)
        })?;
        let g = w.gen();
        let off = g.alloc(&[], v)?;
        w.log(g.slot(i), (n - i + 1) * 8)?;
        g.copy_within(g.slot(i), g.slot(i + 1), (n - i) * 8);
        g.set(g.slot(i), off);
        g.set(G_LEN, n + 1);
        w.commit()
    }

    /// Removes and returns element `index` ([`Error::OutOfRange`] past the
    /// end).
    pub fn remove(&self, index: usize) -> Result<Vec<u8>> {
        let i = index as u64;
        let mut w = self.core.write()?;
        let n = w.gen().list_len()?;
        if i >= n {
            return Err(out_of_range(i, n));
        }
        w.ensure(Need {
            log: gen::log_entry_size((n - i) * 8),
            ..Need::default()
        })?;
        let g = w.gen();
        let r = element(g, i)?;
        let v = value(g, i)?;
        w.log(g.slot(i), (n - i) * 8)?;
        g.copy_within(g.slot(i + 1), g.slot(i), (n - i - 1) * 8);
        g.set(G_LEN, n - 1);
        g.set(G_LIVE, g.get(G_LIVE).wrapping_sub(r.size()));
        fault_point!("container.list.remove");
        w.commit()?;
        Ok(v)
    }

    /// Keeps the first `len` elements (no change if there are fewer).
    pub fn truncate(&self, len: usize) -> Result<()> {
        let keep = len as u64;
        let mut w = self.core.write()?;
        w.ensure(Need::default())?;
        let g = w.gen();
        let n = g.list_len()?;
        if keep >= n {
            return w.commit();
        }
        let mut freed = 0u64;
        for i in keep..n {
            freed = freed.wrapping_add(element(g, i)?.size());
        }
        g.set(G_LEN, keep);
        g.set(G_LIVE, g.get(G_LIVE).wrapping_sub(freed));
        w.commit()
    }

    /// Removes every element (the list shrinks back to its first size).
    pub fn clear(&self) -> Result<()> {
        let mut w = self.core.write()?;
        w.clear()?;
        w.commit()
    }

    /// Element `index` as a `Plain` type ([`Error::LengthMismatch`] if
    /// the stored bytes have another size).
    pub fn get_as<T: Plain>(&self, index: usize) -> Result<Option<T>> {
        self.get(index)?.map(|b| from_bytes(&b)).transpose()
    }

    /// Appends a `Plain` value.
    pub fn push_as<T: Plain>(&self, v: &T) -> Result<()> {
        self.push(as_bytes(v))
    }

    /// Replaces element `index` by a `Plain` value.
    pub fn set_as<T: Plain>(&self, index: usize, v: &T) -> Result<()> {
        self.set(index, as_bytes(v))
    }

    /// Element `index` decoded with the crate's serde codec.
    #[cfg(feature = "serde")]
    pub fn get_obj<T: serde::de::DeserializeOwned>(&self, index: usize) -> Result<Option<T>> {
        self.get(index)?
            .map(|b| crate::codec::decode(&b))
            .transpose()
    }

    /// Appends a value encoded with the crate's serde codec.
    #[cfg(feature = "serde")]
    pub fn push_obj<T: serde::Serialize + ?Sized>(&self, v: &T) -> Result<()> {
        self.push(&crate::codec::encode(v)?)
    }

    #[cfg(fuzzing)]
    pub(crate) fn __from_core(core: Core) -> Self {
        SharedList { core }
    }
}
