//! The relay conversation of a code: one WebSocket of its own per code, the nameplate envelopes
//! ([`crate::relay::proto`]) and the PAKE messages ([`super::pake`]) through them.
//!
//! The offering side allocates a nameplate ([`Offer::allocate`]), shows the code, and waits in
//! [`Offer::hand_over`] until someone claims the nameplate, the relay says it expired, or the
//! wait is cancelled (dropping the offer closes its connection, which ends the nameplate). The
//! redeeming side claims the nameplate and runs its half ([`redeem`]).

use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use super::{
    Purpose, ShortCode,
    pake::{Done, Exchange},
};
use crate::{
    error::TransferError,
    journal::unix_now,
    relay::proto::{Envelope, Refusal},
};

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// How long the relay has to answer an allocation or a claim (an older relay never does).
const ANSWER: Duration = Duration::from_secs(10);
/// How long each step of the exchange may take once both sides are connected.
const STEP: Duration = Duration::from_secs(30);
/// The offering side waits at most this long for a claim, even if the relay never says the
/// nameplate expired.
const MAX_WAIT: Duration = Duration::from_secs(3600);

/// What both sides learn once the code is redeemed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Redeemed {
    /// Two words derived from the PAKE key: the same on both sides unless someone in the
    /// middle guessed the code.
    pub verifier: String,
}

/// A nameplate allocated on a relay, and the code made from it.
#[derive(Debug)]
pub struct Offer {
    ws: Ws,
    relay: String,
    purpose: Purpose,
    code: ShortCode,
    /// Unix seconds: when the relay forgets the nameplate (its default TTL, 10 minutes).
    expires_at: u64,
}

async fn connect(relay: &str) -> Result<Ws, TransferError> {
    let (ws, _) = tokio::time::timeout(ANSWER, crate::channel::websocket::dial(relay))
        .await
        .map_err(|_| TransferError::ChannelUnreachable(format!("relay {relay}: no answer")))?
        .map_err(|e| TransferError::ChannelUnreachable(format!("relay {relay}: {e}")))?;
    Ok(ws)
}

async fn send(ws: &mut Ws, relay: &str, envelope: Envelope) -> Result<(), TransferError> {
    ws.send(Message::Binary(envelope.encode()))
        .await
        .map_err(|e| TransferError::ChannelUnreachable(format!("relay {relay}: {e}")))
}

/// The next nameplate envelope from the relay, within `wait`; `what` names what was awaited.
async fn next(ws: &mut Ws, relay: &str, wait: Duration, what: &str) -> Result<Envelope, TransferError> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let msg = tokio::time::timeout_at(deadline, ws.next()).await.map_err(|_| {
            TransferError::CodeRefused(format!(
                "relay {relay} did not answer in time ({what}); it may be older than this agentferry"
            ))
        })?;
        match msg {
            Some(Ok(Message::Binary(data))) => match Envelope::decode(data) {
                Ok(
                    e @ (Envelope::Allocated(..) | Envelope::Paired | Envelope::FromPeer(_) | Envelope::CodeRefused(_)),
                ) => {
                    return Ok(e);
                }
                _ => tracing::debug!("ignoring a relay message during a code exchange"),
            },
            Some(Ok(Message::Close(_))) | None => {
                return Err(TransferError::ChannelUnreachable(format!("relay {relay}: connection closed")));
            }
            Some(Err(e)) => return Err(TransferError::ChannelUnreachable(format!("relay {relay}: {e}"))),
            Some(Ok(_)) => {} // pings are answered by the WebSocket itself
        }
    }
}

/// The error a refusal from the relay means for a code numbered `nameplate`.
fn refused(code: u8, nameplate: u32) -> TransferError {
    match Refusal::from_u8(code) {
        Some(Refusal::NoSuchNameplate) => TransferError::CodeUnknown(nameplate),
        Some(Refusal::NameplateUsed) => TransferError::CodeUsed,
        Some(Refusal::NameplateExpired) => {
            TransferError::CodeExpired("no one redeemed it in time, or its side stopped offering it".into())
        }
        Some(Refusal::RateLimited) => {
            TransferError::CodeRefused("too many code requests from this address: wait a minute".into())
        }
        Some(Refusal::NameplatesFull) => {
            TransferError::CodeRefused("the relay holds as many open codes as it allows".into())
        }
        Some(Refusal::PeerGone) => {
            TransferError::PeerUnreachable("the other side left during the code exchange".into())
        }
        Some(other) => TransferError::CodeRefused(other.code().into()),
        None => TransferError::CodeRefused(format!("refusal {code}")),
    }
}

