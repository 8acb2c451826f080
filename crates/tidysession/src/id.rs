//! Session ids and the keys stores keep instead of them.
//!
//! A [`SessionId`] is 192 bits from the operating system's CSPRNG, written as 32 characters of
//! URL-safe base64 without padding. It is a bearer secret: stores never see it, only its
//! [`StorageKey`] (SHA-256 of the id text), so a leaked table does not leak live sessions.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use sha2::{Digest, Sha256};

/// Random bytes in an id: 192 bits, comfortably above the 128-bit floor.
const ID_BYTES: usize = 24;
// I6: at least 128 bits, checked at compile time.
const _: () = assert!(ID_BYTES * 8 >= 128);
/// Length of the id's text form (`ceil(24 * 4 / 3)`, no padding).
const ID_LEN: usize = 32;

/// A session id: the secret the client holds in its cookie.
///
/// `Debug` never prints the id, so logging a session cannot leak it.
///
/// ```
/// use tidysession::store::SessionId;
///
/// let id = SessionId::generate()?;
/// assert_eq!(SessionId::parse(id.as_str()), Some(id.clone()));
/// assert_eq!(SessionId::parse("not an id"), None);
/// # Ok::<(), tidysession::store::IdError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SessionId {
    text: String,
    format: IdFormat,
}

/// How a store's session ids look, and what it files a session under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum IdFormat {
    /// 192 random bits as 32 characters of URL-safe base64; the store keeps only the SHA-256
    /// of the id (I6).
    #[default]
    Native,
    /// Django's session keys: 32 characters of `a-z0-9` (about 165 random bits). The store
    /// keeps the key itself, as Django does: the one documented exception to I6, for sharing
    /// sessions with a Django app.
    Django,
}

/// The characters of a Django session key.
const DJANGO_CHARS: &[u8; 36] = b"abcdefghijklmnopqrstuvwxyz0123456789";
// I6 for Django keys: 32 characters of 36 kinds carry over 128 bits.
const _: () = assert!(ID_LEN * 517 / 100 >= 128); // log2(36) > 5.17

/// The operating system's random number generator failed.
#[derive(Debug, thiserror::Error)]
#[error("the operating system's random number generator failed: {0}")]
pub struct IdError(getrandom::Error);

impl SessionId {
    /// A fresh id from the operating system's CSPRNG.
    ///
    /// # Errors
    ///
    /// Fails only when the OS random source is unavailable.
    pub fn generate() -> Result<Self, IdError> {
        Self::generate_as(IdFormat::Native)
    }

    /// A fresh id of the given format from the operating system's CSPRNG.
    ///
    /// # Errors
    ///
    /// Fails only when the OS random source is unavailable.
    pub fn generate_as(format: IdFormat) -> Result<Self, IdError> {
        let text = match format {
            IdFormat::Native => {
                let mut bytes = [0u8; ID_BYTES];
                getrandom::fill(&mut bytes).map_err(IdError)?;
                URL_SAFE_NO_PAD.encode(bytes)
            }
            IdFormat::Django => {
                // Rejection sampling: bytes below 252 (7 x 36) map evenly onto the 36 characters.
                let mut text = String::with_capacity(ID_LEN);
                while text.len() < ID_LEN {
                    let mut bytes = [0u8; 64];
                    getrandom::fill(&mut bytes).map_err(IdError)?;
                    text.extend(
                        bytes
                            .iter()
                            .filter(|b| **b < 252)
                            .map(|b| char::from(DJANGO_CHARS[usize::from(*b % 36)]))
                            .take(ID_LEN - text.len()),
                    );
                }
                text
            }
        };
        Ok(Self { text, format })
    }

    /// Parses an id received from a client. Anything that is not exactly the text form of
    /// [`SessionId::generate`] is rejected, before any store is asked.
    pub fn parse(text: &str) -> Option<Self> {
        Self::parse_as(IdFormat::Native, text)
    }

    /// Parses an id of the given format; anything else is rejected.
    pub fn parse_as(format: IdFormat, text: &str) -> Option<Self> {
        let well_formed = text.len() == ID_LEN
            && match format {
                // 32 base64 characters carry exactly 24 bytes, so no trailing bits can be
                // non-canonical.
                IdFormat::Native => text
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
                IdFormat::Django => text.bytes().all(|b| DJANGO_CHARS.contains(&b)),
            };
        well_formed.then(|| Self {
            text: text.to_owned(),
            format,
        })
    }

