//! Chunk frames: the one unit every path carries.
//!
//! A frame is a 32-byte header followed by an AES-256-GCM ciphertext and its 16-byte tag:
//!
//! ```text
//! 0      kind      u8       1 = chunk, 2 = trailer (whole-file SHA-256), 3 = manifest, 4 = control
//! 1      flags     u8       bit 0: last chunk of the file
//! 2..4   reserved  u16      zero
//! 4..8   len       u32 BE   ciphertext length, tag included
//! 8..16  index     u64 BE   chunk index (trailer: chunk count; manifest: 0)
//! 16..32 epoch     [u8;16]  names the sealing key, see `crypto`
//! ```
//!
//! The nonce is `kind ‖ 0 0 0 ‖ index`, unique under an epoch key because a sender seals each
//! (kind, index) at most once per epoch. The associated data is `transfer_id ‖ header`, so a frame
//! cannot be moved to another transfer, index or kind, nor have its flags changed, without failing
//! authentication. Because frames are self-contained, any transport can carry any of them, and a
//! transfer begun on one path can continue on another from chunk N.
//!
//! Parsing is check-then-parse (after mini-redis): [`check`] tells "incomplete, read more" apart
//! from "invalid, reject", so a half frame at the end of a stream is a reset, never a panic.

use bytes::{BufMut, BytesMut};
use ring::aead::{Aad, LessSafeKey, Nonce, Tag};

use crate::{
    crypto::{Epoch, SessionKey},
    id::TransferId,
};

pub const HEADER_LEN: usize = 32;
pub const TAG_LEN: usize = 16;
/// Largest manifest or trailer payload accepted.
pub const MAX_META_LEN: usize = 64 * 1024;

/// What a frame holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum FrameKind {
    Chunk = 1,
    Trailer = 2,
    Manifest = 3,
    /// A receiver's request on a message channel (want, credit, hello, complete), as JSON.
    Control = 4,
}

/// Flag bit: this chunk is the last of the file.
pub const FLAG_LAST: u8 = 1;

/// The decoded, not yet authenticated, header of a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    pub kind: FrameKind,
    pub flags: u8,
    pub len: u32,
    pub index: u64,
    pub epoch: Epoch,
}

/// Why bytes are not a frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("unknown frame kind {0}")]
    UnknownKind(u8),
    #[error("reserved header bits are set")]
    Reserved,
    #[error("frame payload of {0} bytes exceeds the limit")]
    TooLong(u32),
    #[error("frame payload of {0} bytes is shorter than the authentication tag")]
    TooShort(u32),
    #[error("frame failed authentication")]
    Unauthentic,
}

impl FrameHeader {
    fn encode(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[0] = self.kind as u8;
        h[1] = self.flags;
        h[4..8].copy_from_slice(&self.len.to_be_bytes());
        h[8..16].copy_from_slice(&self.index.to_be_bytes());
        h[16..32].copy_from_slice(&self.epoch);
        h
    }

    fn decode(h: &[u8; HEADER_LEN], max_payload: usize) -> Result<Self, FrameError> {
        let kind = match h[0] {
            1 => FrameKind::Chunk,
            2 => FrameKind::Trailer,
            3 => FrameKind::Manifest,
            4 => FrameKind::Control,
            other => return Err(FrameError::UnknownKind(other)),
        };
        if h[2] != 0 || h[3] != 0 || h[1] & !FLAG_LAST != 0 {
            return Err(FrameError::Reserved);
        }
        let len = u32::from_be_bytes(h[4..8].try_into().expect("4 bytes"));
        let limit = match kind {
            FrameKind::Chunk => max_payload,
            FrameKind::Trailer | FrameKind::Manifest | FrameKind::Control => MAX_META_LEN,
        };
        if len as usize > limit + TAG_LEN {
            return Err(FrameError::TooLong(len));
        }
        if (len as usize) < TAG_LEN {
            return Err(FrameError::TooShort(len));
        }
        Ok(FrameHeader {
            kind,
            flags: h[1],
            len,
            index: u64::from_be_bytes(h[8..16].try_into().expect("8 bytes")),
            epoch: h[16..32].try_into().expect("16 bytes"),
        })
    }

    fn nonce(&self) -> Nonce {
        let mut n = [0u8; 12];
        n[0] = self.kind as u8;
        n[4..12].copy_from_slice(&self.index.to_be_bytes());
        Nonce::assume_unique_for_key(n)
    }
}

