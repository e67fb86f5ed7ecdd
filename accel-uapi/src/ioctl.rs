//! The ioctl table: for every command its number, argument struct, first
//! released (minimum) size, direction, the fields that must be zero, the flag
//! words with their valid bits, and every nested user-pointer field (where the
//! pointer and its count live, the element layout, in or out). With it any
//! transport can marshal any ioctl generically, and the core's dispatcher
//! validates every command with one table-driven path.
//!
//! Nested arrays are one level deep by design: a pointer's elements never
//! contain pointers (send WRs name their SGEs by index into the call's SGE array).

use crate::flags::{
    BoFlags, Caps, MrAccess, QpAttrMask, QpCreateFlags, QueueFlags, SendFlags, SubmitFlags, SyncobjCreateFlags,
    SyncobjWaitFlags, VmBindFlags,
};
use crate::sys;
use core::mem::{offset_of, size_of};

/// Direction bits of an ioctl number (Linux `_IOC_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum Dir {
    /// Userspace writes the struct (`_IOW`).
    Write = 1,
    /// Userspace reads the struct (`_IOR`).
    Read = 2,
    /// Both (`_IOWR`).
    ReadWrite = 3,
}

impl Dir {
    /// The core reads the struct from userspace.
    pub const fn copies_in(self) -> bool {
        matches!(self, Dir::Write | Dir::ReadWrite)
    }
    /// The core writes the struct back to userspace.
    pub const fn copies_out(self) -> bool {
        matches!(self, Dir::Read | Dir::ReadWrite)
    }
}

/// `_IOC` field positions.
pub const NR_SHIFT: u32 = sys::ACCEL_IOC_NRSHIFT;
/// `_IOC` type shift.
pub const TYPE_SHIFT: u32 = sys::ACCEL_IOC_TYPESHIFT;
/// `_IOC` size shift.
pub const SIZE_SHIFT: u32 = sys::ACCEL_IOC_SIZESHIFT;
/// `_IOC` direction shift.
pub const DIR_SHIFT: u32 = sys::ACCEL_IOC_DIRSHIFT;
/// The largest struct size an ioctl number can carry (14 bits).
pub const MAX_SIZE: usize = (1 << 14) - 1;
/// The accel ioctl type byte.
pub const IOCTL_TYPE: u8 = sys::ACCEL_IOCTL_BASE as u8;

/// Encode an ioctl number.
pub const fn ioc(dir: Dir, nr: u8, size: usize) -> u32 {
    ((dir as u32) << DIR_SHIFT)
        | ((size as u32) << SIZE_SHIFT)
        | ((IOCTL_TYPE as u32) << TYPE_SHIFT)
        | ((nr as u32) << NR_SHIFT)
}

/// The fields of a raw ioctl number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decoded {
    /// Direction bits (0..=3; 0 = none).
    pub dir: u32,
    /// Type byte.
    pub ty: u8,
    /// Command number.
    pub nr: u8,
    /// Size of the caller's struct.
    pub size: usize,
}

/// Split a raw ioctl number into its fields.
pub const fn decode(cmd: u32) -> Decoded {
    Decoded {
        dir: cmd >> DIR_SHIFT,
        ty: (cmd >> TYPE_SHIFT) as u8,
        nr: (cmd >> NR_SHIFT) as u8,
        size: ((cmd >> SIZE_SHIFT) & 0x3fff) as usize,
    }
}

/// A field that must be zero on input (pad, reserved).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    /// Field path (`pad`, `attr.pad0`).
    pub name: &'static str,
    /// Byte offset.
    pub offset: usize,
    /// Byte size.
    pub size: usize,
}

/// A flag word whose unknown bits must be zero on input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlagsField {
    /// Field path.
    pub name: &'static str,
    /// Byte offset of the `__u32`.
    pub offset: usize,
    /// The bits this version understands.
    pub valid: u32,
}

/// What the generic validation needs to know about a struct.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StructDesc {
    /// C struct name (or scalar type name for arrays of scalars).
    pub name: &'static str,
    /// Current size.
    pub size: usize,
    /// Must-be-zero fields.
    pub zero: &'static [Span],
    /// Flag words.
    pub flags: &'static [FlagsField],
}

/// Whether a nested array is read or written by the core.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// The core copies the array in.
    In,
    /// The core copies results out into the array.
    Out,
}

