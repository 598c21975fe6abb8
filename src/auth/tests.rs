//! The exchanges of `authenticate` over an in-memory pipe, driven by postgres-protocol's client
//! code (an implementation independent of ours), right and wrong, whole and broken.

use super::*;
use crate::config::Config;
use postgres_protocol::authentication::md5_hash;
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
use std::sync::Arc;
use tokio::io::{DuplexStream, ReadHalf, WriteHalf};
use tokio::task::JoinHandle;

fn auth(method: &str, users: &[(&str, &str)]) -> AuthConfig {
    let mut toml = format!(
        "[proxy]\nlisten = \"127.0.0.1:0\"\n[[shards]]\nname = \"s0\"\nurl = \"postgres://a@h/d\"\n[auth]\nmethod = \"{method}\"\n"
    );
    for (name, password) in users {
        toml.push_str(&format!(
            "[[auth.users]]\nname = \"{name}\"\npassword = '{password}'\n"
        ));
    }
    Config::parse(&toml).unwrap().auth.unwrap()
}

fn users(method: &str, list: &[(&str, &str)]) -> Arc<Users> {
    Arc::new(Users::new(Some(&auth(method, list))).unwrap())
}

/// The client's end of the pipe.
struct Client {
    r: FrameReader<ReadHalf<DuplexStream>>,
    w: WriteHalf<DuplexStream>,
}

impl Client {
    /// The next Authentication message: its code and data; None once the server hung up.
    async fn recv(&mut self) -> Option<(i32, Vec<u8>)> {
        let f = self.r.next().await.ok()??;
        assert_eq!(f.tag, b'R');
        Some((protocol::be_i32(f.body(), 0)?, f.body()[4..].to_vec()))
    }

    async fn send(&mut self, tag: u8, body: &[u8]) {
        let mut msg = vec![tag];
        msg.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
        msg.extend_from_slice(body);
        // The server may already have hung up on a broken exchange.
        let _ = self.w.write_all(&msg).await;
    }

    async fn send_initial(&mut self, mechanism: &str, data: Option<&[u8]>) {
        let mut body = format!("{mechanism}\0").into_bytes();
        match data {
            Some(d) => {
                body.extend_from_slice(&(d.len() as i32).to_be_bytes());
                body.extend_from_slice(d);
            }
            None => body.extend_from_slice(&(-1i32).to_be_bytes()),
        }
        self.send(b'p', &body).await;
    }

    /// A whole SCRAM exchange; Ok when the server's final message checks out.
    async fn scram(&mut self, password: &str) -> Result<(), String> {
        let binding = ChannelBinding::unsupported();
        self.scram_as(password, PLAIN_ONLY, "SCRAM-SHA-256", binding)
            .await
    }

    /// A whole SCRAM exchange with `mechanism` and `binding`, after the server listed
    /// `offered` (the AuthenticationSASL data).
    async fn scram_as(
        &mut self,
        password: &str,
        offered: &[u8],
        mechanism: &str,
        binding: ChannelBinding,
    ) -> Result<(), String> {
        let (code, data) = self.recv().await.ok_or("closed")?;
        assert_eq!((code, data.as_slice()), (10, offered));
        let mut scram = ScramSha256::new(password.as_bytes(), binding);
        self.send_initial(mechanism, Some(scram.message())).await;
        let (code, data) = self.recv().await.ok_or("closed")?;
        assert_eq!(code, 11);
        scram.update(&data).map_err(|e| e.to_string())?;
        self.send(b'p', scram.message()).await;
        let (code, data) = self.recv().await.ok_or("refused")?;
        assert_eq!(code, 12);
        scram.finish(&data).map_err(|e| e.to_string())
    }

    /// A whole md5 exchange; Ok when the server hangs up only after its answer was checked.
    async fn md5(&mut self, user: &str, password: &str) -> [u8; 4] {
        let (code, data) = self.recv().await.expect("a challenge");
        assert_eq!(code, 5);
        let salt: [u8; 4] = data.try_into().unwrap();
        let answer = md5_hash(user.as_bytes(), password.as_bytes(), salt);
        self.send(b'p', format!("{answer}\0").as_bytes()).await;
        salt
    }
}

/// What the server lists over plain TCP, and over TLS.
const PLAIN_ONLY: &[u8] = b"SCRAM-SHA-256\0\0";
const WITH_PLUS: &[u8] = b"SCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0\0";

/// Runs the server side in its own task, which drops its end of the pipe when it returns.
fn serve(
    users: &Arc<Users>,
    method: AuthMethod,
    user: &str,
) -> (Client, JoinHandle<Result<(), Error>>) {
    serve_on(users, method, user, None)
}

