//! # agentferry
//!
//! agentferry moves files between AI agents, and the people beside them, on different machines.
//! The same program is an MCP server for agents ([`mcp`]) and a CLI for people and scripts; both
//! are thin fronts over one [`engine`].
//!
//! ## How a transfer goes
//!
//! The sender cuts the file into fixed-size chunks (the [`manifest`]), mints a 256-bit session
//! key and a random transfer id, and prints a [`ticket`]: a `ferry…` string carrying the id, the
//! key, the file name and size, the expiry, and every address it listens on. Whoever holds the
//! ticket may receive the file, so the ticket is as secret as the file.
//!
//! Every byte of the file travels inside a [`frame`] sealed with AES-256-GCM under a key derived
//! (HKDF-SHA256) from the session key; the transfer id and chunk index are bound into nonce and
//! associated data, so a frame cannot be replayed into another place. The last frame of a full
//! pass is a trailer with the whole-file SHA-256, which the receiver checks before the file takes
//! its final name. The session key itself never crosses the wire: the HTTP path authenticates
//! with a bearer token derived from it, and the sender proves itself by sealing its manifest.
//!
//! A folder travels the same way: its [`tree`] is one byte stream (a listing of relative paths,
//! sizes and modes, then every file's bytes), cut into the same chunks, so resume and every path
//! work unchanged; the receiver checks the listing before it builds anything and places the tree
//! in one rename once the stream verifies.
//!
//! ## Paths
//!
//! Frames are the same on every path, and so are the receiver's requests: control frames
//! (hello, want, credit, complete) sealed under the session key. [`transport`] is the seam every
//! path implements: the receiver's `Link` posts control frames and yields the frames that come
//! back; the sender's side hands each control frame to one session driver in the engine, whatever
//! the path. Three paths exist, and a transfer moves between them from chunk N:
//!
//! 1. **direct HTTP** — the receiver dials every address in the ticket at once, posts its hello,
//!    and keeps the first connection that answers with an authentic manifest; later requests
//!    reuse it (hyper, HTTP/1.1);
//! 2. **WebRTC** — a data channel, hole-punched with STUN or through a TURN server, signalled
//!    through the ticket's channel with messages sealed under the session key, so a channel that
//!    tampers with the SDP cannot insert itself;
//! 3. **message channel** ([`channel`]) — when nothing can be dialled, both sides reach a relay
//!    server (`agentferry relay`, WebSocket), a NATS server or a shared folder from the inside,
//!    and frames travel as messages between two mailboxes derived from the session key, with a
//!    sliding window.
//!
//! When the two agents share nothing but a chat, the agents themselves are the transport: the
//! same sealed frames travel as text ([`chat`]: `🔗FERRY:` and base64url), posted and read by
//! the agents, one tool call per turn. Its receiver asks for missing chunks by index without
//! timers ([`core::ChatReceive`]), and writes and checkpoints like every receiver. The first
//! message carries the ticket, or an offer sealed for a paired peer.
//!
//! A short code ([`code`]) is another way to hand over a ticket: both sides run a PAKE over a
//! nameplate on the relay, and the ticket travels sealed under the key it yields.
//!
//! ## Who decides
//!
//! The protocol lives in a sans-IO [`core`] that owns no socket and no clock and is tested under
//! a virtual clock:
//!
//! - the receiver ([`core::Receiver`]) composes the two below with the policy that joins them
//!   (which paths a preference allows, per-path tuning, which error a run that gives up reports);
//! - the receive core decides what to ask for, when to checkpoint, when to give up;
//! - the path selector decides which path to connect and use: direct first, then the channel;
//!   it falls back mid-transfer when the path in use breaks or stalls, keeps probing better
//!   paths while on a worse one and moves up when one authenticates, and bans a path whose
//!   endpoint fails to authenticate or that delivers a streak of forgeries. A pinned preference
//!   (`prefer: http|webrtc|relay`) never moves;
//! - the send core turns requests into frames; every request is sealed under a fresh epoch, so
//!   no nonce ever seals two plaintexts.
//!
//! The tokio [`engine`] drives them: one receive driver (the receiver's IO shell) and one send
//! driver, network tasks that move frames, a blocking disk worker that decrypts, hashes and
//! writes. Every path tried is
//! recorded as an attempt; completion reports the path that carried the last chunk and the bytes
//! each path carried.
//!
//! ## State and resume
//!
//! Each node has a home ([`home`]; `$AGENTFERRY_HOME` or the platform data folder; 0700/0600)
//! with a [`journal`] entry per transfer. The receiver writes into a temp file beside the target,
//! syncs it at checkpoints and only then records the durable chunk count, so `kill -9` at any
//! moment loses at most the chunks since the last checkpoint. `resume` continues from the first
//! chunk that is not durable; a restarted sender re-serves on the port its ticket names, and
//! refuses if the file changed. A process holds a lock on each transfer it drives, so a record
//! without a live owner shows as `interrupted`.
//!
//! ## Trusted peers
//!
//! A node that wants pushes without tickets exports a grant ([`peers`]): an id and a secret with
//! an expiry, revocable. A sender holding it posts an [`offer`] to the node's inbox (its MCP
//! server or `agentferry listen`, over HTTP or through its channel mailbox): the ticket sealed
//! under a key derived from the grant secret, authenticated by an HMAC; the secret never travels.
//! The inbox checks grant, MAC, age and replay before fetching the file on its own, or holds the
//! offer as `pending` when the grant expired or was revoked.
//!
//! ## Short codes
//!
//! A person cannot read a ticket over the phone. `send --code` and `export --code` show a
//! [`code`] instead, `7-guitar-nebula-acorn`: a nameplate the relay allocated and three words.
//! Both sides run SPAKE2 over the relay with the words as the password; the key they agree on
//! seals the ticket (or the grant URI), and everything after is a ticket transfer. One guess per
//! code, codes expire, and the relay rate-limits claims.
//!
//! ## Safety
//!
//! The receiver reduces names to a safe base name ([`names`]), never overwrites unless asked,
//! writes only the bytes the manifest allows, and keeps the temp file on disk-full or permission
//! errors so a resume can finish. Every error a user sees has a stable code and a hint
//! ([`error`]).

