//! The relay's STUN responder: binding requests on UDP at the relay's own port number.
//!
//! Two nodes that share a relay learn their public (server-reflexive) addresses from it and can
//! hole-punch with nothing else configured, as iroh's relays allow. It answers binding requests
//! only (RFC 8489: XOR-MAPPED-ADDRESS and FINGERPRINT), holds no state, and answers at most
//! `MAX_PER_SECOND` requests a second so it cannot be turned into a flood. Encoding comes from
//! webrtc-rs's STUN crate, the same code the ICE agents on both ends use.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use rtc::stun::{
    fingerprint::FINGERPRINT,
    message::{BINDING_REQUEST, BINDING_SUCCESS, Message, is_stun_message},
    xoraddr::XorMappedAddress,
};
use tokio::net::UdpSocket;

/// Answers per second at most; requests beyond it are dropped (clients retransmit).
const MAX_PER_SECOND: u32 = 2000;
/// Largest request read; a binding request is 20 bytes plus a few attributes.
const MAX_REQUEST: usize = 548;

/// The answer to one datagram from `from`, if it is a binding request.
pub fn answer(request: &[u8], from: SocketAddr) -> Option<Vec<u8>> {
    if !is_stun_message(request) {
        return None;
    }
    let mut message = Message::new();
    message.unmarshal_binary(request).ok()?;
    if message.typ != BINDING_REQUEST {
        return None;
    }
    let mut response = Message::new();
    response
        .build(&[
            Box::new(message.transaction_id),
            Box::new(BINDING_SUCCESS),
            Box::new(XorMappedAddress { ip: from.ip(), port: from.port() }),
            Box::new(FINGERPRINT),
        ])
        .ok()?;
    Some(response.raw)
}

/// Answer binding requests on `socket` until dropped.
pub async fn serve(socket: UdpSocket) {
    let mut buf = vec![0u8; MAX_REQUEST];
    let (mut window, mut answered) = (Instant::now(), 0u32);
    loop {
        let Ok((n, from)) = socket.recv_from(&mut buf).await else { continue };
        if window.elapsed() >= Duration::from_secs(1) {
            (window, answered) = (Instant::now(), 0);
        }
        if answered >= MAX_PER_SECOND {
            continue;
        }
        if let Some(response) = answer(&buf[..n], from) {
            answered += 1;
            let _ = socket.send_to(&response, from).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtc::stun::message::{Getter, TransactionId};

    #[test]
    fn a_binding_request_gets_the_address_it_came_from() {
        let mut request = Message::new();
        request.build(&[Box::new(TransactionId::new()), Box::new(BINDING_REQUEST)]).unwrap();
        for from in ["198.51.100.7:40000", "[2001:db8::5]:3478"] {
            let from: SocketAddr = from.parse().unwrap();
            let raw = answer(&request.raw, from).expect("an answer");
            let mut response = Message::new();
            response.unmarshal_binary(&raw).unwrap();
            assert_eq!(response.typ, BINDING_SUCCESS);
            assert_eq!(response.transaction_id, request.transaction_id);
            let mut mapped = XorMappedAddress::default();
            mapped.get_from(&response).unwrap();
            assert_eq!(SocketAddr::new(mapped.ip, mapped.port), from);
            rtc::stun::fingerprint::FINGERPRINT.check(&response).unwrap();
        }
    }

    #[test]
    fn anything_else_gets_no_answer() {
        assert!(answer(b"GET / HTTP/1.1\r\n\r\n", "127.0.0.1:1".parse().unwrap()).is_none());
        let mut success = Message::new();
        success.build(&[Box::new(TransactionId::new()), Box::new(BINDING_SUCCESS)]).unwrap();
        assert!(answer(&success.raw, "127.0.0.1:1".parse().unwrap()).is_none());
        assert!(answer(&[0u8; 20], "127.0.0.1:1".parse().unwrap()).is_none());
    }
}
