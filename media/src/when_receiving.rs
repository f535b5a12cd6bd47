//! Receive-side interceptors that exist only once their connection
//! receives a stream. webrtc-rs's NACK generator, receiver reports and TWCC
//! feedback each spawn a timer task when bound to a connection's RTCP writer
//! (ticking every 100 ms, 100 ms and 1 s), whether or not anything is ever
//! received, and hold their state and channels (≈ 5 KB together) from the
//! connection's start. Most of the relay's connections only subscribe: at
//! 500 subscribers that was ≈ 10,500 idle wake-ups a second. [`WhenReceiving`]
//! builds the interceptor at the connection's first remote stream, and hands
//! it the RTCP reader and writer then.

use std::sync::{Arc, Mutex, OnceLock, Weak};

use async_trait::async_trait;
use tokio::sync::OnceCell;
use webrtc::interceptor::stream_info::StreamInfo;
use webrtc::interceptor::{
    Attributes, Interceptor, InterceptorBuilder, RTCPReader, RTCPWriter, RTPReader, RTPWriter,
};
use webrtc::rtcp::packet::Packet as Rtcp;

use crate::lock;

type Result<T> = std::result::Result<T, webrtc::interceptor::Error>;
type Writer = Arc<dyn RTCPWriter + Send + Sync>;
type Reader = Arc<dyn RTCPReader + Send + Sync>;

/// Wraps the builder of a receive-side interceptor: one that passes local
/// (sent) streams through untouched and whose RTCP writer binding only starts
/// its task and returns the writer it was given (true of the three named in
/// the module doc).
pub(crate) struct WhenReceiving(pub(crate) Arc<dyn InterceptorBuilder + Send + Sync>);

impl InterceptorBuilder for WhenReceiving {
    fn build(&self, id: &str) -> Result<Arc<dyn Interceptor + Send + Sync>> {
        Ok(Arc::new(Deferred {
            builder: Arc::clone(&self.0),
            id: id.to_owned(),
            bound: Mutex::default(),
            inner: OnceCell::new(),
        }))
    }
}

struct Deferred {
    builder: Arc<dyn InterceptorBuilder + Send + Sync>,
    id: String,
    bound: Mutex<Bound>,
    /// Builds the interceptor once, at the first remote stream (a second
    /// stream arriving meanwhile waits for it).
    inner: OnceCell<Arc<dyn Interceptor + Send + Sync>>,
}

/// What the chain bound before the first remote stream (its senders' and
/// receivers' RTCP readers, weakly: a sender removed before then is gone),
/// and the interceptor once built, so a binding never misses the start.
#[derive(Default)]
struct Bound {
    writer: Option<Writer>,
    readers: Vec<Weak<LateReader>>,
    built: Option<Arc<dyn Interceptor + Send + Sync>>,
}

/// The chain's RTCP reader: the connection's own until the interceptor
/// exists, then the interceptor's (which reads the connection's).
struct LateReader {
    parent: Reader,
    inner: OnceLock<Reader>,
}

#[async_trait]
impl RTCPReader for LateReader {
    async fn read(
        &self,
        buf: &mut [u8],
        attributes: &Attributes,
    ) -> Result<(Vec<Box<dyn Rtcp + Send + Sync>>, Attributes)> {
        match self.inner.get() {
            Some(inner) => inner.read(buf, attributes).await,
            None => self.parent.read(buf, attributes).await,
        }
    }
}

impl Deferred {
    /// Builds the interceptor and binds what the chain bound so far.
    async fn start(&self) -> Result<Arc<dyn Interceptor + Send + Sync>> {
        let inner = self.builder.build(&self.id)?;
        let (writer, readers) = {
            let mut bound = lock(&self.bound);
            bound.built = Some(Arc::clone(&inner));
            (bound.writer.take(), std::mem::take(&mut bound.readers))
        };
        for r in readers.iter().filter_map(Weak::upgrade) {
            let read = inner.bind_rtcp_reader(Arc::clone(&r.parent)).await;
            let _ = r.inner.set(read);
        }
        if let Some(writer) = writer {
            let returned = inner.bind_rtcp_writer(Arc::clone(&writer)).await;
            debug_assert!(
                Arc::ptr_eq(&returned, &writer),
                "WhenReceiving wraps an interceptor that replaces the RTCP writer"
            );
        }
        Ok(inner)
    }

