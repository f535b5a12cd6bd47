//! Attachment upload, type checks, access control and signed downloads.

mod common;

use std::io::Write;
use std::time::Duration;

use base64::Engine;
use common::*;
use hmac::Mac;
use serde_json::json;

const COOKIE_SECRET: &str = "0123456789abcdef0123456789abcdef-test";

fn png() -> Vec<u8> {
    // A real 1x1 PNG.
    base64::engine::general_purpose::STANDARD
        .decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")
        .unwrap()
}

fn jpeg() -> Vec<u8> {
    let mut v = vec![
        0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, b'J', b'F', b'I', b'F', 0x00, 0x01,
    ];
    v.extend_from_slice(&[0u8; 64]);
    v.extend_from_slice(&[0xFF, 0xD9]);
    v
}

fn docx() -> Vec<u8> {
    let mut buf = std::io::Cursor::new(Vec::new());
    let mut z = zip::ZipWriter::new(&mut buf);
    let opts =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    z.start_file("[Content_Types].xml", opts).unwrap();
    z.write_all(b"<?xml version=\"1.0\"?><Types/>").unwrap();
    z.start_file("word/document.xml", opts).unwrap();
    z.write_all(b"<w:document/>").unwrap();
    z.finish().unwrap();
    buf.into_inner()
}

fn part(bytes: Vec<u8>, name: &str, mime: &str) -> reqwest::multipart::Part {
    reqwest::multipart::Part::bytes(bytes)
        .file_name(name.to_string())
        .mime_str(mime)
        .unwrap()
}

async fn setup() -> (Server, Client, Client) {
    let s = Server::start_with(|c| {
        c.cookie_secret = Some(chats3::config::Secret::new(COOKIE_SECRET));
        c.max_upload_bytes = 10 * 1024 * 1024;
    })
    .await;
    let c = s.client();
    let conv = c.create_conversation("c1").await;
    let other = c.create_conversation("c2").await;
    let (ann, _) = c.join(&conv, "Ann").await;
    let (eve, _) = c.join(&other, "Eve").await;
    (s, ann, eve)
}

#[tokio::test]
async fn real_files_are_accepted_and_downloadable_by_members() {
    let (s, ann, eve) = setup().await;
    let files: Vec<(Vec<u8>, &str, &str, &str)> = vec![
        (png(), "shot.png", "image/png", "image/png"),
        (jpeg(), "photo.JPG", "image/jpeg", "image/jpeg"),
        (
            b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n".to_vec(),
            "doc.pdf",
            "application/pdf",
            "application/pdf",
        ),
        (
            docx(),
            "report.docx",
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        ),
        (
            "héllo wörld\n".as_bytes().to_vec(),
            "notes.txt",
            "text/plain",
            "text/plain",
        ),
    ];
    for (bytes, name, declared, expected) in files {
        let r = ann
            .upload(
                reqwest::multipart::Form::new().part("file", part(bytes.clone(), name, declared)),
            )
            .await;
        assert_eq!(r.status, 200, "{name}: {}", r.body);
        let d = r.details();
        assert_eq!(d["mimeType"], expected, "{name}");
        assert_eq!(d["sizeBytes"], bytes.len(), "{name}");
        assert_eq!(d["originalFilename"], name);
        let id = d["attachmentId"].as_str().unwrap();

        let meta = ann.get(&format!("/api/v1/attachments/{id}")).await;
        assert_eq!(meta.status, 200);
        assert_eq!(meta.details()["metadata"]["conversationId"], "c1");
        let url = meta.details()["signedUrl"].as_str().unwrap().to_string();
        let got = reqwest::get(&url).await.unwrap();
        assert_eq!(got.status(), 200);
        let served = if expected == "text/plain" {
            "text/plain; charset=utf-8"
        } else {
            expected
        };
        assert_eq!(got.headers()["content-type"], served);
        assert_eq!(got.headers()["x-content-type-options"], "nosniff");
        assert!(
            got.headers()["content-security-policy"]
                .to_str()
                .unwrap()
                .contains("sandbox")
        );
        let disp = got.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .to_string();
        assert_eq!(
            disp.starts_with("inline"),
            expected.starts_with("image/"),
            "{disp}"
        );
        assert_eq!(got.bytes().await.unwrap().to_vec(), bytes, "{name} bytes");

        // Another conversation's member sees nothing.
        assert_eq!(
            eve.get(&format!("/api/v1/attachments/{id}")).await.status,
            404
        );
        assert_eq!(
            eve.get(&format!("/api/v1/attachments/{id}?download=true"))
                .await
                .status,
            404
        );
    }
    s.stop().await;
}

