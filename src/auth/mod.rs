//! Client authentication: the users of `[auth]` with their parsed verifiers, and the password
//! exchanges (SCRAM-SHA-256, md5) a client goes through before AuthenticationOk.

pub mod md5;
pub mod scram;

pub use scram::ChannelBinding;

use crate::config::{AuthConfig, AuthMethod};
use crate::error::Error;
use crate::protocol::{self, Frame, FrameReader};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::BytesMut;
use rand::Rng;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

/// As PostgreSQL's authentication_timeout: a client that stalls mid-exchange gives its slot back.
const AUTH_TIMEOUT: Duration = Duration::from_secs(60);
/// Largest password or SASL message accepted, as PostgreSQL's PG_MAX_AUTH_TOKEN_LENGTH; a
/// client not yet authenticated cannot make the proxy buffer more.
const MAX_AUTH_MESSAGE: usize = 65535;

/// The users of `[auth]`, ready to authenticate: built once when the config is loaded, again on
/// a reload that changes `[auth]`.
pub struct Users {
    entries: HashMap<String, Entry>,
    /// Random per process, kept across reloads: salts made up for unknown users and for plain
    /// passwords derive from it, so each name always gets the same salt, listed or not.
    secret: [u8; 32],
    /// With method md5, unknown users get the exchange most listed users get, so the kind of
    /// challenge says nothing about whether a name is listed.
    md5_for_unknown: bool,
}

/// What the proxy keeps of one user's password: the forms it can check a client against.
#[derive(Debug)]
struct Entry {
    scram: Option<scram::Verifier>,
    md5: Option<md5::Verifier>,
}

impl std::fmt::Debug for Users {
    // Names only: verifiers and the secret stay out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<&String> = self.entries.keys().collect();
        names.sort();
        f.debug_struct("Users")
            .field("names", &names)
            .finish_non_exhaustive()
    }
}

impl Default for Users {
    /// Nobody: every password exchange fails.
    fn default() -> Users {
        Users {
            entries: HashMap::new(),
            secret: rand::rng().random(),
            md5_for_unknown: false,
        }
    }
}

impl Users {
    /// Parses every user's password; a malformed verifier is an error naming the user.
    pub fn new(auth: Option<&AuthConfig>) -> Result<Users, Error> {
        Users::build(auth, rand::rng().random())
    }

    /// The users of a reloaded `[auth]`, with this process's secret.
    pub fn rebuild(&self, auth: Option<&AuthConfig>) -> Result<Users, Error> {
        Users::build(auth, self.secret)
    }

    fn build(auth: Option<&AuthConfig>, secret: [u8; 32]) -> Result<Users, Error> {
        let mut users = Users {
            secret,
            ..Users::default()
        };
        let Some(auth) = auth else {
            return Ok(users);
        };
        let (mut md5_capable, mut scram_only) = (0, 0);
        for u in &auth.users {
            let entry = users.entry(&u.name, &u.password)?;
            if entry.md5.is_some() {
                md5_capable += 1;
            } else {
                scram_only += 1;
            }
            if auth.method == AuthMethod::ScramSha256 && entry.scram.is_none() {
                tracing::warn!(
                    user = ?u.name,
                    "[[auth.users]] has an md5 verifier, which cannot serve method scram-sha-256: this user cannot log in"
                );
            }
            users.entries.insert(u.name.clone(), entry);
        }
        users.md5_for_unknown = md5_capable >= scram_only;
        Ok(users)
    }

    fn entry(&self, name: &str, password: &str) -> Result<Entry, Error> {
        // The password itself never goes into the message: only its shape.
        let bad = |what: &str| {
            Error::config(format!(
                "[[auth.users]] {name:?}: the password {what}; give a verifier copied from pg_authid.rolpassword or a plain password"
            ))
        };
        if scram::Verifier::looks_like(password) {
            let v = scram::Verifier::parse(password).ok_or_else(|| {
                bad("starts like a SCRAM-SHA-256 verifier but is not one (SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>, base64)")
            })?;
            return Ok(Entry {
                scram: Some(v),
                md5: None,
            });
        }
        if md5::Verifier::looks_like(password) {
            let v = md5::Verifier::parse(password).ok_or_else(|| {
                bad("has an md5 verifier's shape (md5 and 32 characters) but is not hex")
            })?;
            return Ok(Entry {
                scram: None,
                md5: Some(v),
            });
        }
        if password.is_empty() {
            return Err(bad("is empty"));
        }
        let salt = self.salt(b"plain", name);
        Ok(Entry {
            scram: Some(scram::Verifier::derive(password, &salt, scram::ITERATIONS)),
            md5: Some(md5::Verifier::derive(password, name)),
        })
    }