    /// The interceptor, if built (or being bound).
    fn built(&self) -> Option<Arc<dyn Interceptor + Send + Sync>> {
        lock(&self.bound).built.clone()
    }
}

#[async_trait]
impl Interceptor for Deferred {
    async fn bind_rtcp_reader(&self, reader: Reader) -> Reader {
        let late = {
            let mut bound = lock(&self.bound);
            match bound.built.clone() {
                Some(inner) => Err(inner),
                None => {
                    let late = Arc::new(LateReader {
                        parent: reader.clone(),
                        inner: OnceLock::new(),
                    });
                    bound.readers.retain(|r| r.strong_count() > 0);
                    bound.readers.push(Arc::downgrade(&late));
                    Ok(late)
                }
            }
        };
        match late {
            Ok(late) => late,
            Err(inner) => inner.bind_rtcp_reader(reader).await,
        }
    }

    async fn bind_rtcp_writer(&self, writer: Writer) -> Writer {
        let built = {
            let mut bound = lock(&self.bound);
            if bound.built.is_none() {
                bound.writer = Some(Arc::clone(&writer));
            }
            bound.built.clone()
        };
        match built {
            Some(inner) => inner.bind_rtcp_writer(writer).await,
            None => writer,
        }
    }

    async fn bind_local_stream(
        &self,
        info: &StreamInfo,
        writer: Arc<dyn RTPWriter + Send + Sync>,
    ) -> Arc<dyn RTPWriter + Send + Sync> {
        match self.built() {
            Some(inner) => inner.bind_local_stream(info, writer).await,
            None => writer,
        }
    }

    async fn unbind_local_stream(&self, info: &StreamInfo) {
        if let Some(inner) = self.built() {
            inner.unbind_local_stream(info).await;
        }
    }

    async fn bind_remote_stream(
        &self,
        info: &StreamInfo,
        reader: Arc<dyn RTPReader + Send + Sync>,
    ) -> Arc<dyn RTPReader + Send + Sync> {
        match self.inner.get_or_try_init(|| self.start()).await {
            Ok(inner) => inner.bind_remote_stream(info, reader).await,
            Err(e) => {
                tracing::warn!(error = %e, "a receive-side interceptor could not be built");
                reader
            }
        }
    }

    async fn unbind_remote_stream(&self, info: &StreamInfo) {
        if let Some(inner) = self.built() {
            inner.unbind_remote_stream(info).await;
        }
    }

