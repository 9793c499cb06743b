//! How the CLI shows events: JSON Lines on stdout, or a progress bar and plain lines on stderr.
//!
//! With `--json` every event becomes one line, `{"event": <name>, ...}` (the envelope is
//! documented in docs/cli-json.md); the engine already publishes progress at most ten times a second.
//! Without it, the ticket goes to stdout (so `agentferry send f | …` captures it) and everything
//! else goes to stderr for the person watching. When standard output carries a received file
//! (`receive -o -`), the JSON Lines go to stderr too.

use std::io::Write;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use agentferry::{Event, journal::TransferStatus};

/// `link` (`send --link`, both variants): after the ticket, report its browser link too.
pub enum Reporter {
    /// JSON Lines, on stderr when `on_stderr`.
    Json { on_stderr: bool, link: Option<LinkRequest> },
    /// `by_code`: a send whose ticket is handed over by a code, so the person sees the code
    /// instead of the ticket.
    Human { bar: Option<ProgressBar>, sending: Option<(String, u64)>, by_code: bool, link: Option<LinkRequest> },
}

/// `send --link`, with its `--password` if any.
pub struct LinkRequest {
    password: Option<String>,
}

impl Reporter {
    /// `stdout_is_data`: standard output carries a file, so nothing else may be written there.
    pub fn new(json: bool, stdout_is_data: bool) -> Self {
        if json {
            Reporter::Json { on_stderr: stdout_is_data, link: None }
        } else {
            Reporter::Human { bar: None, sending: None, by_code: false, link: None }
        }
    }

    /// The send that follows is `send --link`, protected by `password` if given.
    pub fn with_link(&mut self, password: Option<String>) {
        let (Reporter::Json { link, .. } | Reporter::Human { link, .. }) = self;
        *link = Some(LinkRequest { password });
    }

    /// The send that follows hands its ticket over by a code: show the code, not the ticket.
    pub fn sending_by_code(&mut self) {
        if let Reporter::Human { by_code, .. } = self {
            *by_code = true;
        }
    }

    pub fn event(&mut self, event: &Event) {
        self.show(event);
        let (Reporter::Json { link: Some(request), .. } | Reporter::Human { link: Some(request), .. }) = self else {
            return;
        };
        if let Event::Ticket { transfer_id, ticket, .. } = event {
            let password = request.password.as_deref();
            let link = ticket.parse().ok().and_then(|ticket| agentferry::web::link(&ticket, password));
            match link {
                Some(link) => self.show(&Event::Link { transfer_id: *transfer_id, link }),
                None => eprintln!(
                    "This send has no browser link: it has neither a relay nor a direct address to put in one."
                ),
            }
        }
    }

    fn show(&mut self, event: &Event) {
        match self {
            Reporter::Json { on_stderr, .. } => {
                let mut line = serde_json::to_vec(event).expect("events serialise");
                line.push(b'\n');
                let _ = if *on_stderr {
                    std::io::stderr().lock().write_all(&line)
                } else {
                    let mut out = std::io::stdout().lock();
                    out.write_all(&line).and_then(|()| out.flush())
                };
            }
            Reporter::Human { bar, sending, by_code, .. } => human(bar, sending, *by_code, event),
        }
    }
}

