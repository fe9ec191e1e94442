//! A connection whose writes may stall for a bounded time. A client that stops reading (slow
//! or stuck) leaves hyper waiting on a full socket buffer; with the limit, the write fails
//! once the peer has taken nothing for `write-timeout`, and the connection (with whatever it
//! held, such as an open storage stream) is dropped.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

pub struct WriteStallLimit<T> {
    inner: T,
    /// Zero: no limit.
    limit: Duration,
    /// Running while a write (or flush) is pending; reset by any progress.
    stalled: Option<Pin<Box<Sleep>>>,
}

impl<T> WriteStallLimit<T> {
    pub fn new(inner: T, limit: Duration) -> WriteStallLimit<T> {
        WriteStallLimit {
            inner,
            limit,
            stalled: None,
        }
    }

    /// Passes a finished poll on (and forgets the stall), or turns a pending one into an error
    /// once it has been pending for the limit.
    fn watch<R>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<R>>,
    ) -> Poll<io::Result<R>> {
        match polled {
            Poll::Ready(r) => {
                self.stalled = None;
                Poll::Ready(r)
            }
            Poll::Pending if self.limit.is_zero() => Poll::Pending,
            Poll::Pending => {
                let limit = self.limit;
                let timer = self
                    .stalled
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        self.stalled = None;
                        Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            format!("client read nothing for {limit:?} (write-timeout)"),
                        )))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for WriteStallLimit<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for WriteStallLimit<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.watch(cx, polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.watch(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_flush(cx);
        self.watch(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test(start_paused = true)]
    async fn a_reader_that_stops_ends_the_connection() {
        let (a, mut b) = tokio::io::duplex(1024);
        let mut w = WriteStallLimit::new(a, Duration::from_secs(30));
        // The peer reads a little, then nothing: the writer fails 30 s after it got stuck.
        let chunk = vec![7u8; 4096];
        let mut got = vec![0u8; 1024];
        let writer = tokio::spawn(async move {
            loop {
                if let Err(e) = w.write_all(&chunk).await {
                    return e;
                }
            }
        });
        b.read_exact(&mut got).await.unwrap();
        let t = tokio::time::Instant::now();
        let e = writer.await.unwrap();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert!(t.elapsed() >= Duration::from_secs(30), "{:?}", t.elapsed());
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_reader_that_keeps_reading_is_served() {
        let (a, mut b) = tokio::io::duplex(1024);
        let mut w = WriteStallLimit::new(a, Duration::from_secs(30));
        let writer = tokio::spawn(async move {
            let data = vec![1u8; 64 * 1024];
            w.write_all(&data).await.map(|_| ())
        });
        // 64 reads of 1 KiB, 20 s apart: 21 minutes in all, never 30 s without progress.
        let mut total = 0;
        let mut buf = vec![0u8; 1024];
        while total < 64 * 1024 {
            tokio::time::sleep(Duration::from_secs(20)).await;
            total += b.read(&mut buf).await.unwrap();
        }
        writer.await.unwrap().unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn zero_is_no_limit() {
        let (a, mut b) = tokio::io::duplex(16);
        let mut w = WriteStallLimit::new(a, Duration::ZERO);
        let writer = tokio::spawn(async move { w.write_all(&[0u8; 64]).await });
        tokio::time::sleep(Duration::from_secs(3600)).await;
        let mut buf = [0u8; 64];
        b.read_exact(&mut buf).await.unwrap();
        writer.await.unwrap().unwrap();
    }
}
