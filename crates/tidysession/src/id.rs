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
/// use tidysession::SessionId;
///
/// let id = SessionId::generate()?;
/// assert_eq!(SessionId::parse(id.as_str()), Some(id.clone()));
/// assert_eq!(SessionId::parse("not an id"), None);
/// # Ok::<(), tidysession::IdError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SessionId(String);

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
        let mut bytes = [0u8; ID_BYTES];
        getrandom::fill(&mut bytes).map_err(IdError)?;
        Ok(Self(URL_SAFE_NO_PAD.encode(bytes)))
    }

    /// Parses an id received from a client. Anything that is not exactly the text form of
    /// [`SessionId::generate`] is rejected, before any store is asked.
    pub fn parse(text: &str) -> Option<Self> {
        let well_formed = text.len() == ID_LEN
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        // 32 base64 characters carry exactly 24 bytes, so no trailing bits can be non-canonical.
        well_formed.then(|| Self(text.to_owned()))
    }

    /// The id's text form, as sent in the cookie.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key a native store files this session under: SHA-256 of the id text.
    pub fn storage_key(&self) -> StorageKey {
        StorageKey(Sha256::digest(self.0.as_bytes()).into())
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
        use fmt::Write as _;
        self.0.iter().fold(String::with_capacity(64), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
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
    fn debug_never_prints_the_id() {
        let id = SessionId::generate().unwrap();
        assert!(!format!("{id:?}").contains(id.as_str()));
        assert!(!format!("{:?}", id.storage_key()).contains(id.as_str()));
    }
}
