//! PostgreSQL's md5 password method: the `md5<hex>` verifier and the salted challenge answer.

use ctutils::CtEq;
use md5::{Digest, Md5};

/// `md5` followed by 32 hex digits: the stored form, md5(password ‖ user name).
#[derive(Clone, PartialEq, Eq)]
pub struct Verifier {
    /// The 32 lower-case hex digits, which are what the client hashes again with the salt.
    hex: [u8; 32],
}

impl std::fmt::Debug for Verifier {
    // The stored hash is all a client needs to answer the challenge: it is a password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Verifier(md5)")
    }
}

fn hex_of(digest: &[u8]) -> [u8; 32] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 32];
    for (i, b) in digest.iter().take(16).enumerate() {
        out[2 * i] = DIGITS[usize::from(b >> 4)];
        out[2 * i + 1] = DIGITS[usize::from(b & 0xf)];
    }
    out
}

impl Verifier {
    /// True when `text` has the shape of a stored md5 password (`md5` and 32 characters), as
    /// PostgreSQL tells verifiers from plain passwords.
    pub fn looks_like(text: &str) -> bool {
        text.len() == 35 && text.starts_with("md5")
    }

    /// `md5` and 32 hex digits (either case).
    pub fn parse(text: &str) -> Option<Verifier> {
        let digits = text.strip_prefix("md5")?.as_bytes();
        if digits.len() != 32 || !digits.iter().all(u8::is_ascii_hexdigit) {
            return None;
        }
        let mut hex = [0u8; 32];
        hex.iter_mut()
            .zip(digits)
            .for_each(|(h, d)| *h = d.to_ascii_lowercase());
        Some(Verifier { hex })
    }

    /// What PostgreSQL stores for this password and user (no SASLprep: md5 hashes bytes).
    pub fn derive(password: &str, user: &str) -> Verifier {
        let mut h = Md5::new();
        h.update(password.as_bytes());
        h.update(user.as_bytes());
        Verifier {
            hex: hex_of(&h.finalize()),
        }
    }

    /// True when `response` (the PasswordMessage's string) is
    /// `md5` ‖ hex(md5(stored hex ‖ salt)), compared in constant time.
    pub fn check(&self, salt: [u8; 4], response: &[u8]) -> bool {
        let mut h = Md5::new();
        h.update(self.hex);
        h.update(salt);
        let mut expected = [0u8; 35];
        expected[..3].copy_from_slice(b"md5");
        expected[3..].copy_from_slice(&hex_of(&h.finalize()));
        response.len() == expected.len() && response.ct_eq(&expected[..]).to_bool()
    }

    #[cfg(test)]
    pub fn to_text(&self) -> String {
        format!("md5{}", String::from_utf8_lossy(&self.hex))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use postgres_protocol::authentication::md5_hash;

    #[test]
    fn verifiers_of_postgres_protocol_parse_and_verify() {
        let text = postgres_protocol::password::md5(b"pencil", "app");
        let v = Verifier::parse(&text).expect("parses");
        assert_eq!(v.to_text(), text);
        assert_eq!(Verifier::derive("pencil", "app"), v);
        let salt = [1, 2, 0xfe, 0xff];
        assert!(v.check(salt, md5_hash(b"app", b"pencil", salt).as_bytes()));
        assert!(!v.check(salt, md5_hash(b"app", b"pencil!", salt).as_bytes()));
        assert!(!v.check(salt, md5_hash(b"other", b"pencil", salt).as_bytes()));
        assert!(!v.check([0; 4], md5_hash(b"app", b"pencil", salt).as_bytes()));
        let upper = format!("md5{}", text[3..].to_ascii_uppercase());
        assert_eq!(Verifier::parse(&upper), Some(v.clone()));
        for bad in [&b""[..], b"md5", b"pencil", &[0xff; 35]] {
            assert!(!v.check(salt, bad));
        }
    }

    #[test]
    fn only_md5_and_32_hex_digits_parse() {
        assert!(Verifier::looks_like("md5aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"));
        assert!(!Verifier::looks_like("md5password"));
        for bad in [
            "md5",
            "md5abc",
            "md5zaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            "MD5aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            "md5aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        ] {
            assert!(Verifier::parse(bad).is_none(), "{bad}");
        }
    }
}