/// The same, for a client on a TLS channel with this binding (`None`: plain TCP).
fn serve_on(
    users: &Arc<Users>,
    method: AuthMethod,
    user: &str,
    binding: Option<super::ChannelBinding>,
) -> (Client, JoinHandle<Result<(), Error>>) {
    let (ours, theirs) = tokio::io::duplex(1 << 20);
    let (r, mut w) = tokio::io::split(ours);
    let (users, user) = (users.clone(), user.to_owned());
    let server = tokio::spawn(async move {
        let mut reader = FrameReader::new(r);
        authenticate(&users, method, &user, binding.as_ref(), &mut reader, &mut w).await
    });
    let (r, w) = tokio::io::split(theirs);
    let client = Client {
        r: FrameReader::new(r),
        w,
    };
    (client, server)
}

fn bad_password(user: &str) -> Result<(), Error> {
    Err(Error::BadPassword { user: user.into() })
}

fn is_protocol(r: Result<(), Error>) -> bool {
    matches!(r, Err(Error::Protocol { .. }))
}

#[tokio::test]
async fn scram_with_plain_and_copied_verifiers() {
    let copied = postgres_protocol::password::scram_sha_256(b"copied pw");
    let us = users(
        "scram-sha-256",
        &[("app", "plain pw"), ("ops", copied.as_str())],
    );
    for (user, password, ok) in [
        ("app", "plain pw", true),
        ("app", "plain pw ", false),
        ("ops", "copied pw", true),
        ("ops", "plain pw", false),
    ] {
        let (mut c, server) = serve(&us, AuthMethod::ScramSha256, user);
        let client = c.scram(password).await;
        let server = server.await.unwrap();
        if ok {
            assert_eq!((client, server), (Ok(()), Ok(())), "{user}");
        } else {
            assert_eq!(client, Err("refused".into()));
            assert_eq!(server, bad_password(user));
        }
    }
}

#[tokio::test]
async fn unknown_users_get_a_full_exchange_with_a_stable_salt_and_then_28p01() {
    let us = users("scram-sha-256", &[("app", "pw")]);
    let salt_of = |user: &'static str| {
        let us = us.clone();
        async move {
            let (mut c, server) = serve(&us, AuthMethod::ScramSha256, user);
            let _ = c.recv().await;
            let scram = ScramSha256::new(b"pw", ChannelBinding::unsupported());
            c.send_initial("SCRAM-SHA-256", Some(scram.message())).await;
            let (code, first) = c.recv().await.unwrap();
            assert_eq!(code, 11);
            drop(c);
            assert!(is_protocol(server.await.unwrap()));
            let first = String::from_utf8(first).unwrap();
            first.split(',').nth(1).unwrap().to_owned()
        }
    };
    assert_eq!(salt_of("ghost").await, salt_of("ghost").await);
    assert_ne!(salt_of("ghost").await, salt_of("spook").await);
    assert_eq!(salt_of("app").await, salt_of("app").await);
    let (mut c, server) = serve(&us, AuthMethod::ScramSha256, "ghost");
    assert_eq!(c.scram("pw").await, Err("refused".into()));
    let err = server.await.unwrap().unwrap_err();
    assert_eq!(err.sqlstate(), "28P01");
    assert_eq!(
        err.to_string(),
        "password authentication failed for user \"ghost\""
    );
    // A reload keeps the process's salts.
    let again = Arc::new(
        us.rebuild(Some(&auth("scram-sha-256", &[("app", "pw")])))
            .unwrap(),
    );
    let (mut c, server) = serve(&again, AuthMethod::ScramSha256, "app");
    assert_eq!(c.scram("pw").await, Ok(()));
    assert_eq!(server.await.unwrap(), Ok(()));
}

#[tokio::test]
async fn md5_method_serves_md5_and_scram_verifiers_as_postgresql_does() {
    let md5_verifier = postgres_protocol::password::md5(b"old pw", "legacy");
    let scram_verifier = postgres_protocol::password::scram_sha_256(b"new pw");
    let list = [
        ("app", "plain pw"),
        ("legacy", md5_verifier.as_str()),
        ("modern", scram_verifier.as_str()),
    ];
    let us = users("md5", &list);
    for (user, password, ok) in [
        ("app", "plain pw", true),
        ("app", "wrong", false),
        ("legacy", "old pw", true),
        ("legacy", "new pw", false),
        ("nobody", "plain pw", false),
    ] {
        let (mut c, server) = serve(&us, AuthMethod::Md5, user);
        c.md5(user, password).await;
        let expected = if ok { Ok(()) } else { bad_password(user) };
        assert_eq!(server.await.unwrap(), expected, "{user}");
    }
    let (mut c, server) = serve(&us, AuthMethod::Md5, "modern");
    assert_eq!(c.scram("new pw").await, Ok(()));
    assert_eq!(server.await.unwrap(), Ok(()));

    // Under scram-sha-256 an md5 verifier cannot serve: the right password fails too.
    let us = users("scram-sha-256", &list);
    let (mut c, server) = serve(&us, AuthMethod::ScramSha256, "legacy");
    assert_eq!(c.scram("old pw").await, Err("refused".into()));
    assert_eq!(server.await.unwrap(), bad_password("legacy"));
}

