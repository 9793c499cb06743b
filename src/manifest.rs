//! The manifest: what is being sent, and how it is cut into chunks.
//!
//! The chunk size is fixed per transfer and recorded here, so every path and every resume agrees
//! on where chunk N starts. The whole-file SHA-256 is known once the sender has read the file
//! through; it travels in the trailer frame and, when already known, in the manifest too.

use serde::{Deserialize, Serialize};

use crate::error::TransferError;

/// Default chunk size: large enough that per-frame costs vanish, small enough that a resume
/// repeats little and buffers stay small.
pub const DEFAULT_CHUNK_SIZE: u32 = 256 << 10;
/// Largest chunk size a receiver accepts.
pub const MAX_CHUNK_SIZE: u32 = 16 << 20;
/// Largest file a receiver accepts: 16 TiB, the largest file ext4 holds. A sender declares the
/// size; nothing a receiver allocates depends on it, but a bound keeps every offset arithmetic
/// far from overflow and turns an absurd ticket into a clear error.
pub const MAX_FILE_SIZE: u64 = 1 << 44;
/// Most chunks a transfer may have (a tiny chunk size on a large file would make the transfer
/// all overhead; the receive core keeps only a bounded window of them in memory).
pub const MAX_CHUNK_COUNT: u64 = 1 << 32;

/// Check what a sender declared (in a ticket or a manifest) against what a receiver accepts,
/// before anything is allocated or written for it.
pub fn check_declared(size: u64, chunk_size: u32) -> Result<(), TransferError> {
    if chunk_size == 0 || chunk_size > MAX_CHUNK_SIZE {
        return Err(TransferError::TicketMalformed("the chunk size is out of range"));
    }
    if size > MAX_FILE_SIZE {
        return Err(TransferError::SizeLimit(format!(
            "the sender declares {size} bytes; this receiver accepts files up to {MAX_FILE_SIZE} bytes"
        )));
    }
    if size.div_ceil(chunk_size as u64) > MAX_CHUNK_COUNT {
        return Err(TransferError::SizeLimit(format!(
            "the sender cuts {size} bytes into chunks of {chunk_size} bytes: more than {MAX_CHUNK_COUNT} chunks"
        )));
    }
    Ok(())
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The sender's file name, unsanitised.
    pub name: String,
    pub size: u64,
    pub chunk_size: u32,
    /// Lowercase hex SHA-256 of the whole file, once the sender knows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

impl Manifest {
    /// See [`check_declared`].
    pub fn check_declared(&self) -> Result<(), TransferError> {
        check_declared(self.size, self.chunk_size)
    }

    pub fn chunk_count(&self) -> u64 {
        self.size.div_ceil(self.chunk_size as u64)
    }

    /// Byte offset of chunk `index`.
    pub fn offset(&self, index: u64) -> u64 {
        index * self.chunk_size as u64
    }

    /// Length of chunk `index` (the last one may be short).
    pub fn chunk_len(&self, index: u64) -> usize {
        let start = self.offset(index);
        (self.size.saturating_sub(start)).min(self.chunk_size as u64) as usize
    }

    /// Bytes held by the first `chunks` chunks.
    pub fn bytes_in(&self, chunks: u64) -> u64 {
        self.offset(chunks).min(self.size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunking_covers_the_file_exactly() {
        let m = Manifest { name: "f".into(), size: 2_500_000, chunk_size: 1 << 20, sha256: None };
        assert_eq!(m.chunk_count(), 3);
        let total: usize = (0..m.chunk_count()).map(|i| m.chunk_len(i)).sum();
        assert_eq!(total as u64, m.size);
        assert_eq!(m.bytes_in(3), m.size);
        let empty = Manifest { size: 0, ..m };
        assert_eq!(empty.chunk_count(), 0);
    }

    #[test]
    fn declared_sizes_are_bounded() {
        assert!(check_declared(0, 1).is_ok());
        assert!(check_declared(MAX_FILE_SIZE, DEFAULT_CHUNK_SIZE).is_ok());
        assert_eq!(check_declared(1, 0).unwrap_err().code(), "ticket_malformed");
        assert_eq!(check_declared(1, MAX_CHUNK_SIZE + 1).unwrap_err().code(), "ticket_malformed");
        assert_eq!(check_declared(1 << 50, 1 << 20).unwrap_err().code(), "size_limit_exceeded");
        assert_eq!(check_declared(MAX_FILE_SIZE, 1).unwrap_err().code(), "size_limit_exceeded");
        assert_eq!(check_declared(u64::MAX, u32::MAX).unwrap_err().code(), "ticket_malformed");
    }
}
