pub mod av1;
pub mod g7xx;
pub mod h264;
pub mod h265;
pub mod opus;
pub mod vp8;
pub mod vp9;
