//! Keys in snapshots: one small serialisable [`Key`] value for every key type, so that a
//! policy whose scopes use different key types still snapshots as one document.

use std::any::{Any, TypeId};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

/// A key as written in a snapshot.
///
/// ```
/// use ratewarden::snapshot::{Key, SnapshotKey};
///
/// assert_eq!(42u32.to_key(), Key::U64(42));
/// assert_eq!(<(u64, String)>::from_key(&(7u64, "org".to_owned()).to_key()), Some((7, "org".to_owned())));
/// assert_eq!(u8::from_key(&Key::U64(300)), None); // out of range: not this key type
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Key {
    /// `()`: the single key of an unkeyed limiter.
    Unit,
    /// A boolean.
    Bool(bool),
    /// An unsigned integer.
    U64(u64),
    /// A signed integer.
    I64(i64),
    /// Text.
    Str(String),
    /// An IP address.
    Ip(IpAddr),
    /// Raw bytes (for your own key types).
    Bytes(Vec<u8>),
    /// A tuple or a list of keys, in order.
    Tuple(Vec<Key>),
}

/// A key type that can be written to and read back from a snapshot.
///
/// Implemented for integers, `bool`, `String`, `Box<str>`, `Arc<str>`, IP addresses, `()`,
/// and tuples of up to four and `Vec`s of these. Implement it for your own key type and
/// opt in with [`KeyedBuilder::snapshot_keys`](crate::KeyedBuilder::snapshot_keys).
pub trait SnapshotKey: Sized + 'static {
    /// The key as written in a snapshot.
    fn to_key(&self) -> Key;
    /// The key read back; `None` if `key` is not a value of this type.
    fn from_key(key: &Key) -> Option<Self>;
}

macro_rules! unsigned {
    ($($t:ty),*) => {$(
        impl SnapshotKey for $t {
            fn to_key(&self) -> Key {
                Key::U64(*self as u64)
            }
            fn from_key(key: &Key) -> Option<Self> {
                match key {
                    Key::U64(v) => <$t>::try_from(*v).ok(),
                    _ => None,
                }
            }
        }
    )*};
}

macro_rules! signed {
    ($($t:ty),*) => {$(
        impl SnapshotKey for $t {
            fn to_key(&self) -> Key {
                Key::I64(*self as i64)
            }
            fn from_key(key: &Key) -> Option<Self> {
                match key {
                    Key::I64(v) => <$t>::try_from(*v).ok(),
                    _ => None,
                }
            }
        }
    )*};
}

unsigned!(u8, u16, u32, u64, usize);
signed!(i8, i16, i32, i64, isize);

impl SnapshotKey for () {
    fn to_key(&self) -> Key {
        Key::Unit
    }
    fn from_key(key: &Key) -> Option<Self> {
        matches!(key, Key::Unit).then_some(())
    }
}

impl SnapshotKey for bool {
    fn to_key(&self) -> Key {
        Key::Bool(*self)
    }
    fn from_key(key: &Key) -> Option<Self> {
        match key {
            Key::Bool(b) => Some(*b),
            _ => None,
        }
    }
}

macro_rules! text {
    ($($t:ty),*) => {$(
        impl SnapshotKey for $t {
            fn to_key(&self) -> Key {
                Key::Str(self.to_string())
            }
            fn from_key(key: &Key) -> Option<Self> {
                match key {
                    Key::Str(s) => Some(<$t>::from(s.as_str())),
                    _ => None,
                }
            }
        }
    )*};
}

text!(String, Box<str>, Arc<str>);

/// A list of keys (e.g. the values of several request attributes), as a [`Key::Tuple`].
impl<T: SnapshotKey> SnapshotKey for Vec<T> {
    fn to_key(&self) -> Key {
        Key::Tuple(self.iter().map(T::to_key).collect())
    }
    fn from_key(key: &Key) -> Option<Self> {
        match key {
            Key::Tuple(items) => items.iter().map(T::from_key).collect(),
            _ => None,
        }
    }
}

impl SnapshotKey for IpAddr {
    fn to_key(&self) -> Key {
        Key::Ip(*self)
    }
    fn from_key(key: &Key) -> Option<Self> {
        match key {
            Key::Ip(ip) => Some(*ip),
            _ => None,
        }
    }
}

impl SnapshotKey for Ipv4Addr {
    fn to_key(&self) -> Key {
        Key::Ip(IpAddr::V4(*self))
    }
    fn from_key(key: &Key) -> Option<Self> {
        match key {
            Key::Ip(IpAddr::V4(ip)) => Some(*ip),
            _ => None,
        }
    }
}

impl SnapshotKey for Ipv6Addr {
    fn to_key(&self) -> Key {
        Key::Ip(IpAddr::V6(*self))
    }
    fn from_key(key: &Key) -> Option<Self> {
        match key {
            Key::Ip(IpAddr::V6(ip)) => Some(*ip),
            _ => None,
        }
    }
}

