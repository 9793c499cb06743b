//! The `agentferry` binary: parse, run, exit code. Everything else lives in the library.

mod cli;

fn main() -> std::process::ExitCode {
    agentferry::alloc::keep_freed_buffers();
    // Before anything opens a file or a socket: the listeners size their caps from this limit,
    // and the default soft limit (often 1024) is far below what the hard limit allows.
    agentferry::accept::raise_fd_limit();
    exit_with_parent();
    cli::main()
}

/// Run by a launcher (the npm package's, which names its pid in `AGENTFERRY_EXIT_WITH_PARENT`):
/// end when it does, even by SIGKILL, which it cannot pass on. Without this a host that kills
/// the launcher leaves the server running, holding its ports and its node home.
fn exit_with_parent() {
    #[cfg(target_os = "linux")]
    if let Some(launcher) = std::env::var("AGENTFERRY_EXIT_WITH_PARENT").ok().and_then(|p| p.parse::<u32>().ok()) {
        // SAFETY: prctl with PR_SET_PDEATHSIG takes a signal number and touches no memory.
        unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) };
        // The launcher may have died before the call: then nobody will signal us.
        if std::os::unix::process::parent_id() != launcher {
            std::process::exit(0);
        }
    }
}
