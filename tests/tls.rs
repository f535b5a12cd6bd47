//! Built-in TLS: HTTPS with a self-signed certificate made in the test, and a
//! certificate swap on SIGHUP that keeps open connections alive. Each reload
//! is observed (the certificate new handshakes get, or the server's log), not
//! assumed after a pause.

mod common;

use std::sync::Arc;

use common::*;
use rustls::pki_types::{CertificateDer, ServerName};

struct Pair {
    cert_pem: String,
    key_pem: String,
    der: CertificateDer<'static>,
}

fn self_signed() -> Pair {
    let c =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .unwrap();
    Pair {
        cert_pem: c.cert.pem(),
        key_pem: c.signing_key.serialize_pem(),
        der: c.cert.der().clone(),
    }
}

/// SHA-256 of a certificate, hex: what the assertions compare and print.
fn fingerprint(der: &CertificateDer<'_>) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(der.as_ref())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn hup(p: &Proc) {
    let st = std::process::Command::new("kill")
        .args(["-HUP", &p.pid().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
}

/// Waits until fresh handshakes present `want` (trusting every pair in `roots`).
async fn until_presented(addr: &str, roots: &[&Pair], want: &Pair) {
    let want = fingerprint(&want.der);
    until(
        SEC * 5,
        &format!("handshakes to present {want}"),
        async || (fingerprint(&presented(addr, roots).await) == want).then_some(()),
    )
    .await
}

/// The certificate the server presents on a fresh handshake.
async fn presented(addr: &str, roots: &[&Pair]) -> CertificateDer<'static> {
    let mut store = rustls::RootCertStore::empty();
    for p in roots {
        store.add(p.der.clone()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(store)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let conn = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await
        .unwrap();
    conn.get_ref().1.peer_certificates().unwrap()[0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_serves_and_sighup_swaps_the_certificate_without_dropping_streams() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (self_signed(), self_signed());
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, &a.cert_pem).unwrap();
    std::fs::write(&key, &a.key_pem).unwrap();
    let data = dir.path().join("data");
    let p = Proc::spawn(
        &data,
        &[
            ("TLS_CERT_FILE", cert.to_str().unwrap()),
            ("TLS_KEY_FILE", key.to_str().unwrap()),
        ],
    )
    .await;
    assert!(p.base.starts_with("https://"), "{}", p.base);
    let addr = p.base.trim_start_matches("https://").to_string();
    let base = format!("https://{addr}");

    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_der(&a.der).unwrap())
        .add_root_certificate(reqwest::Certificate::from_der(&b.der).unwrap())
        .build()
        .unwrap();
    let mut c = Client::new(&base);
    c.http = http;
    let health = c.get("/health").await;
    assert_eq!(health.status, 200);
    assert_eq!(presented(&addr, &[&a]).await, a.der);

    let conv = c.create_conversation("c1").await;
    let (ann, _) = c.join(&conv, "Ann").await;
    let (bob, _) = c.join(&conv, "Bob").await;
    let mut stream = bob.sse("", &[]).await;
    stream.next_of("room-state", SEC * 5).await.unwrap();

    std::fs::write(&cert, &b.cert_pem).unwrap();
    std::fs::write(&key, &b.key_pem).unwrap();
    // Still `a` until the signal: nothing watches the files.
    assert_eq!(
        fingerprint(&presented(&addr, &[&a, &b]).await),
        fingerprint(&a.der)
    );
    hup(&p);
    // New handshakes use the reloaded certificate.
    until_presented(&addr, &[&a, &b], &b).await;
    ann.say("after reload").await;
    let e = stream
        .next_of("new-message", SEC * 5)
        .await
        .expect("the open stream survived the reload");
    assert_eq!(e.data["data"]["body"], "after reload");

    // A broken certificate file on reload keeps the current one.
    std::fs::write(&cert, "garbage").unwrap();
    hup(&p);
    p.logged("TLS certificate reload failed", SEC * 5).await;
    assert_eq!(presented(&addr, &[&a, &b]).await, b.der);

    // And the next good file is picked up: a failed reload stops nothing.
    let c3 = self_signed();
    std::fs::write(&cert, &c3.cert_pem).unwrap();
    std::fs::write(&key, &c3.key_pem).unwrap();
    hup(&p);
    until_presented(&addr, &[&a, &b, &c3], &c3).await;
    p.sigterm().await;
}