/// Is a whole frame at the start of `buf`? `Ok(None)`: read more. `Ok(Some(n))`: the first `n`
/// bytes are one frame. `Err`: the stream is not frames; reset it.
pub fn check(buf: &[u8], max_chunk: usize) -> Result<Option<usize>, FrameError> {
    let Some(h) = buf.first_chunk::<HEADER_LEN>() else { return Ok(None) };
    let header = FrameHeader::decode(h, max_chunk)?;
    let total = HEADER_LEN + header.len as usize;
    Ok((buf.len() >= total).then_some(total))
}

fn aad(id: &TransferId, header: &[u8; HEADER_LEN]) -> [u8; 16 + HEADER_LEN] {
    let mut a = [0u8; 16 + HEADER_LEN];
    a[..16].copy_from_slice(id.as_bytes());
    a[16..].copy_from_slice(header);
    a
}

/// Seals frames for one stream: one transfer, one epoch.
///
/// Under one epoch every frame must carry a higher index than the one before, whatever its
/// kind, so no (key, nonce) pair can ever seal two plaintexts; sealing out of order panics.
pub struct Sealer {
    transfer_id: TransferId,
    epoch: Epoch,
    cipher: LessSafeKey,
    last_index: Option<u64>,
}

impl Sealer {
    pub fn new(key: &SessionKey, transfer_id: TransferId, epoch: Epoch) -> Self {
        Sealer { transfer_id, epoch, cipher: key.frame_cipher(&transfer_id, &epoch), last_index: None }
    }

    /// A buffer ready for [`Sealer::seal`]: header room, then `payload_capacity` bytes to fill.
    pub fn buffer(payload_capacity: usize) -> BytesMut {
        let mut buf = BytesMut::with_capacity(HEADER_LEN + payload_capacity + TAG_LEN);
        buf.put_bytes(0, HEADER_LEN);
        buf
    }

    /// Seal `buf` in place. `buf` holds [`HEADER_LEN`] bytes of room followed by the plaintext;
    /// afterwards it holds the whole frame.
    pub fn seal(&mut self, kind: FrameKind, flags: u8, index: u64, buf: &mut BytesMut) {
        assert!(self.last_index.is_none_or(|last| index > last), "frame index {index} sealed twice under one epoch");
        self.last_index = Some(index);
        let len = (buf.len() - HEADER_LEN + TAG_LEN) as u32;
        let header = FrameHeader { kind, flags, len, index, epoch: self.epoch };
        let encoded = header.encode();
        buf[..HEADER_LEN].copy_from_slice(&encoded);
        let tag = self
            .cipher
            .seal_in_place_separate_tag(
                header.nonce(),
                Aad::from(aad(&self.transfer_id, &encoded)),
                &mut buf[HEADER_LEN..],
            )
            .expect("payload within AES-GCM limits");
        buf.extend_from_slice(tag.as_ref());
    }

    /// Seal a small payload (manifest, trailer) into a new frame.
    pub fn seal_bytes(&mut self, kind: FrameKind, index: u64, payload: &[u8]) -> BytesMut {
        let mut buf = Self::buffer(payload.len());
        buf.extend_from_slice(payload);
        self.seal(kind, 0, index, &mut buf);
        buf
    }
}

/// An authenticated frame, opened in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Opened {
    pub kind: FrameKind,
    pub flags: u8,
    pub index: u64,
}

impl Opened {
    /// The plaintext range within the buffer that was opened.
    pub fn payload(buf: &[u8]) -> &[u8] {
        &buf[HEADER_LEN..buf.len() - TAG_LEN]
    }
}

/// Opens frames of one transfer, whatever epoch sealed them (the latest key is cached).
pub struct Opener {
    transfer_id: TransferId,
    key: SessionKey,
    max_chunk: usize,
    cached: Option<(Epoch, LessSafeKey)>,
}

impl Opener {
    pub fn new(key: SessionKey, transfer_id: TransferId, max_chunk: usize) -> Self {
        Opener { transfer_id, key, max_chunk, cached: None }
    }

