//! Test certificates made at test time: a CA and a server certificate it signs for localhost and
//! 127.0.0.1, written as PEM files that PostgreSQL (running as its own user) and the proxy can read.

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
    SignatureAlgorithm,
};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

pub struct Pki {
    pub dir: tempfile::TempDir,
    /// The CA certificate that clients trust.
    pub ca: PathBuf,
    /// The server's certificate (signed by the CA) and its private key.
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Pki {
    pub fn new(name: &str) -> Pki {
        Pki::signed_with(name, &rcgen::PKCS_ECDSA_P256_SHA256)
    }

    /// A CA whose key (and so the server certificate's signature) is of `alg`: the signature
    /// decides the hash of channel binding.
    pub fn signed_with(name: &str, alg: &'static SignatureAlgorithm) -> Pki {
        let dir = tempfile::Builder::new()
            .prefix("shardgate-pki-")
            .tempdir_in(super::scratch_root())
            .unwrap();
        // PostgreSQL runs as its own user under root and must reach the files.
        std::fs::set_permissions(dir.path(), PermissionsExt::from_mode(0o755)).unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_key = KeyPair::generate_for(alg).unwrap();
        let ca = CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        let cert = params.signed_by(&key, &ca).unwrap();
        let pki = Pki {
            ca: dir.path().join("ca.crt"),
            cert: dir.path().join("server.crt"),
            key: dir.path().join("server.key"),
            dir,
        };
        write(&pki.ca, &ca.pem(), 0o644);
        write(&pki.cert, &cert.pem(), 0o644);
        write(&pki.key, &key.serialize_pem(), 0o600);
        // PostgreSQL refuses a key that others can read or that is not its user's.
        if let Some((uid, gid)) = shardgate::localpg::run_as().unwrap() {
            std::os::unix::fs::chown(&pki.key, Some(uid), Some(gid)).unwrap();
        }
        pki
    }

    /// `[tls]` lines offering this certificate to clients.
    pub fn client_toml(&self) -> String {
        format!(
            "cert = \"{}\"\nkey = \"{}\"\n",
            self.cert.display(),
            self.key.display()
        )
    }

    /// postgresql.conf settings serving TLS with this certificate.
    pub fn server_settings(&self) -> Vec<(String, String)> {
        vec![
            ("ssl".into(), "on".into()),
            ("ssl_cert_file".into(), path(&self.cert)),
            ("ssl_key_file".into(), path(&self.key)),
        ]
    }
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

fn write(path: &Path, text: &str, mode: u32) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, PermissionsExt::from_mode(mode)).unwrap();
}
