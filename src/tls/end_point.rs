//! The tls-server-end-point channel binding (RFC 5929 §4): a hash of the certificate a TLS
//! server presents, which SCRAM-SHA-256-PLUS mixes into the password exchange so that a man in
//! the middle holding another certificate cannot relay it. The hash follows the certificate's
//! signature algorithm, as PostgreSQL's be_tls_get_certificate_hash and libpq's do, so the proxy
//! and its peers agree on it.

use sha2::{Digest, Sha224, Sha256, Sha384, Sha512};

/// The hash functions a certificate signature can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hash {
    Sha224,
    Sha256,
    Sha384,
    Sha512,
}

/// The channel-binding data of the certificate `der` (DER, as on the wire). `None` when its
/// signature algorithm names no hash the binding can use (Ed25519, for one: PostgreSQL cannot
/// bind to those either) or the DER is not a certificate.
pub fn hash(der: &[u8]) -> Option<Vec<u8>> {
    let data = match signature_hash(der)? {
        Hash::Sha224 => Sha224::digest(der).to_vec(),
        Hash::Sha256 => Sha256::digest(der).to_vec(),
        Hash::Sha384 => Sha384::digest(der).to_vec(),
        Hash::Sha512 => Sha512::digest(der).to_vec(),
    };
    Some(data)
}

/// 1.2.840.113549.1.1: PKCS #1 signatures, the last arc naming the hash.
const PKCS1: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01];
/// 1.2.840.10045.4.3: ECDSA with a SHA-2 hash.
const ECDSA_SHA2: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03];
/// 1.2.840.10045.4.1: ECDSA with SHA-1.
const ECDSA_SHA1: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x01];
/// 1.2.840.10040.4.3: DSA with SHA-1.
const DSA_SHA1: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x38, 0x04, 0x03];
/// 2.16.840.1.101.3.4.3: DSA with a SHA-2 hash.
const DSA_SHA2: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x03];
/// 2.16.840.1.101.3.4.2: the SHA-2 hashes themselves (in RSASSA-PSS parameters).
const SHA2: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02];
/// 1.3.14.3.2.26: SHA-1.
const SHA1: &[u8] = &[0x2b, 0x0e, 0x03, 0x02, 0x1a];
/// 1.2.840.113549.2.5: MD5.
const MD5: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x02, 0x05];

/// The hash to bind with: the signature's own, except that MD5 and SHA-1 give way to SHA-256
/// (RFC 5929 §4.1).
fn signature_hash(der: &[u8]) -> Option<Hash> {
    // Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm AlgorithmIdentifier, .. }
    let (cert, _) = expect(0x30, der)?;
    let (_tbs, rest) = expect(0x30, cert)?;
    let (algorithm, _) = expect(0x30, rest)?;
    // AlgorithmIdentifier ::= SEQUENCE { algorithm OBJECT IDENTIFIER, parameters ANY OPTIONAL }
    let (oid, parameters) = expect(0x06, algorithm)?;
    let (arcs, last) = oid.split_at(oid.len().checked_sub(1)?);
    match (arcs, last[0]) {
        // md5, sha1 with RSA
        (PKCS1, 4 | 5) => Some(Hash::Sha256),
        (PKCS1, 11) => Some(Hash::Sha256),
        (PKCS1, 12) => Some(Hash::Sha384),
        (PKCS1, 13) => Some(Hash::Sha512),
        (PKCS1, 14) => Some(Hash::Sha224),
        (PKCS1, 10) => pss_hash(parameters),
        (ECDSA_SHA2 | DSA_SHA2, n) => sha2(n),
        _ if oid == ECDSA_SHA1 || oid == DSA_SHA1 => Some(Hash::Sha256),
        _ => None,
    }
}

/// The hash of an ECDSA or DSA signature OID by its last arc (both families number SHA-224 to
/// SHA-512 as 1 to 4; the hash OIDs themselves do not, see `pss_hash`).
fn sha2(n: u8) -> Option<Hash> {
    match n {
        1 => Some(Hash::Sha224),
        2 => Some(Hash::Sha256),
        3 => Some(Hash::Sha384),
        4 => Some(Hash::Sha512),
        _ => None,
    }
}

/// RSASSA-PSS names its hash in its parameters (RFC 4055): SEQUENCE { [0] hashAlgorithm
/// DEFAULT sha1, .. }.
fn pss_hash(parameters: &[u8]) -> Option<Hash> {
    let (params, _) = expect(0x30, parameters)?;
    let Some((hash_algorithm, _)) = expect(0xa0, params) else {
        // The default, SHA-1, which binds with SHA-256.
        return Some(Hash::Sha256);
    };
    let (algorithm, _) = expect(0x30, hash_algorithm)?;
    let (oid, _) = expect(0x06, algorithm)?;
    if oid == SHA1 || oid == MD5 {
        return Some(Hash::Sha256);
    }
    let (arcs, last) = oid.split_at(oid.len().checked_sub(1)?);
    match (arcs, last[0]) {
        (SHA2, 1) => Some(Hash::Sha256),
        (SHA2, 2) => Some(Hash::Sha384),
        (SHA2, 3) => Some(Hash::Sha512),
        (SHA2, 4) => Some(Hash::Sha224),
        _ => None,
    }
}

