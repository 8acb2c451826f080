//! `django.core.signing`: [`Signer`], [`TimestampSigner`], [`dumps`] and [`loads`].

use std::fmt;
use std::io::{Read, Write};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::alphabet::URL_SAFE;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;
use hmac::digest::{generic_array::GenericArray, KeyInit};
use hmac::{Hmac, Mac};
use serde::de::DeserializeOwned;
use serde::Serialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::json::{from_json, to_json};

/// The separator between a value, its timestamp and its signature.
const SEP: char = ':';

/// The default salt of [`dumps`] and [`loads`] (Django's `salt="django.core.signing"`).
pub const DUMPS_SALT: &str = "django.core.signing";

/// URL-safe base64 without padding, as Django writes it; decoding accepts padding or not,
/// as Django's decoder (which re-pads) does.
const B64: GeneralPurpose = GeneralPurpose::new(
    &URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Why a signed value was refused, or a value could not be signed.
///
/// Django's session code treats every one of these as "no session"; the variants say why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SigningError {
    /// The signature does not match under the secret or any fallback: tampered, made with
    /// another secret or salt, or not a signed value at all.
    #[error("signature does not match")]
    BadSignature,
    /// The signature is good but older than the allowed `max_age`.
    #[error("signature expired: signed {age:?} ago, max age {max_age:?}")]
    Expired {
        /// How long ago it was signed.
        age: Duration,
        /// The age allowed.
        max_age: Duration,
    },
    /// Not in the signed-value format: no `:` separator, or no valid base62 timestamp
    /// where a timestamp signer expects one.
    #[error("malformed signed value: {0}")]
    Malformed(&'static str),
    /// The signature is good but what it covers cannot be decoded (base64, zlib, JSON, or a
    /// JSON value of the wrong shape).
    #[error("bad signed payload: {0}")]
    BadPayload(String),
    /// The value to sign cannot be written as JSON.
    #[error("cannot encode the value: {0}")]
    Encode(String),
}

/// A Django `SECRET_KEY` with its `SECRET_KEY_FALLBACKS`.
///
/// New values are signed with the secret key; values are accepted when they verify under
/// the secret key or any fallback, so a rotated-out secret keeps working for what it signed.
/// Cloning is cheap. `Debug` shows only how many fallbacks there are.
///
/// ```
/// use tidysession::django::Secrets;
///
/// let secrets = Secrets::new("new-secret").with_fallbacks(["old-secret"]);
/// assert_eq!(secrets.fallback_count(), 1);
/// ```
///
/// Django refuses an empty `SECRET_KEY`; so should whatever configures this.
#[derive(Clone)]
pub struct Secrets {
    inner: Arc<SecretsInner>,
}

struct SecretsInner {
    secret_key: Vec<u8>,
    fallbacks: Vec<Vec<u8>>,
}

impl Secrets {
    /// The secret key (a Django `SECRET_KEY`; text is taken as its UTF-8 bytes, as Django
    /// does), with no fallbacks.
    pub fn new(secret_key: impl AsRef<[u8]>) -> Self {
        Self {
            inner: Arc::new(SecretsInner {
                secret_key: secret_key.as_ref().to_vec(),
                fallbacks: Vec::new(),
            }),
        }
    }

    /// These secrets with `fallbacks` (Django's `SECRET_KEY_FALLBACKS`, in order) added.
    pub fn with_fallbacks<K: AsRef<[u8]>>(self, fallbacks: impl IntoIterator<Item = K>) -> Self {
        let mut fallbacks_all = self.inner.fallbacks.clone();
        fallbacks_all.extend(fallbacks.into_iter().map(|k| k.as_ref().to_vec()));
        Self {
            inner: Arc::new(SecretsInner {
                secret_key: self.inner.secret_key.clone(),
                fallbacks: fallbacks_all,
            }),
        }
    }

    /// How many fallbacks there are.
    pub fn fallback_count(&self) -> usize {
        self.inner.fallbacks.len()
    }

    /// The secret key.
    pub(crate) fn secret_key(&self) -> &[u8] {
        &self.inner.secret_key
    }

    /// The secret key, then each fallback.
    pub(crate) fn all(&self) -> impl Iterator<Item = &[u8]> {
        std::iter::once(self.inner.secret_key.as_slice())
            .chain(self.inner.fallbacks.iter().map(Vec::as_slice))
    }
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Secrets")
            .field("fallbacks", &self.fallback_count())
            .finish_non_exhaustive()
    }
}

