//! `RawArray<T>` and `RawValue<T>`: typed shared data with no lock, as
//! Python's `sharedctypes.RawArray`, `RawValue` and `Value(..., lock=False)`.
//!
//! ## Why no reference to the elements
//!
//! Another process may write any element at any instant, so a `&T` or a
//! `&[T]` into the segment would be a reference to memory that changes
//! under it: undefined behaviour in Rust, whatever the hardware does. Each
//! element is therefore read and written by copying it in chunks through
//! atomics as wide as the element's alignment allows (up to 8 bytes): a
//! chunk is never torn, an element wider than one chunk may be (a reader
//! racing a writer can see some chunks old and some new: any bits, which a
//! [`Plain`] type accepts). Phases that the caller orders itself (every
//! process waits at a [`Barrier`](crate::Barrier), an [`Event`](crate::Event)
//! is set, a pool task is handed over) may instead borrow the elements as a
//! slice: [`RawArray::as_slice`] and [`RawArray::as_mut_slice`] are
//! `unsafe`, and their contract is that nobody writes (for a shared slice)
//! or touches (for a mutable one) the elements while the slice lives.
//!
//! ## Layout
//!
//! The segment's object is the `len` elements back to back, aligned to
//! `max(align_of::<T>(), 64)`; nothing else (no lock word). The header
//! records the kind ([`Kind::RawArray`]), the element's fingerprint and
//! `len`; an opener checks all three and the object's size against them.

