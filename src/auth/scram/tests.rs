//! The SCRAM exchange against RFC 7677's example and postgres-protocol's client, and what it
//! does with malformed messages and verifiers.

use super::*;
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};

const RFC_SALT: &str = "W22ZaJ0SNY7soEsUEjb6gQ==";

#[test]
fn rfc_7677_example() {
    let salt = STANDARD.decode(RFC_SALT).unwrap();
    let verifier = Verifier::derive("pencil", &salt, 4096);
    let mut server = ServerExchange::new(verifier, false, "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0".into());
    let first = server.first(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO").unwrap();
    assert_eq!(
        first,
        "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
    );
    let last = server
        .last(b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
        .unwrap();
    assert_eq!(last, "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
}

/// Runs a whole exchange against postgres-protocol's client; Ok when both sides agree.
fn exchange(verifier: Verifier, doomed: bool, password: &str) -> Result<(), Refusal> {
    let mut client = ScramSha256::new(password.as_bytes(), ChannelBinding::unsupported());
    let mut server = ServerExchange::new(verifier, doomed, "c2VydmVyIG5vbmNl".into());
    let first = server.first(client.message())?;
    client.update(first.as_bytes()).unwrap();
    let last = server.last(client.message())?;
    client
        .finish(last.as_bytes())
        .expect("the client accepts the server's signature");
    Ok(())
}

#[test]
fn verifiers_of_postgres_protocol_parse_and_verify() {
    for password in ["pencil", "p\u{e4}ss w\u{f6}rd", "I\u{00AD}X"] {
        let text = postgres_protocol::password::scram_sha_256(password.as_bytes());
        let verifier = Verifier::parse(&text).expect("parses");
        assert_eq!(verifier.to_text(), text);
        assert_eq!(exchange(verifier.clone(), false, password), Ok(()));
        assert_eq!(
            exchange(verifier.clone(), false, "wrong"),
            Err(Refusal::Failed)
        );
        assert_eq!(exchange(verifier, true, password), Err(Refusal::Failed));
    }
}

#[test]
fn derived_verifiers_match_the_client_and_saslprep() {
    let v = Verifier::derive("secret", b"0123456789abcdef", ITERATIONS);
    assert_eq!(exchange(v.clone(), false, "secret"), Ok(()));
    assert_eq!(exchange(v, false, "Secret"), Err(Refusal::Failed));
    // SASLprep maps the soft hyphen to nothing, on both sides.
    let v = Verifier::derive("I\u{00AD}X", b"0123456789abcdef", ITERATIONS);
    assert_eq!(exchange(v, false, "IX"), Ok(()));
    assert_eq!(
        exchange(Verifier::mock(b"salt"), false, ""),
        Err(Refusal::Failed)
    );
}

#[test]
fn malformed_verifiers_do_not_parse() {
    let good = postgres_protocol::password::scram_sha_256(b"x");
    assert!(Verifier::parse(&good).is_some());
    for bad in [
        "SCRAM-SHA-256$",
        "SCRAM-SHA-256$4096:c2FsdA==",
        "SCRAM-SHA-256$0:c2FsdA==$AAAA:AAAA",
        "SCRAM-SHA-256$x:c2FsdA==$AAAA:AAAA",
        "SCRAM-SHA-256$4096:$AAAA:AAAA",
        "SCRAM-SHA-256$4096:c2FsdA==$AAAA:AAAA",
        &good[..good.len() - 4],
        &good.replace(':', ";"),
    ] {
        assert!(Verifier::parse(bad).is_none(), "{bad}");
    }
}

#[test]
fn malformed_client_messages_are_refused_not_panics() {
    let v = Verifier::derive("pw", b"salt", 16);
    let firsts: &[&[u8]] = &[
        b"",
        b"n",
        b"x,,n=,r=abc",
        b"p=tls-server-end-point,,n=,r=abc",
        b"n,a=someone,n=,r=abc",
        b"n,,m=ext,n=,r=abc",
        b"n,,r=abc",
        b"n,,n=,",
        b"n,,n=,r=",
        b"n,,n=,r=a b",
        b"n,,n=,r=\xff",
        b"n,,",
    ];
    for msg in firsts {
        let mut s = ServerExchange::new(v.clone(), false, "srv".into());
        assert!(
            matches!(s.first(msg), Err(Refusal::Malformed(_))),
            "{msg:?}"
        );
    }
    let lasts: &[&[u8]] = &[
        b"",
        b"c=biws,r=abcsrv",
        b"c=eSws,r=abcsrv,p=AAAA",
        b"c=biws,r=abcXXX,p=AAAA",
        b"c=biws,r=abcsrv,p=AAAA",
        b"c=biws,r=abcsrv,p=!!!!",
        b"r=abcsrv,p=AAAA",
        b"c=biws,p=AAAA",
        b",p=",
        b"\xff,p=",
    ];
    for msg in lasts {
        let mut s = ServerExchange::new(v.clone(), false, "srv".into());
        s.first(b"n,,n=,r=abc").unwrap();
        assert!(matches!(s.last(msg), Err(Refusal::Malformed(_))), "{msg:?}");
    }
    // A right-shaped proof that is wrong is a failure, not a protocol error.
    let mut s = ServerExchange::new(v.clone(), false, "srv".into());
    s.first(b"y,,n=user,r=abc").unwrap();
    let proof = STANDARD.encode([7u8; 32]);
    let msg = format!("c=eSws,r=abcsrv,p={proof}");
    assert_eq!(s.last(msg.as_bytes()), Err(Refusal::Failed));
    // Out of order.
    let mut s = ServerExchange::new(v, false, "srv".into());
    assert!(matches!(s.last(b"c=biws"), Err(Refusal::Malformed(_))));
}

/// postgres-protocol's client with `binding` against a server exchange under `channel`.
fn bound_exchange(channel: Channel, binding: ChannelBinding) -> Result<(), Refusal> {
    let verifier = Verifier::derive("pw", b"salt", 16);
    let mut client = ScramSha256::new(b"pw", binding);
    let mut server =
        ServerExchange::new(verifier, false, "c2VydmVyIG5vbmNl".into()).with_channel(channel);
    let first = server.first(client.message())?;
    client.update(first.as_bytes()).unwrap();
    let last = server.last(client.message())?;
    client.finish(last.as_bytes()).unwrap();
    Ok(())
}

#[test]
fn channel_binding_flags_against_what_was_offered() {
    let hash = Sha256::digest(b"certificate").to_vec();
    let ours = || Channel::Bound(super::ChannelBinding::tls_server_end_point(hash.clone()));
    let plus = |h: &[u8]| ChannelBinding::tls_server_end_point(h.to_vec());
    assert_eq!(bound_exchange(ours(), plus(&hash)), Ok(()));
    assert_eq!(
        bound_exchange(ours(), plus(&hash[1..])),
        Err(Refusal::BindingMismatch)
    );
    let unsupported = ChannelBinding::unsupported;
    let unrequested = ChannelBinding::unrequested;
    for channel in [Channel::Unbound, Channel::Declined] {
        assert_eq!(bound_exchange(channel, unsupported()), Ok(()));
    }
    assert_eq!(bound_exchange(Channel::Unbound, unrequested()), Ok(()));
    assert_eq!(
        bound_exchange(Channel::Declined, unrequested()),
        Err(Refusal::Downgrade)
    );
    for binding in [unsupported(), unrequested()] {
        assert!(matches!(
            bound_exchange(ours(), binding),
            Err(Refusal::Malformed(_))
        ));
    }
    for channel in [Channel::Unbound, Channel::Declined] {
        assert!(matches!(
            bound_exchange(channel, plus(&hash)),
            Err(Refusal::Malformed(_))
        ));
    }
    // The flag as PLUS allows it, then the final message without the binding data.
    let mut s = ServerExchange::new(Verifier::mock(b"s"), false, "srv".into()).with_channel(ours());
    s.first(b"p=tls-server-end-point,,n=,r=abc").unwrap();
    assert_eq!(
        s.last(b"c=cD10bHMtc2VydmVyLWVuZC1wb2ludCws,r=abcsrv,p=AAAA"),
        Err(Refusal::BindingMismatch)
    );
}
