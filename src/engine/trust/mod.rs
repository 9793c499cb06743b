//! Trusted peers' side of the engine: pushing an offer to a peer's inbox, and the inbox where
//! offers from peers arrive.
//!
//! | file | job |
//! |---|---|
//! | `push.rs` | seal a fresh ticket into an offer, deliver it to the peer's inbox (HTTP, else its channel mailbox), wait for the peer while it is not listening |
//! | `inbox.rs` | check each arriving offer (grant, MAC, age, replay), then fetch it at once or hold it as pending |

mod inbox;
mod push;

pub use inbox::{Arrival, Inbox};
pub use push::PushAnswer;
pub(super) use push::push;