use std::marker::PhantomData;
use std::mem::{align_of, size_of, MaybeUninit};
use std::sync::atomic::{fence, AtomicU16, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;

use crate::segment::header::Spec;
use crate::segment::{Fingerprint, Kind, Options, Place, Segment};
use crate::{Error, Plain, Result};

fn spec<T: Plain>(len: usize) -> Result<Spec> {
    let bytes = len
        .checked_mul(size_of::<T>())
        .ok_or(Error::InvalidArgument("array too large"))?;
    Ok(Spec {
        kind: Kind::RawArray,
        fingerprint: Fingerprint {
            size: size_of::<T>() as u64,
            align: align_of::<T>() as u64,
            tag: T::TYPE_TAG,
        },
        len: len as u64,
        capacity: 0,
        object_size: bytes as u64,
        object_align: align_of::<T>().max(64) as u64,
    })
}

/// Copies `n` bytes from `src` to `dst`, each chunk of `W` bytes through
/// one atomic access on the shared side.
///
/// # Safety
/// `src` and `dst` are valid for `n` bytes, do not overlap, and the shared
/// one (`src` when `load`, `dst` otherwise) is aligned to `W` bytes with
/// `n` a multiple of `W`; the private one needs no alignment.
unsafe fn copy_chunks<A: Chunk>(src: *const u8, dst: *mut u8, n: usize, load: bool, o: Ordering) {
    let w = size_of::<A::Int>();
    let mut at = 0;
    while at < n {
        // SAFETY: `at + w <= n` (n is a multiple of w), so both sides are in
        // bounds; the shared side is w-aligned at every step (aligned start,
        // steps of w), and an atomic of width w is valid for any bits; the
        // private side is read or written unaligned.
        unsafe {
            if load {
                let v = A::load(&*src.add(at).cast::<A>(), o);
                dst.add(at).cast::<A::Int>().write_unaligned(v);
            } else {
                let v = src.add(at).cast::<A::Int>().read_unaligned();
                A::store(&*dst.add(at).cast::<A>(), v, o);
            }
        }
        at += w;
    }
}

/// An atomic integer used as a copy chunk.
trait Chunk {
    type Int: Copy;
    fn load(a: &Self, o: Ordering) -> Self::Int;
    fn store(a: &Self, v: Self::Int, o: Ordering);
}

macro_rules! chunk {
    ($($a:ty => $i:ty),*) => {$(
        impl Chunk for $a {
            type Int = $i;
            fn load(a: &Self, o: Ordering) -> $i { a.load(o) }
            fn store(a: &Self, v: $i, o: Ordering) { a.store(v, o) }
        }
    )*};
}
chunk!(AtomicU8 => u8, AtomicU16 => u16, AtomicU32 => u32, AtomicU64 => u64);

/// Copies `n` bytes between shared memory aligned to `align` (a power of
/// two) and private memory, in the widest chunks both allow.
///
/// # Safety
/// As [`copy_chunks`], with the shared side aligned to `align` and `n` a
/// multiple of `min(align, 8)`.
unsafe fn copy(src: *const u8, dst: *mut u8, n: usize, align: usize, load: bool, o: Ordering) {
    // SAFETY: forwarded; the chunk width divides `align` and `n`.
    unsafe {
        match align {
            1 => copy_chunks::<AtomicU8>(src, dst, n, load, o),
            2 => copy_chunks::<AtomicU16>(src, dst, n, load, o),
            4 => copy_chunks::<AtomicU32>(src, dst, n, load, o),
            _ => copy_chunks::<AtomicU64>(src, dst, n, load, o),
        }
    }
}

/// `len` elements of `T` in shared memory with no lock: Python's
/// `multiprocessing.sharedctypes.RawArray` (and, with one element,
/// [`RawValue`]).
///
/// Element reads and writes are sound at any time, from any process: each
/// copies the element through atomics (see the module docs: an element
/// wider than its alignment, or than 8 bytes, may be read torn while
/// another process writes it). Single-element [`load`](RawArray::load) and
/// [`store`](RawArray::store) are Acquire and Release; the bulk copies
/// end (reads) or start (writes) with a fence of that kind. For phases
/// the caller synchronises, [`as_slice`](RawArray::as_slice) and
/// [`as_mut_slice`](RawArray::as_mut_slice) lend the elements in place,
/// zero-copy.
///
/// | Python                               | shmprim                          |
/// |--------------------------------------|----------------------------------|
/// | `RawArray('d', 10)` (zero-filled)    | `RawArray::<f64>::create(name, 10)` / `anonymous(10)` |
/// | `RawArray('i', [1, 2, 3])`           | [`RawArray::from_slice`] / [`RawArray::create_from_slice`] |
/// | `a[i]`, `a[i] = x`                   | [`a.load(i)`](RawArray::load), [`a.store(i, x)`](RawArray::store) |
/// | `a[:]`                               | [`a.to_vec()`](RawArray::to_vec) |
/// | `memoryview(a)` (between barriers)   | `unsafe { a.as_slice() }`        |
///
/// ```
/// use shmprim::RawArray;
/// let a = RawArray::<u32>::from_slice(&[1, 2, 3]).unwrap();
/// a.store(0, 10).unwrap();
/// assert_eq!(a.to_vec(), [10, 2, 3]);
/// assert!(a.load(3).is_err());
/// // A phase in which this process alone touches the elements.
/// // SAFETY: nothing else uses `a` (it is anonymous, no child forked).
/// let sum: u32 = unsafe { a.as_slice() }.iter().sum();
/// assert_eq!(sum, 15);
/// ```
pub struct RawArray<T: Plain> {
    seg: Arc<Segment>,
    len: usize,
    _t: PhantomData<T>,
}

impl<T: Plain> Clone for RawArray<T> {
    fn clone(&self) -> Self {
        RawArray {
            seg: self.seg.clone(),
            len: self.len,
            _t: PhantomData,
        }
    }
}

impl<T: Plain> std::fmt::Debug for RawArray<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawArray")
            .field("len", &self.len)
            .field("segment", &self.seg)
            .finish()
    }
}

