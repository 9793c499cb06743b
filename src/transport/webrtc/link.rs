//! The receiver's end: offer, connect, and the [`WebrtcLink`] the engine drives.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::{Bytes, BytesMut};
use futures_util::future::BoxFuture;
use tokio::sync::{mpsc, watch};
use webrtc::{
    data_channel::{DataChannel, DataChannelEvent, RTCDataChannelInit},
    peer_connection::{RTCPeerConnectionState, RTCSessionDescription},
};

use super::{
    IceConfig, IceServer, LABEL, Route,
    fragment::Reassembly,
    peer::{Peer, flush_relayed, webrtc_error},
    signal::{Body, Direction, Signal, Signalling, new_attempt},
};
use crate::{
    channel::{Channel, ChannelHint},
    core::PathKind,
    error::TransferError,
    task::AbortOnDrop,
    transport::{AttemptReport, Connected, Incoming, Link},
};

/// How long candidate gathering may take before the offer goes out with what it has.
pub(super) const GATHER_BUDGET: Duration = Duration::from_secs(2);
/// How long the sender may take to answer an offer: its gathering budget and a margin.
const ANSWER_BUDGET: Duration = Duration::from_secs(4);
/// Items buffered between the data channel and the receiver's driver.
const INCOMING_DEPTH: usize = 2;

/// The receiver's link over a data channel.
pub struct WebrtcLink {
    channel: Arc<dyn DataChannel>,
    hint: String,
    route: Option<Route>,
    _reader: AbortOnDrop,
    /// Set by the reader when the sender closes the data channel.
    closed: watch::Receiver<bool>,
    // Last: dropping it closes the connection after the reader has stopped.
    _peer: Peer,
}

impl Link for WebrtcLink {
    fn kind(&self) -> PathKind {
        PathKind::Webrtc
    }

    fn peer(&self) -> String {
        self.hint.clone()
    }

    fn route(&self) -> Option<&'static str> {
        self.route.map(Route::as_str)
    }

    fn send(&mut self, control: Bytes) -> BoxFuture<'_, Result<(), TransferError>> {
        Box::pin(async move {
            self.channel.send(BytesMut::from(&control[..])).await.map_err(|e| webrtc_error("data channel", e))
        })
    }

    fn send_last(&mut self, control: Bytes) -> BoxFuture<'_, Result<(), TransferError>> {
        Box::pin(async move {
            self.channel.send(BytesMut::from(&control[..])).await.map_err(|e| webrtc_error("data channel", e))?;
            // The sender closes the channel once it has taken the confirmation (see `serve`); its
            // SCTP acknowledgement would come too late, after it exited. The caller bounds the wait.
            let mut closed = self.closed.clone();
            match closed.wait_for(|closed| *closed).await {
                Ok(_) => Ok(()),
                Err(_) => Err(webrtc_error("connection", "lost before the sender closed the channel")),
            }
        })
    }
}

/// Open the channel `hint`, offer a peer connection to the sender through it, and once the data
/// channel opens post `hello` and wait for a frame that passes `check` (the sender's sealed
/// manifest). Everything within `budget`.
#[allow(clippy::too_many_arguments)]
pub async fn connect(
    hint: &str,
    signalling: Signalling,
    ice: &IceConfig,
    hello: Bytes,
    max_chunk: usize,
    budget: Duration,
    check: impl Fn(&mut BytesMut) -> Result<(), TransferError>,
) -> (Result<Connected, TransferError>, AttemptReport) {
    let started = Instant::now();
    let attempt = attempt(hint, signalling, ice, hello, max_chunk, check);
    let result = tokio::time::timeout(budget, attempt).await.unwrap_or_else(|_| {
        Err(TransferError::PeerUnreachable(format!("no WebRTC connection through {hint} within {budget:?}")))
    });
    let report = AttemptReport {
        kind: PathKind::Webrtc,
        peer: hint.to_owned(),
        elapsed: started.elapsed(),
        error: result.as_ref().err().cloned(),
        route: result.as_ref().ok().and_then(|c| c.link.route()),
    };
    (result, report)
}