/// A `__u64` field holding a user pointer to `count` elements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PtrField {
    /// Pointer field name.
    pub name: &'static str,
    /// Offset of the `__u64` pointer.
    pub offset: usize,
    /// Name of the `__u32` count field.
    pub count_name: &'static str,
    /// Offset of the `__u32` count field (elements, or bytes when `elem` is `__u8`).
    pub count_offset: usize,
    /// Element layout.
    pub elem: &'static StructDesc,
    /// In or out.
    pub access: Access,
}

impl PtrField {
    /// Read (pointer, count) out of an argument struct's bytes.
    pub fn read(&self, arg: &[u8]) -> Option<(u64, u32)> {
        let p = arg.get(self.offset..self.offset + 8)?;
        let c = arg.get(self.count_offset..self.count_offset + 4)?;
        Some((u64::from_ne_bytes(p.try_into().ok()?), u32::from_ne_bytes(c.try_into().ok()?)))
    }
}

/// One ioctl command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoctlDesc {
    /// `ACCEL_IOCTL_*` name.
    pub name: &'static str,
    /// Command number.
    pub nr: u8,
    /// Direction.
    pub dir: Dir,
    /// Argument layout.
    pub arg: &'static StructDesc,
    /// First released size: a shorter caller struct is EINVAL.
    pub min_size: usize,
    /// Nested arrays.
    pub ptrs: &'static [PtrField],
    /// The capability that announces the command (empty = always present).
    pub cap: Caps,
}

impl IoctlDesc {
    /// The number a caller built against this header uses.
    pub const fn number(&self) -> u32 {
        ioc(self.dir, self.nr, self.arg.size)
    }
}

macro_rules! sd {
    ($ty:ident $(, zero($($z:ident $(. $zz:ident)* : $zs:expr),* $(,)?))? $(, flags($($f:ident : $fv:expr),* $(,)?))?) => {
        StructDesc {
            name: stringify!($ty),
            size: size_of::<sys::$ty>(),
            zero: &[$($(Span {
                name: concat!(stringify!($z) $(, ".", stringify!($zz))*),
                offset: offset_of!(sys::$ty, $z $(. $zz)*),
                size: $zs,
            },)*)?],
            flags: &[$($(FlagsField { name: stringify!($f), offset: offset_of!(sys::$ty, $f), valid: $fv },)*)?],
        }
    };
}

macro_rules! scalar {
    ($name:literal, $ty:ty) => {
        StructDesc { name: $name, size: size_of::<$ty>(), zero: &[], flags: &[] }
    };
}

macro_rules! ptr {
    ($ty:ident, $p:ident, $c:ident, $elem:expr, $acc:ident) => {
        PtrField {
            name: stringify!($p),
            offset: offset_of!(sys::$ty, $p),
            count_name: stringify!($c),
            count_offset: offset_of!(sys::$ty, $c),
            elem: $elem,
            access: Access::$acc,
        }
    };
}

macro_rules! io {
    ($name:ident, $nr:expr, $dir:ident, $ty:ident, $desc:expr, $cap:expr $(, [$($ptr:expr),* $(,)?])?) => {
        IoctlDesc {
            name: stringify!($name),
            nr: $nr,
            dir: Dir::$dir,
            arg: $desc,
            min_size: size_of::<sys::$ty>(),
            ptrs: &[$($($ptr,)*)?],
            cap: $cap,
        }
    };
}

/// Element layouts of nested arrays.
pub mod elem {
    use super::*;
    /// Raw bytes (DEVICE_QUERY results).
    pub static U8: StructDesc = scalar!("__u8", u8);
    /// Handles.
    pub static U32: StructDesc = scalar!("__u32", u32);
    /// Timeline points.
    pub static U64: StructDesc = scalar!("__u64", u64);
    /// Fence statuses.
    pub static S32: StructDesc = scalar!("__s32", i32);
    /// VM_BIND ops.
    pub static VM_BIND_OP: StructDesc = sd!(accel_vm_bind_op, zero(pad: 4), flags(flags: VmBindFlags::all().bits()));
    /// Syncobj references.
    pub static SYNC: StructDesc = sd!(accel_sync, flags(flags: 0));
    /// Submit chunks.
    pub static CHUNK: StructDesc = sd!(accel_chunk, zero(pad: 4), flags(flags: 0));
    /// Work completions.
    pub static WC: StructDesc = sd!(accel_wc);
    /// Send WRs.
    pub static SEND_WR: StructDesc = sd!(accel_send_wr, flags(send_flags: SendFlags::all().bits()));
    /// Receive WRs.
    pub static RECV_WR: StructDesc = sd!(accel_recv_wr);
    /// Scatter/gather elements.
    pub static SGE: StructDesc = sd!(accel_sge);
}