/// Django's `salted_hmac(key_salt, value, secret, algorithm="sha256")`:
/// HMAC-SHA256 of `value` under the key SHA-256(`key_salt` ‖ `secret`).
///
/// Django uses it for signatures (key salt: the signer's salt + `"signer"`) and for the
/// session auth hash (`_auth_user_hash` is its lowercase hex).
pub fn salted_hmac(key_salt: &[u8], value: &[u8], secret: &[u8]) -> [u8; 32] {
    let key = Sha256::new()
        .chain_update(key_salt)
        .chain_update(secret)
        .finalize();
    // HMAC pads a short key with zeros to the block size; doing it here needs no fallible
    // constructor.
    let mut block = GenericArray::default();
    block[..key.len()].copy_from_slice(&key);
    let mut mac = <Hmac<Sha256> as KeyInit>::new(&block);
    mac.update(value);
    mac.finalize().into_bytes().into()
}

/// Django's `b62_encode`: `0-9A-Za-z` digits, a leading `-` for negative numbers.
pub fn b62_encode(n: i64) -> String {
    if n == 0 {
        return "0".to_owned();
    }
    let mut rest = n.unsigned_abs();
    let mut digits = Vec::new();
    while rest > 0 {
        digits.push(BASE62[(rest % 62) as usize]);
        rest /= 62;
    }
    if n < 0 {
        digits.push(b'-');
    }
    digits.iter().rev().map(|&d| char::from(d)).collect()
}

/// Django's `b62_decode`; `None` for text that is not base62 or does not fit an `i64`.
pub fn b62_decode(text: &str) -> Option<i64> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        // Django fails on "" (and reads a lone "-" as 0).
        None if text.is_empty() => return None,
        None => (false, text),
    };
    let mut n: i128 = 0;
    for d in digits.bytes() {
        let value = BASE62.iter().position(|&c| c == d)?;
        n = n.checked_mul(62)?.checked_add(value as i128)?;
        if n > i128::from(i64::MAX) + 1 {
            return None;
        }
    }
    i64::try_from(if negative { -n } else { n }).ok()
}

fn b64_encode(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

/// Django's `Signer`: `value:signature`, the signature being the URL-safe base64 (no
/// padding) of `salted_hmac(salt + "signer", value, secret)`.
///
/// ```
/// use tidysession::django::{Secrets, Signer};
///
/// let signer = Signer::new(Secrets::new("predictable-secret"));
/// let signed = signer.sign("foo");
/// assert_eq!(signed, "foo:jZQoX_FtSO70jX9HLRGg2A_2s4kdDBxz1QoO_OpEQb0");
/// assert_eq!(signer.unsign(&signed)?, "foo");
/// assert!(signer.unsign("foo:jZQoX_FtSO70jX9HLRGg2A_2s4kdDBxz1QoO_OpEQb1").is_err());
/// # Ok::<(), tidysession::django::SigningError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Signer {
    secrets: Secrets,
    salt: String,
}

impl Signer {
    /// Django's default salt for a `Signer` (its module and class name).
    pub const DEFAULT_SALT: &'static str = "django.core.signing.Signer";

    /// A signer with [`Self::DEFAULT_SALT`].
    pub fn new(secrets: Secrets) -> Self {
        Self {
            secrets,
            salt: Self::DEFAULT_SALT.to_owned(),
        }
    }

    /// This signer with another salt. An empty salt means the default, as in Django.
    pub fn with_salt(mut self, salt: impl Into<String>) -> Self {
        let salt = salt.into();
        if !salt.is_empty() {
            self.salt = salt;
        }
        self
    }

    /// The salt in use.
    pub fn salt(&self) -> &str {
        &self.salt
    }

