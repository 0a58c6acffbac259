//! Percent-decoding of the query string, as browsers and PostgREST clients encode it.

use crate::error::RestError;

/// Splits `a=1&b=2` into decoded pairs; `+` is a space (form encoding, which is what PostgREST reads too).
/// Empty pairs (`&&`) are skipped. Invalid escapes or UTF-8 answer 400.
pub fn parse_pairs(raw: &str) -> Result<Vec<(String, String)>, RestError> {
    raw.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            Ok((decode(key, true)?, decode(value, true)?))
        })
        .collect()
}

/// Percent-decodes one component; `plus_is_space` for query strings, not for path segments.
pub fn decode(text: &str, plus_is_space: bool) -> Result<String, RestError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
                let byte = hex.and_then(|h| u8::from_str_radix(h, 16).ok());
                match byte {
                    Some(byte) => out.push(byte),
                    None => return Err(RestError::bad_query(text, "invalid percent-encoding")),
                }
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            other => {
                out.push(other);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| RestError::bad_query(text, "not UTF-8 after percent-decoding"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_pairs() {
        let pairs = parse_pairs("a=eq.1&&b=in.(x%2Cy)&c=like.a+b&d").expect("valid encoding");
        assert_eq!(
            pairs,
            vec![
                ("a".into(), "eq.1".into()),
                ("b".into(), "in.(x,y)".into()),
                ("c".into(), "like.a b".into()),
                ("d".into(), "".into()),
            ]
        );
    }

    #[test]
    fn rejects_bad_escapes() {
        assert!(decode("%zz", true).is_err());
        assert!(decode("%4", true).is_err());
        assert!(decode("%ff", true).is_err());
        assert_eq!(decode("%00", true).expect("valid encoding"), "\0");
        assert_eq!(decode("a+b", false).expect("valid encoding"), "a+b");
    }
}
