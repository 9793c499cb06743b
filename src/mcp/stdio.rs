//! The stdio transport, with an answer for requests too large to read.
//!
//! rmcp's line reader drops a line longer than its limit without a word, so the client waits
//! forever for the answer. This module stands between the process's stdin/stdout and rmcp: it
//! passes every line of at most [`MAX_LINE`] bytes through unchanged, and answers a longer one
//! itself with a JSON-RPC error (`-32600`, data `{code: "request_too_large", hint}`) carrying the
//! request's id when it can be found cheaply (a top-level `"id"` among the first members of the
//! object, or as its last member), else `null`. The line is never held whole: only its first
//! and last `PEEK` bytes are kept. Answers are written between whole lines of rmcp's output.

use tokio::{
    io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, DuplexStream},
    sync::mpsc,
    task::JoinHandle,
};

/// The longest request line passed on (rmcp's own limit; longer ones are answered here).
pub const MAX_LINE: usize = rmcp::transport::async_rw::DEFAULT_MAX_LINE_LENGTH;
/// Bytes kept from each end of an oversized line to find its id.
const PEEK: usize = 4096;
/// The buffer between this module and rmcp, each way.
const PIPE: usize = 256 * 1024;

/// The two ends rmcp serves on, and the task that copies its answers to `output` (await it
/// after the session ends so that the last answer is flushed).
pub fn transport<R, W>(input: R, output: W) -> ((DuplexStream, DuplexStream), JoinHandle<()>)
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    transport_with_limit(input, output, MAX_LINE)
}

fn transport_with_limit<R, W>(input: R, output: W, max: usize) -> ((DuplexStream, DuplexStream), JoinHandle<()>)
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (server_in, feed) = tokio::io::duplex(PIPE);
    let (server_out, drain) = tokio::io::duplex(PIPE);
    let (refusals, refused) = mpsc::channel(16);
    tokio::spawn(read_requests(input, feed, refusals, max));
    let writer = tokio::spawn(write_answers(drain, refused, output));
    ((server_in, server_out), writer)
}

/// Pass lines of at most `max` bytes to `feed`; answer longer ones through `refusals`.
async fn read_requests<R: AsyncRead + Unpin>(
    mut input: R,
    mut feed: DuplexStream,
    refusals: mpsc::Sender<Vec<u8>>,
    max: usize,
) {
    let mut chunk = vec![0u8; 64 * 1024];
    let mut line: Vec<u8> = Vec::new();
    // While skipping an oversized line: its first bytes and its latest ones.
    let mut oversized: Option<(Vec<u8>, Vec<u8>)> = None;
    loop {
        let n = match input.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let mut rest = &chunk[..n];
        while !rest.is_empty() {
            let end = rest.iter().position(|&b| b == b'\n');
            let (part, done) = match end {
                Some(i) => (&rest[..i], true),
                None => (rest, false),
            };
            rest = end.map_or(&[][..], |i| &rest[i + 1..]);
            if let Some((_, tail)) = &mut oversized {
                tail.extend_from_slice(part);
                if tail.len() > PEEK {
                    tail.drain(..tail.len() - PEEK);
                }
            } else if line.len() + part.len() > max {
                line.extend_from_slice(&part[..PEEK.saturating_sub(line.len()).min(part.len())]);
                line.truncate(PEEK);
                let mut tail = part[part.len().saturating_sub(PEEK)..].to_vec();
                tail.truncate(PEEK);
                oversized = Some((std::mem::take(&mut line), tail));
                line.shrink_to(64 * 1024);
            } else {
                line.extend_from_slice(part);
            }
            if !done {
                continue;
            }
            if let Some((head, tail)) = oversized.take() {
                let id = request_id(&head, &tail);
                tracing::warn!(%id, "refused a request line over {max} bytes");
                if refusals.send(too_large(id, max)).await.is_err() {
                    return;
                }
            } else {
                line.push(b'\n');
                if feed.write_all(&line).await.is_err() {
                    return;
                }
                line.clear();
            }
        }
    }
}

/// Copy rmcp's output to `output` line by line, with refusals between lines.
async fn write_answers<W: AsyncWrite + Unpin>(
    drain: DuplexStream,
    mut refused: mpsc::Receiver<Vec<u8>>,
    mut output: W,
) {
    let mut drain = BufReader::new(drain);
    let mut line = Vec::new();
    let mut refusals_open = true;
    loop {
        let next = tokio::select! {
            read = drain.read_until(b'\n', &mut line) => match read {
                Ok(0) | Err(_) => break,
                Ok(_) => std::mem::take(&mut line),
            },
            refusal = refused.recv(), if refusals_open => match refusal {
                Some(r) => r,
                None => { refusals_open = false; continue }
            },
        };
        if output.write_all(&next).await.is_err() || output.flush().await.is_err() {
            return;
        }
    }
    let _ = output.flush().await;
}

fn too_large(id: serde_json::Value, max: usize) -> Vec<u8> {
    let answer = serde_json::json!({
        "jsonrpc": "2.0",
        "id": id,
        "error": {
            "code": -32600,
            "message": format!("request too large: a request line may be at most {max} bytes; this one was not read"),
            "data": {
                "code": "request_too_large",
                "hint": "send the request again under the limit; files travel with send_file, never inside a request",
            },
        },
    });
    let mut bytes = serde_json::to_vec(&answer).expect("json");
    bytes.push(b'\n');
    bytes
}