    /// Authenticate and decrypt one whole frame (as delimited by [`check`]) in place; on success
    /// the plaintext is [`Opened::payload`] of the same buffer. On failure the buffer is garbage.
    pub fn open(&mut self, frame: &mut [u8]) -> Result<Opened, FrameError> {
        let h: &[u8; HEADER_LEN] = frame.first_chunk().ok_or(FrameError::TooShort(0))?;
        let header = FrameHeader::decode(h, self.max_chunk)?;
        if frame.len() != HEADER_LEN + header.len as usize {
            return Err(FrameError::Unauthentic);
        }
        let encoded = *h;
        if self.cached.as_ref().is_none_or(|(epoch, _)| *epoch != header.epoch) {
            self.cached = Some((header.epoch, self.key.frame_cipher(&self.transfer_id, &header.epoch)));
        }
        let cipher = &self.cached.as_ref().expect("set above").1;
        let (body, tag) = frame[HEADER_LEN..].split_at_mut(header.len as usize - TAG_LEN);
        let tag = Tag::try_from(&*tag).map_err(|_| FrameError::Unauthentic)?;
        cipher
            .open_in_place_separate_tag(header.nonce(), Aad::from(aad(&self.transfer_id, &encoded)), tag, body, 0..)
            .map_err(|_| FrameError::Unauthentic)?;
        Ok(Opened { kind: header.kind, flags: header.flags, index: header.index })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::random_epoch;

    fn pair() -> (Sealer, Opener) {
        let key = SessionKey::generate();
        let id = TransferId::random();
        (Sealer::new(&key, id, random_epoch()), Opener::new(key, id, 1 << 20))
    }

    fn chunk(sealer: &mut Sealer, index: u64, data: &[u8]) -> BytesMut {
        let mut buf = Sealer::buffer(data.len());
        buf.extend_from_slice(data);
        sealer.seal(FrameKind::Chunk, FLAG_LAST, index, &mut buf);
        buf
    }

    #[test]
    fn seal_then_open_round_trips() {
        let (mut sealer, mut opener) = pair();
        let mut frame = chunk(&mut sealer, 7, b"hello world");
        assert_eq!(check(&frame, 1 << 20), Ok(Some(frame.len())));
        assert_eq!(check(&frame[..frame.len() - 1], 1 << 20), Ok(None));
        assert_eq!(check(&frame[..5], 1 << 20), Ok(None));
        let opened = opener.open(&mut frame).unwrap();
        assert_eq!(opened, Opened { kind: FrameKind::Chunk, flags: FLAG_LAST, index: 7 });
        assert_eq!(Opened::payload(&frame), b"hello world");
    }

    #[test]
    fn any_flipped_bit_is_rejected() {
        let (mut sealer, mut opener) = pair();
        let frame = chunk(&mut sealer, 3, &[0xab; 100]);
        for byte in 0..frame.len() {
            if (2..8).contains(&byte) {
                continue; // reserved and length bytes fail in `check`, covered below
            }
            let mut damaged = frame.clone();
            damaged[byte] ^= 0x01;
            let result = opener.open(&mut damaged);
            assert!(result.is_err(), "flip at byte {byte} was accepted");
        }
    }

    #[test]
    #[should_panic(expected = "sealed twice under one epoch")]
    fn an_index_is_never_sealed_twice_under_one_epoch() {
        let (mut sealer, _) = pair();
        chunk(&mut sealer, 5, b"first");
        chunk(&mut sealer, 5, b"second plaintext, same nonce: refused");
    }

    #[test]
    fn frames_do_not_move_between_transfers() {
        let (mut sealer, _) = pair();
        let mut other = Opener::new(SessionKey::generate(), TransferId::random(), 1 << 20);
        let mut frame = chunk(&mut sealer, 0, b"x");
        assert_eq!(other.open(&mut frame), Err(FrameError::Unauthentic));
    }

    #[test]
    fn invalid_headers_are_told_apart_from_short_reads() {
        let mut h = [0u8; HEADER_LEN];
        h[0] = 9;
        assert_eq!(check(&h, 1024), Err(FrameError::UnknownKind(9)));
        h[0] = 1;
        h[4..8].copy_from_slice(&(10_000u32).to_be_bytes());
        assert_eq!(check(&h, 1024), Err(FrameError::TooLong(10_000)));
        h[4..8].copy_from_slice(&(3u32).to_be_bytes());
        assert_eq!(check(&h, 1024), Err(FrameError::TooShort(3)));
        h[4..8].copy_from_slice(&(16u32).to_be_bytes());
        h[2] = 1;
        assert_eq!(check(&h, 1024), Err(FrameError::Reserved));
    }
}
