//! The sender's end: answer offers that arrive through the channel, and bridge each data channel
//! to a session of the engine.
//!
//! One answerer runs per transfer: an authentic new offer (the receiver reconnecting or probing)
//! replaces the connection of the previous one. An offer that fails authentication is answered
//! with a sealed `tampered`, so the receiver fails at once with `integrity_mismatch` instead of
//! waiting out its budget.
//!
//! Once the receiver's confirmation has been taken, the answerer closes its data channel before
//! the sender stops: that close is how the receiver learns its confirmation arrived. SCTP alone
//! cannot tell it: a lone message is acknowledged only after the 200 ms delayed-ack timer, by
//! which time a sender that is done has exited, and webrtc-rs puts nothing on the wire when a
//! peer connection closes.

use std::{collections::VecDeque, sync::Arc, time::Duration};

use tokio::sync::watch;
use webrtc::{
    data_channel::{DataChannel, DataChannelEvent},
    peer_connection::RTCSessionDescription,
};

use super::{
    IceConfig, IceServer, MESSAGE_SIZE, Route,
    fragment::pieces,
    link::GATHER_BUDGET,
    peer::{Peer, flush_relayed, webrtc_error},
    signal::{Body, Direction, Signal, Signalling},
};
use crate::{
    channel::{Channel, ChannelHint},
    core::PathKind,
    error::TransferError,
    task::AbortOnDrop,
    transport::{Serve, Session},
};

/// How long an answered offer may take to open its data channel.
const OPEN_BUDGET: Duration = Duration::from_secs(15);
/// Attempt ids remembered, so a replayed offer is not answered twice.
const SEEN: usize = 64;
/// How long closing the data channel after the confirmation may take: a local step (the close
/// goes out in the connection's next write pass), bounded in case the connection is wedged.
pub const GOODBYE_BUDGET: Duration = Duration::from_secs(1);

/// Answer WebRTC offers for `serve` on `channel` until `confirmed` resolves (the receiver's
/// confirmation was taken, on any path) or the returned future is dropped; on `confirmed` the
/// data channel in use is closed first. With `accept` false (the sender pinned another path)
/// every offer gets a sealed `declined`.
pub async fn serve(
    channel: Channel,
    hint: ChannelHint,
    serve: Arc<dyn Serve>,
    signalling: Signalling,
    ice: IceConfig,
    accept: bool,
    confirmed: impl Future<Output = ()>,
) {
    let id = serve.transfer_id();
    let ice = ice.with_default_stun(IceServer::of_channel(&hint));
    let signalling = Arc::new(signalling);
    let mut offers = channel.subscribe(signalling.offers).await;
    let mut seen = VecDeque::new();
    let mut current: Option<AbortOnDrop> = None;
    let (goodbye, goodbye_rx) = watch::channel(false);
    tokio::pin!(confirmed);
    loop {
        let message = tokio::select! {
            message = offers.recv() => match message {
                Some(message) => message,
                None => break,
            },
            () = &mut confirmed => {
                goodbye.send_replace(true);
                if let Some(AbortOnDrop(task)) = &mut current {
                    let _ = tokio::time::timeout(GOODBYE_BUDGET, task).await;
                }
                break;
            }
        };
        let reply = |attempt: String, body: Body| {
            let sealed = signalling.seal(Direction::ToReceiver, &Signal { attempt, body });
            let (channel, answers) = (channel.clone(), signalling.answers.id());
            async move {
                if let Err(e) = channel.send(answers, sealed).await {
                    tracing::debug!("webrtc signalling reply failed: {e}");
                }
            }
        };
        let signal = match signalling.open(Direction::ToSender, &message) {
            Ok(signal) => signal,
            Err(e) => {
                tracing::warn!(transfer = %id, code = e.code(), "{e}");
                reply(String::new(), Body::Tampered).await;
                continue;
            }
        };
        let Body::Offer { sdp } = signal.body else { continue };
        if seen.contains(&signal.attempt) {
            continue;
        }
        if seen.len() == SEEN {
            seen.pop_front();
        }
        seen.push_back(signal.attempt.clone());
        if !accept {
            reply(signal.attempt, Body::Declined).await;
            continue;
        }
        drop(current.take()); // the previous connection closes with its task
        let (channel, signalling, serve, ice, goodbye) =
            (channel.clone(), Arc::clone(&signalling), Arc::clone(&serve), ice.clone(), goodbye_rx.clone());
        current = Some(AbortOnDrop(tokio::spawn(async move {
            if let Err(e) = answer(channel, &signalling, serve, &ice, signal.attempt, sdp, goodbye).await {
                tracing::debug!(transfer = %id, code = e.code(), "webrtc answer ended: {e}");
            }
        })));
    }
    drop(current);
}

