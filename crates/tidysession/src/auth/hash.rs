//! The session auth hash: a keyed HMAC of the user's id and credential fingerprint. The id is
//! part of it so that a hash is only ever valid for the user it was made for, even when two
//! users' fingerprints are equal.

use hmac::Mac;

use crate::keyring::KeyRing;

const PURPOSE: &str = "session auth hash";

/// What checking a stored hash against the user's fingerprint found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Check {
    /// Made with the newest key.
    Valid,
    /// Made with an older key that is still in the ring: accept once, re-make.
    ValidOldKey,
    /// Wrong, malformed, or made with a key no longer in the ring.
    Invalid,
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
