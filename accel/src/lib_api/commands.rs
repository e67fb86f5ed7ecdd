//! [`Commands`]: a typed builder of portable command streams.

use accel_uapi::sys;
use accel_uapi::types::{CmdOpcode, CmpOp, DType, ReduceOp};
use zerocopy::IntoBytes;

/// A portable command stream (`ACCEL_CHUNK_PORTABLE`) under construction: the
/// `accel_cmd_*` structs of `sys`, packed back to back in native (little-endian) layout.
/// Addresses are VAs of the context the stream runs in.
#[derive(Default, Clone, Debug, PartialEq, Eq)]
pub struct Commands {
    buf: Vec<u8>,
}

/// The header of `op`, its length the opcode's struct size.
fn hdr(op: CmdOpcode) -> sys::accel_cmd_header {
    sys::accel_cmd_header { opcode: op.into(), flags: 0, length: op.length() as u32 }
}

impl Commands {
    /// An empty stream.
    pub fn new() -> Self {
        Self::default()
    }

    fn push<T: IntoBytes + zerocopy::Immutable>(&mut self, cmd: &T) -> &mut Self {
        self.buf.extend_from_slice(cmd.as_bytes());
        self
    }

    /// COPY `size` bytes from `src` to `dst` (the ranges must not overlap).
    pub fn copy(&mut self, src: u64, dst: u64, size: u64) -> &mut Self {
        self.push(&sys::accel_cmd_copy { hdr: hdr(CmdOpcode::Copy), src, dst, size })
    }

    /// FILL `size` bytes (a multiple of 4) at `dst` with the 32-bit `pattern`.
    pub fn fill(&mut self, dst: u64, size: u64, pattern: u32) -> &mut Self {
        self.push(&sys::accel_cmd_fill { hdr: hdr(CmdOpcode::Fill), dst, size, pattern, pad: 0 })
    }

    /// WRITE_VALUE: store `value` (`width` 4 or 8 bytes) at `addr`.
    pub fn write_value(&mut self, addr: u64, value: u64, width: u32) -> &mut Self {
        self.push(&sys::accel_cmd_write_value { hdr: hdr(CmdOpcode::WriteValue), addr, value, width, pad: 0 })
    }

    /// WAIT_VALUE: stall until `(*addr & mask) <op> value` (`width` 4 or 8), or fail
    /// the job with ETIMEDOUT after `timeout_ns` (relative; 0 = the queue's timeout).
    pub fn wait_value(
        &mut self,
        addr: u64,
        op: CmpOp,
        value: u64,
        mask: u64,
        width: u32,
        timeout_ns: u64,
    ) -> &mut Self {
        self.push(&sys::accel_cmd_wait_value {
            hdr: hdr(CmdOpcode::WaitValue),
            addr,
            value,
            mask,
            timeout_ns,
            op: op.into(),
            width,
        })
    }

    /// TIMESTAMP: store the engine's `CLOCK_MONOTONIC` ns as a `u64` at `dst`.
    pub fn timestamp(&mut self, dst: u64) -> &mut Self {
        self.push(&sys::accel_cmd_timestamp { hdr: hdr(CmdOpcode::Timestamp), dst })
    }

    /// BARRIER: every earlier command completes before any later one starts.
    pub fn barrier(&mut self) -> &mut Self {
        self.push(&sys::accel_cmd_barrier { hdr: hdr(CmdOpcode::Barrier) })
    }

    /// REDUCE: `dst[i] = op(dst[i], src[i])` for `i < count` elements of `dtype`.
    pub fn reduce(&mut self, src: u64, dst: u64, count: u64, op: ReduceOp, dtype: DType) -> &mut Self {
        self.push(&sys::accel_cmd_reduce {
            hdr: hdr(CmdOpcode::Reduce),
            src,
            dst,
            count,
            op: op.into(),
            dtype: dtype.into(),
        })
    }

    /// Append arbitrary bytes (for negative tests: the core validates every stream).
    pub fn raw(&mut self, bytes: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(bytes);
        self
    }

    /// The stream bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }

    /// The stream length in bytes.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether the stream has no bytes.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Remove every command.
    pub fn clear(&mut self) -> &mut Self {
        self.buf.clear();
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_has_its_struct_length() {
        let mut c = Commands::new();
        c.copy(1, 2, 3);
        assert_eq!(c.len(), 32);
        c.fill(0, 4, 5).write_value(8, 9, 8).wait_value(8, CmpOp::Ge, 1, !0, 8, 0);
        assert_eq!(c.len(), 32 + 32 + 32 + 48);
        c.timestamp(16).barrier().reduce(0, 64, 2, ReduceOp::Sum, DType::U64);
        assert_eq!(c.len(), 144 + 16 + 8 + 40);
        assert_eq!(&c.bytes()[..8], &[1, 0, 0, 0, 32, 0, 0, 0]);
        c.raw(&[1, 2, 3]);
        assert_eq!(c.len(), 211);
        assert!(!c.is_empty());
        assert!(c.clear().is_empty());
    }
}
