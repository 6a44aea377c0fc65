//! The server's connections: every error deployd sends is problem+json,
//! hyper's own included.
//!
//! hyper answers a request it cannot parse before any request exists, so
//! before any middleware: 400 (a malformed request line or header), 414 (a
//! URI over the 64 KiB the `http` crate can hold, a bound hyper does not
//! let us raise) and 431 (more than 100 headers, or a head larger than its
//! read buffer), each with an empty body, and then closes the connection.
//! [`ProblemListener`] hands hyper connections ([`ProblemIo`]) that
//! recognise exactly that answer as hyper writes it (a status line of one
//! of those codes, `connection: close`, `content-length: 0` and `date` and
//! nothing else, in one write) and send problem+json with the same status instead. Every other
//! byte passes through untouched. URIs below hyper's bound but over
//! [`MAX_URI_BYTES`] reach the router and get the same 414 from
//! `problem::every_error_is_a_problem`.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// The longest request URI (path and query) deployd reads.
pub const MAX_URI_BYTES: usize = 32 * 1024;

/// The TCP listener, its connections wrapped in [`ProblemIo`].
pub struct ProblemListener(pub TcpListener);

impl Listener for ProblemListener {
    type Io = ProblemIo<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (stream, address) = Listener::accept(&mut self.0).await;
        (ProblemIo::new(stream), address)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Listener::local_addr(&self.0)
    }
}

/// The client's address, for the limit on failed authentications.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub SocketAddr);

impl Connected<IncomingStream<'_, ProblemListener>> for ClientAddr {
    fn connect_info(stream: IncomingStream<'_, ProblemListener>) -> Self {
        ClientAddr(*stream.remote_addr())
    }
}

/// A connection whose hyper-made error answers become problem+json.
pub struct ProblemIo<T> {
    inner: T,
    /// A rewritten answer and how much of it is written.
    pending: Option<(Vec<u8>, usize)>,
}

impl<T> ProblemIo<T> {
    pub fn new(inner: T) -> Self {
        Self {
            inner,
            pending: None,
        }
    }
}

impl<T: AsyncWrite + Unpin> ProblemIo<T> {
    /// Writes what is left of a rewritten answer.
    fn drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((bytes, written)) = &mut self.pending {
            if *written == bytes.len() {
                self.pending = None;
                break;
            }
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &bytes[*written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *written += n;
        }
        Poll::Ready(Ok(()))
    }

    /// Takes `buf` for a rewritten answer when it is one of hyper's own.
    fn rewrite(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Option<Poll<io::Result<usize>>> {
        let answer = problem_for_hyper_answer(buf)?;
        self.pending = Some((answer, 0));
        Some(match self.drain(cx) {
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            // The rest goes out on the next write, flush or shutdown.
            _ => Poll::Ready(Ok(buf.len())),
        })
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for ProblemIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for ProblemIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(self.drain(cx))?;
        if let Some(done) = self.rewrite(cx, buf) {
            return done;
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        ready!(self.drain(cx))?;
        let mut filled = bufs.iter().filter(|b| !b.is_empty());
        if let (Some(only), None) = (filled.next(), filled.next()) {
            if let Some(done) = self.rewrite(cx, only) {
                return done;
            }
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.drain(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.drain(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The problem+json answer for `written` when it is an answer hyper makes
/// itself for a request it could not parse: `HTTP/1.1 400|414|431 …`, then
/// `connection: close`, `content-length: 0` and `date: …` only, and the end
/// of the head.
fn problem_for_hyper_answer(written: &[u8]) -> Option<Vec<u8>> {
    // Most writes (bodies, SSE events) fail this at once.
    if written.len() > 256 || !written.starts_with(b"HTTP/1.1 4") {
        return None;
    }
    let head = std::str::from_utf8(written)
        .ok()?
        .strip_suffix("\r\n\r\n")?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.strip_prefix("HTTP/1.1 ")?;
    let code: u16 = status.get(..3)?.parse().ok()?;
    let mut date = None;
    let mut empty = false;
    for line in lines {
        let lower = line.to_ascii_lowercase();
        if lower == "content-length: 0" {
            empty = true;
        } else if lower == "connection: close" {
            // the answer we write says so too
        } else if lower.starts_with("date: ") {
            date = Some(line);
        } else {
            return None;
        }
    }
    if !empty {
        return None;
    }
    let (title, detail) = match code {
        400 => (
            "Bad Request",
            "the request could not be read: its request line or a header is not valid HTTP/1.1"
                .to_string(),
        ),
        414 => (
            "URI Too Long",
            format!(
                "the request URI is longer than this server reads ({MAX_URI_BYTES} bytes at most)"
            ),
        ),
        431 => (
            "Request Header Fields Too Large",
            "the request's headers are more or larger than this server reads (100 headers at most)"
                .to_string(),
        ),
        _ => return None,
    };
    let body = serde_json::json!({
        "type": format!("https://deployd.dev/problems/{}", title.to_ascii_lowercase().replace(' ', "-")),
        "title": title,
        "status": code,
        "detail": detail,
    })
    .to_string();
    let mut answer = format!(
        "HTTP/1.1 {code} {title}\r\ncontent-type: application/problem+json\r\n\
         content-length: {}\r\nconnection: close\r\n",
        body.len()
    );
    if let Some(date) = date {
        answer.push_str(date);
        answer.push_str("\r\n");
    }
    answer.push_str("\r\n");
    answer.push_str(&body);
    Some(answer.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_hyper_s_own_empty_answers_are_rewritten() {
        let hyper = b"HTTP/1.1 414 URI Too Long\r\nconnection: close\r\ncontent-length: 0\r\ndate: Mon, 30 Nov 2026 05:00:00 GMT\r\n\r\n";
        let answer = String::from_utf8(problem_for_hyper_answer(hyper).unwrap()).unwrap();
        assert!(
            answer.starts_with("HTTP/1.1 414 URI Too Long\r\n"),
            "{answer}"
        );
        assert!(answer.contains("content-type: application/problem+json\r\n"));
        assert!(answer.contains("date: Mon, 30 Nov 2026 05:00:00 GMT\r\n"));
        let body: serde_json::Value =
            serde_json::from_str(answer.split("\r\n\r\n").nth(1).unwrap()).unwrap();
        assert_eq!(body["status"], 414);
        let length: usize = answer
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(length, answer.split("\r\n\r\n").nth(1).unwrap().len());
        // The application's answers, and bodies, pass untouched.
        for other in [
            &b"HTTP/1.1 414 URI Too Long\r\ncontent-type: application/problem+json\r\ncontent-length: 0\r\n\r\n"[..],
            b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\nbody",
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 12\r\n\r\n",
            b"<h1>hello</h1>",
        ] {
            assert!(problem_for_hyper_answer(other).is_none());
        }
    }
}
