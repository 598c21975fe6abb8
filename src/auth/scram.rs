//! SCRAM-SHA-256 (RFC 5802, RFC 7677) as PostgreSQL's server speaks it: the verifier format of
//! pg_authid.rolpassword and the server side of one exchange, with SCRAM-SHA-256-PLUS binding
//! to the TLS channel by tls-server-end-point (RFC 5929), the one type PostgreSQL offers.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ctutils::CtEq;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

pub const MECHANISM: &str = "SCRAM-SHA-256";
/// The same, bound to the TLS channel the exchange runs over.
pub const MECHANISM_PLUS: &str = "SCRAM-SHA-256-PLUS";
/// The only channel-binding type served, as in PostgreSQL.
const CBIND_TYPE: &str = "tls-server-end-point";
/// PostgreSQL's default `scram_iterations`.
pub const ITERATIONS: u32 = 4096;
pub const SALT_LEN: usize = 16;
/// Random bytes in the server's part of the nonce, as PostgreSQL's SCRAM_RAW_NONCE_LEN.
pub const NONCE_RAW_LEN: usize = 18;

const PREFIX: &str = "SCRAM-SHA-256$";

/// Why an exchange did not succeed.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The client's message breaks the protocol (08P01); the text says how.
    Malformed(&'static str),
    /// Well formed, but the proof is wrong or the exchange was doomed from the start (28P01).
    Failed,
    /// SCRAM-SHA-256-PLUS, but the client bound to another channel than this connection: another
    /// certificate, so a man in the middle may be relaying the exchange (28P01, as a bad
    /// password: the client learns nothing more).
    BindingMismatch,
    /// Flag `y` (the client can bind but thinks the server cannot) where SCRAM-SHA-256-PLUS was
    /// offered: someone removed it from the list on the way (28000, as PostgreSQL).
    Downgrade,
}

/// The data SCRAM-SHA-256-PLUS binds to: the tls-server-end-point hash of the certificate the
/// proxy presented on the connection (public: anyone who sees the certificate can compute it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelBinding {
    end_point: Vec<u8>,
}

impl ChannelBinding {
    pub fn tls_server_end_point(hash: Vec<u8>) -> ChannelBinding {
        ChannelBinding { end_point: hash }
    }
}

/// What the connection and the client's choice of mechanism make of channel binding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Channel {
    /// SCRAM-SHA-256-PLUS was not offered (plain TCP): flags `n` and `y` are fine, `p` is not.
    Unbound,
    /// SCRAM-SHA-256-PLUS was offered and the client chose SCRAM-SHA-256: flag `n` only.
    Declined,
    /// The client chose SCRAM-SHA-256-PLUS: flag `p=tls-server-end-point` with this binding.
    Bound(ChannelBinding),
}

/// What the server keeps of a password: never the password, only the keys derived from it.
#[derive(Clone, PartialEq, Eq)]
pub struct Verifier {
    iterations: u32,
    salt: Vec<u8>,
    stored_key: [u8; 32],
    server_key: [u8; 32],
}

impl std::fmt::Debug for Verifier {
    // A verifier allows an offline guessing attack on the password, and the ServerKey lets
    // whoever has it pose as this server to clients: neither belongs in logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Verifier(SCRAM-SHA-256, {} iterations)", self.iterations)
    }
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC takes keys of any length; this cannot fail.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes any key");
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

/// PBKDF2-HMAC-SHA-256 with one output block: RFC 5802's Hi().
fn hi(password: &[u8], salt: &[u8], iterations: u32) -> [u8; 32] {
    let mut u = hmac(password, &[salt, &1u32.to_be_bytes()]);
    let mut out = u;
    for _ in 1..iterations {
        u = hmac(password, &[&u]);
        out.iter_mut().zip(u).for_each(|(o, x)| *o ^= x);
    }
    out
}

/// SASLprep as PostgreSQL applies it: a password that is not UTF-8, or that SASLprep refuses,
/// is used as its raw bytes (libpq does the same on the client side).
fn prepare(password: &str) -> Vec<u8> {
    match stringprep::saslprep(password) {
        Ok(p) => p.into_owned().into_bytes(),
        Err(_) => password.as_bytes().to_vec(),
    }
}

impl Verifier {
    /// The verifier PostgreSQL would store for `password` with this salt.
    pub fn derive(password: &str, salt: &[u8], iterations: u32) -> Verifier {
        let salted = hi(&prepare(password), salt, iterations);
        let client_key = hmac(&salted, &[b"Client Key"]);
        Verifier {
            iterations,
            salt: salt.to_vec(),
            stored_key: Sha256::digest(client_key).into(),
            server_key: hmac(&salted, &[b"Server Key"]),
        }
    }

