//! [`Plain`]: the bound on every type stored in shared memory.

use crate::segment::header::{fnv1a, FNV_OFFSET};

/// A type that may live in shared memory and be read by other processes.
///
/// # Safety
///
/// Implement it only for a type that:
///
/// 1. is `#[repr(C)]` or `#[repr(transparent)]` (or a primitive), so every
///    build of every program lays it out the same way;
/// 2. is valid for **every** bit pattern: another process (buggy, dying or
///    hostile) can write any bytes into it, and reading them back must not
///    be undefined behaviour. So no `bool`, `char`, enums, `NonZero*`;
/// 3. holds no pointers or references: every process maps the segment at a
///    different address, so a pointer is meaningless elsewhere. So no
///    `&T`, `*const T`, `Box`, `Vec`, `String`, function pointers;
/// 4. owns nothing and needs no `Drop` (implied by `Copy`);
/// 5. has no padding bytes, or accepts that padding written by one process
///    carries whatever bytes it held.
///
/// [`plain_struct!`](crate::plain_struct) declares a struct and implements
/// `Plain` for it, checking at compile time that every field is `Plain`
/// and that there is no padding.
///
/// References, pointers and heap-owning types do not implement it:
///
/// ```compile_fail
/// // `&str` points into this process's memory.
/// let v = shmprim::Value::<&'static str>::anonymous("hello");
/// ```
/// ```compile_fail
/// // `String` owns a heap buffer.
/// let v = shmprim::Value::<String>::anonymous(String::new());
/// ```
/// ```compile_fail
/// // A raw pointer is an address in one process only.
/// let v = shmprim::Value::<*const u8>::anonymous(std::ptr::null());
/// ```
/// ```compile_fail
/// // Not every bit pattern is a valid `bool`.
/// let v = shmprim::Value::<bool>::anonymous(false);
/// ```
/// ```
/// let v = shmprim::Value::<[u32; 4]>::anonymous([1, 2, 3, 4]).unwrap();
/// assert_eq!(v.get().unwrap(), [1, 2, 3, 4]);
/// ```
pub unsafe trait Plain: Copy + Send + Sync + 'static {
    /// A stable tag naming this type, part of the layout fingerprint stored
    /// in a segment header: opening a segment as a type with another tag
    /// is a [`LayoutMismatch`](crate::Error::LayoutMismatch). Compute it
    /// with [`type_tag`] from a name you keep stable across builds.
    const TYPE_TAG: u64;
}

/// A stable 64-bit tag for `name` (FNV-1a), for [`Plain::TYPE_TAG`].
pub const fn type_tag(name: &str) -> u64 {
    fnv1a(name.as_bytes(), FNV_OFFSET)
}

macro_rules! plain_primitive {
    ($($t:ty),*) => {$(
        // SAFETY: a primitive number: fixed layout, every bit pattern valid,
        // no pointers, no padding.
        unsafe impl Plain for $t {
            const TYPE_TAG: u64 = type_tag(stringify!($t));
        }
    )*};
}

plain_primitive!(u8, u16, u32, u64, u128, i8, i16, i32, i64, i128, f32, f64);

// `usize`/`isize` are left out on purpose: their size differs between a
// 32-bit and a 64-bit process sharing one segment.

// SAFETY: an array of `Plain` elements has the elements' layout repeated
// with no padding between them, and is valid for any bit pattern if they are.
unsafe impl<T: Plain, const N: usize> Plain for [T; N] {
    const TYPE_TAG: u64 = fnv1a(&(N as u64).to_le_bytes(), T::TYPE_TAG ^ 0x5b5d);
}

/// Declares `#[repr(C)]` structs and implements [`Plain`] for them, checking
/// at compile time that each field's type is `Plain` and that the struct has
/// no padding. The type tag is derived from the struct's name and its fields'
/// names and types, so renaming a field changes it.
///
/// ```
/// shmprim::plain_struct! {
///     /// A point that two processes share.
///     #[derive(Debug, PartialEq)]
///     pub struct Point { pub x: f64, pub y: f64 }
/// }
/// let p = shmprim::Value::anonymous(Point { x: 1.0, y: 2.0 }).unwrap();
/// p.update(|p| p.x += 1.0).unwrap();
/// assert_eq!(p.get().unwrap(), Point { x: 2.0, y: 2.0 });
/// ```
///
/// A field that is not `Plain`, or padding, is refused:
///
/// ```compile_fail
/// shmprim::plain_struct! { pub struct Bad { pub name: &'static str } }
/// ```
/// ```compile_fail
/// shmprim::plain_struct! { pub struct Padded { pub a: u8, pub b: u32 } }
/// ```
#[macro_export]
macro_rules! plain_struct {
    ($(
        $(#[$meta:meta])*
        $vis:vis struct $name:ident { $( $(#[$fmeta:meta])* $fvis:vis $field:ident : $ty:ty ),* $(,)? }
    )*) => {$(
        $(#[$meta])*
        #[derive(Clone, Copy)]
        #[repr(C)]
        $vis struct $name { $( $(#[$fmeta])* $fvis $field : $ty ),* }

        const _: () = {
            const fn field_is_plain<T: $crate::Plain>() -> usize { ::core::mem::size_of::<T>() }
            const FIELDS: usize = 0 $( + field_is_plain::<$ty>() )*;
            assert!(
                FIELDS == ::core::mem::size_of::<$name>(),
                concat!("plain_struct!: ", stringify!($name), " has padding; add explicit padding fields")
            );
        };

        // SAFETY: `#[repr(C)]`, every field is `Plain` (checked above, so
        // valid for any bits and pointer-free), and no padding (checked).
        unsafe impl $crate::Plain for $name {
            const TYPE_TAG: u64 = $crate::type_tag(concat!(
                stringify!($name), "{" $(, stringify!($field), ":", stringify!($ty), ";")*, "}"
            ));
        }
    )*};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_distinct_and_stable() {
        let tags = [
            u8::TYPE_TAG,
            i8::TYPE_TAG,
            u32::TYPE_TAG,
            i32::TYPE_TAG,
            f32::TYPE_TAG,
            u64::TYPE_TAG,
            f64::TYPE_TAG,
            <[u32; 2]>::TYPE_TAG,
            <[u32; 3]>::TYPE_TAG,
            <[i32; 2]>::TYPE_TAG,
        ];
        for (i, a) in tags.iter().enumerate() {
            for b in &tags[i + 1..] {
                assert_ne!(a, b);
            }
        }
        // FNV-1a of "u64": the tag is part of the on-disk format.
        assert_eq!(u64::TYPE_TAG, type_tag("u64"));
        assert_eq!(type_tag(""), 0xcbf2_9ce4_8422_2325);
    }
}
