//! JSON exactly as Django's `JSONSerializer` writes and reads it.
//!
//! Django serializes with Python's `json.dumps(obj, separators=(",", ":"))`: no spaces,
//! every character outside printable ASCII escaped as `\uXXXX` (lowercase hex, surrogate
//! pairs above U+FFFF), and floats as Python's `repr` writes them (`1e+16`, `1e-05`,
//! `1000000000000000.0`). It reads the bytes as Latin-1 before parsing.

use std::io::{self, Write};

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Serializes `value` as Django's JSON serializer would.
///
/// Object keys are written in the order `value` yields them; a [`serde_json::Map`] yields
/// them sorted (Django keeps a dict's insertion order, which matters only for byte equality,
/// never for reading). Non-finite floats cannot occur in a [`serde_json::Value`]; in a
/// struct they are written as `null` (Python would write `NaN`, which is not JSON).
///
/// ```
/// let text = tidysession::django::to_json(&serde_json::json!({"b": [1.0, 1e16], "a": "é"}))?;
/// assert_eq!(text, r#"{"a":"\u00e9","b":[1.0,1e+16]}"#);
/// # Ok::<(), serde_json::Error>(())
/// ```
///
/// # Errors
///
/// When `value` cannot be represented as JSON (a map with non-string keys, say).
pub fn to_json<T: Serialize + ?Sized>(value: &T) -> Result<String, serde_json::Error> {
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut out, PythonFormatter);
    value.serialize(&mut ser)?;
    // The formatter writes ASCII only.
    Ok(out.into_iter().map(char::from).collect())
}

/// Parses JSON bytes as Django does: decoded as Latin-1, then parsed.
///
/// Django only ever writes ASCII, so for its output this is plain JSON parsing.
///
/// # Errors
///
/// When the text is not JSON or does not fit `T`.
pub fn from_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, serde_json::Error> {
    if bytes.is_ascii() {
        serde_json::from_slice(bytes)
    } else {
        let text: String = bytes.iter().copied().map(char::from).collect();
        serde_json::from_str(&text)
    }
}

/// serde_json's compact output with Python's string escapes and float format.
#[derive(Debug, Clone, Copy)]
struct PythonFormatter;

impl serde_json::ser::Formatter for PythonFormatter {
    fn write_f64<W: ?Sized + Write>(&mut self, writer: &mut W, value: f64) -> io::Result<()> {
        writer.write_all(python_float_repr(format!("{value:e}")).as_bytes())
    }

    fn write_f32<W: ?Sized + Write>(&mut self, writer: &mut W, value: f32) -> io::Result<()> {
        writer.write_all(python_float_repr(format!("{value:e}")).as_bytes())
    }

    fn write_string_fragment<W: ?Sized + Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        // serde_json has already escaped `"`, `\` and the C0 controls (the same way Python
        // does); what is left to escape is everything outside ' '..='~'.
        let mut plain = 0;
        for (i, c) in fragment.char_indices() {
            if (' '..='~').contains(&c) {
                continue;
            }
            writer.write_all(&fragment.as_bytes()[plain..i])?;
            plain = i + c.len_utf8();
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                write!(writer, "\\u{unit:04x}")?;
            }
        }
        writer.write_all(&fragment.as_bytes()[plain..])
    }
}

/// Python's `repr(float)` from Rust's shortest round-trip digits in `{:e}` form
/// (`-1.2345e-7`): fixed notation when the decimal point falls within 16 digits of the
/// start and no more than 4 zeros after it, exponent notation (`e+16`, `e-05`) otherwise.
fn python_float_repr(exp_form: String) -> String {
    let Some((mantissa, exp)) = exp_form.split_once('e') else {
        return exp_form;
    };
    let Ok(exp) = exp.parse::<i32>() else {
        return exp_form;
    };
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let n = digits.len() as i32;
    // The decimal point sits after `point` digits (negative: that many zeros before them).
    let point = exp + 1;
    if point <= -4 || point > 16 {
        let (first, rest) = digits.split_at(1);
        let dot = if rest.is_empty() { "" } else { "." };
        let exp_sign = if exp < 0 { '-' } else { '+' };
        format!("{sign}{first}{dot}{rest}e{exp_sign}{:02}", exp.abs())
    } else if point <= 0 {
        format!(
            "{sign}0.{}{digits}",
            "0".repeat(point.unsigned_abs() as usize)
        )
    } else if point >= n {
        format!("{sign}{digits}{}.0", "0".repeat((point - n) as usize))
    } else {
        let (int, frac) = digits.split_at(point as usize);
        format!("{sign}{int}.{frac}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_as_python_repr_writes_them() {
        let cases: &[(f64, &str)] = &[
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (1.0, "1.0"),
            (0.1, "0.1"),
            (-2.5, "-2.5"),
            (1e15, "1000000000000000.0"),
            (1e16, "1e+16"),
            (1.5e16, "1.5e+16"),
            (1e-4, "0.0001"),
            (1e-5, "1e-05"),
            (1.2345e-7, "1.2345e-07"),
            (123456789.125, "123456789.125"),
            (1e22, "1e+22"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (5e-324, "5e-324"),
            (12345.678, "12345.678"),
        ];
        for (value, python) in cases {
            assert_eq!(to_json(value).unwrap(), *python, "{value:?}");
        }
    }

    #[test]
    fn strings_escaped_as_python_escapes_them() {
        let s = "a\"b\\c\n\t\u{1}\u{7f}/é世🎉";
        assert_eq!(
            to_json(s).unwrap(),
            r#""a\"b\\c\n\t\u0001\u007f/\u00e9\u4e16\ud83c\udf89""#
        );
    }

    #[test]
    fn reads_bytes_as_latin_1() {
        let v: String = from_json(b"\"\xe9\"").unwrap();
        assert_eq!(v, "é");
        let v: String = from_json(br#""\u00e9""#).unwrap();
        assert_eq!(v, "é");
    }
}
