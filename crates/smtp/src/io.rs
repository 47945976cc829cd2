//! The connection's byte stream (plain or TLS) with a bounded read buffer.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

pub enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    /// The socket was handed to the TLS handshake; any I/O now is an error.
    Closed,
}

fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "connection handed over to TLS")
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Stream::Closed => Poll::Ready(Err(closed())),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Stream::Closed => Poll::Ready(Err(closed())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Stream::Closed => Poll::Ready(Err(closed())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Stream::Closed => Poll::Ready(Ok(())),
        }
    }
}

/// A stream with an input buffer and an output buffer. Replies are gathered and written when
/// the client has nothing more buffered (RFC 2920 pipelining: one write for a whole batch).
pub struct Conn {
    pub stream: Stream,
    inbuf: Vec<u8>,
    start: usize,
    end: usize,
    pub out: Vec<u8>,
    /// A line past the limit is being dropped up to its end. Kept here, not in `read_line`, so
    /// that a read given up half-way (a timer that looks at the listener now and then) goes on
    /// dropping it: the rest of a long line is never taken for a command.
    dropping_line: bool,
}

pub enum Line {
    /// A complete line, CRLF or LF included.
    Ok(Vec<u8>),
    /// The line was longer than allowed; it was read and dropped up to its end.
    TooLong,
    /// The client closed the connection.
    Eof,
}

/// The read buffer starts small (most connections are idle or send short commands), doubles up to
/// `MAX_BUFFER` while a client streams DATA, and shrinks back once it is drained.
const INITIAL_BUFFER: usize = 1024;
const MAX_BUFFER: usize = 64 * 1024;

impl Conn {
    pub fn new(stream: Stream) -> Conn {
        Conn {
            stream,
            inbuf: vec![0; INITIAL_BUFFER],
            start: 0,
            end: 0,
            out: Vec::new(),
            dropping_line: false,
        }
    }

    pub fn buffered(&self) -> &[u8] {
        &self.inbuf[self.start..self.end]
    }

    pub fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
    }

    /// Drops whatever the client sent ahead (used at STARTTLS: nothing sent in clear text before
    /// the handshake may be read as a command after it).
    pub fn discard_buffered(&mut self) -> usize {
        let n = self.end - self.start;
        self.start = 0;
        self.end = 0;
        n
    }

    /// Whether the client has sent more than was read: what is buffered, or bytes that arrive
    /// within `pause` (with no pause, bytes already waiting in the socket). Looked at, not
    /// taken: they are read as usual afterwards. On TLS, also text the TLS layer has taken off
    /// the socket and not handed on; and once the handshake is done a client has nothing to
    /// send but its own words (an alert at most), so any record waiting in the socket counts.
    pub async fn input_within(&mut self, pause: std::time::Duration) -> bool {
        if !self.buffered().is_empty() {
            return true;
        }
        let tcp = match &mut self.stream {
            Stream::Plain(tcp) => &*tcp,
            Stream::Tls(tls) => {
                let (tcp, conn) = tls.get_mut();
                // Records already read are decrypted now; a broken one fails the next read.
                let decrypted = conn
                    .process_new_packets()
                    .is_ok_and(|state| state.plaintext_bytes_to_read() > 0);
                if decrypted {
                    return true;
                }
                &*tcp
            }
            Stream::Closed => return false,
        };
        if pause.is_zero() {
            let mut one = [std::mem::MaybeUninit::<u8>::uninit(); 1];
            // The socket does not block: with nothing there this is `WouldBlock`.
            return socket2::SockRef::from(tcp)
                .peek(&mut one)
                .is_ok_and(|n| n > 0);
        }
        let mut one = [0u8; 1];
        matches!(
            tokio::time::timeout(pause, tcp.peek(&mut one)).await,
            Ok(Ok(n)) if n > 0
        )
    }

    /// Reads more bytes into the buffer; returns 0 at end of stream. Flushes pending replies first
    /// when nothing is buffered, so a pipelining client gets one write per batch.
    pub async fn fill(&mut self) -> io::Result<usize> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            self.flush().await?;
        } else if self.start > 0 {
            self.inbuf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.inbuf.len() {
            let grown = self.inbuf.len() + self.inbuf.len().max(INITIAL_BUFFER);
            self.inbuf.resize(grown, 0);
        }
        let room = self.inbuf.len() - self.end;
        let n = self.stream.read(&mut self.inbuf[self.end..]).await?;
        self.end += n;
        // A read that filled all the room means the client is streaming (DATA): read more at once.
        if n == room && self.inbuf.len() < MAX_BUFFER {
            let grown = (self.inbuf.len() * 2).min(MAX_BUFFER);
            self.inbuf.resize(grown, 0);
        }
        Ok(n)
    }

    /// Gives memory back once a burst is over (called between commands).
    fn shrink_when_drained(&mut self) {
        if self.start == self.end && self.inbuf.len() > INITIAL_BUFFER * 8 {
            self.inbuf = vec![0; INITIAL_BUFFER];
            self.start = 0;
            self.end = 0;
        }
        if self.out.is_empty() && self.out.capacity() > 4096 {
            self.out = Vec::new();
        }
    }

    /// Reads one line of at most `max` bytes.
    pub async fn read_line(&mut self, max: usize) -> io::Result<Line> {
        self.shrink_when_drained();
        loop {
            let buf = &self.inbuf[self.start..self.end];
            if let Some(pos) = memchr::memchr(b'\n', buf) {
                let too_long = std::mem::take(&mut self.dropping_line) || pos + 1 > max;
                let line = (!too_long).then(|| buf[..=pos].to_vec());
                self.start += pos + 1;
                return Ok(line.map_or(Line::TooLong, Line::Ok));
            }
            if buf.len() > max {
                self.dropping_line = true;
                self.start = self.end;
            }
            if self.fill().await? == 0 {
                return Ok(Line::Eof);
            }
        }
    }

    /// Ends a connection whose client is still sending: the replies, then the end of the
    /// relay's side, then what the client sends is read and dropped until it closes (at most
    /// 2 s and 1 MiB). Closed at once with unread bytes, the socket would be reset, and the
    /// client could lose the reply that says why.
    pub async fn close_draining(&mut self) {
        if self.flush().await.is_err() || self.stream.shutdown().await.is_err() {
            return;
        }
        let until = tokio::time::Instant::now() + std::time::Duration::from_secs(2);
        let mut dropped = 0;
        // What is dropped goes through the read buffer, grown on the heap for it: a buffer on
        // the stack here made every session's state 8 KB larger (a future is as large as its
        // largest state), idle connections included.
        self.start = 0;
        self.end = 0;
        if self.inbuf.len() < 8192 {
            self.inbuf.resize(8192, 0);
        }
        while dropped < 1024 * 1024 {
            match tokio::time::timeout_at(until, self.stream.read(&mut self.inbuf)).await {
                Ok(Ok(n)) if n > 0 => dropped += n,
                _ => return,
            }
        }
    }

    pub async fn flush(&mut self) -> io::Result<()> {
        if !self.out.is_empty() {
            self.stream.write_all(&self.out).await?;
            self.out.clear();
            self.stream.flush().await?;
        }
        Ok(())
    }
}
