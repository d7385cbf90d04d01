//! Early writeback of an output that will be flushed: while a writer fills the file, a thread
//! asks the kernel every [`TICK`] to start writing the dirty pages out
//! (`sync_file_range(SYNC_FILE_RANGE_WRITE)`, which only queues the I/O and does not wait for
//! it), so the disk works while the writer computes and the final `fsync` finds little left.
//! Without it nothing reaches the disk before that `fsync` for an output smaller than the
//! kernel's background threshold (`vm.dirty_background_ratio`, 10 % of RAM): the whole output
//! is written after the work is done, in series with it.

use std::fs::File;
use std::os::unix::io::AsRawFd;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// How often writeback is started.
const TICK: Duration = Duration::from_millis(50);

/// Starts writeback of the file's dirty pages every [`TICK`] until dropped (the drop stops the
/// thread and waits for it; the caller's `fsync` then makes the file durable). Does nothing
/// when `enabled` is false (an output that will not be flushed is left to the kernel) or when
/// the thread cannot be started (the `fsync` still does all the work, as without it).
pub struct EarlyWriteback {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl EarlyWriteback {
    /// Starts the thread for `file` (its own handle: the caller's may be closed first).
    pub fn start(file: &File, enabled: bool) -> Self {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let thread = match (enabled, file.try_clone()) {
            (true, Ok(f)) => {
                let stop = Arc::clone(&stop);
                std::thread::Builder::new()
                    .name("writeback".into())
                    .spawn(move || run(&f, &stop))
                    .ok()
            }
            _ => None,
        };
        EarlyWriteback { stop, thread }
    }
}

fn run(f: &File, stop: &(Mutex<bool>, Condvar)) {
    let (lock, cv) = stop;
    let mut stopped = lock.lock().unwrap_or_else(|e| e.into_inner());
    while !*stopped {
        (stopped, _) = cv
            .wait_timeout(stopped, TICK)
            .unwrap_or_else(|e| e.into_inner());
        // Safety: a plain syscall on a descriptor this thread owns; offset 0 and length 0
        // cover the whole file. A failure (e.g. a filesystem without it) only means the
        // final fsync does the work, so it is ignored.
        unsafe {
            libc::sync_file_range(f.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE);
        }
    }
}

impl Drop for EarlyWriteback {
    fn drop(&mut self) {
        let (lock, cv) = &*self.stop;
        *lock.lock().unwrap_or_else(|e| e.into_inner()) = true;
        cv.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn writeback_runs_while_writing_and_stops_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out");
        let mut f = File::create(&p).unwrap();
        let wb = EarlyWriteback::start(&f, true);
        assert!(wb.thread.is_some());
        for i in 0..64u8 {
            f.write_all(&[i; 64 << 10]).unwrap();
        }
        std::thread::sleep(TICK * 3);
        drop(wb);
        f.sync_all().unwrap();
        let b = std::fs::read(&p).unwrap();
        assert_eq!(b.len(), 64 * (64 << 10));
        assert!(
            b.chunks(64 << 10)
                .enumerate()
                .all(|(i, c)| c.iter().all(|&x| x == i as u8))
        );
        assert!(EarlyWriteback::start(&f, false).thread.is_none());
    }
}
