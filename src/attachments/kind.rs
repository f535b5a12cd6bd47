//! Which files are accepted: JPEG, PNG, GIF, WebP, PDF, DOC, DOCX and plain
//! text, decided by content. The declared MIME type (when specific) and the
//! filename's extension must agree with what the bytes are.

/// An accepted file kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Jpeg,
    Png,
    Gif,
    Webp,
    Pdf,
    Doc,
    Docx,
    Text,
}

impl Kind {
    const ALL: [Kind; 8] = [
        Kind::Jpeg,
        Kind::Png,
        Kind::Gif,
        Kind::Webp,
        Kind::Pdf,
        Kind::Doc,
        Kind::Docx,
        Kind::Text,
    ];

    pub fn mime(self) -> &'static str {
        match self {
            Kind::Jpeg => "image/jpeg",
            Kind::Png => "image/png",
            Kind::Gif => "image/gif",
            Kind::Webp => "image/webp",
            Kind::Pdf => "application/pdf",
            Kind::Doc => "application/msword",
            Kind::Docx => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
            Kind::Text => "text/plain",
        }
    }

    fn extensions(self) -> &'static [&'static str] {
        match self {
            Kind::Jpeg => &["jpg", "jpeg", "jpe", "jfif"],
            Kind::Png => &["png"],
            Kind::Gif => &["gif"],
            Kind::Webp => &["webp"],
            Kind::Pdf => &["pdf"],
            Kind::Doc => &["doc"],
            Kind::Docx => &["docx"],
            Kind::Text => &["txt", "text", "md", "log", "csv"],
        }
    }

    /// Images are shown inline; everything else downloads.
    pub fn is_image(self) -> bool {
        matches!(self, Kind::Jpeg | Kind::Png | Kind::Gif | Kind::Webp)
    }

    pub fn from_mime(mime: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.mime() == mime)
    }
}

/// Detects the kind from the first bytes of a file (at least 8 KiB when the
/// file is that long). Text is not recognised here: see [`TextCheck`].
pub fn sniff(head: &[u8]) -> Option<Kind> {
    let t = infer::get(head)?;
    Some(match t.mime_type() {
        "image/jpeg" => Kind::Jpeg,
        "image/png" => Kind::Png,
        "image/gif" => Kind::Gif,
        "image/webp" => Kind::Webp,
        "application/pdf" => Kind::Pdf,
        "application/msword" | "application/x-ole-storage" => Kind::Doc,
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document" => Kind::Docx,
        _ => return None,
    })
}

/// True when the head looks like a ZIP archive (a DOCX candidate whose
/// entries must be inspected, since `infer` only looks at the first ones).
pub fn is_zip(head: &[u8]) -> bool {
    head.starts_with(b"PK\x03\x04")
}

/// Incremental check that a stream is UTF-8 text without NUL bytes.
#[derive(Debug, Default)]
pub struct TextCheck {
    carry: Vec<u8>,
    bad: bool,
}

impl TextCheck {
    pub fn feed(&mut self, chunk: &[u8]) {
        if self.bad {
            return;
        }
        if chunk.contains(&0) {
            self.bad = true;
            return;
        }
        let mut buf = std::mem::take(&mut self.carry);
        buf.extend_from_slice(chunk);
        match std::str::from_utf8(&buf) {
            Ok(_) => {}
            Err(e) if e.error_len().is_none() => {
                // An incomplete character at the end: keep it for the next chunk.
                self.carry = buf[e.valid_up_to()..].to_vec();
            }
            Err(_) => self.bad = true,
        }
    }