async fn answer(
    channel: Channel,
    signalling: &Signalling,
    serve: Arc<dyn Serve>,
    ice: &IceConfig,
    attempt: String,
    offer: String,
    mut goodbye: watch::Receiver<bool>,
) -> Result<(), TransferError> {
    let mut peer = Peer::new(ice).await?;
    let offer = RTCSessionDescription::offer(offer).map_err(|e| TransferError::Protocol(format!("offer: {e}")))?;
    peer.pc.set_remote_description(offer).await.map_err(|e| webrtc_error("offer", e))?;
    let answer = peer.pc.create_answer(None).await.map_err(|e| webrtc_error("answer", e))?;
    peer.pc.set_local_description(answer).await.map_err(|e| webrtc_error("answer", e))?;
    let sdp = peer.gathered_sdp(GATHER_BUDGET).await?;
    let answer = signalling.seal(Direction::ToReceiver, &Signal { attempt, body: Body::Answer { sdp } });
    channel.send(signalling.answers.id(), answer).await?;
    drop(channel);

    let failed = peer.failed();
    let data = tokio::select! {
        data = tokio::time::timeout(OPEN_BUDGET, peer.channels.recv()) => {
            data.ok().flatten().ok_or_else(|| webrtc_error("data channel", "not opened in time"))?
        }
        failed = failed => return Err(failed),
    };
    // What the receiver's SDP says it accepts, and no more than we chose.
    let max = match peer.pc.sctp().await {
        Some(sctp) => sctp.max_message_size().await.map(|m| m as usize).unwrap_or(MESSAGE_SIZE),
        None => MESSAGE_SIZE,
    };
    let max = max.clamp(1024, MESSAGE_SIZE);
    let route = peer.route().await;
    tracing::debug!(transfer = %serve.transfer_id(), route = route.map(|r| r.as_str()), max, "webrtc answered");
    let session = serve.open_session(PathKind::Webrtc);
    let relayed = Arc::clone(&data);
    let flush = async move {
        match route {
            Some(Route::Turn) => flush_relayed(relayed).await,
            _ => std::future::pending().await,
        }
    };
    let goodbye = async move {
        let _ = goodbye.wait_for(|bye| *bye).await;
    };
    tokio::select! {
        () = bridge(Arc::clone(&data), session, max) => Ok(()),
        failed = peer.failed() => Err(failed),
        () = flush => Err(webrtc_error("data channel", "closed")),
        () = goodbye => close(&data).await,
    }
}

/// Close `data` and wait until the close has gone out: webrtc-rs reports the channel closed in
/// the same pass of its driver that wrote the stream reset, after writing it.
async fn close(data: &Arc<dyn DataChannel>) -> Result<(), TransferError> {
    data.close().await.map_err(|e| webrtc_error("data channel", e))?;
    loop {
        match data.poll().await {
            Some(DataChannelEvent::OnClose) | None => return Ok(()),
            _ => {}
        }
    }
}

/// Control frames from the data channel into the session, its frames back, until either ends.
async fn bridge(data: Arc<dyn DataChannel>, session: Session, max: usize) {
    let Session { controls, mut frames } = session;
    let inbound = async {
        loop {
            let message = match data.poll().await {
                Some(DataChannelEvent::OnMessage(message)) => message,
                Some(DataChannelEvent::OnClose) | None => break,
                _ => continue,
            };
            if controls.send(message.data.freeze()).await.is_err() {
                break;
            }
        }
        drop(controls); // the session ends once it has sent what was asked
    };
    let outbound = async {
        while let Some(frame) = frames.recv().await {
            for piece in pieces(frame, max) {
                // Waits while the send buffer is full: the bound on what this side holds.
                if data.send(piece).await.is_err() {
                    return;
                }
            }
        }
    };
    tokio::join!(inbound, outbound);
}