/// The id of a request whose text starts with `head` and ends with `tail`: a top-level `"id"`
/// among the leading members whose values are scalars, or the object's last member; `null`
/// when neither holds one.
fn request_id(head: &[u8], tail: &[u8]) -> serde_json::Value {
    leading_id(head).or_else(|| trailing_id(tail)).unwrap_or(serde_json::Value::Null)
}

/// An id value: a number or a string without escapes.
fn id_value(text: &[u8]) -> Option<serde_json::Value> {
    let value: serde_json::Value = serde_json::from_slice(text).ok()?;
    (value.is_number() || value.is_string()).then_some(value)
}

fn leading_id(head: &[u8]) -> Option<serde_json::Value> {
    let mut s = Scanner { text: head, at: 0 };
    s.expect(b'{')?;
    loop {
        let key = s.string()?;
        s.expect(b':')?;
        let value = s.scalar()?;
        if key == b"\"id\"" {
            return id_value(value);
        }
        s.expect(b',')?;
    }
}

fn trailing_id(tail: &[u8]) -> Option<serde_json::Value> {
    let text = tail.trim_ascii_end().strip_suffix(b"}")?.trim_ascii_end();
    // The value: a number, or a string with no quote or backslash inside.
    let start = if text.ends_with(b"\"") {
        let inner = &text[..text.len() - 1];
        let open = inner.iter().rposition(|&b| b == b'"')?;
        if inner[open..].contains(&b'\\') {
            return None;
        }
        open
    } else {
        text.iter().rposition(|b| !matches!(b, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))? + 1
    };
    let value = id_value(&text[start..])?;
    let before = text[..start].trim_ascii_end().strip_suffix(b":")?.trim_ascii_end().strip_suffix(b"\"id\"")?;
    matches!(before.trim_ascii_end().last(), Some(b',' | b'{')).then_some(value)
}

/// Just enough of a JSON reader for [`leading_id`].
struct Scanner<'a> {
    text: &'a [u8],
    at: usize,
}

impl<'a> Scanner<'a> {
    fn skip_space(&mut self) {
        while self.text.get(self.at).is_some_and(u8::is_ascii_whitespace) {
            self.at += 1;
        }
    }

    fn expect(&mut self, b: u8) -> Option<()> {
        self.skip_space();
        (self.text.get(self.at) == Some(&b)).then(|| self.at += 1)
    }

    /// A string, quotes included.
    fn string(&mut self) -> Option<&'a [u8]> {
        self.skip_space();
        let start = self.at;
        (self.text.get(self.at) == Some(&b'"')).then_some(())?;
        self.at += 1;
        loop {
            match self.text.get(self.at)? {
                b'\\' => self.at += 2,
                b'"' => {
                    self.at += 1;
                    return Some(&self.text[start..self.at]);
                }
                _ => self.at += 1,
            }
        }
    }

    /// A string, number, `true`, `false` or `null`; `None` for objects and arrays.
    fn scalar(&mut self) -> Option<&'a [u8]> {
        self.skip_space();
        if self.text.get(self.at) == Some(&b'"') {
            return self.string();
        }
        let start = self.at;
        while self.text.get(self.at).is_some_and(|b| b.is_ascii_alphanumeric() || b"-+.".contains(b)) {
            self.at += 1;
        }
        (self.at > start).then(|| &self.text[start..self.at])
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn ids_are_found_at_either_end_and_only_at_the_top() {
        let id = |line: &str| {
            let b = line.as_bytes();
            request_id(&b[..b.len().min(40)], &b[b.len().saturating_sub(40)..])
        };
        assert_eq!(id(r#"{"jsonrpc":"2.0","id":7,"method":"x","params":{"a":"...."}}"#), json!(7));
        assert_eq!(id(r#"{"jsonrpc": "2.0", "id": "abc", "params": {"a": "......................"}}"#), json!("abc"));
        assert_eq!(
            id(r#"{"jsonrpc":"2.0","method":"tools/call","params":{"a":"..........................."},"id":9}"#),
            json!(9)
        );
        assert_eq!(
            id(r#"{"method":"tools/call","params":{"a":"......................................","id":3}}"#),
            json!(null)
        );
        assert_eq!(
            id(r#"{"params":{"id":3,"a":"................................................."},"x":1}"#),
            json!(null)
        );
        assert_eq!(id("not json at all, not even close to it, no, not at all"), json!(null));
    }

    #[tokio::test]
    async fn an_oversized_line_is_answered_and_the_next_one_passes() {
        let (client, server_side) = tokio::io::duplex(1 << 20);
        let (server_read, mut client_write) = tokio::io::split(client);
        let (input, output) = tokio::io::split(server_side);
        let ((mut server_in, mut server_out), writer) = transport_with_limit(input, output, 100);
        let big = format!("{{\"jsonrpc\":\"2.0\",\"id\":5,\"params\":\"{}\"}}\n", "x".repeat(10_000));
        client_write.write_all(big.as_bytes()).await.unwrap();
        client_write.write_all(b"{\"id\":6}\n").await.unwrap();
        let mut passed = vec![0u8; 9];
        server_in.read_exact(&mut passed).await.unwrap();
        assert_eq!(passed, b"{\"id\":6}\n");
        server_out.write_all(b"{\"id\":6,\"result\":{}}\n").await.unwrap();
        let mut lines = BufReader::new(server_read).lines();
        let refusal: serde_json::Value = serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
        assert_eq!(
            (refusal["id"].clone(), refusal["error"]["data"]["code"].clone()),
            (json!(5), json!("request_too_large"))
        );
        assert_eq!(lines.next_line().await.unwrap().unwrap(), "{\"id\":6,\"result\":{}}");
        drop((server_in, server_out, client_write));
        writer.await.unwrap();
    }
}