impl Offer {
    /// Connect to `relay` and allocate a nameplate for a code of `purpose`.
    pub async fn allocate(relay: &str, purpose: Purpose) -> Result<Offer, TransferError> {
        let mut ws = connect(relay).await?;
        send(&mut ws, relay, Envelope::Allocate).await?;
        let (nameplate, ttl) = match next(&mut ws, relay, ANSWER, "a nameplate").await? {
            Envelope::Allocated(n, ttl) => (n, ttl),
            Envelope::CodeRefused(code) => return Err(refused(code, 0)),
            _ => return Err(TransferError::Protocol("the relay answered an allocation out of turn".into())),
        };
        let code = ShortCode::random(nameplate);
        let expires_at = unix_now() + u64::from(ttl);
        Ok(Offer { ws, relay: relay.to_owned(), purpose, code, expires_at })
    }

    pub fn code(&self) -> &ShortCode {
        &self.code
    }

    pub fn purpose(&self) -> Purpose {
        self.purpose
    }

    pub fn relay(&self) -> &str {
        &self.relay
    }

    pub fn expires_at(&self) -> u64 {
        self.expires_at
    }

    /// Wait for the claim, run the PAKE, and hand `payload` over sealed if the claimer holds
    /// the code. A wrong code fails with `code_wrong` here and on the other side.
    pub async fn hand_over(mut self, payload: &[u8]) -> Result<Redeemed, TransferError> {
        let (relay, n) = (self.relay.clone(), self.code.nameplate);
        match next(&mut self.ws, &relay, MAX_WAIT, "a claim").await {
            Ok(Envelope::Paired) => {}
            Ok(Envelope::CodeRefused(code)) => return Err(refused(code, n)),
            Ok(_) => return Err(TransferError::Protocol("the relay sent a message before the claim".into())),
            Err(TransferError::CodeRefused(_)) => return Err(TransferError::CodeExpired("no one redeemed it".into())),
            Err(e) => return Err(e),
        }
        let (mut exchange, first) = Exchange::offer(&self.code, &relay, self.purpose, payload.to_vec());
        send(&mut self.ws, &relay, Envelope::Peer(Bytes::from(first))).await?;
        let result = run(&mut self.ws, &relay, n, &mut exchange).await;
        // Sealed and sent, and the other side gone before it acknowledged: it had everything
        // it needed, and the sender serves on regardless.
        let result = match result {
            Err(TransferError::PeerUnreachable(_)) if exchange.sealed_and_sent().is_some() => {
                tracing::info!("the code's other side left before acknowledging the payload");
                let verifier = exchange.sealed_and_sent().unwrap_or_default().to_owned();
                return Ok(Redeemed { verifier });
            }
            other => other,
        };
        let _ = self.ws.close(None).await;
        result.map(|done| Redeemed { verifier: done.verifier })
    }
}

/// Drive `exchange` until it is over, sending what it says.
async fn run(ws: &mut Ws, relay: &str, n: u32, exchange: &mut Exchange) -> Result<Done, TransferError> {
    loop {
        let msg = match next(ws, relay, STEP, "the other side's code message").await? {
            Envelope::FromPeer(msg) => msg,
            Envelope::CodeRefused(code) => return Err(refused(code, n)),
            _ => return Err(TransferError::Protocol("the relay sent a nameplate message out of turn".into())),
        };
        let out = exchange.receive(&msg);
        for m in out.send {
            send(ws, relay, Envelope::Peer(Bytes::from(m))).await?;
        }
        if let Some(outcome) = out.outcome {
            let _ = ws.flush().await;
            return outcome;
        }
    }
}

/// Redeem `code` of `purpose` on `relay`: the payload the other side sealed, and the verifier.
pub async fn redeem(relay: &str, code: &ShortCode, purpose: Purpose) -> Result<(Vec<u8>, Redeemed), TransferError> {
    let mut ws = connect(relay).await?;
    let n = code.nameplate;
    send(&mut ws, relay, Envelope::Claim(n)).await?;
    match next(&mut ws, relay, ANSWER, "the claim").await? {
        Envelope::Paired => {}
        Envelope::CodeRefused(why) => return Err(refused(why, n)),
        _ => return Err(TransferError::Protocol("the relay answered a claim out of turn".into())),
    }
    let (mut exchange, first) = Exchange::redeem(code, relay, purpose);
    send(&mut ws, relay, Envelope::Peer(Bytes::from(first))).await?;
    let done = run(&mut ws, relay, n, &mut exchange).await;
    // The acknowledgement was sent before the close, on the same connection: the relay passes
    // it on before it sees the close.
    let _ = ws.close(None).await;
    let done = done?;
    Ok((done.payload.unwrap_or_default(), Redeemed { verifier: done.verifier }))
}
