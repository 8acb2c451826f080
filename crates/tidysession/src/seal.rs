//! Sealing session data into the cookie itself: XChaCha20-Poly1305 under a [`KeyRing`].
//!
//! A sealed cookie value is `KEYID.BASE64URL(nonce ‖ ciphertext ‖ tag)`. The `.` never occurs
//! in a session id, so the two kinds of cookie are told apart by their form alone, without a
//! store lookup. The nonce is 24 random bytes (XChaCha's nonce is large enough that random
//! nonces never collide in practice). The cookie's name is authenticated with the data, so a
//! value cannot be moved to another cookie.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::client::{ClientAddress, Limiter};
use crate::config::{Anonymous, OverBudget, SessionConfig};
use crate::keyring::KeyRing;
use crate::record::{millis, time_at, Data, Record};

const PURPOSE: &str = "sealed cookie";
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
/// The most a sealed value may be; anything longer is refused before decoding.
const MAX_VALUE_LEN: usize = 8192;

/// Seals and opens session data for one cookie name.
pub(crate) struct Sealer {
    /// Newest first, as in the ring.
    ciphers: Vec<(u8, XChaCha20Poly1305)>,
    aad: Vec<u8>,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<u8> = self.ciphers.iter().map(|(id, _)| *id).collect();
        f.debug_struct("Sealer").field("key_ids", &ids).finish()
    }
}

/// What a sealed cookie holds.
#[derive(Serialize, Deserialize)]
struct Sealed<D> {
    /// Created at, Unix milliseconds.
    c: i64,
    /// Expires at, Unix milliseconds.
    e: i64,
    d: D,
}

/// Why a sealed value did not open. Never shown to clients; logged at debug level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rejected {
    /// Not `KEYID.BASE64URL`, or too short or too long to be one.
    Malformed,
    /// Sealed under a key the ring no longer has.
    UnknownKey,
    /// Forged, truncated, or sealed for another cookie.
    Forged,
    /// Opened, but past its expiry or absolute timeout.
    Expired,
}

impl Sealer {
    pub(crate) fn new(ring: &KeyRing, cookie_name: &str) -> Self {
        let ciphers = ring
            .ids()
            .filter_map(|id| {
                let key = ring.derived_key(id, PURPOSE)?;
                Some((id, XChaCha20Poly1305::new(&key.into())))
            })
            .collect();
        let mut aad = b"tidysession sealed v1/".to_vec();
        aad.extend_from_slice(cookie_name.as_bytes());
        Self { ciphers, aad }
    }

    /// Whether `value` has the form of a sealed cookie (it may still not open).
    pub(crate) fn looks_sealed(value: &str) -> bool {
        value
            .split_once('.')
            .is_some_and(|(id, rest)| id.parse::<u8>().is_ok() && !rest.is_empty())
    }

    /// The length of the sealed value for a serialized payload of `plaintext` bytes, under
    /// the newest key.
    pub(crate) fn sealed_len(&self, plaintext: usize) -> usize {
        let id_len = self
            .ciphers
            .first()
            .map_or(3, |(id, _)| id.to_string().len());
        let raw = NONCE_LEN + plaintext + TAG_LEN;
        id_len + 1 + (raw * 4).div_ceil(3)
    }

    /// The serialized payload for `data` with these times; its length decides the budget.
    pub(crate) fn payload(
        data: &Data,
        created_at: OffsetDateTime,
        expires_at: OffsetDateTime,
    ) -> Vec<u8> {
        let sealed = Sealed {
            c: millis(created_at),
            e: millis(expires_at),
            d: data,
        };
        // A map of JSON values always serializes.
        serde_json::to_vec(&sealed).unwrap_or_default()
    }

    /// Seals a payload made by [`payload`](Self::payload) under the newest key.
    pub(crate) fn seal(&self, payload: &[u8]) -> Option<String> {
        let (id, cipher) = self.ciphers.first()?;
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).ok()?;
        let ct = cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: payload,
                    aad: &self.aad,
                },
            )
            .ok()?;
        let mut raw = nonce.to_vec();
        raw.extend_from_slice(&ct);
        Some(format!("{id}.{}", URL_SAFE_NO_PAD.encode(raw)))
    }

    /// Opens a sealed value: the record it holds, if it is genuine and live at `now`.
    pub(crate) fn open(
        &self,
        value: &str,
        now: OffsetDateTime,
        absolute: time::Duration,
    ) -> Result<Record, Rejected> {
        if value.len() > MAX_VALUE_LEN {
            return Err(Rejected::Malformed);
        }
        let (id, body) = value.split_once('.').ok_or(Rejected::Malformed)?;
        let id: u8 = id.parse().map_err(|_| Rejected::Malformed)?;
        let raw = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| Rejected::Malformed)?;
        if raw.len() < NONCE_LEN + TAG_LEN {
            return Err(Rejected::Malformed);
        }
        let (_, cipher) = self
            .ciphers
            .iter()
            .find(|(k, _)| *k == id)
            .ok_or(Rejected::UnknownKey)?;
        let (nonce, ct) = raw.split_at(NONCE_LEN);
        let plain = cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ct,
                    aad: &self.aad,
                },
            )
            .map_err(|_| Rejected::Forged)?;
        // Authentic, so written by us: a payload that does not parse is still refused, not
        // trusted.
        let sealed: Sealed<Data> = serde_json::from_slice(&plain).map_err(|_| Rejected::Forged)?;
        let record = Record {
            data: sealed.d,
            created_at: time_at(sealed.c).ok_or(Rejected::Forged)?,
            expires_at: time_at(sealed.e).ok_or(Rejected::Forged)?,
        };
        if !record.is_live(now, absolute) {
            return Err(Rejected::Expired);
        }
        Ok(record)
    }
}