/// The bar: the file's name, percent, bytes, and the engine's smoothed rate and eta in the message.
fn new_bar(total: u64, name: Option<&str>) -> ProgressBar {
    let b = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    b.set_style(
        ProgressStyle::with_template("{prefix} {percent:>3}% {bar:30.cyan/blue} {bytes}/{total_bytes} {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    if let Some(name) = name {
        b.set_prefix(name.to_owned());
    }
    b
}

/// `sending`: the name and size from the sender's ticket, for its bar.
fn human(bar: &mut Option<ProgressBar>, sending: &mut Option<(String, u64)>, by_code: bool, event: &Event) {
    match event {
        Event::Ticket { file_name, bytes_total, folder, .. } if by_code => {
            let shown = if folder.is_some() { format!("{file_name}/") } else { file_name.clone() };
            *sending = Some((shown, *bytes_total));
            eprintln!("Sending {file_name} ({}).", human_bytes(*bytes_total));
        }
        Event::Code { code, purpose, relay, expires_at, .. } => {
            println!("{code}");
            let command = if *purpose == "pair" { "agentferry peers add" } else { "agentferry receive" };
            let left = expires_at.saturating_sub(agentferry::journal::unix_now());
            let message = format!(
                "On the other machine run (within {}, with the same relay):\n  AGENTFERRY_RELAY={relay} {command} {code}\nThe code works once; waiting for it to be redeemed…",
                human_secs(left)
            );
            say(bar, message);
        }
        Event::CodeRedeemed { verifier, .. } => {
            let message = match verifier {
                Some(v) => format!("The code was redeemed. Verifier: {v} (the other side must show the same)"),
                None => "The code was redeemed.".to_owned(),
            };
            say(bar, message);
        }
        Event::Ticket { ticket, file_name, bytes_total, folder, .. } => {
            let shown = if folder.is_some() { format!("{file_name}/") } else { file_name.clone() };
            *sending = Some((shown, *bytes_total));
            println!("{ticket}");
            match folder {
                Some(f) => {
                    for skipped in &f.skipped {
                        eprintln!("skipping {skipped}");
                    }
                    if f.skipped_count > f.skipped.len() as u64 {
                        eprintln!("… and {} more entries skipped", f.skipped_count - f.skipped.len() as u64);
                    }
                    eprintln!(
                        "Sending folder {file_name}/ ({} files, {} folders, {}). On the other machine run:",
                        f.files,
                        f.folders,
                        human_bytes(*bytes_total)
                    );
                }
                None => eprintln!("Sending {file_name} ({}). On the other machine run:", human_bytes(*bytes_total)),
            }
            eprintln!("  agentferry receive {ticket}");
        }
        Event::Offered { peer, state, reason, .. } => match reason {
            Some(reason) => eprintln!("{peer} holds the offer as {state} ({reason}); someone there must accept it"),
            None => eprintln!("{peer} {state} the offer and is fetching the file"),
        },
        Event::Link { link, .. } => {
            println!("{link}");
            eprintln!(
                "Or, for a person with only a browser: open the link above (this machine's address must be reachable)."
            );
        }
        Event::Listening { addrs, .. } => {
            let list: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
            eprintln!("Listening on {}", list.join(", "));
            if let Some((name, total)) = sending {
                let b = bar.get_or_insert_with(|| new_bar(*total, Some(name)));
                b.set_message("waiting for the receiver");
                b.tick();
            }
        }
        // One line when the receiver moves onto or off a path; every try is in `--json`.
        Event::Path { path, state, reason, .. } => {
            let message = match (state, reason) {
                (&"using", _) => format!("receiving over {path}"),
                (_, Some(reason)) => format!("{path} stopped working ({reason}); trying another path"),
                _ => format!("left {path}"),
            };
            match bar {
                Some(b) => b.println(message),
                None => eprintln!("{message}"),
            }
        }
        Event::Attempt { .. } => {}
        Event::Progress { bytes_done, bytes_total, rate, files, .. } => {
            let name = sending.as_ref().map(|(n, _)| n.as_str());
            let b = bar.get_or_insert_with(|| new_bar(*bytes_total, name));
            b.set_position(*bytes_done);
            let left = bytes_total.saturating_sub(*bytes_done);
            let mut message = match (*rate, *bytes_done) {
                (_, 0) => "waiting for the receiver".to_owned(),
                (0, _) => String::new(),
                (r, _) => format!("{}/s eta {}", human_bytes(r), human_secs(left / r.max(1))),
            };
            if let Some(f) = files {
                message.push_str(&format!("  {}/{} files", f.done, f.total));
                if let Some(current) = &f.current {
                    message.push_str(&format!("  {current}"));
                }
            }
            b.set_message(message);
        }
        Event::Completed { bytes, sha256, saved_to, sums, elapsed_ms, .. } => {
            if let Some(b) = bar.take() {
                b.finish_and_clear();
            }
            let secs = (*elapsed_ms as f64 / 1000.0).max(0.001);
            let rate = *bytes as f64 / secs / 1e6;
            match saved_to {
                Some(path) if path.as_os_str() == "-" => {
                    eprintln!("Received {} in {secs:.2} s ({rate:.0} MB/s) to standard output", human_bytes(*bytes))
                }
                Some(path) => {
                    eprintln!("Received {} in {secs:.2} s ({rate:.0} MB/s) to {}", human_bytes(*bytes), path.display())
                }
                None => eprintln!("Sent {} in {secs:.2} s; the receiver verified it", human_bytes(*bytes)),
            }
            eprintln!("sha256 {sha256}");
            if let Some(sums) = sums {
                let check = match saved_to.as_deref().and_then(|p| p.parent()) {
                    Some(dir) => format!("cd {} && sha256sum -c {}", dir.display(), sums.display()),
                    None => format!("sha256sum -c {}, from the folder that holds the tree", sums.display()),
                };
                eprintln!("each file's SHA-256 is listed in {} (check: {check})", sums.display());
            }
        }
        Event::Status { status } => print_status(status),
        Event::Exported { uri, name, expires_at, .. } => {
            println!("{uri}");
            eprintln!("On the machine that will push files to this one ({name}), run:");
            eprintln!("  agentferry peers add {uri}");
            eprintln!("or give the URI to its agent's add_peer tool. The grant expires at unix time {expires_at}.");
        }
        Event::Peer { peer } => {
            let state = if peer.expired { "expired" } else { "valid" };
            println!("{:<20} {state:<8} expires {}  inbox {}", peer.name, peer.expires_at, peer.inbox.join(", "));
        }
        Event::Grant { grant } => {
            let state = if grant.revoked {
                "revoked"
            } else if grant.expired {
                "expired"
            } else {
                "valid"
            };
            println!("{}  {state:<8} expires {}  {}", grant.id, grant.expires_at, grant.name);
        }
        Event::Relay { url, .. } => {
            println!("{url}");
            eprintln!("Relay listening; point nodes at it with AGENTFERRY_RELAY={url}");
        }
        Event::Inbox { addrs, download_dir } => {
            let list: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
            eprintln!("Taking pushes from trusted peers on {} into {}", list.join(", "), download_dir.display());
        }
        Event::Error { code, message, hint, .. } => {
            if let Some(b) = bar.take() {
                b.abandon();
            }
            eprintln!("error[{code}]: {message}");
            eprintln!("  hint: {hint}");
        }
    }
}

/// A line for the person: above the bar when one is drawn, else on stderr (a bar on a pipe is
/// hidden, and so would be what it prints).
fn say(bar: &Option<ProgressBar>, message: String) {
    match bar {
        Some(b) if !b.is_hidden() => b.println(message),
        _ => eprintln!("{message}"),
    }
}

/// The line above `status`'s table, or what an empty journal says.
pub fn status_header(empty: bool) {
    if empty {
        eprintln!("no transfers yet (`agentferry send FILE` starts one, `agentferry receive TICKET` fetches one)");
    } else {
        println!("{:<32}  {:<7}  {:<11}  {:<21}  NAME", "ID", "ROLE", "STATE", "DONE/TOTAL");
    }
}

fn print_status(s: &TransferStatus) {
    let state = serde_json::to_value(s.state).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
    let role = s.role.as_str();
    let progress = format!("{}/{}", human_bytes(s.bytes_done), human_bytes(s.bytes_total));
    println!("{}  {role:<7}  {state:<11}  {progress:<21}  {}", s.transfer_id, s.file_name);
    if let Some(path) = &s.saved_to {
        println!("    saved to {}", path.display());
    }
    if let Some(sums) = &s.sums {
        println!("    each file's SHA-256 in {}", sums.display());
    }
    if let Some(e) = &s.error {
        println!("    error[{}]: {}", e.code, e.message);
    }
}

fn human_secs(s: u64) -> String {
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{n} B") } else { format!("{value:.1} {}", UNITS[unit]) }
}