#[tokio::test]
async fn broken_exchanges_are_protocol_errors() {
    let us = users("scram-sha-256", &[("app", "pw")]);
    // Hanging up after the server's first message.
    let (mut c, server) = serve(&us, AuthMethod::ScramSha256, "app");
    c.recv().await.unwrap();
    drop(c);
    assert!(is_protocol(server.await.unwrap()));
    // Another mechanism, another message type, a wrong length, an oversized message.
    let bodies: [(u8, Vec<u8>); 5] = [
        (b'p', b"SCRAM-SHA-256-PLUS\0\0\0\0\x01x".to_vec()),
        (b'Q', b"SELECT 1\0".to_vec()),
        (b'p', b"SCRAM-SHA-256\0\0\0\0\x20n,,n=,r=x".to_vec()),
        (b'p', b"SCRAM-SHA-256".to_vec()),
        (b'p', vec![b'x'; MAX_AUTH_MESSAGE]),
    ];
    for (tag, body) in bodies {
        let (mut c, server) = serve(&us, AuthMethod::ScramSha256, "app");
        c.recv().await.unwrap();
        c.send(tag, &body).await;
        assert!(is_protocol(server.await.unwrap()), "{tag} {body:?}");
    }
    // Channel binding the server did not offer.
    let (mut c, server) = serve(&us, AuthMethod::ScramSha256, "app");
    c.recv().await.unwrap();
    let first = b"p=tls-server-end-point,,n=,r=abcdef";
    c.send_initial("SCRAM-SHA-256", Some(first)).await;
    assert!(is_protocol(server.await.unwrap()));
    // A garbled md5 answer is simply wrong; one without its terminator is broken.
    let us = users("md5", &[("app", "pw")]);
    let (mut c, server) = serve(&us, AuthMethod::Md5, "app");
    c.recv().await.unwrap();
    c.send(b'p', b"\xff\xfe\0").await;
    assert!(is_protocol(server.await.unwrap()));
    let (mut c, server) = serve(&us, AuthMethod::Md5, "app");
    c.recv().await.unwrap();
    c.send(b'p', b"md5abc\0").await;
    assert_eq!(server.await.unwrap(), bad_password("app"));
}

#[tokio::test]
async fn the_initial_response_may_come_after_an_empty_challenge() {
    let us = users("scram-sha-256", &[("app", "pw")]);
    let (mut c, server) = serve(&us, AuthMethod::ScramSha256, "app");
    c.recv().await.unwrap();
    c.send_initial("SCRAM-SHA-256", None).await;
    assert_eq!(c.recv().await, Some((11, vec![])));
    let mut scram = ScramSha256::new(b"pw", ChannelBinding::unrequested());
    c.send(b'p', scram.message()).await;
    let (_, first) = c.recv().await.unwrap();
    scram.update(&first).unwrap();
    c.send(b'p', scram.message()).await;
    let (code, last) = c.recv().await.unwrap();
    assert_eq!(code, 12);
    scram.finish(&last).unwrap();
    assert_eq!(server.await.unwrap(), Ok(()));
}

#[test]
fn malformed_verifiers_name_the_user_and_never_the_password() {
    for (password, says) in [
        (
            "SCRAM-SHA-256$4096:c2FsdA==$bm90IGEga2V5:AAAA",
            "SCRAM-SHA-256 verifier",
        ),
        (
            "md5zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz",
            "md5 verifier's shape",
        ),
        ("", "is empty"),
    ] {
        let err = Users::new(Some(&auth("scram-sha-256", &[("app", password)]))).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("\"app\"") && text.contains(says), "{text}");
        if !password.is_empty() {
            assert!(!text.contains(&password[10..]), "{text}");
        }
    }
}

#[test]
fn debug_output_holds_no_secret() {
    let verifier = postgres_protocol::password::scram_sha_256(b"hunter2");
    let md5_verifier = postgres_protocol::password::md5(b"hunter3", "b");
    let list = [
        ("a", verifier.as_str()),
        ("b", md5_verifier.as_str()),
        ("c", "hunter4"),
    ];
    let config = auth("md5", &list);
    let us = Users::new(Some(&config)).unwrap();
    for text in [format!("{us:?}"), format!("{config:?}"), format!("{us:#?}")] {
        for secret in ["hunter", &verifier[20..], &md5_verifier[3..]] {
            assert!(!text.contains(secret), "{text}");
        }
    }
    let entries = format!("{:?}", us.entries);
    assert!(
        entries.contains("SCRAM-SHA-256, 4096 iterations"),
        "{entries}"
    );
    assert!(!entries.contains(&verifier[25..]), "{entries}");
}

