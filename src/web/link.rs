//! The browser link of a ticket: `http://<address>/r/<transfer id>#k=<key>&e=<expiry>`.
//!
//! The session key (base64url) rides in the fragment, which a browser never sends to any server;
//! the path names the transfer, which is not secret. `e` (unix seconds) only lets the page tell
//! an expired link from a wrong one, which the sender's bare `403` does not. A link is as secret
//! as the ticket it comes from.
//!
//! With a password the fragment's `k` is the key XOR [`link_password_mask`] of the password, and
//! `p=scrypt15` tells the page to ask for it: the link alone opens nothing, and each guess costs a
//! request the sender rate-limits (see `transport::http`).

use base64::Engine as _;

use super::PAGE_PREFIX;
use crate::{crypto::link_password_mask, ticket::Ticket};

/// The link that opens `ticket` in a browser, at the first address the ticket names (a LAN
/// address before loopback), protected by `password` if one is given. `None` for a folder,
/// which the page cannot receive yet, and for a ticket without a direct address (a relay or
/// WebRTC only send).
pub fn link(ticket: &Ticket, password: Option<&str>) -> Option<String> {
    if ticket.folder {
        return None;
    }
    let addr = ticket.addrs.first()?;
    let mut key = *ticket.session_key.as_bytes();
    if let Some(password) = password {
        for (k, m) in key.iter_mut().zip(link_password_mask(password, &ticket.transfer_id)) {
            *k ^= m;
        }
    }
    let key = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key);
    let asks = if password.is_some() { "&p=scrypt15" } else { "" };
    Some(format!("http://{addr}{PAGE_PREFIX}{}#k={key}&e={}{asks}", ticket.transfer_id, ticket.expires_at))
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
    fn no_link_without_an_address_or_for_a_folder() {
        assert!(link(&Ticket { addrs: vec![], ..ticket() }, None).is_none());
        assert!(link(&Ticket { folder: true, ..ticket() }, None).is_none());
        let v6 = link(&Ticket { addrs: vec!["[::1]:4000".parse().unwrap()], ..ticket() }, None).unwrap();
        assert!(v6.starts_with("http://[::1]:4000/r/"), "{v6}");
    }
}
