//! The query string, decoded as browsers and PostgREST clients encode it (form encoding: `+` is a space).

/// Splits `a=1&b=2` into decoded pairs; empty pairs (`&&`) are skipped. Decoding is lenient, as PostgREST's
/// is: an invalid escape stays as written and invalid UTF-8 becomes U+FFFD, so either can only make a name
/// unknown (a 400) or a value not match.
pub fn parse_pairs(raw: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(raw.as_bytes()).map(|(key, value)| (key.into_owned(), value.into_owned())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_pairs() {
        let pairs = parse_pairs("a=eq.1&&b=in.(x%2Cy)&c=like.a+b&d&e=%zz%ff");
        assert_eq!(
            pairs,
            vec![
                ("a".into(), "eq.1".into()),
                ("b".into(), "in.(x,y)".into()),
                ("c".into(), "like.a b".into()),
                ("d".into(), "".into()),
                ("e".into(), "%zz\u{fffd}".into()),
            ]
        );
    }
}