    /// The id's text form, as sent in the cookie.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The key a store files this session under: SHA-256 of the id text for native ids; the
    /// 32 characters themselves for Django keys.
    pub fn storage_key(&self) -> StorageKey {
        match self.format {
            IdFormat::Native => StorageKey(Sha256::digest(self.text.as_bytes()).into()),
            IdFormat::Django => {
                let mut raw = [0u8; 32];
                raw.copy_from_slice(self.text.as_bytes());
                StorageKey(raw)
            }
        }
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionId(**redacted**)")
    }
}

/// What a native store keeps in place of a [`SessionId`]: its SHA-256.
///
/// Knowing a storage key does not let anyone present the session, so it is safe to log
/// a prefix of it ([`StorageKey::short`]) when operators need to correlate records.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StorageKey([u8; 32]);

impl StorageKey {
    /// Wraps raw digest bytes, e.g. read back from a store.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The 32 digest bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lowercase hex of the whole digest (64 characters), for text-keyed stores.
    pub fn to_hex(&self) -> String {
        let mut s = String::with_capacity(64);
        self.push_hex(&mut s);
        s
    }

    /// Appends the lowercase hex form to `out` (once per store call on Redis: a table, not
    /// the formatting machinery).
    pub(crate) fn push_hex(&self, out: &mut String) {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        for b in self.0 {
            out.push(char::from(DIGITS[usize::from(b >> 4)]));
            out.push(char::from(DIGITS[usize::from(b & 0xf)]));
        }
    }

    /// The first 8 hex characters, enough to correlate log lines.
    pub fn short(&self) -> String {
        self.to_hex()[..8].to_owned()
    }
}

impl fmt::Debug for StorageKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StorageKey({}…)", self.short())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_parse_back_and_differ() {
        let a = SessionId::generate().unwrap();
        let b = SessionId::generate().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), ID_LEN);
        assert_eq!(SessionId::parse(a.as_str()), Some(a));
    }

    #[test]
    fn id_text_length_matches_the_random_bytes() {
        assert_eq!(URL_SAFE_NO_PAD.encode([0u8; ID_BYTES]).len(), ID_LEN);
    }

    #[test]
    fn parse_rejects_anything_else() {
        let good = SessionId::generate().unwrap();
        for bad in [
            "",
            "short",
            &good.as_str()[..31],
            &format!("{}A", good.as_str()),
            "0123456789abcdef0123456789abcde=",
            "0123456789abcdef0123456789abcd/+",
            "0123456789abcdef0123456789abcdé",
            "0123456789abcdef 0123456789abcde",
        ] {
            assert_eq!(SessionId::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn storage_key_is_sha256_of_the_id_text() {
        let id = SessionId::parse("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA").unwrap();
        // printf AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA | sha256sum
        assert_eq!(
            id.storage_key().to_hex(),
            "22a48051594c1949deed7040850c1f0f8764537f5191be56732d16a54c1d8153"
        );
    }

    #[test]
    fn django_keys_look_like_djangos_and_are_kept_as_is() {
        let a = SessionId::generate_as(IdFormat::Django).unwrap();
        let b = SessionId::generate_as(IdFormat::Django).unwrap();
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), 32);
        assert!(
            a.as_str().bytes().all(|c| DJANGO_CHARS.contains(&c)),
            "{}",
            a.as_str()
        );
        assert_eq!(
            SessionId::parse_as(IdFormat::Django, a.as_str()),
            Some(a.clone())
        );
        assert_eq!(&a.storage_key().as_bytes()[..], a.as_str().as_bytes());
        for bad in [
            "",
            "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345",
            "abc-efghijklmnopqrstuvwxyz012345",
        ] {
            assert_eq!(SessionId::parse_as(IdFormat::Django, bad), None, "{bad:?}");
        }
        // Every character turns up: the sampling covers the whole alphabet.
        let seen: std::collections::HashSet<u8> = (0..200)
            .flat_map(|_| {
                SessionId::generate_as(IdFormat::Django)
                    .unwrap()
                    .text
                    .into_bytes()
            })
            .collect();
        assert_eq!(seen.len(), 36);
    }

    #[test]
    fn debug_never_prints_the_id() {
        let id = SessionId::generate().unwrap();
        assert!(!format!("{id:?}").contains(id.as_str()));
        assert!(!format!("{:?}", id.storage_key()).contains(id.as_str()));
    }
}