#![warn(unreachable_pub)]

// The library's face: a `Node` and everything its methods take and give, re-exported here so
// that a program embedding agentferry needs no hidden module. `engine`, `error`, `ticket`,
// `transport` and `tree` are public because their types appear in that face (events, options,
// the seam a new path implements); the protocol internals stay hidden: their shape is the wire
// format's, which is versioned by the ticket and frame codecs, not by this crate's API.
pub mod engine;
pub mod error;
pub mod ticket;
pub mod transport;
pub mod tree;

pub use core::{PathKind, Prefer};
pub use engine::{
    Canceller, Completion, Event, Node, NodeConfig, PushAnswer, ReceiveOptions, SendOptions, Transfer,
    UPLOAD_LINK_LIFETIME, UploadLink,
};
pub use error::TransferError;
pub use id::TransferId;
pub use journal::{Role, State, TransferStatus};
pub use ticket::Ticket;
// Types of the `Node` API defined in hidden modules.
pub use channel::ChannelHint;
pub use code::{
    Purpose, ShortCode,
    rendezvous::{Offer as CodeOffer, Redeemed},
};
pub use home::Home;
pub use peers::Trust;

// Internals: public only so that the binary (CLI, MCP server, relay), the integration tests and
// the fuzz targets can reach them. Not a stable API, and hidden from the docs.
#[doc(hidden)]
pub mod accept;
#[doc(hidden)]
pub mod alloc;
#[doc(hidden)]
pub mod channel;
#[doc(hidden)]
pub mod chat;
#[doc(hidden)]
pub mod code;
#[doc(hidden)]
pub mod codec;
#[doc(hidden)]
pub mod core;
#[doc(hidden)]
pub mod crypto;
#[doc(hidden)]
pub mod frame;
#[doc(hidden)]
pub mod home;
#[doc(hidden)]
pub mod id;
#[doc(hidden)]
pub mod journal;
#[doc(hidden)]
pub mod mailbox;
#[doc(hidden)]
pub mod manifest;
#[doc(hidden)]
pub mod mcp;
#[doc(hidden)]
pub mod names;
#[doc(hidden)]
pub mod offer;
#[doc(hidden)]
pub mod peers;
#[doc(hidden)]
pub mod pipe;
#[doc(hidden)]
pub mod relay;
#[doc(hidden)]
pub mod schemas;
#[doc(hidden)]
pub mod store;
#[doc(hidden)]
pub mod task;
#[doc(hidden)]
pub mod web;
