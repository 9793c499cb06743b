//! The sender's side of the core: turns requests into the frames to transmit, in order.

use super::Request;

/// What the driver should seal and send next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transmit {
    /// Chunk `index`; `last` is set on the final chunk of the file.
    Chunk { index: u64, last: bool },
    /// The trailer with the whole-file SHA-256.
    Trailer,
}

/// A credit that came before any request: there is no epoch to go on under, so it is refused
/// (the receiver broke the protocol) and nothing is transmitted for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a credit came before any want")]
pub struct CreditWithoutRequest;

/// Per-stream sender state.
///
/// Inputs: [`SendCore::handle_request`], [`SendCore::handle_credit`]. Outputs:
/// [`SendCore::poll_transmit`], drained in order. Whatever order the inputs come in, nothing is
/// transmitted before the first request, and under one request indices only increase (the
/// trailer, at index `chunk_count`, last): the driver seals under a fresh epoch per request and
/// relies on both.
/// The sender keeps no per-chunk state: the receiver's requests say everything, which is what lets
/// a restarted sender serve a resumed transfer from its journal alone.
#[derive(Debug)]
pub struct SendCore {
    chunk_count: u64,
    next: u64,
    to: u64,
    trailer_pending: bool,
    /// Whether a request came: credits extend a request, they never start one.
    requested: bool,
}

impl SendCore {
    pub fn new(chunk_count: u64) -> Self {
        SendCore { chunk_count, next: 0, to: 0, trailer_pending: false, requested: false }
    }

    /// A request from the receiver; it replaces whatever was still queued.
    pub fn handle_request(&mut self, request: Request) {
        self.to = request.to.min(self.chunk_count);
        self.next = request.from.min(self.to);
        self.trailer_pending = request.to >= self.chunk_count;
        self.requested = true;
    }

    /// More window: go on up to chunk `to` without resending what was sent. The trailer
    /// follows once the window first reaches the end of the file. Refused before any request.
    pub fn handle_credit(&mut self, to: u64) -> Result<(), CreditWithoutRequest> {
        if !self.requested {
            return Err(CreditWithoutRequest);
        }
        let to = to.min(self.chunk_count);
        if to > self.to {
            self.to = to;
            self.trailer_pending |= to == self.chunk_count;
        }
        Ok(())
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        if self.next < self.to {
            let index = self.next;
            self.next += 1;
            return Some(Transmit::Chunk { index, last: index + 1 == self.chunk_count });
        }
        if std::mem::take(&mut self.trailer_pending) {
            return Some(Transmit::Trailer);
        }
        None
    }
}