impl<T: Plain> RawArray<T> {
    fn make(place: Place<'_>, len: usize, opts: &Options, src: Option<&[T]>) -> Result<Self> {
        let fill = |p: *mut u8| {
            if let Some(src) = src {
                // SAFETY: `p` is the object start of a fresh, unpublished
                // segment spanning `len == src.len()` elements; it cannot
                // overlap `src`.
                unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), p.cast::<T>(), src.len()) };
            }
            // Otherwise fresh memory is zeroed: a valid `T: Plain`.
            Ok(())
        };
        let seg = Segment::create_object(place, &spec::<T>(len)?, opts, None, fill)?;
        Ok(Self::new(seg, len))
    }

    fn new(seg: Segment, len: usize) -> Self {
        RawArray {
            seg: Arc::new(seg),
            len,
            _t: PhantomData,
        }
    }

    /// Creates `len` zeroed elements under `name`.
    pub fn create(name: &str, len: usize) -> Result<Self> {
        Self::make(Place::Named(name), len, &Options::default(), None)
    }

    /// [`RawArray::create`] with options.
    pub fn create_with(name: &str, len: usize, opts: &Options) -> Result<Self> {
        Self::make(Place::Named(name), len, opts, None)
    }

    /// Creates a copy of `src` under `name`.
    pub fn create_from_slice(name: &str, src: &[T]) -> Result<Self> {
        Self::make(
            Place::Named(name),
            src.len(),
            &Options::default(),
            Some(src),
        )
    }

    /// Opens the array created under `name`, whatever its length.
    pub fn open(name: &str) -> Result<Self> {
        Self::open_with(name, &Options::default())
    }

    /// [`RawArray::open`] with options.
    pub fn open_with(name: &str, opts: &Options) -> Result<Self> {
        Self::attach(Segment::open_object(name, &spec::<T>(0)?, opts)?, None)
    }

    /// Opens the array under `name`, which must hold `len` elements
    /// ([`Error::LengthMismatch`] otherwise).
    pub fn open_len(name: &str, len: usize) -> Result<Self> {
        let seg = Segment::open_object(name, &spec::<T>(0)?, &Options::default())?;
        Self::attach(seg, Some(len))
    }

    /// Opens `name`, or creates it with `len` zeroed elements; an existing
    /// array of another length is [`Error::LengthMismatch`].
    pub fn open_or_create(name: &str, len: usize) -> Result<Self> {
        let fill = |_: *mut u8| Ok(());
        let seg = Segment::open_or_create_object(
            name,
            &spec::<T>(len)?,
            &Options::default(),
            None,
            fill,
        )?;
        Self::attach(seg, Some(len))
    }

    /// `len` zeroed elements with no name, shared with children forked
    /// afterwards.
    pub fn anonymous(len: usize) -> Result<Self> {
        Self::make(Place::Anonymous, len, &Options::default(), None)
    }

    /// An unnamed copy of `src`.
    pub fn from_slice(src: &[T]) -> Result<Self> {
        Self::make(Place::Anonymous, src.len(), &Options::default(), Some(src))
    }

    /// Opens one in an already opened segment (fuzz targets, embedders).
    #[cfg(fuzzing)]
    pub fn __attach(seg: Segment) -> Result<Self> {
        Self::attach(seg, None)
    }

    /// Checks the stored length against the object's size (and `expect`).
    fn attach(seg: Segment, expect: Option<usize>) -> Result<Self> {
        let len = super::guarded::stored_len(seg.info().len, expect)?;
        let want = spec::<T>(len).map_err(|_| Error::Corrupt("length out of range"))?;
        if seg.info().object_size != want.object_size {
            return Err(Error::Corrupt("object size does not match length"));
        }
        Ok(Self::new(seg, len))
    }

    /// The number of elements, fixed at creation.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it has no elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The first element's address in this process (valid while any clone
    /// of this handle lives). For embedders that order every access
    /// themselves; prefer the methods.
    pub fn as_ptr(&self) -> *mut T {
        self.seg.data_ptr().cast()
    }

    /// Where the element `i` sits, or [`Error::OutOfRange`].
    fn at(&self, i: usize) -> Result<*mut u8> {
        if i >= self.len {
            return Err(Error::OutOfRange {
                index: i,
                len: self.len,
            });
        }
        // SAFETY: `i < len`, and the object spans `len` elements (checked
        // against the header when attached).
        Ok(unsafe { self.as_ptr().add(i) }.cast())
    }

    /// The range `start..start + n` as a pointer, or [`Error::OutOfRange`].
    fn range(&self, start: usize, n: usize) -> Result<*mut u8> {
        match start.checked_add(n) {
            Some(end) if end <= self.len => {
                // SAFETY: `start <= len`: at most one past the end.
                Ok(unsafe { self.as_ptr().add(start) }.cast())
            }
            _ => Err(Error::OutOfRange {
                index: start.saturating_add(n).saturating_sub(1),
                len: self.len,
            }),
        }
    }

    /// Copies `n` elements out of shared memory at `src` into `dst`.
    fn read_raw(src: *const u8, dst: *mut T, n: usize, o: Ordering) {
        // SAFETY: the caller found `src` in bounds for `n` elements, aligned
        // for T (elements start at the 64-aligned object); `dst` is private
        // memory for `n` elements. Sizes are multiples of the alignment.
        unsafe {
            copy(
                src,
                dst.cast(),
                n * size_of::<T>(),
                align_of::<T>(),
                true,
                o,
            )
        }
    }

    /// Copies `n` elements from `src` into shared memory at `dst`.
    fn write_raw(src: *const T, dst: *mut u8, n: usize, o: Ordering) {
        // SAFETY: as in `read_raw`, the other way round.
        unsafe {
            copy(
                src.cast(),
                dst,
                n * size_of::<T>(),
                align_of::<T>(),
                false,
                o,
            )
        }
    }

    /// Element `i` (Acquire), or [`Error::OutOfRange`].
    pub fn load(&self, i: usize) -> Result<T> {
        let src = self.at(i)?;
        let mut v = MaybeUninit::<T>::uninit();
        Self::read_raw(src, v.as_mut_ptr(), 1, Ordering::Acquire);
        // SAFETY: every byte of `v` was written, and any bits are a `T`.
        Ok(unsafe { v.assume_init() })
    }

    /// Sets element `i` (Release), or [`Error::OutOfRange`].
    pub fn store(&self, i: usize, v: T) -> Result<()> {
        let dst = self.at(i)?;
        Self::write_raw(&v, dst, 1, Ordering::Release);
        Ok(())
    }

    /// Copies `dst.len()` elements from `start` into `dst`, element by
    /// element (each as [`load`](RawArray::load) would, then one Acquire
    /// fence); [`Error::OutOfRange`] if they do not all exist.
    pub fn read_into(&self, start: usize, dst: &mut [T]) -> Result<()> {
        let src = self.range(start, dst.len())?;
        Self::read_raw(src, dst.as_mut_ptr(), dst.len(), Ordering::Relaxed);
        fence(Ordering::Acquire);
        Ok(())
    }

    /// Copies `src` into the elements from `start` on (one Release fence,
    /// then element by element); [`Error::OutOfRange`] if they do not all
    /// exist.
    pub fn write_from(&self, start: usize, src: &[T]) -> Result<()> {
        let dst = self.range(start, src.len())?;
        fence(Ordering::Release);
        Self::write_raw(src.as_ptr(), dst, src.len(), Ordering::Relaxed);
        Ok(())
    }

    /// A copy of every element (Python's `a[:]`).
    pub fn to_vec(&self) -> Vec<T> {
        let mut v = Vec::<T>::with_capacity(self.len);
        Self::read_raw(
            self.as_ptr().cast(),
            v.as_mut_ptr(),
            self.len,
            Ordering::Relaxed,
        );
        fence(Ordering::Acquire);
        // SAFETY: the `len` elements were all written just above, within
        // the capacity reserved.
        unsafe { v.set_len(self.len) };
        v
    }

    /// Sets every element to `v`.
    pub fn fill(&self, v: T) {
        fence(Ordering::Release);
        for i in 0..self.len {
            // SAFETY: `i < len`.
            let dst = unsafe { self.as_ptr().add(i) };
            Self::write_raw(&v, dst.cast(), 1, Ordering::Relaxed);
        }
    }

    /// The elements in place, zero-copy.
    ///
    /// # Safety
    /// For as long as the slice lives, no thread of any process writes any
    /// element (through this handle, another handle, a mutable slice or
    /// any other way), and the writes before this phase happen-before it
    /// (the caller ordered them: every process passed a
    /// [`Barrier`](crate::Barrier), waited on an [`Event`](crate::Event)
    /// set after the writes, received a pool task after its producer
    /// finished, ...).
    pub unsafe fn as_slice(&self) -> &[T] {
        // SAFETY: `len` elements of T, aligned, live while `self` does; the
        // caller guarantees that nothing writes them meanwhile.
        unsafe { std::slice::from_raw_parts(self.as_ptr(), self.len) }
    }

    /// The elements in place, zero-copy and writable.
    ///
    /// # Safety
    /// For as long as the slice lives, no other thread of any process reads
    /// or writes any element (in any way, this handle's methods included),
    /// this thread makes no other slice of them, and the accesses before
    /// and after this phase are ordered with it by the caller (as for
    /// [`as_slice`](RawArray::as_slice)).
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn as_mut_slice(&self) -> &mut [T] {
        // SAFETY: as in `as_slice`; the caller guarantees exclusive use.
        unsafe { std::slice::from_raw_parts_mut(self.as_ptr(), self.len) }
    }

    /// The segment it lives in.
    pub fn segment(&self) -> &Segment {
        &self.seg
    }
}

