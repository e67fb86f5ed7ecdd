//! The portable command set: parsing and validation of a command stream.
//!
//! A stream is a sequence of commands, each starting with an
//! `accel_cmd_header` whose `length` must be exactly the size of the
//! opcode's struct. The whole stream is validated at SUBMIT, before anything
//! is queued; the driver receives the parsed commands (copied out of the BO,
//! so userspace cannot change them afterwards).

use crate::error::{Error, Result};
use accel_uapi::sys;
use accel_uapi::types::{CmdOpcode, CmpOp, DType, ReduceOp};
use zerocopy::{FromBytes, Immutable, KnownLayout};

/// One validated portable command. Addresses are context VAs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortableCmd {
    /// Copy `size` bytes from `src` to `dst` (non-overlapping).
    Copy {
        /// Source VA.
        src: u64,
        /// Destination VA.
        dst: u64,
        /// Bytes (> 0).
        size: u64,
    },
    /// Fill `size` bytes (a multiple of 4) at `dst` with `pattern` (little-endian).
    Fill {
        /// Destination VA.
        dst: u64,
        /// Bytes.
        size: u64,
        /// 32-bit pattern.
        pattern: u32,
    },
    /// Store a 4- or 8-byte little-endian value.
    WriteValue {
        /// VA, aligned to `width`.
        addr: u64,
        /// Value (truncated to `width`).
        value: u64,
        /// 4 or 8.
        width: u32,
    },
    /// Stall until `(*addr & mask) op value`, or fail after `timeout_ns` (0 = the queue's timeout).
    WaitValue {
        /// VA, aligned to `width`.
        addr: u64,
        /// Comparand.
        value: u64,
        /// Mask applied to the loaded value.
        mask: u64,
        /// Relative timeout.
        timeout_ns: u64,
        /// Comparison.
        op: CmpOp,
        /// 4 or 8.
        width: u32,
    },
    /// Store the engine's CLOCK_MONOTONIC nanoseconds as a u64 at `dst` (8-aligned).
    Timestamp {
        /// VA.
        dst: u64,
    },
    /// Earlier commands complete before later ones.
    Barrier,
    /// `dst[i] = op(dst[i], src[i])` for `count` elements.
    Reduce {
        /// Source VA.
        src: u64,
        /// Destination VA.
        dst: u64,
        /// Elements (> 0).
        count: u64,
        /// Operation.
        op: ReduceOp,
        /// Element type.
        dtype: DType,
    },
}

fn read<T: FromBytes + KnownLayout + Immutable>(b: &[u8]) -> Result<T> {
    T::read_from_bytes(b).map_err(|_| Error::invalid("command length mismatch"))
}

fn end(at: usize, a: u64, len: u64) -> Result<u64> {
    a.checked_add(len).ok_or_else(|| Error::invalid(format!("command at byte {at}: address range wraps")))
}

fn width_ok(at: usize, addr: u64, width: u32) -> Result<()> {
    if width != 4 && width != 8 {
        return Err(Error::invalid(format!("command at byte {at}: width {width} is not 4 or 8")));
    }
    if !addr.is_multiple_of(u64::from(width)) {
        return Err(Error::invalid(format!("command at byte {at}: {addr:#x} not aligned to {width}")));
    }
    Ok(())
}

