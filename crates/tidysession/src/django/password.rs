//! Django's password hash formats (`django.contrib.auth.hashers`), for checking passwords
//! against `auth_user.password`.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use subtle::ConstantTimeEq as _;

/// The iteration count of Django 5.2's `PBKDF2PasswordHasher`.
pub const PBKDF2_DEFAULT_ITERATIONS: u32 = 1_000_000;

/// The most PBKDF2 iterations a stored hash may ask for: a corrupt or hostile row must not
/// tie a thread up for minutes. Fifty times Django 5.2's default.
const MAX_ITERATIONS: u32 = 50_000_000;

/// Whether `password` matches `encoded`, a password hash as Django stores it in
/// `auth_user.password`, compared in constant time:
///
/// - `pbkdf2_sha256$ITERATIONS$SALT$HASH` (Django's default hasher);
/// - `argon2$argon2id$v=19$m=…,t=…,p=…$SALT$HASH` (or `argon2i`), as Django's
///   `Argon2PasswordHasher` writes it.
///
/// Anything else is `false`: unusable passwords (`!…`), other hashers (bcrypt, scrypt, the
/// old unsalted ones), malformed values. Never panics. Slow by design (Django's default is a
/// million PBKDF2 rounds): in async code, call it from a blocking thread.
///
/// ```
/// use tidysession::django::{check_password, make_pbkdf2_password};
///
/// let encoded = make_pbkdf2_password("hunter2", "somesalt", 1000);
/// assert!(encoded.starts_with("pbkdf2_sha256$1000$somesalt$"));
/// assert!(check_password("hunter2", &encoded));
/// assert!(!check_password("hunter3", &encoded));
/// ```
pub fn check_password(password: &str, encoded: &str) -> bool {
    if let Some(rest) = encoded.strip_prefix("pbkdf2_sha256$") {
        let mut parts = rest.splitn(3, '$');
        let (Some(iterations), Some(salt), Some(_)) = (parts.next(), parts.next(), parts.next())
        else {
            return false;
        };
        // Django writes the count with `%d`: plain decimal digits.
        if iterations.is_empty() || !iterations.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
        let Ok(iterations) = iterations.parse::<u32>() else {
            return false;
        };
        if iterations == 0 || iterations > MAX_ITERATIONS || salt.contains('$') {
            return false;
        }
        let again = make_pbkdf2_password(password, salt, iterations);
        return bool::from(again.as_bytes().ct_eq(encoded.as_bytes()));
    }
    if let Some(phc) = encoded.strip_prefix("argon2") {
        return check_argon2(password, phc);
    }
    false
}

fn check_argon2(password: &str, phc: &str) -> bool {
    use argon2::password_hash::{PasswordHash, PasswordVerifier as _};
    let Ok(hash) = PasswordHash::new(phc) else {
        return false;
    };
    // Parameters, variant and version come from the hash; the comparison is constant-time.
    argon2::Argon2::default()
        .verify_password(password.as_bytes(), &hash)
        .is_ok()
}

/// `password` hashed as Django's `PBKDF2PasswordHasher` does, with this `salt` and
/// `iterations`: `pbkdf2_sha256$ITERATIONS$SALT$BASE64(PBKDF2-HMAC-SHA256)`. Django's salts are
/// 22 random letters and digits, and should be: a `$` in `salt` makes a value Django cannot
/// read.
pub fn make_pbkdf2_password(password: &str, salt: &str, iterations: u32) -> String {
    let mut out = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<sha2::Sha256>(
        password.as_bytes(),
        salt.as_bytes(),
        iterations.max(1),
        &mut out,
    );
    format!(
        "pbkdf2_sha256${}${salt}${}",
        iterations.max(1),
        STANDARD.encode(out)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pbkdf2_matches_the_published_vector_and_rejects_everything_else() {
        // RFC 7914 §11's PBKDF2-HMAC-SHA256 vector ("passwd", "salt", c = 1, first 32 bytes).
        let encoded = make_pbkdf2_password("passwd", "salt", 1);
        assert_eq!(
            encoded,
            "pbkdf2_sha256$1$salt$VawEblbjCJ/sFpHCJUS2BflBhSFt3gRl5oudV8INrLw="
        );
        assert!(check_password("passwd", &encoded));
        for bad in [
            "",
            "!unusable",
            "pbkdf2_sha256$",
            "pbkdf2_sha256$1$salt",
            "pbkdf2_sha256$x$salt$VT3a",
            "pbkdf2_sha256$+1$salt$VawEblbjCJ/sFpHCJUS2BflBhSFt3gRl5oudV8INrLw=",
            "pbkdf2_sha256$0$salt$VawEblbjCJ/sFpHCJUS2BflBhSFt3gRl5oudV8INrLw=",
            "pbkdf2_sha256$99999999999$salt$x",
            "pbkdf2_sha1$1$salt$x",
            "argon2",
            "argon2$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$",
            "bcrypt_sha256$$2b$12$x",
            "md5$salt$hash",
        ] {
            assert!(!check_password("passwd", bad), "{bad:?}");
        }
        assert!(!check_password("passwd ", &encoded));
        let mut tampered = encoded.into_bytes();
        let last = tampered.len() - 2;
        tampered[last] ^= 1;
        assert!(!check_password(
            "passwd",
            std::str::from_utf8(&tampered).unwrap()
        ));
    }

    #[test]
    fn argon2_hashes_in_djangos_form_verify() {
        use argon2::password_hash::{PasswordHasher as _, SaltString};
        let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
        let params = argon2::Params::new(64, 1, 1, None).unwrap();
        let hasher =
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let phc = hasher.hash_password(b"s3cret", &salt).unwrap().to_string();
        let django = format!("argon2{phc}");
        assert!(django.starts_with("argon2$argon2id$v=19$m=64,t=1,p=1$"));
        assert!(check_password("s3cret", &django));
        assert!(!check_password("s3creT", &django));
    }
}