    pub fn is_text(&self) -> bool {
        !self.bad && self.carry.is_empty()
    }
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum KindError {
    /// The declared type is none of the accepted ones (the original's check, and its text).
    #[error("File type not allowed")]
    TypeNotAllowed,
    #[error("Invalid file content")]
    Unsupported,
    #[error("Invalid file content: the file type does not match its extension or declared type")]
    Mismatch,
}

fn normalize_mime(declared: &str) -> String {
    let m = declared
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match m.as_str() {
        "image/jpg" | "image/pjpeg" => "image/jpeg".into(),
        _ => m,
    }
}

/// Decides the kind from content, then checks the extension and declared type agree.
pub fn decide(
    sniffed: Option<Kind>,
    is_text: bool,
    filename: &str,
    declared: Option<&str>,
) -> Result<Kind, KindError> {
    if let Some(d) = declared.map(normalize_mime)
        && !d.is_empty()
        && d != "application/octet-stream"
        && !d.starts_with("text/")
        && Kind::from_mime(&d).is_none()
    {
        return Err(KindError::TypeNotAllowed);
    }
    let kind = match sniffed {
        Some(k) => k,
        None if is_text => Kind::Text,
        None => return Err(KindError::Unsupported),
    };
    let ext = filename
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    if !kind.extensions().contains(&ext.as_str()) {
        return Err(KindError::Mismatch);
    }
    if let Some(d) = declared.map(normalize_mime)
        && !d.is_empty()
        && d != "application/octet-stream"
        && d != kind.mime()
        && !(kind == Kind::Text && d.starts_with("text/"))
    {
        return Err(KindError::Mismatch);
    }
    Ok(kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PNG: &[u8] = &[
        0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 13, b'I', b'H', b'D', b'R',
    ];

    #[test]
    fn content_decides_and_names_must_agree() {
        assert_eq!(sniff(PNG), Some(Kind::Png));
        assert_eq!(
            decide(Some(Kind::Png), false, "a.PNG", Some("image/png")),
            Ok(Kind::Png)
        );
        assert_eq!(decide(Some(Kind::Png), false, "a.png", None), Ok(Kind::Png));
        assert_eq!(
            decide(Some(Kind::Png), false, "a.exe", Some("image/png")),
            Err(KindError::Mismatch)
        );
        assert_eq!(
            decide(Some(Kind::Png), false, "a.png", Some("text/html")),
            Err(KindError::Mismatch)
        );
        assert_eq!(
            decide(None, false, "a.zip", Some("application/zip")),
            Err(KindError::TypeNotAllowed)
        );
        assert_eq!(
            decide(None, true, "notes.txt", Some("text/plain; charset=utf-8")),
            Ok(Kind::Text)
        );
        assert_eq!(
            decide(None, true, "evil.png", Some("image/png")),
            Err(KindError::Mismatch),
            "HTML disguised as PNG"
        );
        assert_eq!(
            decide(None, false, "a.bin", None),
            Err(KindError::Unsupported)
        );
    }

    #[test]
    fn executables_are_not_accepted_under_any_name() {
        let elf = b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0";
        assert_eq!(sniff(elf), None);
        let mut t = TextCheck::default();
        t.feed(elf);
        assert!(!t.is_text());
        assert!(decide(sniff(elf), t.is_text(), "photo.jpg", Some("image/jpeg")).is_err());
    }

    #[test]
    fn text_check_handles_split_characters_and_nul() {
        let s = "héllo €".as_bytes();
        let mut t = TextCheck::default();
        t.feed(&s[..2]);
        t.feed(&s[2..]);
        assert!(t.is_text());
        let mut t = TextCheck::default();
        t.feed(&s[..2]);
        assert!(!t.is_text(), "truncated character");
        let mut t = TextCheck::default();
        t.feed(b"a\0b");
        assert!(!t.is_text());
        let mut t = TextCheck::default();
        t.feed(&[0xff, 0xfe]);
        assert!(!t.is_text());
    }

    mod fuzz {
        use super::*;
        use proptest::prelude::*;

        fn head() -> impl Strategy<Value = Vec<u8>> {
            let magic = prop_oneof![
                Just(PNG.to_vec()),
                Just(b"\xff\xd8\xff\xe0".to_vec()),
                Just(b"GIF89a".to_vec()),
                Just(b"RIFF\0\0\0\0WEBPVP8 ".to_vec()),
                Just(b"%PDF-1.7".to_vec()),
                Just(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1".to_vec()),
                Just(b"PK\x03\x04".to_vec()),
                Just(Vec::new()),
            ];
            (magic, prop::collection::vec(any::<u8>(), 0..64)).prop_map(|(mut m, rest)| {
                m.extend(rest);
                m
            })
        }

        proptest! {
            #![proptest_config(crate::fuzzing::config())]

            #[test]
            fn any_upload_is_decided_and_an_accepted_one_agrees_with_its_name(
                head in head(),
                name in prop_oneof![any::<String>(), "[a-z]{0,5}\\.(png|PNG|jpg|jpeg|gif|webp|pdf|doc|docx|txt|md|csv|exe|html)"],
                declared in prop::option::of(prop_oneof![
                    any::<String>(),
                    "(image|text|application)/[a-z.+-]{0,20}(; ?charset=[a-z0-9-]{0,8})?",
                ]),
            ) {
                let sniffed = sniff(&head);
                let mut t = TextCheck::default();
                t.feed(&head);
                if let Ok(k) = decide(sniffed, t.is_text(), &name, declared.as_deref()) {
                    let ext = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
                    prop_assert!(ext.is_some_and(|e| k.extensions().contains(&e.as_str())));
                    prop_assert!(sniffed == Some(k) || (sniffed.is_none() && k == Kind::Text));
                    prop_assert_eq!(Kind::from_mime(k.mime()), Some(k));
                }
            }

            /// However a stream is cut into chunks, the text check decides as
            /// on the whole, and holds back at most one partial character.
            #[test]
            fn the_text_check_does_not_depend_on_chunking(
                bytes in prop_oneof![
                    any::<String>().prop_map(String::into_bytes),
                    prop::collection::vec(any::<u8>(), 0..64),
                ],
                cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
            ) {
                let mut at: Vec<usize> = cuts.iter().map(|c| c.index(bytes.len() + 1)).collect();
                at.push(0);
                at.push(bytes.len());
                at.sort_unstable();
                let mut t = TextCheck::default();
                for w in at.windows(2) {
                    t.feed(&bytes[w[0]..w[1]]);
                    prop_assert!(t.carry.len() <= 3);
                }
                let whole = std::str::from_utf8(&bytes).is_ok() && !bytes.contains(&0);
                prop_assert_eq!(t.is_text(), whole);
            }
        }
    }
}
