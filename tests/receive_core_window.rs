//! Issue 9, item 2: the receive core's memory is O(window), whatever the chunk count.

use std::time::{Duration, Instant};

use agentferry::core::{Output, ReceiveConfig, ReceiveCore, Verdict};

fn requests(core: &mut ReceiveCore) -> Vec<Output> {
    std::iter::from_fn(|| core.poll_output()).collect()
}

/// The old core allocated one bit per chunk up front: 2^62 chunks aborted the process.
#[test]
fn a_core_for_an_enormous_chunk_count_allocates_a_window_only() {
    let now = Instant::now();
    let cfg = ReceiveConfig { window: 64, ..ReceiveConfig::default() };
    let mut core = ReceiveCore::new(now, 1 << 62, 0, cfg);
    assert!(!requests(&mut core).is_empty());
    assert_eq!(core.handle_frame(now, 0), Ok(Verdict::Write));
    assert_eq!(core.first_missing(), 1);
}

/// Chunks far ahead of the first missing one are dropped (asked for again later), chunks
/// inside the window are tracked, and the window slides over millions of chunks.
#[test]
fn chunks_beyond_the_window_are_dropped_and_the_window_slides() {
    let now = Instant::now();
    let count = 3_000_000;
    let mut core = ReceiveCore::new(now, count, 0, ReceiveConfig::default());
    requests(&mut core);
    assert_eq!(core.handle_frame(now, count - 1), Ok(Verdict::Duplicate), "far ahead: dropped");
    assert_eq!(core.handle_frame(now, 5), Ok(Verdict::Write));
    assert_eq!(core.handle_frame(now, 5), Ok(Verdict::Duplicate));
    for i in (0..count).filter(|&i| i != 5) {
        assert_eq!(core.handle_frame(now, i), Ok(Verdict::Write), "chunk {i}");
    }
    assert_eq!(core.first_missing(), count);
    assert_eq!(core.received(), count);
    core.handle_trailer(now);
    core.handle_synced(now + Duration::from_millis(1), count);
    assert!(requests(&mut core).contains(&Output::Verify));
}

/// Out of order inside the window, across the ring's wrap-around: every chunk counts once.
#[test]
fn reordering_across_the_ring_boundary_counts_each_chunk_once() {
    let now = Instant::now();
    let count = 200_000u64;
    let mut core = ReceiveCore::new(now, count, 0, ReceiveConfig::default());
    // Deliver in blocks of 1000, each block reversed, each chunk twice.
    for block in (0..count).step_by(1000) {
        for i in (block..(block + 1000).min(count)).rev() {
            assert_eq!(core.handle_frame(now, i), Ok(Verdict::Write), "chunk {i}");
            assert_eq!(core.handle_frame(now, i), Ok(Verdict::Duplicate), "chunk {i} again");
        }
        assert_eq!(core.first_missing(), (block + 1000).min(count));
    }
    assert_eq!(core.received(), count);
}