#[tokio::test]
async fn bad_uploads_are_refused_with_the_right_status() {
    let (s, ann, _) = setup().await;
    let elf = {
        let mut v = b"\x7fELF\x02\x01\x01\0".to_vec();
        v.extend_from_slice(&[0u8; 200]);
        v
    };
    let html = b"<html><script>alert(1)</script></html>".to_vec();
    let form = |p| reqwest::multipart::Form::new().part("file", p);
    let cases: Vec<(&str, reqwest::multipart::Form, u16)> = vec![
        (
            "renamed executable",
            form(part(elf.clone(), "cute.jpg", "image/jpeg")),
            400,
        ),
        (
            "executable",
            form(part(elf, "run.exe", "application/octet-stream")),
            400,
        ),
        (
            "html disguised as png",
            form(part(html, "x.png", "image/png")),
            400,
        ),
        (
            "png with a wrong extension",
            form(part(png(), "x.pdf", "application/pdf")),
            400,
        ),
        (
            "png declared as html",
            form(part(png(), "x.png", "text/html")),
            400,
        ),
        (
            "empty file",
            form(part(Vec::new(), "e.txt", "text/plain")),
            400,
        ),
        (
            "too large",
            form(part(
                vec![b'a'; 10 * 1024 * 1024 + 1],
                "big.txt",
                "text/plain",
            )),
            413,
        ),
        (
            "missing file part",
            reqwest::multipart::Form::new().text("note", "no file"),
            400,
        ),
        (
            "two file parts",
            form(part(png(), "a.png", "image/png"))
                .part("file2", part(png(), "b.png", "image/png")),
            400,
        ),
    ];
    for (name, f, status) in cases {
        let r = ann.upload(f).await;
        assert_eq!(r.status, status, "{name}: {}", r.body);
        assert_eq!(r.body["success"], false, "{name}");
    }
    let r = ann
        .post_raw("/api/v1/attachments", "application/json", "{}")
        .await;
    assert_eq!(r.status, 400);
    // Nothing half-written: no temp files left, no blobs stored.
    let tmp: Vec<_> = std::fs::read_dir(s.dir.join("tmp"))
        .map(|d| d.collect())
        .unwrap_or_default();
    assert!(tmp.is_empty(), "temp files left behind: {tmp:?}");
    let blobs = std::fs::read_dir(s.dir.join("attachments"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(blobs, 0);
    s.stop().await;
}

#[tokio::test]
async fn uploads_stream_to_disk_instead_of_memory() {
    let (s, ann, _) = setup().await;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    let body = reqwest::Body::wrap_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    let total = 9 * 1024 * 1024;
    let p = reqwest::multipart::Part::stream_with_length(body, total as u64)
        .file_name("big.txt")
        .mime_str("text/plain")
        .unwrap();
    let ann2 = ann.clone();
    let req = tokio::spawn(async move {
        ann2.upload(reqwest::multipart::Form::new().part("file", p))
            .await
    });
    let chunk = vec![b'x'; 256 * 1024];
    let mut sent = 0;
    while sent < 6 * 1024 * 1024 {
        tx.send(Ok(chunk.clone())).await.unwrap();
        sent += chunk.len();
    }
    // Before the upload finishes, most of it must already be in the temp file on disk.
    let tmp_dir = s.dir.join("tmp");
    let mut on_disk = 0;
    for _ in 0..100 {
        on_disk = std::fs::read_dir(&tmp_dir)
            .map(|d| {
                d.flatten()
                    .map(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
                    .sum()
            })
            .unwrap_or(0);
        if on_disk >= 5 * 1024 * 1024 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        on_disk >= 5 * 1024 * 1024,
        "only {on_disk} bytes on disk mid-upload: the body is being buffered"
    );
    while sent < total {
        tx.send(Ok(chunk.clone())).await.unwrap();
        sent += chunk.len();
    }
    drop(tx);
    let r = req.await.unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.details()["sizeBytes"], total);
    s.stop().await;
}

#[tokio::test]
async fn signed_urls_cannot_be_tampered_with_or_reused_after_expiry() {
    let (s, ann, _) = setup().await;
    let r = ann
        .upload(reqwest::multipart::Form::new().part("file", part(png(), "a.png", "image/png")))
        .await;
    let id = r.details()["attachmentId"].as_str().unwrap().to_string();
    let url = ann
        .get(&format!("/api/v1/attachments/{id}"))
        .await
        .details()["signedUrl"]
        .as_str()
        .unwrap()
        .to_string();
    let tampered = url.replace("signature=", "signature=A");
    assert_eq!(reqwest::get(&tampered).await.unwrap().status(), 403);
    let other_id = url.replace(&id, "00000000-0000-0000-0000-000000000000");
    assert_eq!(reqwest::get(&other_id).await.unwrap().status(), 403);
    // A correctly signed but expired link.
    let expired_at = 1_000_i64;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(COOKIE_SECRET.as_bytes()).unwrap();
    mac.update(format!("attachment:{id}:{expired_at}").as_bytes());
    let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    let expired = format!(
        "{}/api/v1/attachments/{id}/content?expires={expired_at}&signature={sig}",
        s.base
    );
    let r = reqwest::get(&expired).await.unwrap();
    assert_eq!(r.status(), 403);
    // download=true redirects to the signed URL.
    let r = ann
        .get(&format!("/api/v1/attachments/{id}?download=true"))
        .await;
    assert_eq!(r.status, 302);
    assert!(
        r.headers["location"]
            .to_str()
            .unwrap()
            .contains("/content?expires=")
    );
    s.stop().await;
}

#[tokio::test]
async fn file_messages_must_reference_an_attachment_of_their_conversation() {
    let (s, ann, eve) = setup().await;
    let r = ann
        .upload(reqwest::multipart::Form::new().part("file", part(png(), "a.png", "image/png")))
        .await;
    let id = r.details()["attachmentId"].as_str().unwrap().to_string();
    let m = ann
        .post(
            "/api/v1/messages",
            json!({"type": "file", "body": "a.png", "attachmentId": id}),
        )
        .await;
    assert_eq!(m.status, 200, "{}", m.body);
    assert_eq!(m.details()["mimetype"], "image/png");
    assert_eq!(m.details()["filename"], "a.png");
    let r = eve
        .post(
            "/api/v1/messages",
            json!({"type": "file", "body": "stolen", "attachmentId": id}),
        )
        .await;
    assert_eq!(r.status, 403);
    let r = ann
        .post(
            "/api/v1/messages",
            json!({"type": "file", "body": "x", "attachmentId": "nope"}),
        )
        .await;
    assert_eq!(r.status, 404);
    let r = ann
        .post("/api/v1/messages", json!({"type": "file", "body": "x"}))
        .await;
    assert_eq!(r.status, 400);
    s.stop().await;
}

/// Cases of the multipart property (each one an HTTP upload);
/// `PROPTEST_CASES` overrides it for a longer run.
const UPLOAD_CASES: u32 = 64;

/// One part of a hand-written multipart body: its `Content-Disposition`
/// value, its `Content-Type` (if any) and its bytes.
type RawPart = (String, Option<String>, Vec<u8>);

fn raw_part() -> impl proptest::strategy::Strategy<Value = RawPart> {
    use proptest::prelude::*;
    let name = prop_oneof![
        any::<String>(),
        "[./\\\\]{0,6}[a-zA-Z0-9 ._\"'%;:=<>|?*\r\n\u{0}\u{202e}é€😀-]{0,30}\\.(png|jpg|txt|pdf|exe|PNG)",
    ];
    let disposition = prop_oneof![
        name.clone()
            .prop_map(|n| format!("form-data; name=\"file\"; filename=\"{n}\"")),
        name.prop_map(|n| {
            let pct: String = n.bytes().map(|b| format!("%{b:02X}")).collect();
            format!("form-data; name=\"file\"; filename*=UTF-8''{pct}")
        }),
        Just("form-data; name=\"note\"".to_string()),
        "[ -~]{0,40}",
    ];
    let content_type = prop::option::of(prop_oneof![
        Just("image/png".to_string()),
        Just("text/plain; charset=utf-8".to_string()),
        Just("application/octet-stream".to_string()),
        "[ -~]{0,30}",
    ]);
    let bytes = prop_oneof![
        Just(png()),
        Just(jpeg()),
        Just(b"plain text\n".to_vec()),
        prop::collection::vec(any::<u8>(), 0..200),
    ];
    // A part that should be accepted, but for its name.
    let coherent = "[a-zA-Z0-9 ._'%\u{202e}\u{200b}é😀-]{0,12}".prop_map(|n| {
        (
            format!("form-data; name=\"file\"; filename=\"{n}.png\""),
            Some("image/png".to_string()),
            png(),
        )
    });
    prop_oneof![3 => (disposition, content_type, bytes), 2 => coherent]
}

/// A multipart body (often well formed, sometimes cut short or mislabelled)
/// and the request's content type.
fn multipart_body() -> impl proptest::strategy::Strategy<Value = (String, Vec<u8>)> {
    use proptest::prelude::*;
    (
        prop_oneof![
            3 => Just("XyZ-b0undary".to_string()),
            1 => "[A-Za-z0-9'()+_,./:=?-]{1,20}",
        ],
        prop::collection::vec(raw_part(), 0..3),
        prop_oneof![
            4 => Just("--\r\n".to_string()),
            1 => Just(String::new()),
            1 => "[ -~\r\n]{0,10}",
        ],
        prop_oneof![
            4 => Just(None),
            1 => "[ -~]{0,40}".prop_map(Some),
        ],
    )
        .prop_map(|(boundary, parts, end, content_type)| {
            let mut body = Vec::new();
            for (disposition, ct, bytes) in parts {
                body.extend(
                    format!("--{boundary}\r\nContent-Disposition: {disposition}\r\n").bytes(),
                );
                if let Some(ct) = ct {
                    body.extend(format!("Content-Type: {ct}\r\n").bytes());
                }
                body.extend(b"\r\n");
                body.extend(bytes);
                body.extend(b"\r\n");
            }
            body.extend(format!("--{boundary}{end}").bytes());
            let ct = content_type
                .unwrap_or_else(|| format!("multipart/form-data; boundary=\"{boundary}\""));
            (ct, body)
        })
}

/// Any multipart body is stored under a safe name and an accepted type, or
/// refused with a 4xx: never a server error.
#[test]
fn any_multipart_upload_is_stored_safely_or_refused() {
    use proptest::test_runner::{Config, TestCaseError, TestRunner};
    let cases = match std::env::var_os("PROPTEST_CASES") {
        Some(_) => Config::default().cases,
        None => UPLOAD_CASES,
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (s, ann, _eve) = rt.block_on(setup());
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let statuses = std::cell::RefCell::new(std::collections::BTreeMap::<u16, u32>::new());
    let result = runner.run(&multipart_body(), |(content_type, body)| {
        let r = rt.block_on(
            ann.send(
                ann.http
                    .post(format!("{}/api/v1/attachments", ann.base))
                    .header("x-session-id", ann.session.as_ref().unwrap())
                    .header("content-type", content_type)
                    .body(body),
            ),
        );
        *statuses.borrow_mut().entry(r.status).or_default() += 1;
        if r.status >= 500 || r.status < 200 || (r.status > 200 && r.status < 400) {
            return Err(TestCaseError::fail(format!("{}: {}", r.status, r.body)));
        }
        if r.status != 200 && r.body["success"] != false {
            return Err(TestCaseError::fail(format!(
                "not an error envelope: {}",
                r.body
            )));
        }
        if r.status == 200 {
            let d = r.details();
            let name = d["originalFilename"].as_str().unwrap();
            let bad =
                |c: char| c.is_control() || "/\\\"<>:|?*;\u{202e}\u{200b}\u{2028}".contains(c);
            if name.is_empty() || name.chars().count() > 200 || name.chars().any(bad) {
                return Err(TestCaseError::fail(format!("unsafe name {name:?}")));
            }
            let mime = d["mimeType"].as_str().unwrap();
            if !["image/png", "image/jpeg", "text/plain"].contains(&mime) {
                return Err(TestCaseError::fail(format!("accepted as {mime}")));
            }
        }
        Ok(())
    });
    rt.block_on(s.stop());
    result.unwrap();
    let statuses = statuses.into_inner();
    eprintln!("multipart uploads by status: {statuses:?}");
    assert!(
        statuses.contains_key(&200),
        "no upload was accepted: {statuses:?}"
    );
}