    /// True when `text` claims to be a SCRAM verifier (whether or not it is a valid one).
    pub fn looks_like(text: &str) -> bool {
        text.starts_with(PREFIX)
    }

    /// `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`, all base64, as in pg_authid.
    pub fn parse(text: &str) -> Option<Verifier> {
        let rest = text.strip_prefix(PREFIX)?;
        let (params, keys) = rest.split_once('$')?;
        let (iterations, salt) = params.split_once(':')?;
        let (stored, server) = keys.split_once(':')?;
        let iterations: u32 = iterations.parse().ok().filter(|i| *i > 0)?;
        let salt = STANDARD.decode(salt).ok().filter(|s| !s.is_empty())?;
        let key = |k: &str| -> Option<[u8; 32]> { STANDARD.decode(k).ok()?.try_into().ok() };
        Some(Verifier {
            iterations,
            salt,
            stored_key: key(stored)?,
            server_key: key(server)?,
        })
    }

    /// The pg_authid form (tests only: nothing in the proxy prints a verifier).
    #[cfg(test)]
    pub fn to_text(&self) -> String {
        format!(
            "{PREFIX}{}:{}${}:{}",
            self.iterations,
            STANDARD.encode(&self.salt),
            STANDARD.encode(self.stored_key),
            STANDARD.encode(self.server_key)
        )
    }

    /// A verifier no password matches, for exchanges that must fail (unknown users) but
    /// look like any other to the client.
    pub fn mock(salt: &[u8]) -> Verifier {
        Verifier {
            iterations: ITERATIONS,
            salt: salt.to_vec(),
            stored_key: [0; 32],
            server_key: [0; 32],
        }
    }
}

/// The server side of one exchange: `first` answers the client-first message, `last` the
/// client-final one.
pub struct ServerExchange {
    verifier: Verifier,
    /// The exchange runs to its end, then fails whatever the client sent: unknown users, and
    /// users whose stored password cannot serve SCRAM.
    doomed: bool,
    server_nonce: String,
    channel: Channel,
    /// Set by `first`: the channel-binding attribute expected, the nonce the client must echo,
    /// and the first two messages of the AuthMessage.
    state: Option<First>,
}

struct First {
    /// `c=` of the client-final message: base64 of the gs2 header, and of the binding data
    /// after it with SCRAM-SHA-256-PLUS.
    cbind: String,
    nonce: String,
    auth_prefix: String,
}

impl ServerExchange {
    /// `server_nonce` is printable and comma-free (base64 of random bytes in practice).
    pub fn new(verifier: Verifier, doomed: bool, server_nonce: String) -> ServerExchange {
        ServerExchange {
            verifier,
            doomed,
            server_nonce,
            channel: Channel::Unbound,
            state: None,
        }
    }

    /// The exchange under `channel` (`Unbound` without this).
    pub fn with_channel(mut self, channel: Channel) -> ServerExchange {
        self.channel = channel;
        self
    }

