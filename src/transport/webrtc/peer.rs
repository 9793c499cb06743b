//! One WebRTC peer connection as this path uses it: built with our settings, its events turned
//! into watch channels, and the route of the candidate pair ICE selected.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use rtc::{ice::mdns::MulticastDnsMode, peer_connection::configuration::setting_engine::SctpMaxMessageSize};
use tokio::sync::{mpsc, watch};
use webrtc::{
    data_channel::DataChannel,
    peer_connection::{
        PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCConfigurationBuilder,
        RTCIceCandidateType, RTCIceGatheringState, RTCIceTransportPolicy, RTCPeerConnectionState, SettingEngineBuilder,
    },
};

use super::{IceConfig, Route};
use crate::error::TransferError;

/// Largest message we accept: the SCTP cap (what we send is [`super::MESSAGE_SIZE`] or the
/// peer's limit, whichever is smaller).
const MAX_RECEIVE_MESSAGE: u32 = 262_144;
/// Bytes handed to the data channel and not yet acknowledged: the send side's memory bound.
/// `send` waits above it (webrtc-rs's send-buffer limit), so nothing queues without bound.
/// Measured on loopback (256 MiB): a sender's peak RSS was 29 MB at 1 MiB, 35-36 MB at 2 MiB and
/// 44 MB at 4 MiB, at the same speed; the price is 1 MiB per round trip at most (20 MB/s at
/// 50 ms).
const SEND_BUFFER: usize = 1024 * 1024;
/// The SCTP receive window: what the peer may have in flight towards us. 1 and 16 MiB measured
/// no faster on loopback than 4 MiB once the UDP socket buffers stopped dropping bursts (see
/// `runtime`).
const RECEIVE_WINDOW: u32 = 4 * 1024 * 1024;
/// The ICE agent's tick, while it checks candidate pairs and once connected (where it paces the
/// consent checks). webrtc-rs 0.21.1 starts the DTLS handshake, the SCTP association and the
/// data channel's open from state changes whose packets its driver sends out only on a timer,
/// and that timer is this tick: at the default 200 ms (checks) and 2 s (consent, capped at
/// 200 ms) a connection took 610 ms to carry its first frame on loopback; at 20 ms, 50-70 ms
/// (10 ms gave 30-40 ms for twice the checks). The price is a consent check (~100 bytes) every
/// 20 ms each way while the connection lives. Written up for webrtc-rs in
/// `docs/upstream/webrtc-rs-0.21.1-driver-flush.md`; raise it again once a release flushes after
/// state changes.
const ICE_TICK: Duration = Duration::from_millis(20);
/// How long the controlling side (the receiver) waits, from the start of the checks, before
/// it settles for a working pair through a NAT's mapping or through TURN. A pair of host
/// addresses is taken at once. Signalling is not trickled: every candidate is known before the
/// first check, and all pairs are checked every tick, so a hole-punched pair works within a few
/// ticks of the first check that can get through both NATs. webrtc-rs's defaults (500 ms for a
/// reflexive pair, 1 s peer-reflexive, 2 s TURN) are made for candidates that trickle in; with
/// them the lab's hole-punched route took 580 ms to set up and its TURN route 2.1 s.
const REFLEXIVE_WAIT: Duration = Duration::from_millis(100);
const TURN_WAIT: Duration = Duration::from_millis(500);
/// Connectivity checks per candidate pair before it fails: 1.4 s of checks, as at the defaults
/// (7 every 200 ms), so a slow route is given as long as before.
const ICE_CHECKS_PER_PAIR: u16 = 70;

pub(super) fn webrtc_error(what: &str, e: impl std::fmt::Display) -> TransferError {
    TransferError::PeerUnreachable(format!("webrtc {what}: {e}"))
}

struct Handler {
    gathered: watch::Sender<bool>,
    state: watch::Sender<RTCPeerConnectionState>,
    channels: mpsc::Sender<Arc<dyn DataChannel>>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            self.gathered.send_replace(true);
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        tracing::debug!("webrtc connection {state}");
        self.state.send_replace(state);
    }

    async fn on_data_channel(&self, channel: Arc<dyn DataChannel>) {
        // The answerer takes the first channel; a peer opening more gets them dropped.
        let _ = self.channels.try_send(channel);
    }
}

/// A peer connection and what it reports.
pub(super) struct Peer {
    pub pc: Arc<dyn PeerConnection>,
    gathered: watch::Receiver<bool>,
    pub state: watch::Receiver<RTCPeerConnectionState>,
    /// Data channels the other side opened.
    pub channels: mpsc::Receiver<Arc<dyn DataChannel>>,
}

impl Drop for Peer {
    fn drop(&mut self) {
        let pc = Arc::clone(&self.pc);
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let _ = pc.close().await;
            });
        }
    }
}

/// One UDP socket per interface address, loopback included (two nodes on one machine, tests):
/// webrtc-rs expands a wildcard to non-loopback interfaces only.
fn udp_addrs() -> Vec<SocketAddr> {
    let mut addrs: Vec<SocketAddr> = if_addrs::get_if_addrs()
        .unwrap_or_default()
        .into_iter()
        .map(|iface| iface.ip())
        .filter(|ip| match ip {
            std::net::IpAddr::V4(_) => true,
            std::net::IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) != 0xfe80,
        })
        .map(|ip| SocketAddr::new(ip, 0))
        .collect();
    addrs.sort();
    addrs.dedup();
    if addrs.is_empty() {
        addrs.push(SocketAddr::from(([0, 0, 0, 0], 0)));
    }
    addrs
}