/// Every ioctl of ABI 1.0, in number order.
pub static IOCTLS: &[IoctlDesc] = &[
    io!(ACCEL_IOCTL_VERSION, 0x00, Read, accel_version, &sd!(accel_version, zero(pad: 4)), Caps::empty()),
    io!(
        ACCEL_IOCTL_DEVICE_QUERY,
        0x01,
        ReadWrite,
        accel_device_query,
        &sd!(accel_device_query, zero(pad: 4), flags(flags: 0)),
        Caps::empty(),
        [ptr!(accel_device_query, data_ptr, size, &elem::U8, Out)]
    ),
    io!(
        ACCEL_IOCTL_GET_ASYNC_EVENT,
        0x02,
        ReadWrite,
        accel_async_event,
        &sd!(accel_async_event, zero(pad: 4), flags(flags: 0)),
        Caps::FABRIC
    ),
    io!(
        ACCEL_IOCTL_CONTEXT_CREATE,
        0x10,
        ReadWrite,
        accel_context_create,
        &sd!(accel_context_create, flags(flags: 0)),
        Caps::MEMORY
    ),
    io!(
        ACCEL_IOCTL_CONTEXT_DESTROY,
        0x11,
        Write,
        accel_context_destroy,
        &sd!(accel_context_destroy, zero(pad: 4)),
        Caps::MEMORY
    ),
    io!(
        ACCEL_IOCTL_CONTEXT_QUERY,
        0x12,
        ReadWrite,
        accel_context_query,
        &sd!(accel_context_query, zero(pad: 4), flags(flags: 0)),
        Caps::CONTEXT_QUERY
    ),
    io!(
        ACCEL_IOCTL_BO_CREATE,
        0x20,
        ReadWrite,
        accel_bo_create,
        &sd!(accel_bo_create, zero(pad: 4), flags(flags: BoFlags::all().bits())),
        Caps::MEMORY
    ),
    io!(ACCEL_IOCTL_BO_CLOSE, 0x21, Write, accel_bo_close, &sd!(accel_bo_close, zero(pad: 4)), Caps::MEMORY),
    io!(ACCEL_IOCTL_BO_INFO, 0x22, ReadWrite, accel_bo_info, &sd!(accel_bo_info, zero(pad: 4)), Caps::MEMORY),
    io!(
        ACCEL_IOCTL_BO_MMAP_OFFSET,
        0x23,
        ReadWrite,
        accel_bo_mmap_offset,
        &sd!(accel_bo_mmap_offset, flags(flags: 0)),
        Caps::MEMORY
    ),
    io!(
        ACCEL_IOCTL_BO_EXPORT,
        0x24,
        ReadWrite,
        accel_bo_export,
        &sd!(accel_bo_export, zero(pad: 4), flags(flags: 0)),
        Caps::BO_SHARE
    ),
    io!(
        ACCEL_IOCTL_BO_IMPORT,
        0x25,
        ReadWrite,
        accel_bo_import,
        &sd!(accel_bo_import, zero(pad: 4), flags(flags: 0)),
        Caps::BO_SHARE
    ),
    io!(
        ACCEL_IOCTL_VM_BIND,
        0x26,
        Write,
        accel_vm_bind,
        &sd!(accel_vm_bind, zero(pad: 4), flags(flags: 0)),
        Caps::MEMORY,
        [
            ptr!(accel_vm_bind, ops_ptr, num_ops, &elem::VM_BIND_OP, In),
            ptr!(accel_vm_bind, in_syncs_ptr, num_in_syncs, &elem::SYNC, In),
            ptr!(accel_vm_bind, out_syncs_ptr, num_out_syncs, &elem::SYNC, In),
        ]
    ),
    io!(
        ACCEL_IOCTL_QUEUE_CREATE,
        0x30,
        ReadWrite,
        accel_queue_create,
        &sd!(accel_queue_create, flags(flags: QueueFlags::all().bits())),
        Caps::SUBMIT
    ),
    io!(
        ACCEL_IOCTL_QUEUE_DESTROY,
        0x31,
        Write,
        accel_queue_destroy,
        &sd!(accel_queue_destroy, zero(pad: 4)),
        Caps::SUBMIT
    ),
    io!(
        ACCEL_IOCTL_SUBMIT,
        0x32,
        ReadWrite,
        accel_submit,
        &sd!(accel_submit, zero(pad: 4), flags(flags: SubmitFlags::all().bits())),
        Caps::SUBMIT,
        [
            ptr!(accel_submit, chunks_ptr, num_chunks, &elem::CHUNK, In),
            ptr!(accel_submit, waits_ptr, num_waits, &elem::SYNC, In),
            ptr!(accel_submit, signals_ptr, num_signals, &elem::SYNC, In),
        ]
    ),
    io!(
        ACCEL_IOCTL_SYNCOBJ_CREATE,
        0x40,
        ReadWrite,
        accel_syncobj_create,
        &sd!(accel_syncobj_create, flags(flags: SyncobjCreateFlags::all().bits())),
        Caps::SYNCOBJ
    ),
    io!(
        ACCEL_IOCTL_SYNCOBJ_DESTROY,
        0x41,
        Write,
        accel_syncobj_destroy,
        &sd!(accel_syncobj_destroy, zero(pad: 4)),
        Caps::SYNCOBJ
    ),
    io!(
        ACCEL_IOCTL_SYNCOBJ_WAIT,
        0x42,
        ReadWrite,
        accel_syncobj_wait,
        &sd!(accel_syncobj_wait, zero(pad: 4), flags(flags: SyncobjWaitFlags::all().bits())),
        Caps::SYNCOBJ,
        [
            ptr!(accel_syncobj_wait, handles_ptr, count, &elem::U32, In),
            ptr!(accel_syncobj_wait, points_ptr, count, &elem::U64, In),
        ]
    ),
    io!(
        ACCEL_IOCTL_SYNCOBJ_SIGNAL,
        0x43,
        Write,
        accel_syncobj_array,
        &sd!(accel_syncobj_array, flags(flags: 0)),
        Caps::SYNCOBJ,
        [ptr!(accel_syncobj_array, handles_ptr, count, &elem::U32, In),]
    ),
    io!(
        ACCEL_IOCTL_SYNCOBJ_RESET,
        0x44,
        Write,
        accel_syncobj_array,
        &sd!(accel_syncobj_array, flags(flags: 0)),
        Caps::SYNCOBJ,
        [ptr!(accel_syncobj_array, handles_ptr, count, &elem::U32, In),]
    ),
    io!(
        ACCEL_IOCTL_SYNCOBJ_TIMELINE_SIGNAL,
        0x45,
        Write,
        accel_syncobj_timeline_array,
        &sd!(accel_syncobj_timeline_array, flags(flags: 0)),
        Caps::SYNCOBJ_TIMELINE,
        [
            ptr!(accel_syncobj_timeline_array, handles_ptr, count, &elem::U32, In),
            ptr!(accel_syncobj_timeline_array, points_ptr, count, &elem::U64, In),
        ]
    ),
    io!(
        ACCEL_IOCTL_SYNCOBJ_QUERY,
        0x46,
        ReadWrite,
        accel_syncobj_query,
        &sd!(accel_syncobj_query, flags(flags: 0)),
        Caps::SYNCOBJ,
        [
            ptr!(accel_syncobj_query, handles_ptr, count, &elem::U32, In),
            ptr!(accel_syncobj_query, points_ptr, count, &elem::U64, Out),
            ptr!(accel_syncobj_query, status_ptr, count, &elem::S32, Out),
        ]
    ),
    io!(
        ACCEL_IOCTL_SYNCOBJ_TRANSFER,
        0x47,
        Write,
        accel_syncobj_transfer,
        &sd!(accel_syncobj_transfer, zero(pad: 4), flags(flags: 0)),
        Caps::SYNCOBJ_TIMELINE
    ),
    io!(
        ACCEL_IOCTL_SYNCOBJ_EXPORT,
        0x48,
        ReadWrite,
        accel_syncobj_export,
        &sd!(accel_syncobj_export, zero(pad: 4), flags(flags: 0)),
        Caps::SYNCOBJ_SHARE
    ),
    io!(
        ACCEL_IOCTL_SYNCOBJ_IMPORT,
        0x49,
        ReadWrite,
        accel_syncobj_import,
        &sd!(accel_syncobj_import, zero(pad: 4), flags(flags: 0)),
        Caps::SYNCOBJ_SHARE
    ),
    io!(ACCEL_IOCTL_PD_ALLOC, 0x50, ReadWrite, accel_pd_alloc, &sd!(accel_pd_alloc, flags(flags: 0)), Caps::FABRIC),
    io!(ACCEL_IOCTL_PD_FREE, 0x51, Write, accel_pd_free, &sd!(accel_pd_free, zero(pad: 4)), Caps::FABRIC),
    io!(
        ACCEL_IOCTL_MR_REG,
        0x52,
        ReadWrite,
        accel_mr_reg,
        &sd!(accel_mr_reg, flags(access: MrAccess::all().bits())),
        Caps::FABRIC
    ),
    io!(ACCEL_IOCTL_MR_DEREG, 0x53, Write, accel_mr_dereg, &sd!(accel_mr_dereg, zero(pad: 4)), Caps::FABRIC),
    io!(
        ACCEL_IOCTL_CQ_CREATE,
        0x54,
        ReadWrite,
        accel_cq_create,
        &sd!(accel_cq_create, zero(pad: 4), flags(flags: 0)),
        Caps::FABRIC
    ),
    io!(ACCEL_IOCTL_CQ_DESTROY, 0x55, Write, accel_cq_destroy, &sd!(accel_cq_destroy, zero(pad: 4)), Caps::FABRIC),
    io!(
        ACCEL_IOCTL_CQ_POLL,
        0x56,
        ReadWrite,
        accel_cq_poll,
        &sd!(accel_cq_poll, flags(flags: 0)),
        Caps::FABRIC,
        [ptr!(accel_cq_poll, wc_ptr, num_entries, &elem::WC, Out),]
    ),
    io!(
        ACCEL_IOCTL_QP_CREATE,
        0x57,
        ReadWrite,
        accel_qp_create,
        &sd!(accel_qp_create, flags(flags: QpCreateFlags::all().bits())),
        Caps::FABRIC
    ),
    io!(
        ACCEL_IOCTL_QP_MODIFY,
        0x58,
        Write,
        accel_qp_modify,
        &sd!(accel_qp_modify, zero(attr.pad0: 1), flags(attr_mask: QpAttrMask::all().bits())),
        Caps::FABRIC
    ),
    io!(ACCEL_IOCTL_QP_QUERY, 0x59, ReadWrite, accel_qp_query, &sd!(accel_qp_query, flags(flags: 0)), Caps::FABRIC),
    io!(ACCEL_IOCTL_QP_DESTROY, 0x5A, Write, accel_qp_destroy, &sd!(accel_qp_destroy, zero(pad: 4)), Caps::FABRIC),
    io!(
        ACCEL_IOCTL_POST_SEND,
        0x5B,
        ReadWrite,
        accel_post_send,
        &sd!(accel_post_send, zero(pad: 4), flags(flags: 0)),
        Caps::FABRIC,
        [
            ptr!(accel_post_send, wrs_ptr, num_wrs, &elem::SEND_WR, In),
            ptr!(accel_post_send, sges_ptr, num_sges, &elem::SGE, In),
        ]
    ),
    io!(
        ACCEL_IOCTL_POST_RECV,
        0x5C,
        ReadWrite,
        accel_post_recv,
        &sd!(accel_post_recv, zero(pad: 4), flags(flags: 0)),
        Caps::FABRIC,
        [
            ptr!(accel_post_recv, wrs_ptr, num_wrs, &elem::RECV_WR, In),
            ptr!(accel_post_recv, sges_ptr, num_sges, &elem::SGE, In),
        ]
    ),
];

/// The table entry for a command number (the `nr` byte), if any.
pub fn by_nr(nr: u8) -> Option<&'static IoctlDesc> {
    IOCTLS.binary_search_by_key(&nr, |d| d.nr).ok().map(|i| &IOCTLS[i])
}

/// The table entry by `ACCEL_IOCTL_*` name.
pub fn by_name(name: &str) -> Option<&'static IoctlDesc> {
    IOCTLS.iter().find(|d| d.name == name)
}

#[cfg(test)]
mod tests;
