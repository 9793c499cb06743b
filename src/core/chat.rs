//! The messages path's decisions: which chunks a receiver asks for, which frames a sender posts.
//!
//! On this path the clock is the agents' turns: nothing moves until an agent passes messages to
//! `receive_messages`, and each call answers at once. So there are no timers here. The receiver
//! answers every delivery with one [`Need`]: the first `window` chunks it still lacks (selective,
//! so a dropped message costs one chunk, not a window) and whether it lacks the trailer. The
//! sender keeps no state: it posts what the freshest need lists. Duplicates are dropped by the
//! receiver's bitmap, reordering is harmless because every frame names its index, and a need
//! lost in the chat is posted again when an agent asks either side to repeat itself.
//!
//! The receiver's bitmap is O(chunks), which the messages path bounds
//! ([`crate::chat::MAX_FILE_SIZE`]); only its contiguous prefix is durable (the journal's
//! `durable_chunks`), so after a restart the chunks above it are asked for again.

use super::{Transmit, Verdict, receive::OutOfRange};

/// What a receiver asks for next; sealed as [`super::Control::Need`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Need {
    pub chunks: Vec<u64>,
    pub trailer: bool,
    /// Chunks the receiver holds: the freshest of several needs has the most.
    pub have: u64,
}

/// The receiver's state of one transfer on the messages path.
///
/// Inputs: [`handle_chunk`](Self::handle_chunk), [`handle_trailer`](Self::handle_trailer).
/// Getters: [`durable_prefix`](Self::durable_prefix), [`have`](Self::have),
/// [`is_complete`](Self::is_complete). Output: [`need`](Self::need) after each delivery.
#[derive(Clone, Debug)]
pub struct ChatReceive {
    chunk_count: u64,
    have: Vec<u64>,
    received: u64,
    first_missing: u64,
    trailer: bool,
}

impl ChatReceive {
    /// A receiver of `chunk_count` chunks whose first `durable` are on disk.
    pub fn new(chunk_count: u64, durable: u64) -> Self {
        let durable = durable.min(chunk_count);
        let mut core = ChatReceive {
            chunk_count,
            have: vec![0; chunk_count.div_ceil(64) as usize],
            received: 0,
            first_missing: 0,
            trailer: false,
        };
        for i in 0..durable {
            core.handle_chunk(i).expect("in range");
        }
        core
    }

    fn has(&self, i: u64) -> bool {
        self.have[(i / 64) as usize] & (1 << (i % 64)) != 0
    }

    /// An authenticated chunk arrived: write it on [`Verdict::Write`].
    pub fn handle_chunk(&mut self, index: u64) -> Result<Verdict, OutOfRange> {
        if index >= self.chunk_count {
            return Err(OutOfRange(index));
        }
        if self.has(index) {
            return Ok(Verdict::Duplicate);
        }
        self.have[(index / 64) as usize] |= 1 << (index % 64);
        self.received += 1;
        while self.first_missing < self.chunk_count && self.has(self.first_missing) {
            self.first_missing += 1;
        }
        Ok(Verdict::Write)
    }

    /// The authenticated trailer (the whole-file hash) arrived.
    pub fn handle_trailer(&mut self) {
        self.trailer = true;
    }

    pub fn has_trailer(&self) -> bool {
        self.trailer
    }

    /// Chunks `0..durable_prefix()` all arrived: what a checkpoint may record once synced.
    pub fn durable_prefix(&self) -> u64 {
        self.first_missing
    }

    /// Chunks held, contiguous or not.
    pub fn have(&self) -> u64 {
        self.received
    }

    /// Every chunk and the trailer arrived: verify and place.
    pub fn is_complete(&self) -> bool {
        self.first_missing == self.chunk_count && self.trailer
    }

    /// The first `window` missing chunks and the trailer if missing; `None` when complete.
    pub fn need(&self, window: usize) -> Option<Need> {
        if self.is_complete() {
            return None;
        }
        let chunks = (self.first_missing..self.chunk_count).filter(|&i| !self.has(i)).take(window).collect();
        Some(Need { chunks, trailer: !self.trailer, have: self.received })
    }
}

/// The need to answer among several that arrived at once (stale ones, duplicates): the one from
/// the receiver that held the most.
pub fn freshest(needs: impl IntoIterator<Item = Need>) -> Option<Need> {
    needs.into_iter().reduce(|best, n| if n.have > best.have { n } else { best })
}

/// What a sender posts before hearing from its receiver (at the start, and after a restart):
/// the first `window` chunks and the trailer.
pub fn opening(chunk_count: u64, window: usize) -> Need {
    Need { chunks: (0..chunk_count.min(window as u64)).collect(), trailer: true, have: 0 }
}

