//! Issue 26, item 5: a local writer in a shared output folder swaps the receiver's temp names
//! while it works. The `.part` swapped for a hard link to a planted file used to be reported
//! "completed, verified" with the planted bytes under the final name; the `.tree` staging folder
//! swapped for a link mid-build used to have the whole tree written into the link's target.

mod attack;
mod common;

use std::time::{Duration, Instant};

use attack::*;
use common::*;

#[test]
fn a_temp_file_swapped_for_a_hard_link_mid_transfer_is_never_placed() {
    let (a, b) = (Node::new(), Node::new());
    let size = 64 << 20;
    let src = random_file(a.dir.path(), "report.bin", size, 81);
    let (_sender, ticket, id) = a.send(&src, &[]);
    let proxy = PausingProxy::start(ticket.parse::<agentferry::Ticket>().unwrap().addrs[0], 4 << 20);
    std::fs::create_dir_all(b.out()).unwrap();
    let out = b.out();
    let receiver = Running::new_public(
        command(&b, &["receive", &via(&ticket, proxy.addr), "-o", out.to_str().unwrap(), "--json"]).spawn().unwrap(),
    );
    proxy.wait_held();

    // The attacker's file, linked in under the temp name the receiver writes through.
    let part = out.join(format!(".report.bin.{}.part", &id[..12]));
    assert!(part.symlink_metadata().is_ok_and(|m| m.is_file()), "the receiver has its temp file by now");
    let planted = out.join("planted.bin");
    std::fs::write(&planted, vec![0x5a; size]).unwrap();
    std::fs::remove_file(&part).unwrap();
    std::fs::hard_link(&planted, &part).unwrap();
    proxy.release();

    let (code, last) = receiver.finish();
    assert_eq!(code, 5, "{last}");
    assert_eq!(last["code"], "temp_file_swapped", "{last}");
    assert!(last["hint"].as_str().is_some_and(|h| h.contains("-o")), "{last}");
    assert!(!out.join("report.bin").exists(), "the planted file took the final name");
    assert_eq!(std::fs::read(&planted).unwrap(), vec![0x5a; size], "the planted file was written through");
}

#[test]
fn a_staging_folder_swapped_for_a_link_mid_build_writes_nothing_elsewhere() {
    let (a, b) = (Node::new(), Node::new());
    // Enough files that building the tree takes a while after the stream verified.
    let tree = a.dir.path().join("tree");
    for d in 0..40 {
        let dir = tree.join(format!("d{d:02}"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..500 {
            std::fs::write(dir.join(format!("f{f:03}.txt")), format!("{d}/{f}")).unwrap();
        }
    }
    let (_sender, ticket, id) = a.send(&tree, &[]);
    let out = b.out();
    std::fs::create_dir_all(&out).unwrap();
    let elsewhere = b.dir.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let mut receiver =
        Running::new_public(command(&b, &["receive", &ticket, "-o", out.to_str().unwrap(), "--json"]).spawn().unwrap());

    // As soon as the staging folder appears, move it away and put a link in its place.
    let staging = out.join(format!(".tree.{}.tree", &id[..12]));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if staging.symlink_metadata().is_ok_and(|m| m.is_dir()) && std::fs::rename(&staging, out.join("moved")).is_ok()
        {
            std::os::unix::fs::symlink(&elsewhere, &staging).unwrap();
            break;
        }
        assert!(receiver.child.try_wait().unwrap().is_none(), "the receive ended before its tree was built");
        assert!(Instant::now() < deadline, "the staging folder never appeared");
        std::thread::yield_now();
    }
    let (code, last) = receiver.finish();
    eprintln!("the receive ended with {code}: {last}; moved away: {} entries", listing(&out.join("moved")).len());
    assert!(!out.join("tree").exists(), "a tree was placed: {last}");
    assert!(listing(&elsewhere).is_empty(), "written through the link: {:?}", listing(&elsewhere));
    // Caught where it was placed (or, if the swap came between creating the folder and opening
    // it, there).
    assert!(
        code == 5 && last["code"] == "temp_file_swapped" || code == 6 && last["code"] == "io_error",
        "{code} {last}"
    );
}
