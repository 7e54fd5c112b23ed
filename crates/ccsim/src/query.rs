//! Query-string and form decoding, and Rails-style query encoding for pagination links.
//!
//! This module owns `application/x-www-form-urlencoded` decoding (used for query strings and
//! the UAA token form; `+` is a space, `%XX` a byte, a key without `=` has the value `""`) and
//! the encoding Rails' `Hash#to_query` uses in CC's pagination links (`CGI.escape` of each key
//! and value, pairs sorted).

/// Decodes `a=b&c=d` into pairs, in order.
pub fn decode_pairs(input: &str) -> Vec<(String, String)> {
    input
        .split('&')
        .filter(|part| !part.is_empty())
        .map(|part| match part.split_once('=') {
            Some((k, v)) => (decode_component(k), decode_component(v)),
            None => (decode_component(part), String::new()),
        })
        .collect()
}

/// Decodes one form component (`+` → space, `%XX` → byte; malformed escapes are kept as is).
pub fn decode_component(input: &str) -> String {
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Ruby's `CGI.escape`: everything but `A-Za-z0-9_.-~` is `%XX`-escaped, a space becomes `+`.
pub fn cgi_escape(input: &str) -> String {
    let mut out = String::with_capacity(input.len());
    for b in input.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' | b'-' | b'~' => {
                out.push(char::from(b));
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Rails' `Hash#to_query`: `k=v` pairs escaped with [`cgi_escape`], sorted, joined with `&`.
pub fn to_query(pairs: &[(&str, String)]) -> String {
    let mut encoded: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{}={}", cgi_escape(k), cgi_escape(v)))
        .collect();
    encoded.sort();
    encoded.join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_components_decode_like_rack() {
        assert_eq!(
            decode_pairs("label_selector=env%3Ddev%2C%21x&flag&a=b+c&bad=%zz"),
            vec![
                ("label_selector".to_string(), "env=dev,!x".to_string()),
                ("flag".to_string(), String::new()),
                ("a".to_string(), "b c".to_string()),
                ("bad".to_string(), "%zz".to_string()),
            ]
        );
    }

    #[test]
    fn queries_encode_like_rails_to_query() {
        assert_eq!(
            to_query(&[
                ("per_page", "2".to_string()),
                ("label_selector", "a in (b, c)".to_string()),
                ("page", "1".to_string()),
            ]),
            "label_selector=a+in+%28b%2C+c%29&page=1&per_page=2"
        );
    }
}