/// Parse and validate a whole stream.
pub fn parse(stream: &[u8]) -> Result<Vec<PortableCmd>> {
    if !stream.len().is_multiple_of(8) {
        return Err(Error::invalid(format!("stream of {} bytes is not a multiple of 8", stream.len())));
    }
    let mut out = Vec::new();
    let mut at = 0usize;
    while at < stream.len() {
        let hdr = read::<sys::accel_cmd_header>(&stream[at..at + 8])?;
        let op = CmdOpcode::try_from(hdr.opcode).map_err(|e| Error::invalid(format!("command at byte {at}: {e}")))?;
        if hdr.flags != 0 {
            return Err(Error::invalid(format!("command at byte {at}: header flags {:#x}", hdr.flags)));
        }
        let len = hdr.length as usize;
        if len != op.length() {
            return Err(Error::invalid(format!("command at byte {at}: {op:?} length {len} != {}", op.length())));
        }
        let body = stream
            .get(at..at + len)
            .ok_or_else(|| Error::invalid(format!("command at byte {at}: {op:?} runs past the stream end")))?;
        let cmd = match op {
            CmdOpcode::Copy => {
                let c: sys::accel_cmd_copy = read(body)?;
                if c.size == 0 {
                    return Err(Error::invalid(format!("command at byte {at}: COPY of 0 bytes")));
                }
                let (se, de) = (end(at, c.src, c.size)?, end(at, c.dst, c.size)?);
                if c.src < de && c.dst < se {
                    return Err(Error::invalid(format!("command at byte {at}: COPY ranges overlap")));
                }
                PortableCmd::Copy { src: c.src, dst: c.dst, size: c.size }
            }
            CmdOpcode::Fill => {
                let c: sys::accel_cmd_fill = read(body)?;
                if c.size == 0 || !c.size.is_multiple_of(4) || c.pad != 0 {
                    return Err(Error::invalid(format!("command at byte {at}: FILL size {} or pad", c.size)));
                }
                end(at, c.dst, c.size)?;
                PortableCmd::Fill { dst: c.dst, size: c.size, pattern: c.pattern }
            }
            CmdOpcode::WriteValue => {
                let c: sys::accel_cmd_write_value = read(body)?;
                width_ok(at, c.addr, c.width)?;
                if c.pad != 0 || (c.width == 4 && c.value > u64::from(u32::MAX)) {
                    return Err(Error::invalid(format!("command at byte {at}: WRITE_VALUE pad or value")));
                }
                PortableCmd::WriteValue { addr: c.addr, value: c.value, width: c.width }
            }
            CmdOpcode::WaitValue => {
                let c: sys::accel_cmd_wait_value = read(body)?;
                width_ok(at, c.addr, c.width)?;
                let op = CmpOp::try_from(c.op).map_err(|e| Error::invalid(format!("command at byte {at}: {e}")))?;
                PortableCmd::WaitValue {
                    addr: c.addr,
                    value: c.value,
                    mask: c.mask,
                    timeout_ns: c.timeout_ns,
                    op,
                    width: c.width,
                }
            }
            CmdOpcode::Timestamp => {
                let c: sys::accel_cmd_timestamp = read(body)?;
                width_ok(at, c.dst, 8)?;
                PortableCmd::Timestamp { dst: c.dst }
            }
            CmdOpcode::Barrier => PortableCmd::Barrier,
            CmdOpcode::Reduce => {
                let c: sys::accel_cmd_reduce = read(body)?;
                let op = ReduceOp::try_from(c.op).map_err(|e| Error::invalid(format!("command at byte {at}: {e}")))?;
                let dtype =
                    DType::try_from(c.dtype).map_err(|e| Error::invalid(format!("command at byte {at}: {e}")))?;
                let sz = dtype.size() as u64;
                let bytes = c
                    .count
                    .checked_mul(sz)
                    .ok_or_else(|| Error::invalid(format!("command at byte {at}: REDUCE count overflows")))?;
                if c.count == 0 || !c.src.is_multiple_of(sz) || !c.dst.is_multiple_of(sz) {
                    return Err(Error::invalid(format!("command at byte {at}: REDUCE count 0 or misaligned")));
                }
                let (se, de) = (end(at, c.src, bytes)?, end(at, c.dst, bytes)?);
                if c.src < de && c.dst < se {
                    return Err(Error::invalid(format!("command at byte {at}: REDUCE ranges overlap")));
                }
                PortableCmd::Reduce { src: c.src, dst: c.dst, count: c.count, op, dtype }
            }
        };
        out.push(cmd);
        at += len;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use zerocopy::IntoBytes;

    fn hdr(op: u32, len: usize) -> sys::accel_cmd_header {
        sys::accel_cmd_header { opcode: op as u16, flags: 0, length: len as u32 }
    }

    #[test]
    fn parses_every_command() {
        let mut s = Vec::new();
        s.extend_from_slice(
            sys::accel_cmd_copy { hdr: hdr(sys::ACCEL_CMD_COPY, 32), src: 0x1000, dst: 0x2000, size: 16 }.as_bytes(),
        );
        s.extend_from_slice(sys::accel_cmd_barrier { hdr: hdr(sys::ACCEL_CMD_BARRIER, 8) }.as_bytes());
        s.extend_from_slice(
            sys::accel_cmd_reduce {
                hdr: hdr(sys::ACCEL_CMD_REDUCE, 40),
                src: 0x1000,
                dst: 0x3000,
                count: 4,
                op: sys::ACCEL_REDUCE_MAX,
                dtype: sys::ACCEL_DTYPE_F32,
            }
            .as_bytes(),
        );
        let cmds = parse(&s).unwrap();
        assert_eq!(cmds.len(), 3);
        assert_eq!(cmds[1], PortableCmd::Barrier);
        assert_eq!(
            cmds[2],
            PortableCmd::Reduce { src: 0x1000, dst: 0x3000, count: 4, op: ReduceOp::Max, dtype: DType::F32 }
        );
    }

    #[test]
    fn rejects_bad_streams() {
        let good = sys::accel_cmd_copy { hdr: hdr(sys::ACCEL_CMD_COPY, 32), src: 0x1000, dst: 0x2000, size: 16 };
        let mut c = good;
        c.hdr.length = 40;
        assert!(parse(c.as_bytes()).is_err(), "length mismatch");
        assert!(parse(&good.as_bytes()[..24]).is_err(), "truncated");
        let mut c = good;
        c.hdr.opcode = 99;
        assert!(parse(c.as_bytes()).is_err(), "unknown opcode");
        let mut c = good;
        c.hdr.flags = 1;
        assert!(parse(c.as_bytes()).is_err(), "header flags");
        let mut c = good;
        c.dst = 0x1008;
        assert!(parse(c.as_bytes()).is_err(), "overlap");
        let mut c = good;
        c.src = u64::MAX - 4;
        assert!(parse(c.as_bytes()).is_err(), "wrap");
        assert!(parse(&[0u8; 4]).is_err(), "not a multiple of 8");
        assert_eq!(parse(&[]).unwrap(), vec![]);
    }
}