/// The contents of the DER element at the start of `input` when its tag is `tag`, and what
/// follows it. Only what certificates need: one-byte tags, definite lengths.
fn expect(tag: u8, input: &[u8]) -> Option<(&[u8], &[u8])> {
    let (&t, rest) = input.split_first()?;
    if t != tag {
        return None;
    }
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        // 0x80 is BER's indefinite length, never DER; four bytes are more than any certificate.
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let (bytes, rest) = rest.split_at(n);
        let len = bytes.iter().fold(0usize, |l, b| (l << 8) | usize::from(*b));
        (len, rest)
    };
    (rest.len() >= len).then(|| rest.split_at(len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, KeyPair, SignatureAlgorithm};

    fn cert(alg: &'static SignatureAlgorithm) -> Vec<u8> {
        let key = KeyPair::generate_for(alg).unwrap();
        let params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn the_hash_follows_the_signature_algorithm() {
        let p256 = cert(&rcgen::PKCS_ECDSA_P256_SHA256);
        assert_eq!(hash(&p256), Some(Sha256::digest(&p256).to_vec()));
        let p384 = cert(&rcgen::PKCS_ECDSA_P384_SHA384);
        assert_eq!(hash(&p384), Some(Sha384::digest(&p384).to_vec()));
        // Ed25519 names no hash: PostgreSQL cannot bind to it, nor does the proxy.
        assert_eq!(hash(&cert(&rcgen::PKCS_ED25519)), None);
    }

    /// A certificate-shaped DER with this signatureAlgorithm (the signature itself is not
    /// looked at).
    fn with_algorithm(algorithm: &[u8]) -> Vec<u8> {
        let tlv = |tag: u8, body: &[u8]| {
            let mut v = vec![tag, body.len() as u8];
            v.extend_from_slice(body);
            v
        };
        let mut body = tlv(0x30, b"tbs");
        body.extend(tlv(0x30, algorithm));
        body.extend(tlv(0x03, &[0, 1, 2]));
        tlv(0x30, &body)
    }

    fn oid(arcs: &[u8], last: u8) -> Vec<u8> {
        let mut body = arcs.to_vec();
        body.push(last);
        let mut v = vec![0x06, body.len() as u8];
        v.extend(body);
        v
    }

    #[test]
    fn md5_and_sha1_signatures_bind_with_sha256_and_pss_with_its_parameter() {
        for (algorithm, expected) in [
            (oid(PKCS1, 4), Some(Hash::Sha256)),
            (oid(PKCS1, 5), Some(Hash::Sha256)),
            (oid(PKCS1, 11), Some(Hash::Sha256)),
            (oid(PKCS1, 12), Some(Hash::Sha384)),
            (oid(PKCS1, 13), Some(Hash::Sha512)),
            (oid(ECDSA_SHA2, 4), Some(Hash::Sha512)),
            (oid(&ECDSA_SHA1[..6], ECDSA_SHA1[6]), Some(Hash::Sha256)),
            (oid(DSA_SHA2, 2), Some(Hash::Sha256)),
            (oid(&[0x2b, 0x65], 0x70), None),
        ] {
            assert_eq!(
                signature_hash(&with_algorithm(&algorithm)),
                expected,
                "{algorithm:x?}"
            );
        }
        // RSASSA-PSS with SHA-384, and with its default (SHA-1).
        let sha384 = oid(SHA2, 2);
        let mut hash_alg = vec![0x30, sha384.len() as u8];
        hash_alg.extend(&sha384);
        let mut explicit = vec![0xa0, hash_alg.len() as u8];
        explicit.extend(hash_alg);
        let mut params = vec![0x30, explicit.len() as u8];
        params.extend(explicit);
        let mut pss = oid(PKCS1, 10);
        pss.extend(&params);
        assert_eq!(signature_hash(&with_algorithm(&pss)), Some(Hash::Sha384));
        let mut pss = oid(PKCS1, 10);
        pss.extend([0x30, 0]);
        assert_eq!(signature_hash(&with_algorithm(&pss)), Some(Hash::Sha256));
    }

    #[test]
    fn truncated_or_foreign_der_gives_nothing_and_no_panic() {
        let good = cert(&rcgen::PKCS_ECDSA_P256_SHA256);
        for n in 0..good.len() {
            let _ = hash(&good[..n]);
        }
        for bad in [
            &b""[..],
            b"\x30",
            b"\x30\x80",
            b"\x30\x85\xff\xff\xff\xff\xff",
            b"\x06\x00",
        ] {
            assert_eq!(hash(bad), None);
        }
    }
}
