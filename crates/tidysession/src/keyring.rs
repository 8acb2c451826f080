//! [`KeyRing`]: the server's secret keys, newest first, each with a short id.

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The length of every key, in bytes.
pub const KEY_LEN: usize = 32;

/// The server's secret keys: the newest signs, every key still verifies.
///
/// Rotate by adding a new key in front; once everything made with an old key has been
/// re-made (or has expired), remove it. Each key has a one-byte id that travels with whatever
/// it made, so verifying never has to try every key.
///
/// A key is used only through keys derived from it per purpose (the session auth hash, say),
/// so one ring can serve several features without one's output ever being valid for another.
///
/// The text form, for configuration (e.g. an environment variable), lists `ID:BASE64` entries
/// separated by commas, newest first; each key is 32 random bytes in standard base64:
///
/// ```
/// use tidysession::KeyRing;
///
/// let ring = KeyRing::generate(1)?;
/// let text = ring.to_config();
/// assert!(text.starts_with("1:"));
/// let again: KeyRing = text.parse()?;
/// assert_eq!(again.newest_id(), 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// `Debug` shows the ids only.
#[derive(Clone)]
pub struct KeyRing {
    /// Newest first; never empty, ids unique.
    keys: Vec<(u8, [u8; KEY_LEN])>,
}

/// Why a key ring could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyRingError {
    /// No keys at all.
    #[error("a key ring needs at least one key")]
    Empty,
    /// Two keys share an id.
    #[error("key id {0} appears twice")]
    DuplicateId(u8),
    /// An entry of the text form is not `ID:BASE64`.
    #[error("key entry {index} is not ID:BASE64 (ID 0 to 255)")]
    Syntax {
        /// Its position, from 1.
        index: usize,
    },
    /// A key is not 32 bytes of base64.
    #[error("key {id} must be {KEY_LEN} bytes in standard base64")]
    BadKey {
        /// The key's id.
        id: u8,
    },
    /// The operating system's random source failed.
    #[error("cannot generate a key: {0}")]
    Random(getrandom::Error),
}

impl KeyRing {
    /// A ring of the given keys, newest first.
    ///
    /// # Errors
    ///
    /// [`KeyRingError::Empty`] or [`KeyRingError::DuplicateId`].
    pub fn new(keys: impl IntoIterator<Item = (u8, [u8; KEY_LEN])>) -> Result<Self, KeyRingError> {
        let keys: Vec<_> = keys.into_iter().collect();
        if keys.is_empty() {
            return Err(KeyRingError::Empty);
        }
        for (i, (id, _)) in keys.iter().enumerate() {
            if keys[..i].iter().any(|(other, _)| other == id) {
                return Err(KeyRingError::DuplicateId(*id));
            }
        }
        Ok(Self { keys })
    }

    /// A ring of one new random key with id `id`.
    ///
    /// # Errors
    ///
    /// [`KeyRingError::Random`] if the operating system's random source fails.
    pub fn generate(id: u8) -> Result<Self, KeyRingError> {
        let mut key = [0; KEY_LEN];
        getrandom::fill(&mut key).map_err(KeyRingError::Random)?;
        Self::new([(id, key)])
    }

    /// The ring with `other`'s keys added behind this ring's (ids already present are skipped).
    pub fn with_older(mut self, other: &KeyRing) -> Self {
        for (id, key) in &other.keys {
            if !self.keys.iter().any(|(mine, _)| mine == id) {
                self.keys.push((*id, *key));
            }
        }
        self
    }

    /// The id of the key that signs.
    pub fn newest_id(&self) -> u8 {
        self.keys[0].0
    }

    /// The ids of every key, newest first.
    pub fn ids(&self) -> impl Iterator<Item = u8> + '_ {
        self.keys.iter().map(|(id, _)| *id)
    }

    /// The text form (see the type docs). It holds the secrets: store it as one.
    pub fn to_config(&self) -> String {
        self.keys
            .iter()
            .map(|(id, key)| format!("{id}:{}", STANDARD.encode(key)))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The key with this id, derived for `purpose`, as an HMAC ready for input.
    pub(crate) fn derived(&self, id: u8, purpose: &str) -> Option<Hmac<Sha256>> {
        Hmac::<Sha256>::new_from_slice(&self.derived_key(id, purpose)?).ok()
    }

    /// The key with this id, derived for `purpose`: HMAC-SHA-256 of the purpose under the key.
    pub(crate) fn derived_key(&self, id: u8, purpose: &str) -> Option<[u8; KEY_LEN]> {
        let (_, key) = self.keys.iter().find(|(k, _)| *k == id)?;
        let mut mac = Hmac::<Sha256>::new_from_slice(key).ok()?;
        mac.update(b"tidysession/");
        mac.update(purpose.as_bytes());
        Some(mac.finalize().into_bytes().into())
    }
}

impl std::str::FromStr for KeyRing {
    type Err = KeyRingError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let entries = text.split(',').map(str::trim).filter(|e| !e.is_empty());
        let keys = entries
            .enumerate()
            .map(|(i, entry)| {
                let syntax = KeyRingError::Syntax { index: i + 1 };
                let (id, key) = entry.split_once(':').ok_or(syntax)?;
                let id: u8 = id
                    .trim()
                    .parse()
                    .map_err(|_| KeyRingError::Syntax { index: i + 1 })?;
                let key = STANDARD
                    .decode(key.trim())
                    .ok()
                    .and_then(|k| <[u8; KEY_LEN]>::try_from(k).ok())
                    .ok_or(KeyRingError::BadKey { id })?;
                Ok((id, key))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Self::new(keys)
    }
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing")
            .field("ids", &self.ids().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_form_round_trips_and_bad_entries_are_named() {
        let ring = KeyRing::generate(2)
            .unwrap()
            .with_older(&KeyRing::generate(1).unwrap());
        let again: KeyRing = ring.to_config().parse().unwrap();
        assert_eq!(again.ids().collect::<Vec<_>>(), [2, 1]);
        assert_eq!(again.to_config(), ring.to_config());
        assert!(!format!("{ring:?}").contains(&ring.to_config()[2..10]));
        assert!(matches!("".parse::<KeyRing>(), Err(KeyRingError::Empty)));
        assert!(matches!(
            "1:AAAA".parse::<KeyRing>(),
            Err(KeyRingError::BadKey { id: 1 })
        ));
        assert!(matches!(
            "x".parse::<KeyRing>(),
            Err(KeyRingError::Syntax { index: 1 })
        ));
        let one = KeyRing::generate(1).unwrap().to_config();
        assert!(matches!(
            format!("{one},{one}").parse::<KeyRing>(),
            Err(KeyRingError::DuplicateId(1))
        ));
    }

    #[test]
    fn derived_keys_differ_by_purpose_and_key() {
        let ring = KeyRing::generate(1)
            .unwrap()
            .with_older(&KeyRing::generate(2).unwrap());
        let out = |id, purpose| {
            let mut m = ring.derived(id, purpose).unwrap();
            m.update(b"x");
            m.finalize().into_bytes()
        };
        assert_ne!(out(1, "a"), out(1, "b"));
        assert_ne!(out(1, "a"), out(2, "a"));
        assert_eq!(out(1, "a"), out(1, "a"));
        assert!(ring.derived(3, "a").is_none());
    }
}
