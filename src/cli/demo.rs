//! `agentferry demo`: two nodes in one process, one generated file, one loopback transfer.
//!
//! It exercises exactly what a real transfer does (ticket, HTTP path, sealing, journal, hash
//! check, final rename) with temporary homes, and prints what a user wants to know first:
//! which path, how long, how fast, and whether the hashes agree.

use std::{io::Write, os::unix::fs::FileExt, time::Instant};

use rand::RngCore;

use agentferry::{
    Node, NodeConfig, ReceiveOptions, SendOptions, TransferError, engine::Event, home::Home, transport::Prefer,
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

    let config = NodeConfig { bind: ([127, 0, 0, 1], 0).into(), ..NodeConfig::default() };
    let sender = Node::new(Home::open(scratch.join("sender-home"))?, config.clone());
    let receiver = Node::new(Home::open(scratch.join("receiver-home"))?, config);

    eprintln!("agentferry demo: {} MiB between two nodes over loopback", args.size_mib);
    let mut sending = sender
        .send(SendOptions { path: source, expires_in: std::time::Duration::from_secs(600), prefer: Prefer::Auto })
        .await?;
    let Some(Event::Ticket { ticket, .. }) = sending.events.recv().await else {
        return Err(sending.finish().await.err().unwrap_or(TransferError::Cancelled));
    };
    let started = Instant::now();
    let receiving = receiver
        .receive(
            ticket.parse()?,
            ReceiveOptions { output_dir: scratch.join("inbox"), overwrite: false, peer: None, prefer: None },
        )
        .await?;
    let (mut path, mut addr) = ("http", None);
    let mut events = receiving.events;
    while let Some(event) = events.recv().await {
        if let Event::Attempt { ok: true, addr: a, path: p, .. } = event {
            (path, addr) = (p, Some(a));
        }
    }
    let received = receiving.task.await.map_err(|_| TransferError::Cancelled)??;
    let elapsed = started.elapsed();
    let sent = sending.finish().await?;

    let mut out = std::io::stdout().lock();
    let mb = received.bytes as f64 / 1e6;
    let _ = writeln!(out, "path     {path}{}", addr.map(|a| format!(" ({a})")).unwrap_or_default());
    let _ = writeln!(out, "size     {} bytes", received.bytes);
    let _ = writeln!(out, "time     {:.3} s", elapsed.as_secs_f64());
    let _ = writeln!(out, "speed    {:.0} MB/s", mb / elapsed.as_secs_f64());
    let _ = writeln!(out, "sha256   {}", received.sha256);
    let _ = writeln!(
        out,
        "verified {}",
        if sent.sha256 == received.sha256 { "sender and receiver agree" } else { "MISMATCH" }
    );
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
