//! Frames into data-channel messages and back.
//!
//! A sealed chunk frame (262 192 bytes at the default chunk size) is larger than the 64 KiB
//! message size every WebRTC stack accepts, so the sender cuts each frame into messages of at most
//! the negotiated size, and the receiver, on an ordered reliable channel, treats the messages as
//! one byte stream and cuts whole frames out of it with [`frame::check`], as the HTTP path does
//! with a response body. No header is added: frames delimit themselves, so the frames and the
//! seam stay what they are on every path.

use bytes::{Bytes, BytesMut};

use crate::frame::{self, FrameError, HEADER_LEN, MAX_META_LEN, TAG_LEN};

/// The messages carrying `frame`, at most `max` bytes each: split off the frame's own buffer
/// when nothing else holds it (the usual case, no copy), else copied once.
pub fn pieces(frame: Bytes, max: usize) -> impl Iterator<Item = BytesMut> {
    let max = max.max(1);
    let mut rest = frame.try_into_mut().unwrap_or_else(|shared| BytesMut::from(&shared[..]));
    std::iter::from_fn(move || (!rest.is_empty()).then(|| rest.split_to(max.min(rest.len()))))
}

/// Whole frames out of a stream of messages.
pub struct Reassembly {
    buf: BytesMut,
    max_chunk: usize,
}

impl Reassembly {
    pub fn new(max_chunk: usize) -> Self {
        Reassembly { buf: BytesMut::new(), max_chunk }
    }

    fn capacity(&self) -> usize {
        HEADER_LEN + self.max_chunk.max(MAX_META_LEN) + TAG_LEN
    }

    /// Add one message; returns the frames it completed, in order. An error means the stream is
    /// desynchronised (not frames): the path is broken.
    pub fn push(&mut self, message: BytesMut) -> Result<Vec<BytesMut>, FrameError> {
        if self.buf.is_empty() {
            self.buf = message; // the common case: no copy for the first piece
        } else {
            self.buf.extend_from_slice(&message);
        }
        let mut whole = Vec::new();
        while let Some(len) = frame::check(&self.buf, self.max_chunk)? {
            whole.push(self.buf.split_to(len));
        }
        if !self.buf.is_empty() && self.buf.capacity() < self.capacity() {
            self.buf.reserve(self.capacity() - self.buf.len());
        }
        Ok(whole)
    }

    /// Bytes of a frame not yet complete.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        crypto::SessionKey,
        frame::{FrameKind, Sealer},
        id::TransferId,
    };

    fn sealed(len: usize, index: u64) -> Bytes {
        let mut sealer = Sealer::new(&SessionKey::from_bytes([1; 32]), TransferId([2; 16]), [3; 16]);
        sealer.seal_bytes(FrameKind::Chunk, index, &vec![index as u8; len]).freeze()
    }

    #[test]
    fn frames_cut_at_any_size_come_back_whole_and_in_order() {
        let frames: Vec<Bytes> =
            [262_144, 1, 65_536 - 48, 100_000].iter().enumerate().map(|(i, &n)| sealed(n, i as u64)).collect();
        for max in [1000, 16 * 1024, 65_536, 262_144] {
            let mut r = Reassembly::new(262_144);
            let mut out = Vec::new();
            for f in &frames {
                let parts: Vec<BytesMut> = pieces(f.clone(), max).collect();
                assert!(parts.iter().all(|p| p.len() <= max && !p.is_empty()));
                assert_eq!(parts.len(), f.len().div_ceil(max));
                for p in parts {
                    out.extend(r.push(p).unwrap());
                }
            }
            assert_eq!(out.len(), frames.len(), "max {max}");
            for (a, b) in out.iter().zip(&frames) {
                assert_eq!(&a[..], &b[..]);
            }
            assert_eq!(r.pending(), 0);
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_wait() {
        let mut r = Reassembly::new(262_144);
        assert!(r.push(BytesMut::from(&[0xffu8; 64][..])).is_err());
    }
}
