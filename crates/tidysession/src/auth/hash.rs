//! The session auth hash: how a session remembers which credentials its user logged in with.
//!
//! [`SessionAuthHash`] is the scheme; each [`AuthBackend`](super::AuthBackend) may choose its
//! own. The default, [`NativeAuthHash`], is a keyed HMAC of the user's id and credential
//! fingerprint under the layer's [`KeyRing`]. The id is part of it so that a hash is only ever
//! valid for the user it was made for, even when two users' fingerprints are equal.

use std::fmt;

use hmac::Mac;

use crate::keyring::KeyRing;

const PURPOSE: &str = "session auth hash";

/// What checking a stored hash against the user's fingerprint found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HashCheck {
    /// Made with the newest key.
    Valid,
    /// Made with an older key (or fallback secret) that is still accepted: accept once,
    /// re-make with the newest.
    ValidOldKey,
    /// Wrong, malformed, or made with a key no longer accepted.
    Invalid,
}

pub(crate) use HashCheck as Check;

/// A scheme for the session auth hash ([`HASH_KEY`](super::HASH_KEY)): made at login from the
/// user's id and [credential fingerprint](super::AuthUser::credential_fingerprint), checked on
/// every load of the user. A mismatch logs the session out.
///
/// [`NativeAuthHash`] is the default; with the `django` feature,
/// [`DjangoAuthHash`](super::DjangoAuthHash) makes the hash Django makes, so Django and a Rust
/// service accept each other's logins.
pub trait SessionAuthHash: Send + Sync + fmt::Debug + 'static {
    /// The hash to store for the user with id `user` (as text) and `fingerprint`, made with
    /// the newest key.
    fn make(&self, user: &str, fingerprint: &[u8]) -> String;

    /// Checks a `stored` hash against the user, in constant time. Never panics, whatever
    /// `stored` holds.
    fn check(&self, user: &str, fingerprint: &[u8], stored: &str) -> HashCheck;

    /// More session entries a login writes beside the user id and the hash (Django's
    /// `_auth_user_backend`, say). None by default.
    fn login_entries(&self) -> Vec<(String, serde_json::Value)> {
        Vec::new()
    }
}

/// tidysession's own session auth hash: `KEYID$HEX`, an HMAC-SHA256 of the user's id and
/// credential fingerprint under a key derived from the [`KeyRing`]'s newest key. Hashes made
/// with an older key still in the ring are accepted and re-made.
#[derive(Debug, Clone)]
pub struct NativeAuthHash {
    keys: KeyRing,
}

impl NativeAuthHash {
    /// The native scheme keyed by `keys`.
    pub fn new(keys: KeyRing) -> Self {
        Self { keys }
    }
}

impl SessionAuthHash for NativeAuthHash {
    fn make(&self, user: &str, fingerprint: &[u8]) -> String {
        make(&self.keys, user, fingerprint)
    }

    fn check(&self, user: &str, fingerprint: &[u8], stored: &str) -> HashCheck {
        check(&self.keys, user, fingerprint, stored)
    }
}

/// The hash of `user`'s `fingerprint` under the ring's newest key: `KEYID$HEX`.
pub(crate) fn make(ring: &KeyRing, user: &str, fingerprint: &[u8]) -> String {
    let id = ring.newest_id();
    let tag = mac(ring, id, user, fingerprint).map(|m| m.finalize().into_bytes());
    // The newest key is always in the ring, so the tag always exists.
    let hex: String = tag.iter().flatten().map(|b| format!("{b:02x}")).collect();
    format!("{id}${hex}")
}

/// Checks `stored` against `user`'s `fingerprint` in constant time.
pub(crate) fn check(ring: &KeyRing, user: &str, fingerprint: &[u8], stored: &str) -> Check {
    let Some((id, hex)) = stored.split_once('$') else {
        return Check::Invalid;
    };
    let (Ok(id), Some(tag)) = (id.parse::<u8>(), from_hex(hex)) else {
        return Check::Invalid;
    };
    let verified = mac(ring, id, user, fingerprint).is_some_and(|m| m.verify_slice(&tag).is_ok());
    match verified {
        false => Check::Invalid,
        true if id == ring.newest_id() => Check::Valid,
        true => Check::ValidOldKey,
    }
}

fn mac(ring: &KeyRing, id: u8, user: &str, fingerprint: &[u8]) -> Option<hmac::Hmac<sha2::Sha256>> {
    let mut m = ring.derived(id, PURPOSE)?;
    // Length-prefixed, so no (user, fingerprint) pair reads as another.
    m.update(&(user.len() as u64).to_be_bytes());
    m.update(user.as_bytes());
    m.update(fingerprint);
    Some(m)
}

fn from_hex(hex: &str) -> Option<Vec<u8>> {
    if hex.len() % 2 != 0 || !hex.is_ascii() {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_rotate_and_reject_tampering() {
        let k1 = KeyRing::generate(1).unwrap();
        let h1 = make(&k1, "u1", b"pw-hash-1");
        assert_eq!(check(&k1, "u1", b"pw-hash-1", &h1), Check::Valid);
        assert_eq!(
            check(&k1, "u1", b"pw-hash-2", &h1),
            Check::Invalid,
            "password changed"
        );
        assert_eq!(
            check(&k1, "u2", b"pw-hash-1", &h1),
            Check::Invalid,
            "another user"
        );
        // Key 2 added in front: key 1's hash is still accepted, as old.
        let k21 = KeyRing::generate(2).unwrap().with_older(&k1);
        assert_eq!(check(&k21, "u1", b"pw-hash-1", &h1), Check::ValidOldKey);
        let h2 = make(&k21, "u1", b"pw-hash-1");
        assert!(h2.starts_with("2$"));
        assert_eq!(check(&k21, "u1", b"pw-hash-1", &h2), Check::Valid);
        // Key 1 removed: its hashes no longer count.
        let k2: KeyRing = k21.to_config().split(',').next().unwrap().parse().unwrap();
        assert_eq!(check(&k2, "u1", b"pw-hash-1", &h1), Check::Invalid);
        // Every single-character change, and malformed values, are rejected.
        for i in 0..h2.len() {
            let mut bytes = h2.clone().into_bytes();
            bytes[i] = if bytes[i] == b'0' { b'1' } else { b'0' };
            let tampered = String::from_utf8(bytes).unwrap();
            assert_eq!(
                check(&k21, "u1", b"pw-hash-1", &tampered),
                Check::Invalid,
                "{tampered}"
            );
        }
        for bad in ["", "$", "2$", "2$zz", "300$00", "2$é0", &h2[..h2.len() - 2]] {
            assert_eq!(
                check(&k21, "u1", b"pw-hash-1", bad),
                Check::Invalid,
                "{bad:?}"
            );
        }
    }
}
