//! The relay server program (`agentferry relay`) and its wire protocol, nothing else.
//!
//! When neither machine can dial the other, both dial out to a relay and exchange messages
//! through mailboxes ([`crate::mailbox`]): the relay routes by mailbox id and takes a
//! subscription only from a holder of the mailbox's key. The files:
//!
//! - [`proto`]: the envelopes on the WebSocket, shared with the client in
//!   [`crate::channel::websocket`];
//! - [`server`]: mailboxes, their bounds and fairness between clients, over WebSocket;
//! - [`nameplates`]: the table of nameplates for short codes ([`crate::code`]): numbers a
//!   connection holds until another claims it once, then the PAKE messages between the two;
//! - [`stun`]: STUN binding answers on UDP at the relay's port, so nodes that share a relay can
//!   hole-punch a WebRTC connection with nothing else configured.
//!
//! The relay only ever sees mailbox ids and sealed bytes: frames sealed with the session key,
//! offers authenticated by the grant secret. It can delay, drop, reorder or replay them; the
//! transfer core and the frame format make each of those harmless. The client side of every
//! channel (this relay, a shared folder, NATS) lives in [`crate::channel`].

pub mod nameplates;
pub mod proto;
pub mod server;
pub mod stun;
