//! Logging in to a shard: the startup message, the password exchange the shard asks for
//! (cleartext, MD5 or SCRAM-SHA-256), and the parameters and key it reports.

use super::{ServerConn, ShardTarget};
use crate::error::Error;
use crate::protocol::{self, Frame};
use bytes::{BufMut, BytesMut};
use postgres_protocol::authentication::{md5_hash, sasl};

impl ServerConn {
    pub(super) async fn startup(&mut self, target: &ShardTarget) -> Result<(), Error> {
        let mut body = BytesMut::new();
        body.put_i32(196608);
        for (k, v) in [
            ("user", target.user.as_str()),
            ("database", target.database.as_str()),
            ("client_encoding", "UTF8"),
            ("application_name", "shardgate"),
        ] {
            body.put_slice(k.as_bytes());
            body.put_u8(0);
            body.put_slice(v.as_bytes());
            body.put_u8(0);
        }
        body.put_u8(0);
        self.out.put_i32(body.len() as i32 + 4);
        self.out.put_slice(&body);
        self.flush().await.map_err(|e| target.unavailable(e))?;
        let mut scram: Option<sasl::ScramSha256> = None;
        loop {
            let frame = self.recv().await.map_err(|e| target.unavailable(e))?;
            match frame.tag {
                b'R' => self.authenticate(target, &frame, &mut scram).await?,
                b'S' => {
                    let fields: Vec<&str> = frame
                        .body()
                        .split(|b| *b == 0)
                        .map(|s| std::str::from_utf8(s).unwrap_or(""))
                        .collect();
                    if fields.len() >= 2 {
                        self.parameters
                            .push((fields[0].to_owned(), fields[1].to_owned()));
                    }
                }
                b'K' => {
                    self.pid = protocol::be_i32(frame.body(), 0).unwrap_or(0);
                    self.secret = protocol::be_i32(frame.body(), 4).unwrap_or(0);
                }
                b'Z' => {
                    self.status = protocol::ready_status(frame.body());
                    return Ok(());
                }
                b'E' => {
                    let msg = protocol::error_field(frame.body(), b'M').unwrap_or_default();
                    return Err(target.unavailable(msg));
                }
                _ => {} // NoticeResponse and NegotiateProtocolVersion need no answer
            }
        }
    }

    async fn authenticate(
        &mut self,
        target: &ShardTarget,
        frame: &Frame,
        scram: &mut Option<sasl::ScramSha256>,
    ) -> Result<(), Error> {
        let body = frame.body();
        let code = protocol::be_i32(body, 0).unwrap_or(-1);
        let password = || {
            target.password.clone().ok_or_else(|| {
                target.unavailable("the shard asks for a password; put one in its url")
            })
        };
        match code {
            0 => return Ok(()),
            3 => {
                let pw = password()?;
                self.put_password_message(&[&pw, &[0]]);
            }
            5 => {
                let pw = password()?;
                let salt: [u8; 4] = body
                    .get(4..8)
                    .and_then(|s| s.try_into().ok())
                    .ok_or_else(|| target.unavailable("malformed MD5 request"))?;
                let hash = md5_hash(target.user.as_bytes(), &pw, salt);
                self.put_password_message(&[hash.as_bytes(), &[0]]);
            }
            10 => {
                let pw = password()?;
                let offered = String::from_utf8_lossy(&body[4..]).into_owned();
                if !offered.split('\0').any(|m| m == sasl::SCRAM_SHA_256) {
                    return Err(target.unavailable("the shard offers no SASL mechanism we support"));
                }
                let client = sasl::ScramSha256::new(&pw, sasl::ChannelBinding::unsupported());
                let first = client.message().to_vec();
                let mech = sasl::SCRAM_SHA_256.as_bytes();
                let mut payload = BytesMut::new();
                payload.put_slice(mech);
                payload.put_u8(0);
                payload.put_i32(first.len() as i32);
                payload.put_slice(&first);
                self.put_password_message(&[&payload]);
                *scram = Some(client);
            }
            11 => {
                let client = scram
                    .as_mut()
                    .ok_or_else(|| target.unavailable("unexpected SASL continue"))?;
                client
                    .update(&body[4..])
                    .map_err(|e| target.unavailable(format!("SCRAM: {e}")))?;
                let msg = client.message().to_vec();
                self.put_password_message(&[&msg]);
            }
            12 => {
                let client = scram
                    .as_mut()
                    .ok_or_else(|| target.unavailable("unexpected SASL final"))?;
                client
                    .finish(&body[4..])
                    .map_err(|e| target.unavailable(format!("SCRAM: {e}")))?;
                return Ok(());
            }
            other => {
                return Err(target.unavailable(format!(
                    "the shard asks for authentication method {other}, which shardgate does not support"
                )))
            }
        }
        self.flush().await.map_err(|e| target.unavailable(e))
    }

    fn put_password_message(&mut self, parts: &[&[u8]]) {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        self.out.put_u8(b'p');
        self.out.put_i32(len as i32 + 4);
        for p in parts {
            self.out.put_slice(p);
        }
    }
}
