//! Django's signing and session formats, byte for byte (feature `django`).
//!
//! - [`Signer`], [`TimestampSigner`], [`dumps`] and [`loads`]: `django.core.signing`, with
//!   salts, zlib compression (the leading `.`), `max_age`, and secret fallbacks
//!   ([`Secrets`]: sign with the secret key, verify with it and every fallback, comparing in
//!   constant time).
//! - [`to_json`] and [`from_json`]: Django's JSON serializer (compact separators, ASCII-only
//!   escapes, Python's float format), so what is signed is the same bytes Django signs.
//! - [`encode_session_data`] / [`decode_session_data`]: the `session_data` column of
//!   Django's database session backends; [`encode_signed_cookie`] / [`decode_signed_cookie`]:
//!   the cookie value of its `signed_cookies` backend.
//! - [`DjangoSignedCookies`]: a Rust service's side of Django's `signed_cookies` session
//!   backend (the whole session in the `sessionid` cookie).
//! - [`check_password`]: Django's `pbkdf2_sha256` and `argon2` password hashes.
//!
//! ```
//! use tidysession::django::{decode_session_data, Secrets};
//!
//! // What Django 5.2 wrote for {"a": 1} with SECRET_KEY = "secret".
//! let data = "eyJhIjoxfQ:1r31eq:LCqGWTQrIoydnMbNSWtFF-F-L8oddWBGrXkjMkkC0SI";
//! let session = decode_session_data(data, &Secrets::new("secret"))?;
//! assert_eq!(session["a"], 1);
//! # Ok::<(), tidysession::django::SigningError>(())
//! ```
//!
//! Every function here returns an error, never panics, on any input. The test suite checks
//! the output against the installed Django at test time (`scripts/django-env.sh`).
//!
//! Compressed output matches Django's byte for byte when Python uses classic zlib (as
//! CPython does by default); Django reads it either way.

mod cookies;
mod json;
mod password;
mod session;
mod signing;

pub use cookies::DjangoSignedCookies;
pub use json::{from_json, to_json};
pub use password::{check_password, make_pbkdf2_password, PBKDF2_DEFAULT_ITERATIONS};
pub use session::{
    decode_session_data, decode_session_data_unverified, decode_signed_cookie, encode_session_data,
    encode_signed_cookie, DEFAULT_SESSION_COOKIE_AGE, SESSION_SALT, SIGNED_COOKIE_SALT,
};
pub use signing::{
    b62_decode, b62_encode, dumps, loads, salted_hmac, Secrets, Signer, SigningError,
    TimestampSigner, DUMPS_SALT,
};