    /// The signature of `value` under the secret key (43 characters).
    pub fn signature(&self, value: &str) -> String {
        self.signature_with(value, self.secrets.secret_key())
    }

    fn signature_with(&self, value: &str, secret: &[u8]) -> String {
        let mut key_salt = Vec::with_capacity(self.salt.len() + 6);
        key_salt.extend_from_slice(self.salt.as_bytes());
        key_salt.extend_from_slice(b"signer");
        b64_encode(&salted_hmac(&key_salt, value.as_bytes(), secret))
    }

    /// `value:signature`, signed with the secret key.
    pub fn sign(&self, value: &str) -> String {
        format!("{value}{SEP}{}", self.signature(value))
    }

    /// The value of a signed `value:signature`, if the signature matches under the secret key
    /// or any fallback (each compared in constant time).
    ///
    /// # Errors
    ///
    /// [`SigningError::Malformed`] without a `:`, [`SigningError::BadSignature`] otherwise.
    pub fn unsign<'a>(&self, signed: &'a str) -> Result<&'a str, SigningError> {
        let (value, signature) = signed
            .rsplit_once(SEP)
            .ok_or(SigningError::Malformed("no ':' separator"))?;
        for secret in self.secrets.all() {
            let expected = self.signature_with(value, secret);
            if bool::from(expected.as_bytes().ct_eq(signature.as_bytes())) {
                return Ok(value);
            }
        }
        Err(SigningError::BadSignature)
    }

    /// Django's `Signer.sign_object`: `value` as Django's JSON, optionally zlib-compressed
    /// (only when that saves at least 2 bytes; a leading `.` marks it), in base64, signed.
    ///
    /// # Errors
    ///
    /// [`SigningError::Encode`] if `value` cannot be written as JSON.
    pub fn sign_object<T: Serialize + ?Sized>(
        &self,
        value: &T,
        compress: bool,
    ) -> Result<String, SigningError> {
        Ok(self.sign(&encode_object(value, compress)?))
    }

    /// Django's `Signer.unsign_object`: the reverse of [`Self::sign_object`].
    ///
    /// # Errors
    ///
    /// As [`Self::unsign`], then [`SigningError::BadPayload`] if the signed text does not
    /// decode to a `T`.
    pub fn unsign_object<T: DeserializeOwned>(&self, signed: &str) -> Result<T, SigningError> {
        decode_object(self.unsign(signed)?)
    }
}

/// Django's `TimestampSigner`: signs `value:timestamp` (the timestamp being whole Unix
/// seconds in base62), so a reader can refuse values older than a `max_age`.
///
/// The `_at` methods take the time as an argument instead of reading the clock, for tests
/// and for reproducing a value Django made at a known time.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use tidysession::django::{Secrets, SigningError, TimestampSigner};
///
/// let signer = TimestampSigner::new(Secrets::new("secret"));
/// let signed = signer.sign_at("hello", 1_700_000_000);
/// assert!(signed.starts_with("hello:1r31eq:"));
///
/// let then = UNIX_EPOCH + Duration::from_secs(1_700_000_060);
/// let max_age = Some(Duration::from_secs(60));
/// assert_eq!(signer.unsign_at(&signed, max_age, then)?, "hello");
/// let later = then + Duration::from_millis(1);
/// assert!(matches!(signer.unsign_at(&signed, max_age, later), Err(SigningError::Expired { .. })));
/// # Ok::<(), SigningError>(())
/// ```
#[derive(Debug, Clone)]
pub struct TimestampSigner {
    signer: Signer,
}

impl TimestampSigner {
    /// Django's default salt for a `TimestampSigner`.
    pub const DEFAULT_SALT: &'static str = "django.core.signing.TimestampSigner";

    /// A timestamp signer with [`Self::DEFAULT_SALT`].
    pub fn new(secrets: Secrets) -> Self {
        Self {
            signer: Signer {
                secrets,
                salt: Self::DEFAULT_SALT.to_owned(),
            },
        }
    }

    /// This signer with another salt. An empty salt means the default, as in Django.
    pub fn with_salt(self, salt: impl Into<String>) -> Self {
        Self {
            signer: self.signer.with_salt(salt),
        }
    }