impl Peer {
    pub(super) async fn new(ice: &IceConfig) -> Result<Peer, TransferError> {
        let (gathered_tx, gathered) = watch::channel(false);
        let (state_tx, state) = watch::channel(RTCPeerConnectionState::New);
        let (channels_tx, channels) = mpsc::channel(1);
        let handler = Handler { gathered: gathered_tx, state: state_tx, channels: channels_tx };
        let settings = SettingEngineBuilder::new()
            // mDNS joins 224.0.0.251, which fails where there is no default route, and hides
            // nothing we need hidden: peers learn host addresses from sealed signalling only.
            .with_multicast_dns_mode(MulticastDnsMode::Disabled)
            .with_include_loopback_candidate(true)
            .with_sctp_max_message_size(SctpMaxMessageSize::Bounded(MAX_RECEIVE_MESSAGE))
            .with_sctp_max_receive_buffer_size(RECEIVE_WINDOW)
            .with_ice_connection_attempts(Some(ICE_TICK), Some(ICE_CHECKS_PER_PAIR))
            .with_ice_timeouts(None, None, Some(ICE_TICK))
            .with_srflx_acceptance_min_wait(Some(REFLEXIVE_WAIT))
            .with_prflx_acceptance_min_wait(Some(REFLEXIVE_WAIT))
            .with_relay_acceptance_min_wait(Some(TURN_WAIT))
            .build();
        let policy = if ice.relay_only { RTCIceTransportPolicy::Relay } else { RTCIceTransportPolicy::All };
        let configuration = RTCConfigurationBuilder::new()
            .with_ice_servers(ice.servers.iter().map(|s| s.to_rtc()).collect())
            .with_ice_transport_policy(policy)
            .build();
        let pc = PeerConnectionBuilder::new()
            .with_configuration(configuration)
            .with_setting_engine(settings)
            .with_handler(Arc::new(handler))
            .with_udp_addrs(udp_addrs())
            .with_data_channel_send_buffer_limit(SEND_BUFFER)
            .with_runtime(super::runtime::BufferedTokio::shared())
            .build()
            .await
            .map_err(|e| webrtc_error("setup", e))?;
        Ok(Peer { pc: Arc::new(pc), gathered, state, channels })
    }

    /// The local description once candidate gathering completes (non-trickle signalling), or
    /// with what was gathered when `budget` runs out (a STUN or TURN server that does not answer
    /// must not hold up the host candidates).
    pub(super) async fn gathered_sdp(&mut self, budget: Duration) -> Result<String, TransferError> {
        let _ = tokio::time::timeout(budget, self.gathered.wait_for(|done| *done)).await;
        let local = self.pc.local_description().await.ok_or_else(|| webrtc_error("setup", "no local description"))?;
        Ok(local.sdp)
    }

    /// Fails once the connection has failed or closed; pending while it lives.
    pub(super) fn failed(&self) -> impl Future<Output = TransferError> + Send + 'static {
        failed(self.state.clone())
    }

    /// Whether the selected candidate pair goes through a TURN server on either end.
    pub(super) async fn route(&self) -> Option<Route> {
        let sctp = self.pc.sctp().await?;
        let pair = sctp.transport().ice_transport().get_selected_candidate_pair().await.ok()??;
        let relayed = |t: RTCIceCandidateType| t == RTCIceCandidateType::Relay;
        Some(if relayed(pair.local().typ) || relayed(pair.remote().typ) { Route::Turn } else { Route::Direct })
    }
}

/// How often [`flush_relayed`] wakes the connection's driver.
const RELAYED_FLUSH: Duration = Duration::from_millis(2);

/// Keeps a connection whose selected pair goes through TURN moving; runs until dropped.
///
/// webrtc-rs 0.21.1's driver hands TURN-relayed packets to its core in `poll_reads`, after that
/// pass's `poll_writes`, and then sleeps: the SACKs (and DATA) they produce stay queued until some
/// other event wakes it. On a host or server-reflexive pair the next datagram does; through TURN
/// a sender waiting for those SACKs sends nothing, so the transfer stalls until an SCTP
/// retransmission timer fires (seconds). Any data-channel call that wakes the driver flushes
/// the queue; setting the low threshold we never use (0, its default) is the cheapest. Written
/// up for webrtc-rs in `docs/upstream/webrtc-rs-0.21.1-driver-flush.md`; drop this once a release
/// flushes after relayed reads.
pub(super) async fn flush_relayed(data: Arc<dyn DataChannel>) {
    let mut tick = tokio::time::interval(RELAYED_FLUSH);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if data.set_buffered_amount_low_threshold(0).await.is_err() {
            return; // closed
        }
    }
}

/// Resolves once the connection behind `state` has failed or closed.
pub(super) async fn failed(mut state: watch::Receiver<RTCPeerConnectionState>) -> TransferError {
    let gone =
        |s: &RTCPeerConnectionState| matches!(s, RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed);
    let state = state.wait_for(gone).await.map(|s| *s).unwrap_or(RTCPeerConnectionState::Closed);
    webrtc_error("connection", state)
}
