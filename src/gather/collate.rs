//! Text comparison under the database's default collation, as PostgreSQL's varstr_cmp does it
//! for deterministic libc collations.

use crate::error::Error;
use std::cmp::Ordering;
use std::ffi::CString;
use std::fmt;
use std::os::raw::{c_char, c_int};

extern "C" {
    // In glibc and the BSDs, but not bound by the libc crate.
    fn strcoll_l(a: *const c_char, b: *const c_char, loc: libc::locale_t) -> c_int;
}

pub struct Collation {
    name: String,
    /// None: plain byte order, PostgreSQL's "C" behaviour.
    locale: Option<Locale>,
    /// The shards' collation is not installed here: text cannot be ordered as they order it.
    missing: bool,
}

struct Locale(libc::locale_t);

// A locale_t is immutable once built and the *_l functions take it as an argument, so sharing
// it across threads is what the API is made for.
unsafe impl Send for Locale {}
unsafe impl Sync for Locale {}

impl Drop for Locale {
    fn drop(&mut self) {
        // SAFETY: the pointer came from newlocale and is freed exactly once.
        unsafe { libc::freelocale(self.0) }
    }
}

impl fmt::Debug for Collation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Collation({:?})", self.name)
    }
}

/// Names whose order is plain byte order: PostgreSQL short-cuts C/POSIX, and glibc's C.UTF-8
/// collates by code point, which UTF-8 byte order already is.
fn is_bytewise(name: &str) -> bool {
    matches!(name, "C" | "POSIX")
        || name.eq_ignore_ascii_case("C.UTF-8")
        || name.eq_ignore_ascii_case("C.utf8")
}

impl Collation {
    pub fn bytewise() -> Collation {
        Collation {
            name: "C".into(),
            locale: None,
            missing: false,
        }
    }

    /// A collation this host lacks: merges that must order text refuse (see `is_missing`).
    pub fn missing(name: &str) -> Collation {
        Collation {
            name: name.into(),
            locale: None,
            missing: true,
        }
    }

    pub fn is_missing(&self) -> bool {
        self.missing
    }

