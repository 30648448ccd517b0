//! Closing connections that move no byte (`--http-idle-timeout`): [`Tracked`] wraps a
//! connection's socket and notes when a byte last went either way; [`Activity::idle_for`]
//! resolves once none has for the given time. Bytes in either direction count, so an event
//! stream that sends its keep-alive comments stays open, and a client that neither sends
//! nor reads is let go.

use std::{
    io,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    time::Instant,
};

/// When a connection last moved a byte.
#[derive(Debug, Clone)]
pub struct Activity {
    opened: Instant,
    /// Milliseconds after `opened`.
    last: Arc<AtomicU64>,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            opened: Instant::now(),
            last: Arc::new(AtomicU64::new(0)),
        }
    }

    fn touch(&self) {
        let since = u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(since, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.opened + Duration::from_millis(self.last.load(Ordering::Relaxed))
    }

    /// Resolves once no byte has moved for `limit`; wakes once per `limit` at most.
    pub async fn idle_for(&self, limit: Duration) {
        loop {
            let deadline = self.last() + limit;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    }
}

/// A socket whose reads and writes are noted in its [`Activity`].
#[derive(Debug)]
pub struct Tracked<T> {
    inner: T,
    activity: Activity,
}

impl<T> Tracked<T> {
    pub fn new(inner: T) -> (Tracked<T>, Activity) {
        let activity = Activity::new();
        let tracked = Tracked {
            inner,
            activity: activity.clone(),
        };
        (tracked, activity)
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Tracked<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let poll = Pin::new(&mut this.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.activity.touch();
        }
        poll
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Tracked<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write(cx, buf);
        if matches!(poll, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.touch();
        }
        poll
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if matches!(poll, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.touch();
        }
        poll
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
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn traffic_either_way_keeps_a_connection_from_idling() {
        let (near, mut far) = tokio::io::duplex(64);
        let (mut near, activity) = Tracked::new(near);
        let limit = Duration::from_secs(10);
        let idle = activity.idle_for(limit);
        tokio::pin!(idle);
        for _ in 0..3 {
            tokio::time::advance(Duration::from_secs(6)).await;
            near.write_all(b"x").await.unwrap();
            assert!(futures::poll!(idle.as_mut()).is_pending());
            tokio::time::advance(Duration::from_secs(6)).await;
            far.write_all(b"y").await.unwrap();
            let mut byte = [0];
            near.read_exact(&mut byte).await.unwrap();
            assert!(futures::poll!(idle.as_mut()).is_pending());
        }
        let quiet_since = Instant::now();
        idle.await;
        assert_eq!(quiet_since.elapsed(), limit);
    }
}
