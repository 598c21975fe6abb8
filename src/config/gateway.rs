//! Validation of the gateway's settings: rate-limit overrides, TLS, and when trusting every
//! client is allowed.

use super::validate::{Locator, Seg};
use super::{AuthMethod, Config, ShardTls};
use crate::error::Error;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

impl Config {
    pub(super) fn validate_gateway(&self, at: &Locator<'_>) -> Result<(), Error> {
        use Seg::{I, K};
        for (i, limit) in self.rate_limits.iter().enumerate() {
            if self.rate_limits[..i].iter().any(|l| l.per == limit.per) {
                let msg = format!(
                    "[[rate_limits]] per = {:?} is listed twice: give one rule per kind, with overrides for the exceptions",
                    limit.per
                );
                return Err(at.err(&[K("rate_limits"), I(i), K("per")], msg));
            }
            if let Some(msg) = too_slow(limit.rate, limit.burst) {
                return Err(at.err(&[K("rate_limits"), I(i), K("rate")], msg));
            }
            for (j, o) in limit.overrides.iter().enumerate() {
                let here = |field| [K("rate_limits"), I(i), K("overrides"), I(j), K(field)];
                if !(o.rate > 0.0 && o.rate.is_finite()) {
                    let msg = format!(
                        "[[rate_limits.overrides]] rate must be a positive number, not {}",
                        o.rate
                    );
                    return Err(at.err(&here("rate"), msg));
                }
                if o.burst == 0 {
                    let msg = "[[rate_limits.overrides]] burst must be at least 1";
                    return Err(at.err(&here("burst"), msg));
                }
                if let Some(msg) = too_slow(o.rate, o.burst) {
                    return Err(at.err(&here("rate"), msg));
                }
                if limit.per == "client_ip" && parse_cidr(&o.matches).is_none() {
                    let msg = format!(
                        "[[rate_limits.overrides]] match = {:?} is not an IP address or a CIDR range such as \"10.0.0.0/8\"",
                        o.matches
                    );
                    return Err(at.err(&here("match"), msg));
                }
                if limit.overrides[..j].iter().any(|p| p.matches == o.matches) {
                    let msg = format!(
                        "[[rate_limits.overrides]] match = {:?} is listed twice",
                        o.matches
                    );
                    return Err(at.err(&here("match"), msg));
                }
            }
        }
        if let Some(tls) = &self.tls {
            if tls.cert.is_some() != tls.key.is_some() {
                let msg = "[tls] cert and key go together: give both, or neither";
                let field = if tls.cert.is_some() { "cert" } else { "key" };
                return Err(at.err(&[K("tls"), K(field)], msg));
            }
            if tls.require && tls.cert.is_none() {
                let msg = "[tls] require = true needs cert and key to offer clients";
                return Err(at.err(&[K("tls"), K("require")], msg));
            }
            if tls.shards == ShardTls::VerifyFull && tls.shard_ca.is_none() {
                let msg = "[tls] shards = \"verify-full\" needs shard_ca, the CA certificates (PEM) that shard certificates chain to";
                return Err(at.err(&[K("tls"), K("shards")], msg));
            }
        }
        // Trusting every client is a choice to write down, except on the loopback interface
        // (the demo, a sidecar), where only this machine can connect.
        let listen = SocketAddr::from_str(&self.proxy.listen).map(|a| a.ip());
        if self.auth.is_none() && listen.is_ok_and(|ip| !ip.is_loopback()) {
            let msg = format!(
                "[proxy] listen = {:?} reaches beyond this machine, and without [auth] every client would be trusted: add [auth] with method = \"scram-sha-256\" and [[auth.users]], or method = \"trust\" to accept anyone",
                self.proxy.listen
            );
            return Err(at.err(&[K("proxy"), K("listen")], msg));
        }
        if let Some(auth) = &self.auth {
            if let Some(i) = auth.users.iter().position(|u| u.max_connections == Some(0)) {
                let msg = "[[auth.users]] max_connections must be at least 1 (leave it out for no cap of the user's own)";
                return Err(at.err(&[K("auth"), K("users"), I(i), K("max_connections")], msg));
            }
            if auth.method != AuthMethod::Trust && auth.users.is_empty() {
                let msg = "[auth] lists no users, so nobody could log in: add [[auth.users]] with name and password";
                return Err(at.err(&[K("auth"), K("method")], msg));
            }
        }
        Ok(())
    }
}

/// A bucket is kept as nanoseconds in a u64: one that takes centuries to fill (a typo'd tiny
/// rate) would overflow it, so it is refused rather than left to misbehave.
fn too_slow(rate: f64, burst: u32) -> Option<String> {
    let fill_secs = f64::from(burst) / rate;
    (fill_secs > 1e9).then(|| {
        format!("a bucket of {burst} refilled at {rate} per second takes {fill_secs:.0} seconds to fill; give a rate of at least {:e}", f64::from(burst) / 1e9)
    })
}

