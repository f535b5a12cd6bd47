//! Attachments: the content-type decision (magic bytes via `infer`), filename
//! sanitizing, signed download URLs (all pure), and the blob files under
//! `<data_dir>/attachments/` (written to a temp file, fsynced, renamed).

pub mod blob;
pub mod kind;
pub mod name;
pub mod signed;

pub use blob::{BlobWriter, blob_path};
