//! Owning a background task: [`AbortOnDrop`] ties a spawned task's life to a value, so a task
//! never outlives what it serves when that is dropped early (an error, a cancelled future).

/// Aborts the task when dropped; the handle inside can still be awaited.
#[derive(Debug)]
pub struct AbortOnDrop<T = ()>(pub tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}
