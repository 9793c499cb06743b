//! A receiver that runs out of disk keeps what it has and finishes after space is freed.
//!
//! Needs root to mount a small tmpfs; without it each test fails and says so (`.ci/test` leaves
//! them out only when asked: `AGENTFERRY_SKIP=tmpfs`).

mod common;

use std::process::Command;

use common::*;

struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    /// A tmpfs of `size` on `dir`; the test fails, saying why, where it cannot be mounted.
    fn mount(dir: &std::path::Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs", dir.to_str().unwrap()])
            .output()
            .unwrap_or_else(|e| panic!("cannot run mount: {e}"));
        assert!(
            out.status.success(),
            "cannot mount a tmpfs here ({}): run as root, or leave this group out with AGENTFERRY_SKIP=tmpfs",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Tmpfs(dir.to_owned())
    }

    fn resize(&self, size: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,size={size}"), self.0.to_str().unwrap()])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn disk_full_is_reported_and_the_transfer_resumes_once_space_is_freed() {
    let (a, b) = (Node::new(), Node::new());
    let disk = Tmpfs::mount(&b.out(), "2m");
    let src = random_file(a.dir.path(), "big.bin", 6 * 1024 * 1024, 9);
    let (sender, ticket, id) = a.send(&src, &[]);
    let (code, events, stderr) = b.run(&["receive", &ticket, "-o", b.out().to_str().unwrap(), "--json"]);
    assert_eq!(code, 6, "{events:?} {stderr}");
    let last = events.last().unwrap();
    assert_eq!(last["code"], "disk_full");
    assert!(last["hint"].as_str().unwrap().contains(&format!("`agentferry resume {id}`")), "the real id: {last}");
    assert!(!b.out().join("big.bin").exists());
    let (_, status, _) = b.run(&["status", &id, "--json"]);
    assert_eq!(status[0]["state"], "failed");
    assert_eq!(status[0]["error"]["code"], "disk_full");

    disk.resize("16m");
    let (code, events, stderr) = b.run(&["resume", &id, "--json"]);
    assert_eq!(code, 0, "{events:?} {stderr}");
    assert_same_file(&src, &b.out().join("big.bin"));
    assert_eq!(sender.finish().0, 0);
}

#[test]
fn a_folder_that_leaves_no_room_to_build_its_tree_is_refused_before_anything_travels() {
    let (a, b) = (Node::new(), Node::new());
    // Room for the folder's stream (6 MiB), not for the stream and the tree built from it.
    let disk = Tmpfs::mount(&b.out(), "10m");
    let tree = a.dir.path().join("tree");
    std::fs::create_dir(&tree).unwrap();
    random_file(&tree, "one.bin", 3 * 1024 * 1024, 1);
    random_file(&tree, "two.bin", 3 * 1024 * 1024, 2);
    let (sender, ticket, id) = a.send(&tree, &[]);
    let (code, events, stderr) = b.run(&["receive", &ticket, "-o", b.out().to_str().unwrap(), "--json"]);
    assert_eq!(code, 6, "{events:?} {stderr}");
    let last = events.last().unwrap();
    assert_eq!(last["code"], "disk_full", "{last}");
    assert!(events.iter().all(|e| e["event"] != "progress" || e["bytes_done"] == 0), "bytes travelled: {events:?}");
    assert!(!b.out().join("tree").exists());

    disk.resize("16m");
    let (code, events, stderr) = b.run(&["resume", &id, "--json"]);
    assert_eq!(code, 0, "{events:?} {stderr}");
    assert_same_file(&tree.join("two.bin"), &b.out().join("tree/two.bin"));
    assert_eq!(sender.finish().0, 0);
}
