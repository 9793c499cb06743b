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

/// Per-stream sender state.
///
/// Inputs: [`SendCore::handle_request`]. Outputs: [`SendCore::poll_transmit`], drained in order.
/// The sender keeps no per-chunk state: the receiver's requests say everything, which is what lets
/// a restarted sender serve a resumed transfer from its journal alone.
#[derive(Debug)]
pub struct SendCore {
    chunk_count: u64,
    next: u64,
    to: u64,
    trailer_pending: bool,
}

impl SendCore {
    pub fn new(chunk_count: u64) -> Self {
        SendCore { chunk_count, next: 0, to: 0, trailer_pending: false }
    }

    /// A request from the receiver; it replaces whatever was still queued.
    pub fn handle_request(&mut self, request: Request) {
        self.to = request.to.min(self.chunk_count);
        self.next = request.from.min(self.to);
        self.trailer_pending = request.to >= self.chunk_count;
    }

    /// More window: go on up to chunk `to` without resending what was sent. The trailer
    /// follows once the window first reaches the end of the file.
    pub fn handle_credit(&mut self, to: u64) {
        let to = to.min(self.chunk_count);
        if to > self.to {
            self.to = to;
            self.trailer_pending |= to == self.chunk_count;
        }
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