    /// A salt for `user` that stays the same for this process, as PostgreSQL's mock salts.
    fn salt(&self, purpose: &[u8], user: &str) -> [u8; scram::SALT_LEN] {
        let mut h = Sha256::new();
        h.update(self.secret);
        h.update(purpose);
        h.update([0]);
        h.update(user.as_bytes());
        let digest = h.finalize();
        let mut salt = [0u8; scram::SALT_LEN];
        salt.copy_from_slice(&digest[..scram::SALT_LEN]);
        salt
    }

    /// Which exchange `user` goes through, and whether it can succeed at all.
    fn plan(&self, method: AuthMethod, user: &str) -> Plan<'_> {
        let entry = self.entries.get(user);
        let mock = || scram::Verifier::mock(&self.salt(b"mock", user));
        match (method, entry) {
            (AuthMethod::Trust, _) => Plan::Trust,
            (AuthMethod::Md5, Some(Entry { md5: Some(v), .. })) => Plan::Md5(Some(v)),
            (AuthMethod::Md5, None) if self.md5_for_unknown => Plan::Md5(None),
            // As PostgreSQL: a SCRAM verifier is served by SCRAM even under method md5.
            (_, Some(Entry { scram: Some(v), .. })) => Plan::Scram(v.clone(), None),
            (_, Some(_)) => Plan::Scram(
                mock(),
                Some("the stored password is md5, which cannot serve method scram-sha-256"),
            ),
            (_, None) => Plan::Scram(mock(), Some("no such user in [[auth.users]]")),
        }
    }
}

enum Plan<'a> {
    Trust,
    /// The verifier, and why the exchange must fail whatever the client sends, if it must.
    Scram(scram::Verifier, Option<&'static str>),
    /// The verifier; none for an unknown user.
    Md5(Option<&'a md5::Verifier>),
}

/// Why an exchange ended without success.
enum Failure {
    /// Wrong password, unknown user: one message for all (28P01); the reason is for the log.
    Refused(&'static str),
    /// Broken protocol or a client that went away (08P01), or another error sent as it is.
    Broken(Error),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Broken(e)
    }
}

fn broken(message: impl Into<String>) -> Error {
    Error::Protocol {
        message: message.into(),
    }
}

/// Runs the password exchange of `method` for `user`, up to (not including) AuthenticationOk,
/// which the caller sends with the rest of the startup messages. With `binding` (the client is
/// on TLS) SCRAM-SHA-256-PLUS is offered too.
pub async fn authenticate<R, W>(
    users: &Users,
    method: AuthMethod,
    user: &str,
    binding: Option<&ChannelBinding>,
    reader: &mut FrameReader<R>,
    w: &mut W,
) -> Result<(), Error>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let exchange = async {
        match users.plan(method, user) {
            Plan::Trust => Ok(()),
            Plan::Scram(verifier, doomed) => {
                scram_exchange(verifier, doomed, binding, reader, w).await
            }
            Plan::Md5(verifier) => md5_exchange(verifier, reader, w).await,
        }
    };
    match tokio::time::timeout(AUTH_TIMEOUT, exchange).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(Failure::Refused(reason))) => {
            tracing::info!(user = ?user, reason, "password authentication failed");
            Err(Error::BadPassword {
                user: user.to_owned(),
            })
        }
        Ok(Err(Failure::Broken(e))) => {
            tracing::debug!(user = ?user, "authentication broken off: {e}");
            Err(e)
        }
        Err(_) => Err(broken("authentication timed out")),
    }
}

async fn send<W: AsyncWrite + Unpin>(w: &mut W, out: &BytesMut) -> Result<(), Error> {
    let io = |_| broken("the client closed the connection during authentication");
    w.write_all(out).await.map_err(io)?;
    w.flush().await.map_err(io)
}