macro_rules! tuple {
    ($len:literal: $($t:ident $i:tt),*) => {
        impl<$($t: SnapshotKey),*> SnapshotKey for ($($t,)*) {
            fn to_key(&self) -> Key {
                Key::Tuple(vec![$(self.$i.to_key()),*])
            }
            fn from_key(key: &Key) -> Option<Self> {
                match key {
                    Key::Tuple(items) if items.len() == $len => {
                        Some(($($t::from_key(&items[$i])?,)*))
                    }
                    _ => None,
                }
            }
        }
    };
}

tuple!(1: A 0);
tuple!(2: A 0, B 1);
tuple!(3: A 0, B 1, C 2);
tuple!(4: A 0, B 1, C 2, D 3);

/// How a keyed limiter writes and reads its keys `K`: found automatically for the common
/// key types of [`SnapshotKey`], or set with
/// [`KeyedBuilder::snapshot_keys`](crate::KeyedBuilder::snapshot_keys).
pub(crate) struct KeyCodec<K> {
    pub(crate) encode: fn(&K) -> Key,
    pub(crate) decode: fn(&Key) -> Option<K>,
}

impl<K> Clone for KeyCodec<K> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<K> Copy for KeyCodec<K> {}

impl<K> fmt::Debug for KeyCodec<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyCodec")
    }
}

fn encode_exact<K: SnapshotKey>(key: &K) -> Key {
    key.to_key()
}

/// Encodes a `K` known (by its type id) to be a `T`.
fn encode_as<K: 'static, T: SnapshotKey>(key: &K) -> Key {
    match (key as &dyn Any).downcast_ref::<T>() {
        Some(key) => key.to_key(),
        // Not reachable: the codec is only chosen when the type ids match.
        None => Key::Unit,
    }
}

/// Decodes a `T` and hands it back as the `K` it is known to be.
fn decode_as<K: 'static, T: SnapshotKey>(key: &Key) -> Option<K> {
    let mut slot: Option<K> = None;
    let value = T::from_key(key)?;
    if let Some(slot) = (&mut slot as &mut dyn Any).downcast_mut::<Option<T>>() {
        *slot = Some(value);
    }
    slot
}

impl<K: 'static> KeyCodec<K> {
    pub(crate) fn exact() -> Self
    where
        K: SnapshotKey,
    {
        KeyCodec {
            encode: encode_exact::<K>,
            decode: K::from_key,
        }
    }

    /// The codec for a key type without naming its bound: the common key types are
    /// recognised by type id, so `Scope::keyed` and `KeyedLimiter::new` need no extra bound.
    pub(crate) fn guess() -> Option<Self> {
        macro_rules! try_types {
            ($($t:ty),*) => {$(
                if TypeId::of::<K>() == TypeId::of::<$t>() {
                    return Some(KeyCodec {
                        encode: encode_as::<K, $t>,
                        decode: decode_as::<K, $t>,
                    });
                }
            )*};
        }
        try_types!(
            (),
            u8,
            u16,
            u32,
            u64,
            usize,
            i8,
            i16,
            i32,
            i64,
            isize,
            bool,
            String,
            Box<str>,
            Arc<str>,
            Vec<u8>,
            Vec<String>,
            Vec<Arc<str>>,
            IpAddr,
            Ipv4Addr,
            Ipv6Addr,
            (u64, u64),
            (String, String),
            (String, u64),
            (u64, String),
            (Arc<str>, Arc<str>)
        );
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip<K: SnapshotKey + PartialEq + fmt::Debug>(key: K) {
        let guessed = KeyCodec::<K>::guess().unwrap();
        let exact = KeyCodec::<K>::exact();
        let written = (guessed.encode)(&key);
        assert_eq!(written, (exact.encode)(&key));
        assert_eq!((guessed.decode)(&written).as_ref(), Some(&key));
    }

    #[test]
    fn guessed_codecs_match_the_exact_ones() {
        round_trip(7u64);
        round_trip(-3i32);
        round_trip(String::from("key"));
        round_trip(Arc::<str>::from("key"));
        round_trip(IpAddr::from([10, 0, 0, 1]));
        round_trip(());
        round_trip(vec![String::from("org"), String::from("video")]);
        round_trip((7u64, 8u64));
        assert!(KeyCodec::<(u64, u32)>::guess().is_none());
        assert_eq!(
            (KeyCodec::<u64>::guess().unwrap().decode)(&Key::Str("7".into())),
            None
        );
    }

    #[test]
    fn integers_out_of_range_are_not_keys_of_the_type() {
        assert_eq!(u16::from_key(&Key::U64(70_000)), None);
        assert_eq!(i8::from_key(&Key::I64(-129)), None);
        assert_eq!(u64::from_key(&Key::I64(1)), None);
    }
}
