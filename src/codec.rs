//! The `serde` codec behind every `*_obj` method (pipes, queues, shared
//! containers): postcard, a compact, maintained, schema-less format. One
//! place, so every handle encodes alike and a later change of codec is one
//! change; public so that the upper floors and embedders that put serde
//! values into the crate's memory encode exactly as the handles do.

use serde::{de::DeserializeOwned, Serialize};

use crate::{Error, Result};

/// Encodes `value` into a fresh buffer.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    postcard::to_stdvec(value).map_err(Error::Codec)
}

/// Decodes one value from `bytes`. Bytes left over are an error: a message
/// is exactly one value.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    let (value, rest) = postcard::take_from_bytes(bytes).map_err(Error::Codec)?;
    if rest.is_empty() {
        Ok(value)
    } else {
        Err(Error::Codec(postcard::Error::DeserializeBadEncoding))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_trailing_bytes() {
        let v = (7u32, String::from("x"), vec![1u8, 2]);
        let mut b = encode(&v).unwrap();
        assert_eq!(decode::<(u32, String, Vec<u8>)>(&b).unwrap(), v);
        b.push(0);
        assert!(matches!(
            decode::<(u32, String, Vec<u8>)>(&b),
            Err(Error::Codec(_))
        ));
        assert!(decode::<(u32, String, Vec<u8>)>(&[]).is_err());
    }
}
