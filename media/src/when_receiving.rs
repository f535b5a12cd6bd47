//! Receive-side interceptors that start when their connection first
//! receives a stream. webrtc-rs's NACK generator, receiver reports and TWCC
//! feedback each spawn a timer task when bound to a connection's RTCP writer
//! (ticking every 100 ms, 100 ms and 1 s), whether or not anything is ever
//! received. Most of the relay's connections only subscribe: at 500
//! subscribers that was ≈ 10,500 idle wake-ups a second. [`WhenReceiving`]
//! hands the writer to the interceptor at the connection's first remote
//! stream instead.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use webrtc::interceptor::stream_info::StreamInfo;
use webrtc::interceptor::{
    Interceptor, InterceptorBuilder, RTCPReader, RTCPWriter, RTPReader, RTPWriter,
};

use crate::lock;

type Result<T> = std::result::Result<T, webrtc::interceptor::Error>;
type Writer = Arc<dyn RTCPWriter + Send + Sync>;

/// Wraps the builder of an interceptor whose RTCP writer binding only
/// starts its task and returns the writer it was given (true of the three
/// named in the module doc).
pub(crate) struct WhenReceiving<B>(pub(crate) B);

impl<B: InterceptorBuilder> InterceptorBuilder for WhenReceiving<B> {
    fn build(&self, id: &str) -> Result<Arc<dyn Interceptor + Send + Sync>> {
        Ok(Arc::new(Deferred {
            inner: self.0.build(id)?,
            writer: Mutex::new(None),
        }))
    }
}

struct Deferred {
    inner: Arc<dyn Interceptor + Send + Sync>,
    /// The connection's RTCP writer until the first remote stream.
    writer: Mutex<Option<Writer>>,
}

#[async_trait]
impl Interceptor for Deferred {
    async fn bind_rtcp_reader(
        &self,
        reader: Arc<dyn RTCPReader + Send + Sync>,
    ) -> Arc<dyn RTCPReader + Send + Sync> {
        self.inner.bind_rtcp_reader(reader).await
    }

    async fn bind_rtcp_writer(&self, writer: Writer) -> Writer {
        *lock(&self.writer) = Some(Arc::clone(&writer));
        writer
    }

    async fn bind_local_stream(
        &self,
        info: &StreamInfo,
        writer: Arc<dyn RTPWriter + Send + Sync>,
    ) -> Arc<dyn RTPWriter + Send + Sync> {
        self.inner.bind_local_stream(info, writer).await
    }

    async fn unbind_local_stream(&self, info: &StreamInfo) {
        self.inner.unbind_local_stream(info).await;
    }

    async fn bind_remote_stream(
        &self,
        info: &StreamInfo,
        reader: Arc<dyn RTPReader + Send + Sync>,
    ) -> Arc<dyn RTPReader + Send + Sync> {
        let first = lock(&self.writer).take();
        if let Some(writer) = first {
            let returned = self.inner.bind_rtcp_writer(Arc::clone(&writer)).await;
            debug_assert!(
                Arc::ptr_eq(&returned, &writer),
                "WhenReceiving wraps an interceptor that replaces the RTCP writer"
            );
        }
        self.inner.bind_remote_stream(info, reader).await
    }

    async fn unbind_remote_stream(&self, info: &StreamInfo) {
        self.inner.unbind_remote_stream(info).await;
    }

    async fn close(&self) -> Result<()> {
        self.inner.close().await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use webrtc::interceptor::noop::NoOp;
    use webrtc::interceptor::{Attributes, Interceptor};

    use super::*;

    /// Counts the RTCP writer bindings of the interceptors it builds.
    struct Counting(Arc<AtomicUsize>);

    impl InterceptorBuilder for Counting {
        fn build(&self, _id: &str) -> Result<Arc<dyn Interceptor + Send + Sync>> {
            Ok(Arc::new(Counted(Arc::clone(&self.0))))
        }
    }

    struct Counted(Arc<AtomicUsize>);

    #[async_trait]
    impl Interceptor for Counted {
        async fn bind_rtcp_reader(
            &self,
            reader: Arc<dyn RTCPReader + Send + Sync>,
        ) -> Arc<dyn RTCPReader + Send + Sync> {
            reader
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
    async fn the_writer_reaches_the_interceptor_at_the_first_remote_stream_only() {
        let bound = Arc::new(AtomicUsize::new(0));
        let deferred = WhenReceiving(Counting(Arc::clone(&bound)))
            .build("pc")
            .unwrap();
        let writer: Writer = Arc::new(NoRtcp);
        let returned = deferred.bind_rtcp_writer(Arc::clone(&writer)).await;
        assert!(
            Arc::ptr_eq(&returned, &writer),
            "the chain keeps its writer"
        );
        deferred
            .bind_local_stream(&StreamInfo::default(), Arc::new(NoRtp))
            .await;
        assert_eq!(bound.load(Ordering::SeqCst), 0, "sending starts nothing");
        for _ in 0..2 {
            deferred
                .bind_remote_stream(&StreamInfo::default(), Arc::new(NoOp))
                .await;
        }
        assert_eq!(bound.load(Ordering::SeqCst), 1, "started once");
        deferred.close().await.unwrap();
    }
}