    /// The salt in use.
    pub fn salt(&self) -> &str {
        self.signer.salt()
    }

    /// `value:timestamp:signature`, signed now.
    pub fn sign(&self, value: &str) -> String {
        self.sign_at(value, unix_now())
    }

    /// `value:timestamp:signature`, signed as if the time were `timestamp` (Unix seconds).
    pub fn sign_at(&self, value: &str, timestamp: i64) -> String {
        self.signer
            .sign(&format!("{value}{SEP}{}", b62_encode(timestamp)))
    }

    /// The value, if the signature matches and (with a `max_age`) it is not older than that.
    ///
    /// # Errors
    ///
    /// See [`Self::unsign_at`].
    pub fn unsign<'a>(
        &self,
        signed: &'a str,
        max_age: Option<Duration>,
    ) -> Result<&'a str, SigningError> {
        self.unsign_at(signed, max_age, SystemTime::now())
    }

    /// The value, if the signature matches and it is not older than `max_age` at `now`.
    ///
    /// As in Django, a value is expired only when its age is strictly greater than
    /// `max_age`; a timestamp in the future is not expired.
    ///
    /// # Errors
    ///
    /// [`SigningError::BadSignature`] or [`SigningError::Malformed`] (see
    /// [`Signer::unsign`]); [`SigningError::Malformed`] if the signed text has no base62
    /// timestamp; [`SigningError::Expired`].
    pub fn unsign_at<'a>(
        &self,
        signed: &'a str,
        max_age: Option<Duration>,
        now: SystemTime,
    ) -> Result<&'a str, SigningError> {
        let with_timestamp = self.signer.unsign(signed)?;
        let (value, timestamp) = with_timestamp
            .rsplit_once(SEP)
            .ok_or(SigningError::Malformed("no timestamp"))?;
        let timestamp = b62_decode(timestamp).ok_or(SigningError::Malformed("bad timestamp"))?;
        if let Some(max_age) = max_age {
            let now_ns = match now.duration_since(UNIX_EPOCH) {
                Ok(after) => after.as_nanos() as i128,
                Err(before) => -(before.duration().as_nanos() as i128),
            };
            let age_ns = now_ns - i128::from(timestamp) * 1_000_000_000;
            if age_ns > max_age.as_nanos() as i128 {
                let age = u64::try_from(age_ns / 1_000_000_000).unwrap_or(u64::MAX);
                let age = Duration::new(age, (age_ns % 1_000_000_000) as u32);
                return Err(SigningError::Expired { age, max_age });
            }
        }
        Ok(value)
    }

    /// Django's `TimestampSigner.sign_object` (what [`dumps`] calls), signed now.
    ///
    /// # Errors
    ///
    /// [`SigningError::Encode`] if `value` cannot be written as JSON.
    pub fn sign_object<T: Serialize + ?Sized>(
        &self,
        value: &T,
        compress: bool,
    ) -> Result<String, SigningError> {
        self.sign_object_at(value, compress, unix_now())
    }

    /// [`Self::sign_object`] as if the time were `timestamp` (Unix seconds).
    ///
    /// # Errors
    ///
    /// [`SigningError::Encode`] if `value` cannot be written as JSON.
    pub fn sign_object_at<T: Serialize + ?Sized>(
        &self,
        value: &T,
        compress: bool,
        timestamp: i64,
    ) -> Result<String, SigningError> {
        Ok(self.sign_at(&encode_object(value, compress)?, timestamp))
    }

    /// Django's `TimestampSigner.unsign_object` (what [`loads`] calls), checked now.
    ///
    /// # Errors
    ///
    /// As [`Self::unsign_at`], then [`SigningError::BadPayload`].
    pub fn unsign_object<T: DeserializeOwned>(
        &self,
        signed: &str,
        max_age: Option<Duration>,
    ) -> Result<T, SigningError> {
        self.unsign_object_at(signed, max_age, SystemTime::now())
    }

    /// [`Self::unsign_object`] with the time given.
    ///
    /// # Errors
    ///
    /// As [`Self::unsign_at`], then [`SigningError::BadPayload`].
    pub fn unsign_object_at<T: DeserializeOwned>(
        &self,
        signed: &str,
        max_age: Option<Duration>,
        now: SystemTime,
    ) -> Result<T, SigningError> {
        decode_object(self.unsign_at(signed, max_age, now)?)
    }
}

