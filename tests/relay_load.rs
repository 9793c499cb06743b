//! The relay under load and under attack, in one process: many transfers at once, hostile
//! clients, and a channel that injects garbage, forgeries, replays and reordering.

use std::{path::Path, sync::Arc, time::Duration};

use agentferry::{
    Node, NodeConfig, Prefer, ReceiveOptions, SendOptions, Ticket,
    channel::{ChannelHint, websocket::RelayClient},
    crypto::random_epoch,
    frame::{FLAG_LAST, FrameKind, Sealer},
    home::Home,
    mailbox::{MailboxId, MailboxKey},
    relay::{
        proto::Envelope,
        server::{RelayConfig, RelayServer},
    },
};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::{connect_async, tungstenite::Message};

fn node(dir: &Path, name: &str, relay: &str) -> Node {
    let config = NodeConfig {
        name: name.into(),
        bind: "127.0.0.1:0".parse().unwrap(),
        inbox_bind: "127.0.0.1:0".parse().unwrap(),
        channel: Some(relay.parse::<ChannelHint>().unwrap()),
        ..NodeConfig::default()
    };
    Node::new(Home::open(dir.join(name)).unwrap(), config)
}

fn content(size: usize, seed: u8) -> Vec<u8> {
    (0..size).map(|i| (i as u32).wrapping_mul(2_654_435_761).to_be_bytes()[0] ^ seed).collect()
}

