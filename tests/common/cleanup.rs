//! Folders a test makes under the system temp dir, removed when the test ends.
//!
//! The test harness runs every test on a thread of its own, and a thread's thread-locals are
//! dropped when it exits: a folder registered here goes away after the test's own values
//! (servers, child processes) have been dropped, whether the test passed or failed, without the
//! test holding a guard. A green run leaves nothing behind in `/tmp`.

use std::cell::RefCell;
use std::path::PathBuf;

struct Folders(RefCell<Vec<PathBuf>>);

impl Drop for Folders {
    fn drop(&mut self) {
        for dir in self.0.borrow_mut().drain(..) {
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}

thread_local! {
    static FOLDERS: Folders = const { Folders(RefCell::new(Vec::new())) };
}

/// Removes `dir` (and everything in it) when the calling thread — the test — ends.
pub fn remove_at_test_end(dir: PathBuf) {
    // During thread teardown the list may be gone already: then nothing is registered.
    let _ = FOLDERS.try_with(|f| f.0.borrow_mut().push(dir));
}