/// Django's `signing.dumps(value, salt=salt, compress=compress)`: a timestamped, signed,
/// URL-safe string of `value` as JSON. Use [`DUMPS_SALT`] for Django's default salt.
///
/// ```
/// use std::time::Duration;
/// use tidysession::django::{dumps, loads, Secrets, DUMPS_SALT};
///
/// let secrets = Secrets::new("new").with_fallbacks(["old"]);
/// let signed = dumps(&serde_json::json!({"cart": [1, 2, 3]}), &secrets, DUMPS_SALT, true)?;
/// let back: serde_json::Value = loads(&signed, &secrets, DUMPS_SALT, Some(Duration::from_secs(60)))?;
/// assert_eq!(back["cart"][2], 3);
///
/// // Signed by a server that still had "old" as its secret: accepted through the fallback.
/// let old = dumps("hi", &Secrets::new("old"), DUMPS_SALT, false)?;
/// assert_eq!(loads::<String>(&old, &secrets, DUMPS_SALT, None)?, "hi");
/// # Ok::<(), tidysession::django::SigningError>(())
/// ```
///
/// # Errors
///
/// [`SigningError::Encode`] if `value` cannot be written as JSON.
pub fn dumps<T: Serialize + ?Sized>(
    value: &T,
    secrets: &Secrets,
    salt: &str,
    compress: bool,
) -> Result<String, SigningError> {
    TimestampSigner::new(secrets.clone())
        .with_salt(salt)
        .sign_object(value, compress)
}

/// Django's `signing.loads(signed, salt=salt, max_age=max_age)`: the reverse of [`dumps`],
/// accepting a value signed with the secret key or any fallback.
///
/// # Errors
///
/// [`SigningError::BadSignature`], [`SigningError::Malformed`], [`SigningError::Expired`]
/// or [`SigningError::BadPayload`].
pub fn loads<T: DeserializeOwned>(
    signed: &str,
    secrets: &Secrets,
    salt: &str,
    max_age: Option<Duration>,
) -> Result<T, SigningError> {
    TimestampSigner::new(secrets.clone())
        .with_salt(salt)
        .unsign_object(signed, max_age)
}

fn unix_now() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_secs()).map_or(i64::MIN, |s| -s),
    }
}

/// JSON, compressed when that saves at least 2 bytes (then prefixed with `.`), base64.
fn encode_object<T: Serialize + ?Sized>(value: &T, compress: bool) -> Result<String, SigningError> {
    let json = to_json(value).map_err(|e| SigningError::Encode(e.to_string()))?;
    if compress {
        let compressed = zlib_compress(json.as_bytes())?;
        // Django: `if len(compressed) < (len(data) - 1)`.
        if compressed.len() + 1 < json.len() {
            return Ok(format!(".{}", b64_encode(&compressed)));
        }
    }
    Ok(b64_encode(json.as_bytes()))
}

fn decode_object<T: DeserializeOwned>(text: &str) -> Result<T, SigningError> {
    let (compressed, b64) = match text.strip_prefix('.') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let bytes = B64
        .decode(b64)
        .map_err(|e| SigningError::BadPayload(format!("base64: {e}")))?;
    let json = if compressed {
        // The `.` is covered by the signature: only a holder of the secret can make us
        // decompress (Django's guard against zip bombs).
        let mut out = Vec::new();
        flate2::read::ZlibDecoder::new(bytes.as_slice())
            .read_to_end(&mut out)
            .map_err(|e| SigningError::BadPayload(format!("zlib: {e}")))?;
        out
    } else {
        bytes
    };
    from_json(&json).map_err(|e| SigningError::BadPayload(format!("JSON: {e}")))
}

