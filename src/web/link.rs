//! The browser link of a ticket: `http://<address>/r/<transfer id>#k=<key>&e=<expiry>`.
//!
//! The session key (base64url) rides in the fragment, which a browser never sends to any server;
//! the path names the transfer, which is not secret. `e` (unix seconds) only lets the page tell
//! an expired link from a wrong one, which the sender's bare `403` does not. A link is as secret
//! as the ticket it comes from.

use base64::Engine as _;

use super::PAGE_PREFIX;
use crate::ticket::Ticket;

/// The link that opens `ticket` in a browser, at the first address the ticket names (a LAN
/// address before loopback). `None` for a folder, which the page cannot receive yet, and for a
/// ticket without a direct address (a relay or WebRTC only send).
pub fn link(ticket: &Ticket) -> Option<String> {
    if ticket.folder {
        return None;
    }
    let addr = ticket.addrs.first()?;
    let key = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(ticket.session_key.as_bytes());
    Some(format!("http://{addr}{PAGE_PREFIX}{}#k={key}&e={}", ticket.transfer_id, ticket.expires_at))
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
        let link = link(&ticket()).unwrap();
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
    fn no_link_without_an_address_or_for_a_folder() {
        assert!(link(&Ticket { addrs: vec![], ..ticket() }).is_none());
        assert!(link(&Ticket { folder: true, ..ticket() }).is_none());
        let v6 = link(&Ticket { addrs: vec!["[::1]:4000".parse().unwrap()], ..ticket() }).unwrap();
        assert!(v6.starts_with("http://[::1]:4000/r/"), "{v6}");
    }
}
