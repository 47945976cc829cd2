//! A message's data on the wire, in pieces, within a time that grows with its size (RFC 5321
//! 4.5.3.2): dot-stuffed as it is written after DATA (RFC 5321 4.5.2), as it is after BDAT.

use std::time::Duration;

use tokio::io::{AsyncWrite, AsyncWriteExt};

/// `Client::write_data`'s writing, on any stream: each write within `step`, the whole within
/// `step` and a second per `SLOWEST_RATE` bytes.
pub(super) async fn write_stuffed<W: AsyncWrite + Unpin>(
    stream: &mut W,
    parts: &[&[u8]],
    step: Duration,
) -> Result<(), Step> {
    write_timed(stream, parts, step, Some(DotStuffer::default())).await
}

/// The same for data that goes as it is (a BDAT chunk, with the commands before it).
pub(super) async fn write_plain<W: AsyncWrite + Unpin>(
    stream: &mut W,
    parts: &[&[u8]],
    step: Duration,
) -> Result<(), Step> {
    write_timed(stream, parts, step, None).await
}

async fn write_timed<W: AsyncWrite + Unpin>(
    stream: &mut W,
    parts: &[&[u8]],
    step: Duration,
    mut stuffer: Option<DotStuffer>,
) -> Result<(), Step> {
    let total: usize = parts.iter().map(|p| p.len()).sum();
    let deadline =
        tokio::time::Instant::now() + step + Duration::from_secs((total / SLOWEST_RATE) as u64);
    let by = || deadline.min(tokio::time::Instant::now() + step);
    let mut out = Vec::with_capacity(total.min(STUFF_CHUNK) + STUFF_CHUNK / 32 + 5);
    for part in parts {
        for piece in part.chunks(STUFF_CHUNK) {
            match stuffer.as_mut() {
                Some(stuffer) => stuffer.push(piece, &mut out),
                None => out.extend_from_slice(piece),
            }
            if out.len() >= STUFF_CHUNK {
                tokio::time::timeout_at(by(), stream.write_all(&out)).await??;
                out.clear();
            }
        }
    }
    if let Some(stuffer) = stuffer {
        stuffer.finish(&mut out);
    }
    tokio::time::timeout_at(by(), stream.write_all(&out)).await??;
    tokio::time::timeout_at(by(), stream.flush()).await??;
    Ok(())
}

/// How much of a message is stuffed before it is written.
const STUFF_CHUNK: usize = 64 * 1024;

/// The slowest a message's data may be taken, in bytes a second, past its first
/// `command_timeout`: 10 KiB/s, 80 kbit/s (35 MB in an hour).
const SLOWEST_RATE: usize = 10 * 1024;

/// Why one write of a message's data did not finish.
pub(super) enum Step {
    Late,
    Io(std::io::Error),
}

impl Step {
    /// The client's error for a write of a message's data that did not finish.
    pub(super) fn into_error(self) -> super::ClientError {
        let stage = "data";
        match self {
            Step::Late => super::ClientError::Timeout(stage),
            Step::Io(e) => super::ClientError::Io {
                stage,
                reason: e.to_string(),
            },
        }
    }
}

impl From<tokio::time::error::Elapsed> for Step {
    fn from(_: tokio::time::error::Elapsed) -> Step {
        Step::Late
    }
}

impl From<std::io::Error> for Step {
    fn from(e: std::io::Error) -> Step {
        Step::Io(e)
    }
}

/// Dot-stuffing of a CRLF-normalised message that arrives in pieces: a dot that starts a line
/// gets another in front, wherever the pieces were cut; what lies between is copied as it is.
#[derive(Debug)]
struct DotStuffer {
    /// The last two bytes so far (0 before any).
    tail: [u8; 2],
    empty: bool,
}

impl Default for DotStuffer {
    fn default() -> DotStuffer {
        DotStuffer {
            tail: [0, b'\n'],
            empty: true,
        }
    }
}

impl DotStuffer {
    fn push(&mut self, piece: &[u8], out: &mut Vec<u8>) {
        let Some(&last) = piece.last() else {
            return;
        };
        if self.tail[1] == b'\n' && piece[0] == b'.' {
            out.push(b'.');
        }
        let mut from = 0;
        for at in memchr::memmem::find_iter(piece, b"\n.") {
            out.extend_from_slice(&piece[from..=at]);
            out.push(b'.');
            from = at + 1;
        }
        out.extend_from_slice(&piece[from..]);
        self.tail = [
            piece
                .len()
                .checked_sub(2)
                .map_or(self.tail[1], |i| piece[i]),
            last,
        ];
        self.empty = false;
    }

