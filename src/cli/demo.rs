//! `agentferry demo`: two nodes in one process, one generated file, sent three times over
//! loopback, once pinned to each path: directly over HTTP, over a WebRTC data channel, then
//! through an embedded relay. The relay is also the channel WebRTC is signalled through and the
//! STUN server it asks, so the demo needs nothing configured.
//!
//! It exercises exactly what a real transfer does (ticket, path choice, sealing, journal, hash
//! check, final rename) with temporary homes, and prints what a user wants to know first:
//! which path, how long, how fast, and whether the hashes agree.

use std::{
    io::Write,
    os::unix::fs::FileExt,
    time::{Duration, Instant},
};

use rand::RngCore;

use agentferry::{
    Node, NodeConfig, ReceiveOptions, SendOptions, TransferError,
    channel::ChannelHint,
    core::Prefer,
    engine::Event,
    home::Home,
    relay::server::{RelayConfig, RelayServer},
};

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Size of the generated file in MiB.
    #[arg(long, default_value_t = 256)]
    size_mib: u64,
}

pub async fn run(args: DemoArgs) -> Result<(), TransferError> {
    let scratch = tempdir()?;
    let io = |e| TransferError::io(&scratch, e);
    let source = scratch.join("demo.bin");
    write_random(&source, args.size_mib << 20).map_err(io)?;

    // An embedded relay, so the relay path works with nothing configured.
    let relay = RelayServer::bind(([127, 0, 0, 1], 0).into(), RelayConfig::default()).await?;
    let config = NodeConfig {
        bind: ([127, 0, 0, 1], 0).into(),
        channel: Some(relay.url().parse::<ChannelHint>()?),
        ..NodeConfig::default()
    };
    let sender = Node::new(Home::open(scratch.join("sender-home"))?, config.clone());
    let receiver = Node::new(Home::open(scratch.join("receiver-home"))?, config);

    eprintln!(
        "agentferry demo: {} MiB between two nodes over loopback, direct, over WebRTC and through a relay",
        args.size_mib
    );
    let mut out = std::io::stdout().lock();
    for (round, prefer) in [Prefer::Http, Prefer::Webrtc, Prefer::Relay].into_iter().enumerate() {
        let options = SendOptions { path: source.clone(), expires_in: Duration::from_secs(600), prefer };
        let mut sending = sender.send(options).await?;
        let Some(Event::Ticket { ticket, .. }) = sending.events.recv().await else {
            return Err(sending.finish().await.err().unwrap_or(TransferError::Cancelled));
        };
        let started = Instant::now();
        let inbox = scratch.join(format!("inbox-{round}"));
        let options = ReceiveOptions { output_dir: inbox, overwrite: false, peer: None, prefer: Some(prefer) };
        let mut receiving = receiver.receive(ticket.parse()?, options).await?;
        let mut via = None;
        while let Some(event) = receiving.events.recv().await {
            if let Event::Attempt { ok: true, addr, path, route, .. } = event {
                // WebRTC names its route too: `direct` (host or hole-punched) or `turn`.
                via = Some(match route {
                    Some(route) => format!("{path} ({addr}, {route})"),
                    None => format!("{path} ({addr})"),
                });
            }
        }
        let received = receiving.outcome().await?;
        let elapsed = started.elapsed();
        let sent = sending.finish().await?;
        let agree = if sent.sha256 == received.sha256 { "sender and receiver agree" } else { "MISMATCH" };
        let _ = writeln!(out, "path     {}", via.unwrap_or_default());
        let _ = writeln!(out, "size     {} bytes", received.bytes);
        let _ = writeln!(out, "time     {:.3} s", elapsed.as_secs_f64());
        let _ = writeln!(out, "speed    {:.0} MB/s", received.bytes as f64 / 1e6 / elapsed.as_secs_f64());
        let _ = writeln!(out, "sha256   {}", received.sha256);
        let _ = writeln!(out, "verified {agree}\n");
    }
    relay.shutdown().await;
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(())
}

fn tempdir() -> Result<std::path::PathBuf, TransferError> {
    let dir = std::env::temp_dir().join(format!("agentferry-demo-{}", agentferry::id::TransferId::random()));
    agentferry::home::create_private_dir(&dir)?;
    Ok(dir)
}

fn write_random(path: &std::path::Path, size: u64) -> std::io::Result<()> {
    let file = std::fs::File::create(path)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut offset = 0;
    while offset < size {
        let n = (size - offset).min(buf.len() as u64) as usize;
        rand::rng().fill_bytes(&mut buf[..n]);
        file.write_all_at(&buf[..n], offset)?;
        offset += n as u64;
    }
    Ok(())
}
