//! The browser link of a ticket: `http://<address>/r/<transfer id>#k=<key>&e=<expiry>`, or,
//! when the sender serves on a relay, `http(s)://<relay>/r/<transfer id>#k=…&e=…&via=relay`.
//!
//! The relay is where both sides can reach when the person cannot dial the sender (the usual
//! case for an agent on another network), so a sender with a relay hands out the relay's link:
//! the relay serves the same page, and the page moves the sealed frames through the transfer's
//! mailboxes over WebSocket. A relay whose URL has a path (behind a proxy) cannot serve the
//! page's files at their fixed paths, so a send through one gets the direct link.
//!
//! The session key (base64url) rides in the fragment, which a browser never sends to any server;
//! the path names the transfer, which is not secret. `e` (unix seconds) only lets the page tell
//! an expired link from a wrong one, which the sender's bare `403` does not. A link is as secret
//! as the ticket it comes from.
//!
//! With a password the fragment's `k` is the key XOR [`link_password_mask`] of the password, and
//! `p=scrypt15` tells the page to ask for it: the link alone opens nothing, and each guess costs a
//! request the sender rate-limits (see `transport::http`). A password link is therefore always
//! direct: through a relay nobody could count guesses, and whoever runs the relay sees mailbox
//! ids that would let it test guesses offline.

use base64::Engine as _;

use super::PAGE_PREFIX;
use crate::{crypto::link_password_mask, ticket::Ticket};

/// The link that opens `ticket` in a browser: at the relay the ticket names, or else at its
/// first address (a LAN address before loopback); protected by `password` if one is given,
/// which makes it direct; a folder's says so (`&folder=1`), and the page saves it as a zip.
/// `None` when the ticket names neither a usable relay nor an address (a WebRTC-only send).
pub fn link(ticket: &Ticket, password: Option<&str>) -> Option<String> {
    let relay = ticket.channel.as_deref().and_then(relay_origin).filter(|_| password.is_none());
    let (origin, via) = match relay {
        Some(origin) => (origin, "&via=relay"),
        None => (format!("http://{}", ticket.addrs.first()?), ""),
    };
    let mut key = *ticket.session_key.as_bytes();
    if let Some(password) = password {
        for (k, m) in key.iter_mut().zip(link_password_mask(password, &ticket.transfer_id)) {
            *k ^= m;
        }
    }
    let key = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key);
    let asks = if password.is_some() { "&p=scrypt15" } else { "" };
    let folder = if ticket.folder { "&folder=1" } else { "" };
    Some(format!("{origin}{PAGE_PREFIX}{}#k={key}&e={}{asks}{via}{folder}", ticket.transfer_id, ticket.expires_at))
}

/// The web origin of a relay URL (`ws://host:port` → `http://host:port`, `wss://` →
/// `https://`), if the relay sits at the root of it.
pub(super) fn relay_origin(url: &str) -> Option<String> {
    let (scheme, rest) = match url.split_once("://")? {
        ("ws", rest) => ("http", rest),
        ("wss", rest) => ("https", rest),
        _ => return None,
    };
    let rest = rest.trim_end_matches('/');
    (!rest.is_empty() && !rest.contains(['/', '?', '#', '@'])).then(|| format!("{scheme}://{rest}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{crypto::SessionKey, id::TransferId};

    fn ticket() -> Ticket {
        Ticket {
            transfer_id: TransferId([0xab; 16]),
            session_key: SessionKey::from_bytes([0xff; 32]),
            expires_at: 1_700_000_000,
            size: 5,
            chunk_size: 1024,
            name: "a.txt".into(),
            addrs: vec!["192.168.1.5:4000".parse().unwrap(), "[::1]:4000".parse().unwrap()],
            channel: None,
            folder: false,
            mode: None,
        }
    }

    #[test]
    fn the_key_rides_in_the_fragment() {
        let link = link(&ticket(), None).unwrap();
        assert_eq!(
            link,
            format!(
                "http://192.168.1.5:4000/r/{}#k=__________________________________________8&e=1700000000",
                "ab".repeat(16)
            )
        );
        let (before, _) = link.split_once('#').unwrap();
        assert!(!before.contains("__"), "the key is outside the fragment");
    }

    #[test]
    fn a_password_link_holds_the_key_only_masked() {
        let t = ticket();
        let plain = link(&t, None).unwrap();
        let masked = link(&t, Some("correct horse")).unwrap();
        assert!(masked.ends_with("&p=scrypt15"), "{masked}");
        let key = |l: &str| l.split("#k=").nth(1).unwrap().split('&').next().unwrap().to_owned();
        assert_ne!(key(&plain), key(&masked));
        assert_ne!(key(&masked), key(&link(&t, Some("correct horsf")).unwrap()));
        // Unmasking with the same password gives the key back.
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(key(&masked)).unwrap();
        let mask = link_password_mask("correct horse", &t.transfer_id);
        let unmasked: Vec<u8> = bytes.iter().zip(mask).map(|(b, m)| b ^ m).collect();
        assert_eq!(unmasked, t.session_key.as_bytes());
    }

    #[test]
    fn a_sender_on_a_relay_hands_out_the_relays_link_unless_a_password_needs_the_sender() {
        let relayed = Ticket { channel: Some("ws://relay.example:9000".into()), ..ticket() };
        let link = link(&relayed, None).unwrap();
        assert!(link.starts_with(&format!("http://relay.example:9000/r/{}#k=", "ab".repeat(16))), "{link}");
        assert!(link.ends_with("&via=relay"), "{link}");
        let tls = Ticket { channel: Some("wss://relay.example".into()), ..ticket() };
        assert!(super::link(&tls, None).unwrap().starts_with("https://relay.example/r/"));
        let guarded = super::link(&relayed, Some("pw")).unwrap();
        assert!(guarded.starts_with("http://192.168.1.5:4000/r/") && !guarded.contains("via="), "{guarded}");
        for direct in ["ws://relay.example/prefix", "folder:/shared", "nats://n.example:4222"] {
            let t = Ticket { channel: Some(direct.into()), ..ticket() };
            assert!(super::link(&t, None).unwrap().starts_with("http://192.168.1.5:4000/"), "{direct}");
        }
        let relay_only = Ticket { addrs: vec![], ..relayed };
        assert!(super::link(&relay_only, None).unwrap().starts_with("http://relay.example:9000/"));
    }

    #[test]
    fn no_link_without_an_address_and_a_folder_says_it_is_one() {
        assert!(link(&Ticket { addrs: vec![], ..ticket() }, None).is_none());
        assert!(link(&Ticket { folder: true, ..ticket() }, None).unwrap().ends_with("&folder=1"));
        let v6 = link(&Ticket { addrs: vec!["[::1]:4000".parse().unwrap()], ..ticket() }, None).unwrap();
        assert!(v6.starts_with("http://[::1]:4000/r/"), "{v6}");
    }
}