    async fn close(&self) -> Result<()> {
        match self.built() {
            Some(inner) => inner.close().await,
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use webrtc::interceptor::noop::NoOp;

    use super::*;

    /// Counts the interceptors it builds and their RTCP writer bindings.
    struct Counting {
        built: Arc<AtomicUsize>,
        bound: Arc<AtomicUsize>,
    }

    impl InterceptorBuilder for Counting {
        fn build(&self, _id: &str) -> Result<Arc<dyn Interceptor + Send + Sync>> {
            self.built.fetch_add(1, Ordering::SeqCst);
            Ok(Arc::new(Counted(Arc::clone(&self.bound))))
        }
    }

    struct Counted(Arc<AtomicUsize>);

    #[async_trait]
    impl Interceptor for Counted {
        async fn bind_rtcp_reader(
            &self,
            reader: Arc<dyn RTCPReader + Send + Sync>,
        ) -> Arc<dyn RTCPReader + Send + Sync> {
            Arc::new(Doubling(reader))
        }
        async fn bind_rtcp_writer(&self, writer: Writer) -> Writer {
            self.0.fetch_add(1, Ordering::SeqCst);
            writer
        }
        async fn bind_local_stream(
            &self,
            _info: &StreamInfo,
            writer: Arc<dyn RTPWriter + Send + Sync>,
        ) -> Arc<dyn RTPWriter + Send + Sync> {
            writer
        }
        async fn unbind_local_stream(&self, _info: &StreamInfo) {}
        async fn bind_remote_stream(
            &self,
            _info: &StreamInfo,
            reader: Arc<dyn RTPReader + Send + Sync>,
        ) -> Arc<dyn RTPReader + Send + Sync> {
            reader
        }
        async fn unbind_remote_stream(&self, _info: &StreamInfo) {}
        async fn close(&self) -> Result<()> {
            Ok(())
        }
    }

    struct NoRtcp;

    struct NoRtp;

    /// The connection's RTCP: one report per read.
    struct OneReport;

    #[async_trait]
    impl RTCPReader for OneReport {
        async fn read(
            &self,
            _buf: &mut [u8],
            a: &Attributes,
        ) -> Result<(Vec<Box<dyn Rtcp + Send + Sync>>, Attributes)> {
            let report = webrtc::rtcp::receiver_report::ReceiverReport::default();
            Ok((vec![Box::new(report)], a.clone()))
        }
    }

    /// The built interceptor's reader: what its parent read, twice.
    struct Doubling(Reader);

    #[async_trait]
    impl RTCPReader for Doubling {
        async fn read(
            &self,
            buf: &mut [u8],
            a: &Attributes,
        ) -> Result<(Vec<Box<dyn Rtcp + Send + Sync>>, Attributes)> {
            let (mut pkts, a) = self.0.read(buf, a).await?;
            let again: Vec<Box<dyn Rtcp + Send + Sync>> = pkts.iter().map(|p| p.cloned()).collect();
            pkts.extend(again);
            Ok((pkts, a))
        }
    }

    #[async_trait]
    impl RTPWriter for NoRtp {
        async fn write(
            &self,
            _pkt: &webrtc::rtp::packet::Packet,
            _a: &Attributes,
        ) -> Result<usize> {
            Ok(0)
        }
    }

    #[async_trait]
    impl RTCPWriter for NoRtcp {
        async fn write(
            &self,
            _pkts: &[Box<dyn webrtc::rtcp::packet::Packet + Send + Sync>],
            _a: &Attributes,
        ) -> Result<usize> {
            Ok(0)
        }
    }

    #[tokio::test]
    async fn the_interceptor_is_built_and_bound_at_the_first_remote_stream_only() {
        let (built, bound) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let deferred = WhenReceiving(Arc::new(Counting {
            built: Arc::clone(&built),
            bound: Arc::clone(&bound),
        }))
        .build("pc")
        .unwrap();
        let writer: Writer = Arc::new(NoRtcp);
        let returned = deferred.bind_rtcp_writer(Arc::clone(&writer)).await;
        assert!(
            Arc::ptr_eq(&returned, &writer),
            "the chain keeps its writer"
        );
        let reader = deferred.bind_rtcp_reader(Arc::new(OneReport)).await;
        deferred
            .bind_local_stream(&StreamInfo::default(), Arc::new(NoRtp))
            .await;
        assert_eq!(built.load(Ordering::SeqCst), 0, "sending builds nothing");
        assert_eq!(bound.load(Ordering::SeqCst), 0, "sending starts nothing");
        let mut buf = [0u8; 64];
        let (before, _) = reader.read(&mut buf, &Attributes::new()).await.unwrap();
        assert_eq!(before.len(), 1, "the connection's reader until then");
        for _ in 0..2 {
            deferred
                .bind_remote_stream(&StreamInfo::default(), Arc::new(NoOp))
                .await;
        }
        assert_eq!(built.load(Ordering::SeqCst), 1, "built once");
        assert_eq!(bound.load(Ordering::SeqCst), 1, "started once");
        let (after, _) = reader.read(&mut buf, &Attributes::new()).await.unwrap();
        assert_eq!(
            after.len(),
            2,
            "read through the interceptor's reader since"
        );
        deferred.close().await.unwrap();
    }
}