    /// The end-of-data mark, after a line end if the message did not end with one.
    fn finish(self, out: &mut Vec<u8>) {
        if !self.empty && self.tail != *b"\r\n" {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b".\r\n");
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;

    use super::*;

    /// A reader that takes `per_second` bytes a second from `from` until it ends; what it read.
    fn slow_reader(
        mut from: tokio::io::DuplexStream,
        per_second: usize,
    ) -> tokio::task::JoinHandle<usize> {
        tokio::spawn(async move {
            let mut got = 0;
            let mut buf = vec![0; per_second];
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                match from.read(&mut buf).await {
                    Ok(0) | Err(_) => return got,
                    Ok(n) => got += n,
                }
            }
        })
    }

    /// A destination on a slow but steady link gets a large message; one that takes it slower
    /// than `SLOWEST_RATE`, however steadily (every write goes through within its step), is
    /// given up on once the message's time is spent, not days later. (Time is paused: minutes
    /// of reading pass in an instant.)
    #[tokio::test(start_paused = true)]
    async fn a_message_read_slower_than_the_floor_rate_is_given_up_on_in_its_time() {
        let message = vec![b'x'; 1024 * 1024];
        let step = Duration::from_secs(10);
        // The whole message's time: 10 s + 1 MiB / 10 KiB/s = 112 s.
        let allowed = step + Duration::from_secs((message.len() / SLOWEST_RATE) as u64);

        // 16 KiB/s: 64 s for the message, each 64 KiB write 4 s.
        let (mut ours, theirs) = tokio::io::duplex(16 * 1024);
        let reader = slow_reader(theirs, 16 * 1024);
        let started = tokio::time::Instant::now();
        let written = write_stuffed(&mut ours, &[&message], step).await;
        assert!(
            written.is_ok(),
            "a steady 16 KiB/s link did not get the message"
        );
        assert!(started.elapsed() < allowed);
        drop(ours);
        assert_eq!(reader.await.expect("reader"), message.len() + 5);

        // 8 KiB/s: each 64 KiB write still goes through within its step (8 s of 10), but the
        // message would take 128 s.
        let (mut ours, theirs) = tokio::io::duplex(8 * 1024);
        let reader = slow_reader(theirs, 8 * 1024);
        let started = tokio::time::Instant::now();
        let written = write_stuffed(&mut ours, &[&message], step).await;
        assert!(
            matches!(written, Err(Step::Late)),
            "a trickle was waited for"
        );
        let waited = started.elapsed();
        assert!(
            waited >= allowed - step && waited <= allowed,
            "given up on after {waited:?}, the message's time being {allowed:?}"
        );
        drop(ours);
        assert!(reader.await.expect("reader") < message.len());
    }

    fn dot_stuff(body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut stuffer = DotStuffer::default();
        stuffer.push(body, &mut out);
        stuffer.finish(&mut out);
        // The same message cut into pieces anywhere is stuffed the same.
        for size in 1..4 {
            let mut cut = Vec::new();
            let mut stuffer = DotStuffer::default();
            for piece in body.chunks(size) {
                stuffer.push(piece, &mut cut);
            }
            stuffer.finish(&mut cut);
            assert_eq!(cut, out, "pieces of {size}");
        }
        out
    }

    #[test]
    fn stuffing_doubles_leading_dots() {
        assert_eq!(dot_stuff(b".a\r\nb\r\n.\r\n"), b"..a\r\nb\r\n..\r\n.\r\n");
        assert_eq!(dot_stuff(b"no newline"), b"no newline\r\n.\r\n");
        assert_eq!(dot_stuff(b""), b".\r\n");
        assert_eq!(dot_stuff(b"."), b"..\r\n.\r\n");
        assert_eq!(
            dot_stuff(b"a\n.b\r\n..\r\nc."),
            b"a\n..b\r\n...\r\nc.\r\n.\r\n"
        );
        assert_eq!(dot_stuff(b"\n.\n.\r\n"), b"\n..\n..\r\n.\r\n");
        assert_eq!(dot_stuff(b"a\r"), b"a\r\r\n.\r\n");
        assert_eq!(dot_stuff(b"\n"), b"\n\r\n.\r\n");
        assert_eq!(dot_stuff(b"\r\n"), b"\r\n.\r\n");
    }
}
