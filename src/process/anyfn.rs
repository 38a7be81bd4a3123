//! [`AnyFn`]: an [`FnRef`] with its types erased, for pool libraries.
//!
//! A pool worker runs whatever function each task names, without knowing
//! the argument and result types at compile time: the token carries the
//! monomorphised trampoline that knows them. `AnyFn` is that token as
//! bytes in, bytes out.
//!
//! Trust is [`FnRef`]'s: [`AnyFn::from_bytes`] checks that the token comes
//! from this very executable and that its checksum holds before anything
//! is called through it; the checksum catches garbage, not an adversary
//! (a process that can write the memory the token travels in runs as the
//! same user and could `ptrace` either side anyway).

use super::message::{Decoder, Encoder, Message};
use super::target::{Call, Raw};
use super::FnRef;
use crate::{Error, Result};

/// A function token whose argument and result types are known only to
/// the trampoline it names.
///
/// ```
/// use shmprim::process::{encode, decode, AnyFn};
/// fn double(x: u64) -> u64 { x * 2 }
/// let token = AnyFn::new(double).to_bytes();          // travels as bytes
/// let f = AnyFn::from_bytes(&token).unwrap();         // in the worker
/// let arg = encode(&21u64).unwrap().0;
/// let out = f.call_bytes(&arg).unwrap();
/// assert_eq!(decode::<u64>(&out, &mut []).unwrap(), 42);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AnyFn {
    raw: Raw,
}

/// Why [`AnyFn::call_bytes`] gave no result. A panic in the function is
/// not caught here: it unwinds out of `call_bytes`.
#[derive(Debug)]
pub enum CallError {
    /// The argument bytes did not decode as the function's argument type.
    Argument(Error),
    /// The result could not be encoded.
    Result(Error),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Argument(e) => write!(f, "argument: {e}"),
            CallError::Result(e) => write!(f, "result: {e}"),
        }
    }
}

impl std::error::Error for CallError {}

impl<A: Message + 'static, R: Message + 'static> From<FnRef<A, R>> for AnyFn {
    fn from(f: FnRef<A, R>) -> AnyFn {
        AnyFn { raw: f.raw() }
    }
}

impl AnyFn {
    /// The token for `f`.
    pub fn new<A: Message + 'static, R: Message + 'static>(f: fn(A) -> R) -> AnyFn {
        FnRef::new(f).into()
    }

    /// The token's bytes (the same as an [`FnRef`]'s [`Message`] form).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut e = Encoder::new();
        self.raw.encode(&mut e);
        e.finish().0
    }

    /// A token from exactly `bytes`: [`Error::Corrupt`] for garbage,
    /// [`Error::InvalidArgument`] for a token of another executable.
    pub fn from_bytes(bytes: &[u8]) -> Result<AnyFn> {
        let mut d = Decoder::new(bytes, &mut []);
        let raw = Raw::decode(&mut d)?;
        d.finish()?;
        Ok(AnyFn { raw })
    }

    /// Decodes the argument from `arg` (exactly one value, no
    /// descriptors), calls the function, and returns the encoded result.
    pub fn call_bytes(&self, arg: &[u8]) -> std::result::Result<Vec<u8>, CallError> {
        let mut out = Vec::new();
        self.call_into(arg, &mut out)?;
        Ok(out)
    }

    /// [`call_bytes`](Self::call_bytes), appending the result to `out`
    /// (no allocation when `out` has room: a pool worker's per-task
    /// path). After a [`CallError::Result`] (or a panic), `out` may hold
    /// part of the result: truncate it back.
    pub fn call_into(&self, arg: &[u8], out: &mut Vec<u8>) -> std::result::Result<(), CallError> {
        let (tramp, func) = self.raw.entry();
        let mut d = Decoder::new(arg, &mut []);
        match tramp(func, &mut d, Some(out)).map_err(CallError::Argument)? {
            Call::Done(r) => r.map_err(CallError::Result),
            // Not made with a buffer given: make it now.
            Call::Prepared(p) => {
                out.extend_from_slice(&p().map_err(CallError::Result)?);
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::{decode, encode};

    fn concat((a, b): (String, u32)) -> String {
        format!("{a}{b}")
    }

    #[test]
    fn round_trips_and_refuses_garbage() {
        let t = AnyFn::new(concat).to_bytes();
        let f = AnyFn::from_bytes(&t).unwrap();
        let out = f
            .call_bytes(&encode(&(String::from("x"), 7u32)).unwrap().0)
            .unwrap();
        assert_eq!(decode::<String>(&out, &mut []).unwrap(), "x7");
        assert!(matches!(f.call_bytes(&[1, 2]), Err(CallError::Argument(_))));
        let mut bad = t.clone();
        bad[40] ^= 1;
        assert!(AnyFn::from_bytes(&bad).is_err());
        assert!(AnyFn::from_bytes(&t[..10]).is_err());
        let mut long = t;
        long.push(0);
        assert!(AnyFn::from_bytes(&long).is_err());
    }

    #[test]
    fn call_into_appends_and_reports_which_side_failed() {
        let f = AnyFn::new(concat);
        let mut out = b"head".to_vec();
        f.call_into(&encode(&(String::from("y"), 8u32)).unwrap().0, &mut out)
            .unwrap();
        assert_eq!(&out[..4], b"head");
        assert_eq!(decode::<String>(&out[4..], &mut []).unwrap(), "y8");
        let mut out = Vec::new();
        assert!(matches!(
            f.call_into(&[1, 2], &mut out),
            Err(CallError::Argument(_))
        ));
    }
}