/// The frames that answer `need`, in increasing index order (the trailer, at index
/// `chunk_count`, last), each at most once, none beyond the file, at most `window` chunks: the
/// order a [`crate::frame::Sealer`] requires under one epoch.
pub fn transmits(need: &Need, chunk_count: u64, window: usize) -> Vec<Transmit> {
    let mut chunks: Vec<u64> = need.chunks.iter().copied().filter(|&i| i < chunk_count).collect();
    chunks.sort_unstable();
    chunks.dedup();
    chunks.truncate(window);
    let mut out: Vec<Transmit> =
        chunks.into_iter().map(|index| Transmit::Chunk { index, last: index + 1 == chunk_count }).collect();
    if need.trailer {
        out.push(Transmit::Trailer);
    }
    out
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng, seq::SliceRandom};

    use super::*;

    /// A receiver and a stateless sender whose only link shuffles, drops and duplicates, with
    /// the agents' rule for a quiet chat: ask a side to repeat itself.
    fn run(seed: u64, chunk_count: u64, restart_at: Option<usize>) -> usize {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let window = 8;
        let mut receiver = ChatReceive::new(chunk_count, 0);
        let mut last_need: Option<Need> = None;
        let mut to_receiver: Vec<Transmit> = transmits(&opening(chunk_count, window), chunk_count, window);
        let mangle = |rng: &mut rand::rngs::StdRng, mut items: Vec<Transmit>| {
            items.retain(|_| rng.random_bool(0.8));
            let dups: Vec<_> = items.iter().copied().filter(|_| rng.random_bool(0.2)).collect();
            items.extend(dups);
            items.shuffle(rng);
            items
        };
        for round in 0..10_000 {
            if Some(round) == restart_at {
                // Only the contiguous prefix survives a restart.
                receiver = ChatReceive::new(chunk_count, receiver.durable_prefix());
            }
            for t in mangle(&mut rng, std::mem::take(&mut to_receiver)) {
                match t {
                    Transmit::Chunk { index, .. } => drop(receiver.handle_chunk(index).unwrap()),
                    Transmit::Trailer => receiver.handle_trailer(),
                }
            }
            if receiver.is_complete() {
                return round;
            }
            let need = receiver.need(window).unwrap();
            assert!(need.chunks.len() <= window);
            // The need itself may be lost, or arrive with a stale duplicate.
            let mut needs = Vec::new();
            if rng.random_bool(0.8) {
                needs.push(need);
            }
            if let Some(old) = last_need.clone().filter(|_| rng.random_bool(0.3)) {
                needs.push(old);
            }
            // Nothing arrived: the sender repeats its last answer (or its opening).
            let answer = freshest(needs).or(last_need.clone()).unwrap_or_else(|| opening(chunk_count, window));
            last_need = Some(answer.clone());
            to_receiver = transmits(&answer, chunk_count, window);
        }
        panic!("seed {seed}: no progress");
    }

    #[test]
    fn a_lossy_reordering_duplicating_chat_delivers_every_chunk() {
        for seed in 0..50 {
            run(seed, 100, None);
        }
        run(7, 0, None);
        run(8, 1, None);
    }

    #[test]
    fn a_restarted_receiver_asks_again_for_what_was_not_durable() {
        for seed in 0..20 {
            run(seed, 100, Some(5));
        }
        let mut r = ChatReceive::new(10, 0);
        for i in [0, 1, 3] {
            assert_eq!(r.handle_chunk(i), Ok(Verdict::Write));
        }
        assert_eq!(r.handle_chunk(1), Ok(Verdict::Duplicate));
        assert_eq!(r.handle_chunk(10), Err(OutOfRange(10)));
        assert_eq!(r.durable_prefix(), 2);
        let restarted = ChatReceive::new(10, r.durable_prefix());
        assert_eq!(restarted.need(3).unwrap(), Need { chunks: vec![2, 3, 4], trailer: true, have: 2 });
        assert_eq!(r.need(3).unwrap(), Need { chunks: vec![2, 4, 5], trailer: true, have: 3 });
    }

    #[test]
    fn senders_answer_in_sealing_order_within_the_window() {
        let need = Need { chunks: vec![9, 3, 3, 42, 1], trailer: true, have: 0 };
        let t = transmits(&need, 10, 2);
        assert_eq!(
            t,
            vec![
                Transmit::Chunk { index: 1, last: false },
                Transmit::Chunk { index: 3, last: false },
                Transmit::Trailer
            ]
        );
        let t = transmits(&Need { chunks: vec![9], trailer: false, have: 0 }, 10, 8);
        assert_eq!(t, vec![Transmit::Chunk { index: 9, last: true }]);
        let stale = Need { chunks: vec![0], trailer: true, have: 1 };
        let fresh = Need { chunks: vec![5], trailer: true, have: 5 };
        assert_eq!(freshest([stale.clone(), fresh.clone(), stale]), Some(fresh));
        assert_eq!(ChatReceive::new(0, 0).need(8), Some(Need { chunks: vec![], trailer: true, have: 0 }));
    }
}
