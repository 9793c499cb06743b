//! The `agentferry` binary: parse, run, exit code. Everything else lives in the library.

mod cli;

fn main() -> std::process::ExitCode {
    agentferry::alloc::keep_freed_buffers();
    // Before anything opens a file or a socket: the listeners size their caps from this limit,
    // and the default soft limit (often 1024) is far below what the hard limit allows.
    agentferry::accept::raise_fd_limit();
    cli::main()
}