/// The cookie tier of one layer: how to seal, how much fits, and who may be promoted.
#[derive(Debug)]
pub(crate) struct CookieTier {
    pub(crate) sealer: Sealer,
    /// Cookie-only mode: logged-in sessions are sealed too, and there is no store.
    pub(crate) only: bool,
    budget: usize,
    /// Bytes of the session's `Set-Cookie` header besides the value.
    overhead: usize,
    pub(crate) over_budget: OverBudget,
    pub(crate) limiter: Option<(Limiter, ClientAddress)>,
}

impl CookieTier {
    /// The tier `config` asks for (`None`: every session on the server). `overhead` is the
    /// length of the session cookie's header without its value.
    pub(crate) fn new(config: &SessionConfig, only: bool, overhead: usize) -> Option<Self> {
        if config.anonymous == Anonymous::OnServer && !only {
            return None;
        }
        let keys = match &config.keys {
            Some(keys) => keys.clone(),
            None => {
                tracing::warn!(
                    "no session keys configured: sealed sessions use a key made at startup, \
                     so they end when the process restarts and are not shared between servers \
                     (see SessionConfig::with_keys)"
                );
                match KeyRing::generate(1) {
                    Ok(keys) => keys,
                    Err(e) => {
                        // Without a key nothing can be sealed: keep every session on the server.
                        tracing::error!(error = %e, "cannot make a session key; anonymous sessions go to the store");
                        return None;
                    }
                }
            }
        };
        let limiter = config
            .promotion_limit
            .as_ref()
            .map(|l| (Limiter::new(l.max, l.per), l.client.clone()));
        Some(Self {
            sealer: Sealer::new(&keys, &config.cookie_name),
            only,
            budget: config.cookie_budget,
            overhead,
            over_budget: if only {
                OverBudget::Fail
            } else {
                config.over_budget
            },
            limiter,
        })
    }

    /// Whether data whose payload is `payload_len` bytes fits the cookie budget, and its size.
    pub(crate) fn fits(&self, payload_len: usize) -> Result<(), usize> {
        let size = self.overhead + self.sealer.sealed_len(payload_len);
        if size <= self.budget {
            Ok(())
        } else {
            Err(size)
        }
    }

    /// The budget, in bytes of `Set-Cookie` header.
    pub(crate) fn budget(&self) -> usize {
        self.budget
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use time::Duration;

    fn data() -> Data {
        json!({"cart": ["tea", "é"], "n": 1})
            .as_object()
            .unwrap()
            .clone()
    }

    fn now() -> OffsetDateTime {
        let t = OffsetDateTime::now_utc();
        t.replace_millisecond(t.millisecond()).unwrap()
    }

    const DAY: Duration = Duration::days(1);

    #[test]
    fn seals_open_and_every_tampered_byte_is_rejected() {
        let ring = KeyRing::generate(1).unwrap();
        let sealer = Sealer::new(&ring, "id");
        let t = now();
        let payload = Sealer::payload(&data(), t, t + DAY);
        let value = sealer.seal(&payload).unwrap();
        assert!(Sealer::looks_sealed(&value));
        assert_eq!(value.len(), sealer.sealed_len(payload.len()));
        let record = sealer.open(&value, t, 30 * DAY).unwrap();
        assert_eq!(
            (record.data, record.created_at, record.expires_at),
            (data(), t, t + DAY)
        );
        // Two seals of the same data differ (fresh nonce).
        assert_ne!(sealer.seal(&payload).unwrap(), value);
        for i in 0..value.len() {
            let mut bytes = value.clone().into_bytes();
            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            let tampered = String::from_utf8(bytes).unwrap();
            assert!(sealer.open(&tampered, t, 30 * DAY).is_err(), "byte {i}");
        }
        for cut in [0, 1, 2, 10, value.len() - 1] {
            assert!(
                sealer.open(&value[..cut], t, 30 * DAY).is_err(),
                "cut at {cut}"
            );
        }
        assert!(sealer.open(&"1.".repeat(5000), t, DAY).is_err());
        // Another cookie name cannot use it.
        assert_eq!(
            Sealer::new(&ring, "other")
                .open(&value, t, 30 * DAY)
                .unwrap_err(),
            Rejected::Forged
        );
    }

    #[test]
    fn expiry_and_absolute_timeout_are_enforced() {
        let sealer = Sealer::new(&KeyRing::generate(1).unwrap(), "id");
        let t = now();
        let value = sealer.seal(&Sealer::payload(&data(), t, t + DAY)).unwrap();
        assert_eq!(
            sealer.open(&value, t + DAY, 30 * DAY).unwrap_err(),
            Rejected::Expired
        );
        assert_eq!(
            sealer
                .open(&value, t + Duration::hours(2), Duration::hours(1))
                .unwrap_err(),
            Rejected::Expired
        );
    }

    #[test]
    fn rotation_opens_old_keys_until_they_are_removed() {
        let k1 = KeyRing::generate(1).unwrap();
        let k2 = KeyRing::generate(2).unwrap();
        let t = now();
        let payload = Sealer::payload(&data(), t, t + DAY);
        let old = Sealer::new(&k1, "id").seal(&payload).unwrap();
        let both = Sealer::new(&k2.clone().with_older(&k1), "id");
        assert!(old.starts_with("1.") && both.open(&old, t, 30 * DAY).is_ok());
        let new = both.seal(&payload).unwrap();
        assert!(new.starts_with("2."), "new seals use the newest key");
        let only2 = Sealer::new(&k2, "id");
        assert_eq!(
            only2.open(&old, t, 30 * DAY).unwrap_err(),
            Rejected::UnknownKey
        );
        assert!(only2.open(&new, t, 30 * DAY).is_ok());
    }
}