/// An address or CIDR range (`10.0.0.0/8`, `::1`): the network and its prefix length.
pub fn parse_cidr(text: &str) -> Option<(IpAddr, u8)> {
    let (addr, bits) = match text.split_once('/') {
        Some((a, b)) => (a, Some(b.parse::<u8>().ok()?)),
        None => (text, None),
    };
    let ip = IpAddr::from_str(addr.trim()).ok()?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let bits = bits.unwrap_or(max);
    (bits <= max).then_some((ip, bits))
}

#[cfg(test)]
mod tests {
    use super::parse_cidr;
    use crate::config::Config;

    const BASE: &str = "[proxy]\nlisten = \"127.0.0.1:6432\"\n[[shards]]\nname = \"s0\"\nurl = \"postgres://u@h/d\"\n";

    fn error_of(text: &str) -> String {
        match Config::parse(text) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("accepted: {text}"),
        }
    }

    #[test]
    fn cidr_ranges_parse() {
        assert_eq!(parse_cidr("10.0.0.0/8").unwrap().1, 8);
        assert_eq!(parse_cidr("127.0.0.2").unwrap().1, 32);
        assert_eq!(parse_cidr("::1").unwrap().1, 128);
        assert!(parse_cidr("10.0.0.0/33").is_none());
        assert!(parse_cidr("db.internal").is_none());
        assert!(parse_cidr("10.0.0.0/").is_none());
    }

    #[test]
    fn overrides_and_tls_are_checked() {
        let ok = Config::parse(&format!(
            "{BASE}[[rate_limits]]\nper = \"client_ip\"\nrate = 5\nburst = 5\n[[rate_limits.overrides]]\nmatch = \"10.0.0.0/8\"\nrate = 50\nburst = 10\n"
        ))
        .unwrap();
        assert_eq!(ok.rate_limits[0].overrides[0].matches, "10.0.0.0/8");
        for (extra, want) in [
            (
                "[[rate_limits]]\nper = \"client_ip\"\nrate = 5\nburst = 5\n[[rate_limits.overrides]]\nmatch = \"app\"\nrate = 5\nburst = 5\n",
                "line 11, column 9: [[rate_limits.overrides]] match = \"app\" is not an IP address",
            ),
            (
                "[[rate_limits]]\nper = \"user\"\nrate = 5\nburst = 5\n[[rate_limits.overrides]]\nmatch = \"app\"\nrate = 0\nburst = 5\n",
                "line 12, column 8: [[rate_limits.overrides]] rate must be a positive number",
            ),
            (
                "[tls]\ncert = \"a.pem\"\n",
                "line 7, column 8: [tls] cert and key go together",
            ),
            (
                "[tls]\nrequire = true\n",
                "line 7, column 11: [tls] require = true needs cert and key",
            ),
            (
                "[tls]\nshards = \"verify-full\"\n",
                "line 7, column 10: [tls] shards = \"verify-full\" needs shard_ca",
            ),
            (
                "[auth]\nmethod = \"scram-sha-256\"\n",
                "line 7, column 10: [auth] lists no users",
            ),
        ] {
            let m = error_of(&format!("{BASE}{extra}"));
            assert!(m.starts_with(want), "{extra}: got {m}");
        }
    }

    #[test]
    fn buckets_that_would_take_centuries_to_fill_are_refused() {
        for (rule, field) in [
            ("rate = 1e-10\nburst = 1\n", "rate"),
            ("rate = 0.001\nburst = 4000000000\n", "rate"),
        ] {
            let m = error_of(&format!("{BASE}[[rate_limits]]\nper = \"user\"\n{rule}"));
            assert!(m.contains("seconds to fill"), "{field}: {m}");
        }
        let m = error_of(&format!(
            "{BASE}[auth]\nmethod = \"trust\"\n[[auth.users]]\nname = \"a\"\npassword = \"p\"\nmax_connections = 0\n"
        ));
        assert!(m.contains("max_connections must be at least 1"), "{m}");
    }

    #[test]
    fn trusting_everyone_beyond_loopback_must_be_written_down() {
        let open = BASE.replace("127.0.0.1:6432", "0.0.0.0:6432");
        let m = error_of(&open);
        assert!(
            m.contains("without [auth] every client would be trusted"),
            "{m}"
        );
        Config::parse(&format!("{open}[auth]\nmethod = \"trust\"\n")).unwrap();
        Config::parse(&BASE.replace("127.0.0.1:6432", "[::1]:6432")).unwrap();
    }
}