/// One `T` in shared memory with no lock: Python's
/// `multiprocessing.sharedctypes.RawValue` and `Value(..., lock=False)`.
/// A [`RawArray`] of one element (the same segment kind: either opens the
/// other's), with the same rules: [`load`](RawValue::load) and
/// [`store`](RawValue::store) are always sound (a `T` wider than its
/// alignment, or than 8 bytes, may be read torn while another process
/// writes it); for a lock-free integer with read-modify-write operations,
/// see [`AtomicValue`](crate::AtomicValue).
///
/// ```
/// let v = shmprim::RawValue::<f64>::anonymous(1.5).unwrap();
/// v.store(2.5);
/// assert_eq!(v.load(), 2.5);
/// ```
#[derive(Clone, Debug)]
pub struct RawValue<T: Plain> {
    array: RawArray<T>,
}

impl<T: Plain> RawValue<T> {
    fn wrap(array: RawArray<T>) -> Self {
        RawValue { array }
    }

    /// Creates it under `name`, holding `init`.
    pub fn create(name: &str, init: T) -> Result<Self> {
        RawArray::create_from_slice(name, &[init]).map(Self::wrap)
    }

    /// [`RawValue::create`] with options.
    pub fn create_with(name: &str, init: T, opts: &Options) -> Result<Self> {
        RawArray::make(Place::Named(name), 1, opts, Some(&[init])).map(Self::wrap)
    }