/// Send `data` from a new node to a new node, relay only; returns the bytes received.
async fn transfer_via_relay(dir: &Path, name: &str, relay: &str, data: &[u8]) -> Vec<u8> {
    let (a, b) = (node(dir, &format!("{name}-a"), relay), node(dir, &format!("{name}-b"), relay));
    let src = dir.join(format!("{name}.bin"));
    std::fs::write(&src, data).unwrap();
    let mut sending =
        a.send(SendOptions { path: src, expires_in: Duration::from_secs(600), prefer: Prefer::Relay }).await.unwrap();
    let Some(agentferry::Event::Ticket { ticket, .. }) = sending.events.recv().await else { panic!("no ticket") };
    let out = dir.join(format!("{name}-out"));
    let options = ReceiveOptions { output_dir: out.clone(), overwrite: false, peer: None, prefer: Some(Prefer::Relay) };
    let received = b.receive(ticket.parse().unwrap(), options).await.unwrap().finish().await.unwrap();
    sending.finish().await.unwrap();
    std::fs::read(received.saved_to.unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_transfers_through_one_relay_all_complete() {
    let relay = RelayServer::bind("127.0.0.1:0".parse().unwrap(), RelayConfig::default()).await.unwrap();
    let (dir, url) = (tempfile::tempdir().unwrap(), relay.url());
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let (dir, url) = (dir.path().to_owned(), url.clone());
            tokio::spawn(async move {
                let data = content(200_000 + i * 7919, i as u8);
                let got = transfer_via_relay(&dir, &format!("t{i}"), &url, &data).await;
                assert!(got == data, "transfer {i} arrived intact");
            })
        })
        .collect();
    for task in tasks {
        tokio::time::timeout(Duration::from_secs(120), task).await.expect("in time").unwrap();
    }
    let stats = relay.stats();
    assert!(stats.connections_total >= 100, "{stats:?}");
    assert_eq!(stats.queued_bytes, 0, "nothing left behind: {stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_clients_neither_crash_nor_starve_the_relay() {
    let cfg = RelayConfig { max_message: 512 * 1024, rate_messages: 2000, ..RelayConfig::default() };
    let relay = RelayServer::bind("127.0.0.1:0".parse().unwrap(), cfg).await.unwrap();
    let endpoint = format!("{}/v1/relay", relay.url());

    // Oversized: disconnected.
    let (mut big, _) = connect_async(&endpoint).await.unwrap();
    let huge = Envelope::Send(MailboxId::from_bytes([1; 32]), Bytes::from(vec![0u8; 2 << 20])).encode();
    let _ = big.send(Message::Binary(huge)).await;
    // Garbage: disconnected after a few.
    let (mut junk, _) = connect_async(&endpoint).await.unwrap();
    for _ in 0..20 {
        let _ = junk.send(Message::Binary(Bytes::from_static(b"\xffnot an envelope"))).await;
    }
    // Flood: thousands of messages to many mailboxes, as fast as possible.
    let flood_endpoint = endpoint.clone();
    let flood = tokio::spawn(async move {
        let (mut ws, _) = connect_async(&flood_endpoint).await.unwrap();
        for i in 0..20_000u32 {
            let mut mailbox = [9u8; 32];
            mailbox[..4].copy_from_slice(&(i % 500).to_be_bytes());
            if ws
                .send(Message::Binary(
                    Envelope::Send(MailboxId::from_bytes(mailbox), Bytes::from_static(&[0; 1024])).encode(),
                ))
                .await
                .is_err()
            {
                break;
            }
        }
    });
    // Slow reader: subscribes and never reads.
    let (mut slow, _) = connect_async(&endpoint).await.unwrap();
    slow.send(Message::Binary(Envelope::Subscribe(MailboxKey::from_bytes([7; 32])).encode())).await.unwrap();
    let pusher = RelayClient::connect(&relay.url()).await.unwrap();
    for _ in 0..400 {
        pusher.send(MailboxKey::from_bytes([7; 32]).id(), Bytes::from(vec![1u8; 64 * 1024])).await.unwrap();
    }

    // Meanwhile an honest transfer goes through, in reasonable time.
    let dir = tempfile::tempdir().unwrap();
    let data = content(3 << 20, 42);
    let got =
        tokio::time::timeout(Duration::from_secs(60), transfer_via_relay(dir.path(), "honest", &relay.url(), &data))
            .await
            .expect("the honest transfer was not starved");
    assert!(got == data);

    flood.await.unwrap();
    let stats = relay.stats();
    assert!(stats.oversized >= 1, "{stats:?}");
    assert!(stats.malformed >= 16, "{stats:?}");
    assert!(stats.refused >= 1, "the slow reader's mailbox filled up: {stats:?}");
    assert!(stats.queued_bytes <= RelayConfig::default().max_queued_bytes);
    let _ = (big.next().await, junk.next().await, slow.close(None).await);
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_forgeries_replays_and_reordering_on_the_channel_are_harmless() {
    let relay = RelayServer::bind("127.0.0.1:0".parse().unwrap(), RelayConfig::default()).await.unwrap();
    let url = relay.url();
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (node(dir.path(), "a", &url), node(dir.path(), "b", &url));
    let data = content(8 << 20, 7);
    let src = dir.path().join("attacked.bin");
    std::fs::write(&src, &data).unwrap();
    let mut sending =
        a.send(SendOptions { path: src, expires_in: Duration::from_secs(600), prefer: Prefer::Relay }).await.unwrap();
    let Some(agentferry::Event::Ticket { ticket, .. }) = sending.events.recv().await else { panic!("no ticket") };
    let ticket: Ticket = ticket.parse().unwrap();

    // Whoever runs the relay sees the mailbox ids; it can inject anything there.
    let to_receiver = ticket.session_key.mailbox(&ticket.transfer_id, b"receiver").id();
    let attacker = Arc::new(RelayClient::connect(&url).await.unwrap());
    let chunk = ticket.chunk_size as usize;
    let count = data.len().div_ceil(chunk) as u64;
    let valid = |index: u64| {
        // Genuine frames (as if captured earlier), to replay and reorder.
        let mut sealer = Sealer::new(&ticket.session_key, ticket.transfer_id, random_epoch());
        let part = &data[index as usize * chunk..((index as usize + 1) * chunk).min(data.len())];
        let mut buf = Sealer::buffer(part.len());
        buf.extend_from_slice(part);
        sealer.seal(FrameKind::Chunk, if index + 1 == count { FLAG_LAST } else { 0 }, index, &mut buf);
        buf.freeze()
    };
    let forged = {
        let other = agentferry::crypto::SessionKey::generate();
        let mut sealer = Sealer::new(&other, ticket.transfer_id, random_epoch());
        let mut buf = Sealer::buffer(chunk);
        buf.extend_from_slice(&vec![0xee; chunk]);
        sealer.seal(FrameKind::Chunk, 0, 3, &mut buf);
        buf.freeze()
    };
    // Chunks far ahead (reordered) and early chunks again (replayed), both genuine.
    let genuine: Vec<(Bytes, Bytes)> = (0..20u64).map(|round| (valid(count - 1 - round), valid(round % 3))).collect();
    let injector = {
        let attacker = Arc::clone(&attacker);
        tokio::spawn(async move {
            for (ahead, again) in genuine {
                let _ = attacker.send(to_receiver, Bytes::from_static(b"garbage that is no frame")).await;
                let _ = attacker.send(to_receiver, forged.clone()).await;
                let _ = attacker.send(to_receiver, ahead).await;
                let _ = attacker.send(to_receiver, again).await;
                tokio::task::yield_now().await;
            }
        })
    };
    let options = ReceiveOptions {
        output_dir: dir.path().join("out"),
        overwrite: false,
        peer: None,
        prefer: Some(Prefer::Relay),
    };
    let received = b.receive(ticket.clone(), options).await.unwrap().finish().await.unwrap();
    injector.await.unwrap();
    assert!(std::fs::read(received.saved_to.unwrap()).unwrap() == data, "only authentic bytes were written");
    sending.finish().await.unwrap();
}
