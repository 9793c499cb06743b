//! How the process's allocator treats the large buffers transfers cycle through.
//!
//! Every chunk in flight is a buffer of the chunk size (256 KiB by default) on each side. glibc
//! serves blocks that large with `mmap` and returns them with `munmap` (or trims its heap as soon
//! as the top of it is free), so each new chunk buffer faulted its pages in afresh and the
//! kernel zeroed them: about 50 000 page faults per GiB on each side, a tenth of their CPU time.
//! Keeping freed blocks for reuse instead costs no peak memory (the pipelines bound how many
//! buffers live at once); it only means memory freed after a transfer is returned when the heap
//! holds more than the trim threshold free, not at once.

/// Blocks up to this size come from the heap, so they are reused (glibc's ceiling on 64-bit).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: libc::c_int = 32 << 20;
/// Free memory at the top of a heap is returned to the system beyond this much.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TRIM_THRESHOLD: libc::c_int = 64 << 20;

/// Tune the allocator for chunk buffers; call once, first thing in `main`.
pub fn keep_freed_buffers() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes glibc's allocation parameters; no allocation is in flight
    // on another thread this early.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
    }
}