async fn attempt(
    hint: &str,
    signalling: Signalling,
    ice: &IceConfig,
    hello: Bytes,
    max_chunk: usize,
    check: impl Fn(&mut BytesMut) -> Result<(), TransferError>,
) -> Result<Connected, TransferError> {
    let parsed: ChannelHint = hint.parse()?;
    let channel = Channel::open(&parsed).await?;
    let mut answers = channel.subscribe(signalling.answers).await;
    let mut peer = Peer::new(&ice.with_default_stun(IceServer::of_channel(&parsed))).await?;
    let init = RTCDataChannelInit { ordered: true, ..Default::default() };
    let data = peer.pc.create_data_channel(LABEL, Some(init)).await.map_err(|e| webrtc_error("setup", e))?;
    let offer = peer.pc.create_offer(None).await.map_err(|e| webrtc_error("offer", e))?;
    peer.pc.set_local_description(offer).await.map_err(|e| webrtc_error("offer", e))?;
    let sdp = peer.gathered_sdp(GATHER_BUDGET).await?;

    let attempt = new_attempt();
    let answer_by = tokio::time::Instant::now() + ANSWER_BUDGET;
    let offer = Signal { attempt: attempt.clone(), body: Body::Offer { sdp } };
    channel.send(signalling.offers.id(), signalling.seal(Direction::ToSender, &offer)).await?;
    let answer = loop {
        // The sender answers once it has gathered (at most GATHER_BUDGET): no answer by
        // ANSWER_BUDGET means the channel works but nobody serves the transfer on it.
        let message = match tokio::time::timeout_at(answer_by, answers.recv()).await {
            Ok(Some(message)) => message,
            Ok(None) => return Err(TransferError::PeerUnreachable(format!("{hint} closed"))),
            Err(_) => return Err(TransferError::NotServing(format!("no sender answers WebRTC offers on {hint}"))),
        };
        let signal = signalling.open(Direction::ToReceiver, &message)?;
        match signal.body {
            Body::Answer { sdp } if signal.attempt == attempt => break sdp,
            Body::Declined if signal.attempt == attempt => {
                return Err(TransferError::PathUnavailable("webrtc (the sender serves other paths only)".into()));
            }
            Body::Tampered => {
                return Err(TransferError::IntegrityMismatch(
                    "the sender got a WebRTC offer that failed authentication: the channel altered it".into(),
                ));
            }
            _ => {} // an answer to an earlier attempt
        }
    };
    channel.unsubscribe(signalling.answers).await;
    drop(channel);
    let answer = RTCSessionDescription::answer(answer).map_err(|e| TransferError::Protocol(format!("answer: {e}")))?;
    peer.pc.set_remote_description(answer).await.map_err(|e| webrtc_error("answer", e))?;

    let opened = async {
        loop {
            match data.poll().await {
                Some(DataChannelEvent::OnOpen) => return Ok(()),
                Some(DataChannelEvent::OnClose) | None => return Err(webrtc_error("data channel", "closed")),
                _ => {}
            }
        }
    };
    tokio::select! {
        opened = opened => opened?,
        failed = peer.failed() => return Err(failed),
    }

    data.send(BytesMut::from(&hello[..])).await.map_err(|e| webrtc_error("data channel", e))?;
    let mut reassembly = Reassembly::new(max_chunk);
    let manifest = 'answer: loop {
        match data.poll().await {
            Some(DataChannelEvent::OnMessage(message)) => {
                let frames = reassembly.push(message.data).map_err(|e| TransferError::Protocol(format!("{e}")))?;
                for mut frame in frames {
                    if check(&mut frame).is_ok() {
                        break 'answer frame;
                    }
                }
            }
            Some(DataChannelEvent::OnClose) | None => return Err(webrtc_error("data channel", "closed")),
            _ => {}
        }
    };
    let route = peer.route().await;
    tracing::debug!(route = route.map(Route::as_str), "webrtc connected");
    if ice.refuse_turn && route == Some(Route::Turn) {
        return Err(TransferError::PathUnavailable(
            "webrtc only through the sender's TURN server; the chunk relay is faster".into(),
        ));
    }
    let (incoming_tx, incoming) = mpsc::channel(INCOMING_DEPTH);
    let (closed_tx, closed) = watch::channel(false);
    let reader = tokio::spawn(read(Arc::clone(&data), peer.state.clone(), reassembly, incoming_tx, closed_tx, route));
    let link =
        WebrtcLink { channel: data, hint: hint.to_owned(), route, _reader: AbortOnDrop(reader), closed, _peer: peer };
    Ok(Connected { link: Box::new(link), incoming, manifest })
}

/// Whole frames from the data channel into `incoming`, until the channel or the connection ends;
/// `closed` is set when the sender closes the channel.
async fn read(
    data: Arc<dyn DataChannel>,
    state: watch::Receiver<RTCPeerConnectionState>,
    mut reassembly: Reassembly,
    incoming: mpsc::Sender<Incoming>,
    closed: watch::Sender<bool>,
    route: Option<Route>,
) {
    let failed = super::peer::failed(state);
    tokio::pin!(failed);
    let flush = async {
        match route {
            Some(Route::Turn) => flush_relayed(Arc::clone(&data)).await,
            _ => std::future::pending().await,
        }
    };
    tokio::pin!(flush);
    let lost = loop {
        tokio::select! {
            () = &mut flush => std::future::pending::<()>().await,
            event = data.poll() => match event {
                Some(DataChannelEvent::OnMessage(message)) => match reassembly.push(message.data) {
                    Ok(frames) => {
                        for frame in frames {
                            if incoming.send(Incoming::Frame(frame)).await.is_err() {
                                return;
                            }
                        }
                    }
                    Err(e) => {
                        // Desynchronised: hand over the garbage as one bad frame, and stop.
                        let _ = incoming.send(Incoming::Frame(BytesMut::new())).await;
                        break TransferError::Protocol(format!("bad frame header on the data channel: {e}"));
                    }
                },
                Some(DataChannelEvent::OnClose) => {
                    closed.send_replace(true);
                    break webrtc_error("data channel", "closed by the sender");
                }
                None => break webrtc_error("data channel", "closed"),
                _ => {}
            },
            failed = &mut failed => break failed,
        }
    };
    let _ = incoming.send(Incoming::Lost(lost)).await;
}
