//! A client connection's socket with two deadlines, so a client cannot hold
//! a connection open by doing nothing: **idle** (no byte read or written for
//! `idle`) and **write stall** (written bytes left unread, i.e. a write
//! pending, for `stall`). Either ends the connection with `TimedOut`. An event
//! stream's heartbeats keep it from being idle, and a reader that stops
//! reading trips the stall deadline. One timer per connection.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use crate::metrics::Trips;

pub struct DeadlineIo<S> {
    inner: S,
    idle: Duration,
    stall: Duration,
    /// When the current run of pending writes started.
    write_pending_since: Option<Instant>,
    timer: Pin<Box<Sleep>>,
    /// Where closes are counted by reason (`idle`, `write-stall`).
    closed: Arc<Trips>,
}

impl<S> DeadlineIo<S> {
    pub fn new(inner: S, idle: Duration, stall: Duration, closed: Arc<Trips>) -> Self {
        Self {
            inner,
            idle,
            stall,
            write_pending_since: None,
            timer: Box::pin(tokio::time::sleep(idle)),
            closed,
        }
    }

    fn activity(&mut self) {
        let deadline = match self.write_pending_since {
            Some(since) => since + self.stall,
            None => Instant::now() + self.idle,
        };
        self.timer.as_mut().reset(deadline);
    }

    /// Pending I/O: has a deadline passed? Registers the timer's wake-up otherwise.
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        self.timer.as_mut().poll(cx).is_ready()
    }
}

fn timed_out(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, format!("connection {what}"))
}

impl<S> DeadlineIo<S> {
    /// The error for a passed deadline, counted by which one it was.
    fn deadline_close(&self) -> io::Error {
        if self.write_pending_since.is_some() {
            return self.stall_close();
        }
        self.closed.inc("idle");
        timed_out("idle")
    }

    fn stall_close(&self) -> io::Error {
        self.closed.trip(
            "write-stall",
            "connection closed: its client stopped reading",
        );
        timed_out("write stalled")
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for DeadlineIo<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                if buf.filled().len() > before {
                    this.activity();
                }
                Poll::Ready(r)
            }
            Poll::Pending if this.expired(cx) => Poll::Ready(Err(this.deadline_close())),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S> DeadlineIo<S> {
    /// Applies the stall deadline to a write's outcome.
    fn written(
        &mut self,
        cx: &mut Context<'_>,
        r: Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        match r {
            Poll::Ready(r) => {
                self.write_pending_since = None;
                self.activity();
                Poll::Ready(r)
            }
            Poll::Pending => {
                if self.write_pending_since.is_none() {
                    self.write_pending_since = Some(Instant::now());
                    self.activity();
                }
                if self.expired(cx) {
                    Poll::Ready(Err(self.stall_close()))
                } else {
                    Poll::Pending
                }
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for DeadlineIo<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write(cx, data);
        this.written(cx, r)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.written(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const IDLE: Duration = Duration::from_secs(60);
    const STALL: Duration = Duration::from_secs(10);

    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_times_out() {
        let (a, _b) = tokio::io::duplex(64);
        let mut io = DeadlineIo::new(a, IDLE, STALL, Arc::default());
        let started = Instant::now();
        let mut buf = [0u8; 8];
        let e = io.read(&mut buf).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed().as_secs(), IDLE.as_secs());
    }

    #[tokio::test(start_paused = true)]
    async fn activity_pushes_the_idle_deadline() {
        let (a, mut b) = tokio::io::duplex(64);
        let mut io = DeadlineIo::new(a, IDLE, STALL, Arc::default());
        tokio::spawn(async move {
            for _ in 0..3 {
                tokio::time::sleep(Duration::from_secs(50)).await;
                b.write_all(b"x").await.unwrap();
            }
            tokio::time::sleep(Duration::from_secs(3600)).await;
        });
        let started = Instant::now();
        let mut buf = [0u8; 8];
        for _ in 0..3 {
            assert_eq!(io.read(&mut buf).await.unwrap(), 1);
        }
        let e = io.read(&mut buf).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed().as_secs(), 150 + IDLE.as_secs());
    }

    #[tokio::test(start_paused = true)]
    async fn a_reader_that_stops_reading_stalls_the_writer() {
        let (a, _b) = tokio::io::duplex(16);
        let mut io = DeadlineIo::new(a, IDLE, STALL, Arc::default());
        let started = Instant::now();
        let e = io.write_all(&[0u8; 1024]).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed().as_secs(), STALL.as_secs());
        assert_eq!(io.closed.count("write-stall"), 1);
    }
}
