//! The RESP2/RESP3 codec: an incremental frame parser with limits, and an encoder.

pub mod encode;
pub mod frame;

pub use encode::{encode, encode_command, to_vec, Protocol};
pub use frame::{parse, parse_bytes, Frame, FrameError, Limits};