/// The client's next message, which must be a password message ('p': PasswordMessage,
/// SASLInitialResponse, SASLResponse).
async fn password_message<R: AsyncRead + Unpin>(
    reader: &mut FrameReader<R>,
) -> Result<Frame, Error> {
    match reader.next_within(MAX_AUTH_MESSAGE).await {
        Ok(Some(f)) if f.tag == b'p' => Ok(f),
        Ok(Some(f)) => Err(broken(format!(
            "expected a password message, got message type {:?}",
            char::from(f.tag)
        ))),
        Ok(None) => Err(broken(
            "the client closed the connection during authentication",
        )),
        Err(e) => Err(broken(format!("during authentication: {e}"))),
    }
}

async fn scram_exchange<R, W>(
    verifier: scram::Verifier,
    doomed: Option<&'static str>,
    binding: Option<&ChannelBinding>,
    reader: &mut FrameReader<R>,
    w: &mut W,
) -> Result<(), Failure>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut out = BytesMut::new();
    // PLUS first, as PostgreSQL lists them: clients take the first they can do.
    match binding {
        Some(_) => protocol::put_auth_sasl(&mut out, &[scram::MECHANISM_PLUS, scram::MECHANISM]),
        None => protocol::put_auth_sasl(&mut out, &[scram::MECHANISM]),
    }
    send(w, &out).await?;
    let initial = password_message(reader).await?;
    let mut body = initial.body();
    let mechanism =
        protocol::take_cstr(&mut body).map_err(|_| broken("malformed SASLInitialResponse"))?;
    let channel = match (mechanism, binding) {
        (scram::MECHANISM, None) => scram::Channel::Unbound,
        (scram::MECHANISM, Some(_)) => scram::Channel::Declined,
        (scram::MECHANISM_PLUS, Some(b)) => scram::Channel::Bound(b.clone()),
        _ => return Err(broken("client selected an invalid SASL authentication mechanism").into()),
    };
    let len = protocol::be_i32(body, 0).ok_or_else(|| broken("malformed SASLInitialResponse"))?;
    let data = &body[4..];
    let client_first = if len == -1 && data.is_empty() {
        // No initial response: ask for it with an empty challenge, as PostgreSQL does.
        out.clear();
        protocol::put_auth_sasl_continue(&mut out, b"");
        send(w, &out).await?;
        password_message(reader).await?.body().to_vec()
    } else if usize::try_from(len).ok() == Some(data.len()) {
        data.to_vec()
    } else {
        return Err(broken("malformed SASLInitialResponse").into());
    };
    let nonce: [u8; scram::NONCE_RAW_LEN] = rand::rng().random();
    let mut server = scram::ServerExchange::new(verifier, doomed.is_some(), STANDARD.encode(nonce))
        .with_channel(channel);
    let server_first = server.first(&client_first).map_err(refusal)?;
    out.clear();
    protocol::put_auth_sasl_continue(&mut out, server_first.as_bytes());
    send(w, &out).await?;
    let client_final = password_message(reader).await?;
    let server_final = server
        .last(client_final.body())
        .map_err(|r| match (r, doomed) {
            (scram::Refusal::Failed, Some(why)) => Failure::Refused(why),
            (r, _) => refusal(r),
        })?;
    out.clear();
    protocol::put_auth_sasl_final(&mut out, server_final.as_bytes());
    send(w, &out).await?;
    Ok(())
}

fn refusal(r: scram::Refusal) -> Failure {
    match r {
        scram::Refusal::Malformed(why) => {
            Failure::Broken(broken(format!("malformed SCRAM message: {why}")))
        }
        scram::Refusal::Failed => Failure::Refused("wrong password"),
        scram::Refusal::BindingMismatch => Failure::Refused("SCRAM channel binding check failed"),
        scram::Refusal::Downgrade => Failure::Broken(Error::ChannelBindingDowngrade),
    }
}

async fn md5_exchange<R, W>(
    verifier: Option<&md5::Verifier>,
    reader: &mut FrameReader<R>,
    w: &mut W,
) -> Result<(), Failure>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let salt: [u8; 4] = rand::rng().random();
    let mut out = BytesMut::new();
    protocol::put_auth_md5(&mut out, salt);
    send(w, &out).await?;
    let message = password_message(reader).await?;
    let mut body = message.body();
    let response = match protocol::take_cstr(&mut body) {
        Ok(r) if body.is_empty() => r,
        _ => return Err(broken("malformed password message").into()),
    };
    match verifier {
        Some(v) if v.check(salt, response.as_bytes()) => Ok(()),
        Some(_) => Err(Failure::Refused("wrong password")),
        None => Err(Failure::Refused("no such user in [[auth.users]]")),
    }
}

#[cfg(test)]
mod tests;