    pub fn new(datcollate: &str) -> Result<Collation, Error> {
        if is_bytewise(datcollate) {
            return Ok(Collation {
                name: datcollate.into(),
                locale: None,
                missing: false,
            });
        }
        let unknown = || {
            Error::config(format!(
                "the shards' collation \"{datcollate}\" is not available on the shardgate host; \
                 install that locale here (see `locale -a`) so that ORDER BY on text merges in \
                 the shards' order"
            ))
        };
        let cname = CString::new(datcollate).map_err(|_| unknown())?;
        // SAFETY: cname is NUL-terminated; a null base asks for a fresh locale object.
        let loc =
            unsafe { libc::newlocale(libc::LC_COLLATE_MASK, cname.as_ptr(), std::ptr::null_mut()) };
        if loc.is_null() {
            return Err(unknown());
        }
        Ok(Collation {
            name: datcollate.into(),
            locale: Some(Locale(loc)),
            missing: false,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn is_bytewise(&self) -> bool {
        self.locale.is_none()
    }

    pub fn compare(&self, a: &[u8], b: &[u8]) -> Ordering {
        let Some(loc) = &self.locale else {
            return a.cmp(b);
        };
        if a == b {
            return Ordering::Equal;
        }
        let r = with_cstr(a, |pa| {
            // SAFETY: both pointers are NUL-terminated buffers alive for the call.
            with_cstr(b, |pb| unsafe { strcoll_l(pa, pb, loc.0) })
        });
        // Deterministic collations break strcoll ties by bytes, so unequal strings never compare
        // equal (varstr_cmp's strcmp fallback).
        r.cmp(&0).then_with(|| a.cmp(b))
    }
}

/// Runs `f` on a NUL-terminated copy of `s`, cut at an embedded NUL as C would see it; short
/// strings stay on the stack since merges compare many keys.
fn with_cstr<R>(s: &[u8], f: impl FnOnce(*const c_char) -> R) -> R {
    let s = s.split(|&c| c == 0).next().unwrap_or(&[]);
    let mut stack = [0u8; 128];
    if s.len() < stack.len() {
        stack[..s.len()].copy_from_slice(s);
        f(stack.as_ptr().cast())
    } else {
        let mut heap = Vec::with_capacity(s.len() + 1);
        heap.extend_from_slice(s);
        heap.push(0);
        f(heap.as_ptr().cast())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn has_locale(name: &str) -> bool {
        let out = std::process::Command::new("locale").arg("-a").output();
        let Ok(out) = out else { return false };
        let norm = |s: &str| s.to_ascii_lowercase().replace(['-', '_'], "");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .any(|l| norm(l) == norm(name))
    }

    #[test]
    fn c_like_names_compare_bytes() {
        for name in ["C", "POSIX", "C.UTF-8", "C.utf8"] {
            let c = Collation::new(name).unwrap();
            assert!(c.is_bytewise(), "{name}");
            assert_eq!(c.compare(b"B", b"a"), Ordering::Less);
            assert_eq!(c.compare(b"a", b"ab"), Ordering::Less);
            assert_eq!(c.compare("é".as_bytes(), b"z"), Ordering::Greater);
            assert_eq!(c.compare(b"x", b"x"), Ordering::Equal);
        }
        assert_eq!(Collation::bytewise().compare(b"", b"a"), Ordering::Less);
    }

    #[test]
    fn unknown_locale_is_a_config_error_naming_it() {
        let err = Collation::new("xx_NOPE.UTF-8").unwrap_err();
        assert_eq!(err.sqlstate(), "F0000");
        assert!(err.to_string().contains("xx_NOPE.UTF-8"), "{err}");
        assert!(Collation::new("bad\0name").is_err());
    }

    #[test]
    fn collation_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Collation>();
    }

    /// Drives the strcoll_l path with glibc's C.UTF-8, which must agree with byte order; this
    /// covers newlocale/freelocale, both buffer paths and the tie-break on any machine.
    #[test]
    fn libc_path_agrees_with_bytes_under_c_utf8() {
        let name = CString::new("C.UTF-8").unwrap();
        // SAFETY: as in Collation::new.
        let loc =
            unsafe { libc::newlocale(libc::LC_COLLATE_MASK, name.as_ptr(), std::ptr::null_mut()) };
        if loc.is_null() {
            eprintln!("skipped: C.UTF-8 is not available");
            return;
        }
        let libc_c = Collation {
            name: "C.UTF-8 via libc".into(),
            locale: Some(Locale(loc)),
            missing: false,
        };
        let long = "z".repeat(200);
        let words: Vec<Vec<u8>> = [
            "", "a", "A", "ab", "b", "é", "日本", "a\0b", "a\0c", &long, "zz",
        ]
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .chain([[long.as_bytes(), b"a"].concat()])
        .collect();
        for a in &words {
            for b in &words {
                assert_eq!(libc_c.compare(a, b), a.cmp(b), "{a:?} vs {b:?}");
            }
        }
    }

    #[test]
    fn en_us_orders_like_postgres_when_installed() {
        if !has_locale("en_US.UTF-8") {
            eprintln!("skipped: en_US.UTF-8 is not installed");
            return;
        }
        let c = Collation::new("en_US.UTF-8").unwrap();
        assert_eq!(c.compare(b"a", b"B"), Ordering::Less);
        assert_eq!(c.compare(b"B", b"c"), Ordering::Less);
        assert_eq!(c.compare("é".as_bytes(), b"f"), Ordering::Less);
        // Differ only in case: glibc ranks lower case first, and never reports equality.
        assert_ne!(c.compare(b"a", b"A"), Ordering::Equal);
        let long_a = "x".repeat(300) + "a";
        let long_b = "x".repeat(300) + "B";
        assert_eq!(
            c.compare(long_a.as_bytes(), long_b.as_bytes()),
            Ordering::Less
        );
    }
}
