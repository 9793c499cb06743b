//! A private network namespace for one test: its own loopback, traffic shaping and firewall
//! rules (nftables), torn down when dropped. Needs root (or CAP_NET_ADMIN) and `ip`, `tc`, `nft`;
//! [`Netns::new`] says why when it cannot build one, and the test fails with that reason.

use std::process::Command;

pub struct Netns {
    pub name: String,
}

fn run(args: &[&str]) -> Result<(), String> {
    let out = Command::new(args[0]).args(&args[1..]).output().map_err(|e| format!("{}: {e}", args[0]))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("`{}` failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

impl Netns {
    /// A namespace with loopback up, named after the test and this process (unique per test).
    pub fn new(test: &str) -> Result<Netns, String> {
        let name = format!("af-{}-{}", std::process::id(), test);
        run(&["ip", "netns", "add", &name])?;
        let ns = Netns { name };
        ns.exec(&["ip", "link", "set", "lo", "up"])?;
        ns.exec(&["nft", "add", "table", "inet", "agentferry_test"])?;
        ns.exec(&[
            "nft",
            "add chain inet agentferry_test input { type filter hook input priority 0 ; policy accept ; }",
        ])?;
        Ok(ns)
    }

    pub fn exec(&self, args: &[&str]) -> Result<(), String> {
        let mut full = vec!["ip", "netns", "exec", &self.name];
        full.extend_from_slice(args);
        run(&full)
    }

    /// A command that runs `program` inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name, program]);
        cmd
    }

    /// Shape loopback to `mbit` Mbit/s, so a transfer lasts long enough to act on mid-way.
    pub fn limit_rate(&self, mbit: u32) -> Result<(), String> {
        let rate = format!("{mbit}mbit");
        self.exec(&[
            "tc", "qdisc", "add", "dev", "lo", "root", "tbf", "rate", &rate, "burst", "256kb", "latency", "100ms",
        ])
    }

    /// Reject every TCP packet to `port` with a reset (new and established connections alike).
    pub fn block_tcp_port(&self, port: u16) -> Result<(), String> {
        let rule =
            format!("add rule inet agentferry_test input tcp dport {port} reject with tcp reset comment \"block\"");
        self.exec(&["nft", &rule])
    }

    /// Drop every UDP packet (so no WebRTC path); not undone by [`Netns::unblock`].
    pub fn block_udp(&self) -> Result<(), String> {
        self.exec(&[
            "nft",
            "add chain inet agentferry_test udp_input { type filter hook input priority 0 ; policy accept ; }",
        ])?;
        self.exec(&["nft", "add rule inet agentferry_test udp_input meta l4proto udp drop"])
    }

    /// Remove every rule added by [`Netns::block_tcp_port`].
    pub fn unblock(&self) -> Result<(), String> {
        self.exec(&["nft", "flush", "chain", "inet", "agentferry_test", "input"])
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = run(&["ip", "netns", "del", &self.name]);
    }
}