    /// Reads `gs2-header client-first-message-bare` and returns the server-first message.
    pub fn first(&mut self, client_first: &[u8]) -> Result<String, Refusal> {
        let msg = std::str::from_utf8(client_first).map_err(|_| malformed("not UTF-8"))?;
        let bound = matches!(self.channel, Channel::Bound(_));
        let (cbind_flag, rest) = match msg.as_bytes().first() {
            Some(b'n') => (b'n', &msg[1..]),
            Some(b'y') if self.channel == Channel::Declined => return Err(Refusal::Downgrade),
            Some(b'y') => (b'y', &msg[1..]),
            // What PostgreSQL says when a client binds to a channel it was not offered.
            Some(b'p') if !bound => return Err(malformed(
                "the client selected SCRAM-SHA-256 without channel binding, but the SCRAM message includes channel binding data",
            )),
            Some(b'p') => {
                let flag = &msg[1..];
                let end = flag.find(',').unwrap_or(flag.len());
                let kind = flag[..end]
                    .strip_prefix('=')
                    .ok_or(malformed("'=' expected after the channel-binding flag p"))?;
                if kind != CBIND_TYPE {
                    return Err(malformed("unsupported SCRAM channel-binding type"));
                }
                (b'p', &flag[end..])
            }
            _ => return Err(malformed("unexpected channel-binding flag")),
        };
        if bound && cbind_flag != b'p' {
            return Err(malformed(
                "the client selected SCRAM-SHA-256-PLUS, but the SCRAM message does not include channel binding data",
            ));
        }
        let rest = rest
            .strip_prefix(',')
            .ok_or(malformed("comma expected after the channel-binding flag"))?;
        if rest.starts_with("a=") {
            return Err(malformed("authorization identities are not supported"));
        }
        let bare = rest
            .strip_prefix(',')
            .ok_or(malformed("comma expected after the gs2 header"))?;
        if bare.starts_with("m=") {
            return Err(malformed("mandatory SCRAM extensions are not supported"));
        }
        // The user name in the message is ignored, as PostgreSQL does: the startup packet's
        // is the one that counts (libpq sends an empty one).
        let mut attrs = bare.split(',');
        attrs
            .next()
            .filter(|a| a.starts_with("n="))
            .ok_or(malformed("user name attribute expected"))?;
        let client_nonce = attrs
            .next()
            .and_then(|a| a.strip_prefix("r="))
            .ok_or(malformed("nonce attribute expected"))?;
        if client_nonce.is_empty() || !client_nonce.bytes().all(|b| (0x21..0x7f).contains(&b)) {
            return Err(malformed("the client nonce is not printable"));
        }
        // Optional extensions may follow; they are ignored.
        let gs2_header = &msg[..msg.len() - bare.len()];
        let mut cbind = gs2_header.as_bytes().to_vec();
        if let Channel::Bound(binding) = &self.channel {
            cbind.extend_from_slice(&binding.end_point);
        }
        let nonce = format!("{client_nonce}{}", self.server_nonce);
        let server_first = format!(
            "r={nonce},s={},i={}",
            STANDARD.encode(&self.verifier.salt),
            self.verifier.iterations
        );
        self.state = Some(First {
            cbind: STANDARD.encode(cbind),
            nonce,
            auth_prefix: format!("{bare},{server_first},"),
        });
        Ok(server_first)
    }

    /// Reads `c=...,r=...,p=...` and returns the server-final message, or why it failed.
    pub fn last(&mut self, client_final: &[u8]) -> Result<String, Refusal> {
        let first = self.state.take().ok_or(malformed(
            "client-final-message before client-first-message",
        ))?;
        let msg = std::str::from_utf8(client_final).map_err(|_| malformed("not UTF-8"))?;
        let (without_proof, proof) = msg
            .rsplit_once(",p=")
            .ok_or(malformed("proof attribute expected"))?;
        let mut attrs = without_proof.split(',');
        let cbind = attrs
            .next()
            .and_then(|a| a.strip_prefix("c="))
            .ok_or(malformed("channel-binding attribute expected"))?;
        // Without channel binding the attribute is the gs2 header the client sent first,
        // base64-encoded: "n,," or "y,,"; with it, the certificate hash follows the header.
        if cbind != first.cbind {
            if let Channel::Bound(_) = self.channel {
                return Err(Refusal::BindingMismatch);
            }
            return Err(malformed(
                "unexpected SCRAM channel-binding attribute in client-final-message",
            ));
        }
        let nonce = attrs
            .next()
            .and_then(|a| a.strip_prefix("r="))
            .ok_or(malformed("nonce attribute expected"))?;
        if nonce != first.nonce {
            return Err(malformed("the nonce does not match"));
        }
        let proof: [u8; 32] = STANDARD
            .decode(proof)
            .ok()
            .and_then(|p| p.try_into().ok())
            .ok_or(malformed("malformed proof in client-final-message"))?;
        let auth_message = format!("{}{without_proof}", first.auth_prefix);
        let signature = hmac(&self.verifier.stored_key, &[auth_message.as_bytes()]);
        let mut client_key = proof;
        client_key
            .iter_mut()
            .zip(signature)
            .for_each(|(k, s)| *k ^= s);
        let computed: [u8; 32] = Sha256::digest(client_key).into();
        let matches = computed.ct_eq(&self.verifier.stored_key).to_bool();
        if !matches || self.doomed {
            return Err(Refusal::Failed);
        }
        let server_signature = hmac(&self.verifier.server_key, &[auth_message.as_bytes()]);
        Ok(format!("v={}", STANDARD.encode(server_signature)))
    }
}

fn malformed(why: &'static str) -> Refusal {
    Refusal::Malformed(why)
}

#[cfg(test)]
mod tests;