/// The payload of a signed `payload:timestamp:signature` value, decoded **without checking the
/// signature**: for statistics over rows whose secret is not at hand, never for trusting
/// them. Decompression stops at `limit` bytes, since without the signature anyone could have
/// written a zip bomb.
pub(crate) fn decode_object_unverified<T: DeserializeOwned>(
    signed: &str,
    limit: u64,
) -> Result<T, SigningError> {
    let malformed = || SigningError::BadPayload("not a signed value".to_owned());
    let (rest, _signature) = signed.rsplit_once(':').ok_or_else(malformed)?;
    let (payload, _timestamp) = rest.rsplit_once(':').ok_or_else(malformed)?;
    let (compressed, b64) = match payload.strip_prefix('.') {
        Some(rest) => (true, rest),
        None => (false, payload),
    };
    let bytes = B64
        .decode(b64)
        .map_err(|e| SigningError::BadPayload(format!("base64: {e}")))?;
    let json = if compressed {
        let mut out = Vec::new();
        flate2::read::ZlibDecoder::new(bytes.as_slice())
            .take(limit)
            .read_to_end(&mut out)
            .map_err(|e| SigningError::BadPayload(format!("zlib: {e}")))?;
        out
    } else {
        bytes
    };
    from_json(&json).map_err(|e| SigningError::BadPayload(format!("JSON: {e}")))
}

/// zlib at level 6 (Python's default), through the real zlib so the bytes match Python's.
fn zlib_compress(data: &[u8]) -> Result<Vec<u8>, SigningError> {
    let mut encoder = flate2::write::ZlibEncoder::new(
        Vec::with_capacity(data.len() / 2),
        flate2::Compression::new(6),
    );
    encoder
        .write_all(data)
        .and_then(|()| encoder.finish())
        .map_err(|e| SigningError::Encode(format!("zlib: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base62_round_trips() {
        assert_eq!(b62_encode(1_700_000_000), "1r31eq");
        assert_eq!(b62_encode(123_456_789), "8M0kX");
        for n in [0, 1, -1, 61, 62, -62, i64::MAX, i64::MIN, 1_700_000_000] {
            assert_eq!(b62_decode(&b62_encode(n)), Some(n), "{n}");
        }
        assert_eq!(b62_decode(""), None);
        assert_eq!(b62_decode("-"), Some(0));
        assert_eq!(b62_decode("1r3!eq"), None);
        assert_eq!(b62_decode("zzzzzzzzzzzzzzzzzzzzzzz"), None);
    }

    #[test]
    fn reference_vectors() {
        let secrets = Secrets::new("secret");
        let signer =
            TimestampSigner::new(secrets).with_salt("django.contrib.sessions.SessionStore");
        let map: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(r#"{"a":1}"#).unwrap();
        assert_eq!(
            signer.sign_object_at(&map, true, 1_700_000_000).unwrap(),
            "eyJhIjoxfQ:1r31eq:LCqGWTQrIoydnMbNSWtFF-F-L8oddWBGrXkjMkkC0SI"
        );
    }

    #[test]
    fn empty_salt_means_the_default() {
        let s = Secrets::new("k");
        assert_eq!(
            Signer::new(s.clone()).with_salt("").salt(),
            Signer::DEFAULT_SALT
        );
        assert_eq!(
            TimestampSigner::new(s).with_salt("").salt(),
            TimestampSigner::DEFAULT_SALT
        );
    }

    #[test]
    fn expiry_is_strictly_after_max_age() {
        let signer = TimestampSigner::new(Secrets::new("k"));
        let signed = signer.sign_at("v", 100);
        let at = |ns: u64| UNIX_EPOCH + Duration::from_nanos(ns);
        let max_age = Some(Duration::from_secs(10));
        assert_eq!(
            signer.unsign_at(&signed, max_age, at(110_000_000_000)),
            Ok("v")
        );
        assert_eq!(
            signer.unsign_at(&signed, max_age, at(110_000_000_001)),
            Err(SigningError::Expired {
                age: Duration::new(10, 1),
                max_age: Duration::from_secs(10)
            })
        );
        assert_eq!(signer.unsign_at(&signed, None, at(u64::MAX)), Ok("v"));
        // Signed in the future: not expired.
        assert_eq!(signer.unsign_at(&signed, max_age, at(0)), Ok("v"));
    }
}
