#![warn(rust_2018_idioms)]
#![allow(dead_code)]

pub mod codecs;
mod error;
pub mod extension;
pub mod header;
pub mod packet;
pub mod packetizer;
pub mod sequence;

pub use error::Error;