    /// Opens the one under `name` (one element of `T`).
    pub fn open(name: &str) -> Result<Self> {
        RawArray::open_len(name, 1).map(Self::wrap)
    }

    /// [`RawValue::open`] with options.
    pub fn open_with(name: &str, opts: &Options) -> Result<Self> {
        let seg = Segment::open_object(name, &spec::<T>(0)?, opts)?;
        RawArray::attach(seg, Some(1)).map(Self::wrap)
    }

    /// Opens `name`, or creates it holding `T`'s all-zero value.
    pub fn open_or_create(name: &str) -> Result<Self> {
        RawArray::open_or_create(name, 1).map(Self::wrap)
    }

    /// An unnamed one, shared with children forked afterwards.
    pub fn anonymous(init: T) -> Result<Self> {
        RawArray::from_slice(&[init]).map(Self::wrap)
    }

    /// The value (Acquire).
    pub fn load(&self) -> T {
        // Index 0 of a one-element array (checked when opened).
        let mut v = [MaybeUninit::<T>::uninit()];
        RawArray::<T>::read_raw(
            self.array.as_ptr().cast(),
            v[0].as_mut_ptr(),
            1,
            Ordering::Acquire,
        );
        // SAFETY: every byte was written, and any bits are a `T`.
        unsafe { v[0].assume_init() }
    }

    /// Sets the value (Release).
    pub fn store(&self, v: T) {
        RawArray::<T>::write_raw(&v, self.array.as_ptr().cast(), 1, Ordering::Release);
    }

    /// The value in place.
    ///
    /// # Safety
    /// As [`RawArray::as_slice`]: nobody writes it while the reference lives.
    pub unsafe fn as_ref(&self) -> &T {
        // SAFETY: one aligned T; the caller guarantees no writer meanwhile.
        unsafe { &*self.array.as_ptr() }
    }

    /// The value in place, writable.
    ///
    /// # Safety
    /// As [`RawArray::as_mut_slice`]: nobody else touches it while the
    /// reference lives.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn as_mut(&self) -> &mut T {
        // SAFETY: one aligned T; the caller guarantees exclusive use.
        unsafe { &mut *self.array.as_ptr() }
    }

    /// The one-element array it is.
    pub fn as_array(&self) -> &RawArray<T> {
        &self.array
    }

    /// The segment it lives in.
    pub fn segment(&self) -> &Segment {
        self.array.segment()
    }
}