/// Over TLS: SCRAM-SHA-256-PLUS with the right certificate hash gets in, with another one it is
/// refused as a wrong password is; plain SCRAM-SHA-256 with flag `n` is fine, flag `y` is a
/// downgrade (28000); and over plain TCP PLUS is not offered nor accepted.
#[tokio::test]
async fn channel_binding_over_tls_as_postgresql_does() {
    let us = users("scram-sha-256", &[("app", "pw")]);
    let hash = Sha256::digest(b"the certificate").to_vec();
    let tls = || Some(super::ChannelBinding::tls_server_end_point(hash.clone()));
    let plus = || ChannelBinding::tls_server_end_point(hash.clone());
    let (mut c, server) = serve_on(&us, AuthMethod::ScramSha256, "app", tls());
    let client = c
        .scram_as("pw", WITH_PLUS, "SCRAM-SHA-256-PLUS", plus())
        .await;
    assert_eq!((client, server.await.unwrap()), (Ok(()), Ok(())));

    // The right password, bound to another certificate: a relay, refused without a hint.
    let mut other = hash.clone();
    other[0] ^= 1;
    let (mut c, server) = serve_on(&us, AuthMethod::ScramSha256, "app", tls());
    let wrong = ChannelBinding::tls_server_end_point(other);
    let client = c
        .scram_as("pw", WITH_PLUS, "SCRAM-SHA-256-PLUS", wrong)
        .await;
    assert_eq!(client, Err("refused".into()));
    assert_eq!(server.await.unwrap(), bad_password("app"));
    // And an unknown user bound right is refused all the same.
    let (mut c, server) = serve_on(&us, AuthMethod::ScramSha256, "ghost", tls());
    let client = c
        .scram_as("pw", WITH_PLUS, "SCRAM-SHA-256-PLUS", plus())
        .await;
    assert_eq!(client, Err("refused".into()));
    assert_eq!(server.await.unwrap(), bad_password("ghost"));

    // Without binding over TLS: `n` (channel_binding=disable) is fine.
    let (mut c, server) = serve_on(&us, AuthMethod::ScramSha256, "app", tls());
    let none = ChannelBinding::unsupported();
    let client = c.scram_as("pw", WITH_PLUS, "SCRAM-SHA-256", none).await;
    assert_eq!((client, server.await.unwrap()), (Ok(()), Ok(())));
    // `y` says the client never saw PLUS in the list: refused as PostgreSQL does.
    let (mut c, server) = serve_on(&us, AuthMethod::ScramSha256, "app", tls());
    let unrequested = ChannelBinding::unrequested();
    let client = c
        .scram_as("pw", WITH_PLUS, "SCRAM-SHA-256", unrequested)
        .await;
    assert_eq!(client, Err("closed".into()));
    let err = server.await.unwrap().unwrap_err();
    assert_eq!(err, Error::ChannelBindingDowngrade);
    assert_eq!(err.sqlstate(), "28000");
    // PLUS with a `y` or `n` header, or another binding type: broken.
    for first in [
        &b"y,,n=,r=abcdef"[..],
        b"n,,n=,r=abcdef",
        b"p=tls-unique,,n=,r=abcdef",
        b"p,,n=,r=abcdef",
    ] {
        let (mut c, server) = serve_on(&us, AuthMethod::ScramSha256, "app", tls());
        c.recv().await.unwrap();
        c.send_initial("SCRAM-SHA-256-PLUS", Some(first)).await;
        assert!(is_protocol(server.await.unwrap()), "{first:?}");
    }

    // Over plain TCP: `y` is fine, PLUS is not offered, and choosing it anyway is broken.
    let (mut c, server) = serve(&us, AuthMethod::ScramSha256, "app");
    let unrequested = ChannelBinding::unrequested();
    let client = c
        .scram_as("pw", PLAIN_ONLY, "SCRAM-SHA-256", unrequested)
        .await;
    assert_eq!((client, server.await.unwrap()), (Ok(()), Ok(())));
    let (mut c, server) = serve(&us, AuthMethod::ScramSha256, "app");
    let client = c
        .scram_as("pw", PLAIN_ONLY, "SCRAM-SHA-256-PLUS", plus())
        .await;
    assert_eq!(client, Err("closed".into()));
    assert!(is_protocol(server.await.unwrap()));
}
