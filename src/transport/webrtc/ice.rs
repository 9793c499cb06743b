//! STUN and TURN servers for ICE, as users give them: `stun:HOST:PORT` and
//! `turn:USER:PASS@HOST:PORT`.
//!
//! A TURN password is a secret: [`IceServer`]'s `Debug` and `Display` show the server only, so it
//! cannot reach a log line, an event or a tool result by accident. webrtc-rs's TURN client speaks
//! UDP only, so `turns:` and `?transport=tcp` are refused here with that reason rather than
//! skipped later with a warning nobody reads.

use std::{fmt, str::FromStr};

use webrtc::peer_connection::RTCIceServer;

use crate::{channel::ChannelHint, error::TransferError};

/// The port STUN and TURN use when a URL names none (RFC 8489, RFC 8656).
const DEFAULT_PORT: u16 = 3478;

/// One STUN or TURN server.
#[derive(Clone, PartialEq, Eq)]
pub struct IceServer {
    turn: bool,
    /// `host:port`, IPv6 hosts in brackets.
    addr: String,
    username: String,
    credential: String,
}

fn invalid(url: &str, why: &str) -> TransferError {
    // Never echo the URL itself: it may hold a password.
    let scheme = url.split(':').next().unwrap_or("");
    TransferError::InvalidArgument(format!("ICE server ({scheme}:…): {why}"))
}

/// `HOST[:PORT]` → `host:port`, checking both parts.
fn host_port(url: &str, rest: &str) -> Result<String, TransferError> {
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or_else(|| invalid(url, "unclosed `[` in the host"))?;
        (format!("[{host}]"), after.strip_prefix(':'))
    } else {
        match rest.rsplit_once(':') {
            Some((host, port)) => (host.to_owned(), Some(port)),
            None => (rest.to_owned(), None),
        }
    };
    if host.is_empty() || host.contains(['/', '@', '?', ' ']) {
        return Err(invalid(url, "expected HOST:PORT after the scheme"));
    }
    let port = match port {
        Some(p) => p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(|| invalid(url, "the port is not a number"))?,
        None => DEFAULT_PORT,
    };
    Ok(format!("{host}:{port}"))
}

impl FromStr for IceServer {
    type Err = TransferError;

    fn from_str(url: &str) -> Result<Self, TransferError> {
        let url = url.trim();
        if url.starts_with("turns:") || url.contains("transport=tcp") {
            return Err(invalid(url, "TURN over TCP or TLS is not supported (webrtc-rs's TURN client is UDP-only)"));
        }
        if let Some(rest) = url.strip_prefix("stun:") {
            return Ok(IceServer {
                turn: false,
                addr: host_port(url, rest)?,
                username: String::new(),
                credential: String::new(),
            });
        }
        let Some(rest) = url.strip_prefix("turn:") else {
            return Err(invalid(url, "use stun:HOST:PORT or turn:USER:PASS@HOST:PORT"));
        };
        let rest = rest.strip_suffix("?transport=udp").unwrap_or(rest);
        let (auth, server) =
            rest.rsplit_once('@').ok_or_else(|| invalid(url, "TURN needs USER:PASS@ before the host"))?;
        let (username, credential) = auth.split_once(':').ok_or_else(|| invalid(url, "TURN needs USER:PASS"))?;
        if username.is_empty() || credential.is_empty() {
            return Err(invalid(url, "TURN needs a user name and a password"));
        }
        Ok(IceServer {
            turn: true,
            addr: host_port(url, server)?,
            username: username.to_owned(),
            credential: credential.to_owned(),
        })
    }
}

impl IceServer {
    /// A STUN server at `addr` (`host:port`).
    pub fn stun(addr: &str) -> Result<IceServer, TransferError> {
        format!("stun:{addr}").parse()
    }

    /// The STUN server of a relay: `agentferry relay` answers binding requests on UDP at its own
    /// port, so a node that shares a relay with its peer can hole-punch with nothing else set up.
    pub fn of_channel(hint: &ChannelHint) -> Option<IceServer> {
        let ChannelHint::Relay(url) = hint else { return None };
        let rest = url.strip_prefix("ws://")?;
        let authority = rest.split('/').next()?;
        // Only an explicit port: the relay listens on one; a bare host is behind a web server.
        let has_port = authority.rsplit_once(':').is_some_and(|(host, _)| !host.is_empty() && !host.ends_with('['));
        has_port.then(|| IceServer::stun(authority).ok()).flatten()
    }

    pub fn is_turn(&self) -> bool {
        self.turn
    }

    /// The form webrtc-rs takes: the URL without credentials, which go beside it.
    pub fn to_rtc(&self) -> RTCIceServer {
        RTCIceServer {
            urls: vec![format!("{}:{}", if self.turn { "turn" } else { "stun" }, self.addr)],
            username: self.username.clone(),
            credential: self.credential.clone(),
        }
    }
}

/// The server only (`turn:HOST:PORT`), never the user name or password.
impl fmt::Display for IceServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", if self.turn { "turn" } else { "stun" }, self.addr)
    }
}

impl fmt::Debug for IceServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IceServer({self})")
    }
}

/// Parse a comma-separated list (`AGENTFERRY_ICE`, a config string).
pub fn parse_list(list: &str) -> Result<Vec<IceServer>, TransferError> {
    list.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::parse).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stun_and_turn_parse_and_never_show_the_password() {
        let stun: IceServer = "stun:203.0.113.1:3478".parse().unwrap();
        assert!(!stun.is_turn());
        assert_eq!(stun.to_rtc().urls, ["stun:203.0.113.1:3478"]);
        let turn: IceServer = "turn:alice:s3cr3t:x@203.0.113.1:3479".parse().unwrap();
        assert!(turn.is_turn());
        let rtc = turn.to_rtc();
        assert_eq!((rtc.urls[0].as_str(), rtc.username.as_str()), ("turn:203.0.113.1:3479", "alice"));
        assert_eq!(rtc.credential, "s3cr3t:x");
        for shown in [turn.to_string(), format!("{turn:?}")] {
            assert!(!shown.contains("s3cr3t") && !shown.contains("alice"), "{shown}");
        }
        assert_eq!("stun:[2001:db8::1]".parse::<IceServer>().unwrap().to_string(), "stun:[2001:db8::1]:3478");
    }

    #[test]
    fn unusable_forms_are_refused_without_echoing_them() {
        for bad in [
            "turns:u:p@h:5349",
            "turn:u:p@h:3478?transport=tcp",
            "turn:h:3478",
            "turn:u:@h:1",
            "stun:",
            "stun:h:port",
            "http://h",
        ] {
            let e = bad.parse::<IceServer>().unwrap_err();
            assert_eq!(e.code(), "invalid_argument", "{bad}");
            assert!(!e.to_string().contains("u:p"), "{e}");
        }
        assert_eq!(parse_list(" stun:a:1 , ,stun:b:2").unwrap().len(), 2);
    }

    #[test]
    fn a_relay_doubles_as_the_default_stun_server() {
        let relay: ChannelHint = "ws://198.51.100.7:4443".parse().unwrap();
        assert_eq!(IceServer::of_channel(&relay).unwrap().to_string(), "stun:198.51.100.7:4443");
        assert!(IceServer::of_channel(&"ws://relay.example".parse().unwrap()).is_none());
        assert!(IceServer::of_channel(&"folder:/tmp/x".parse().unwrap()).is_none());
    }
}
