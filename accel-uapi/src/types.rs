//! Every enumerated value word of the ABI as a Rust enum with `TryFrom`,
//! so an unknown value is an error value (EINVAL at the boundary), never a panic.

use crate::sys;
use core::fmt;

/// A value word held a number that names no variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnknownValue {
    /// The enum that was expected.
    pub what: &'static str,
    /// The value found.
    pub value: u64,
}

impl fmt::Display for UnknownValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} is not a valid {}", self.value, self.what)
    }
}

impl core::error::Error for UnknownValue {}

macro_rules! uapi_enum {
    ($(#[$m:meta])* pub enum $name:ident : $repr:ty { $($(#[$vm:meta])* $var:ident = $val:expr,)* }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr($repr)]
        pub enum $name { $($(#[$vm])* $var = $val as $repr,)* }

        impl TryFrom<$repr> for $name {
            type Error = UnknownValue;
            fn try_from(v: $repr) -> Result<Self, UnknownValue> {
                $(if v == $val as $repr { return Ok(Self::$var); })*
                Err(UnknownValue { what: stringify!($name), value: v as u64 })
            }
        }

        impl From<$name> for $repr {
            fn from(v: $name) -> $repr { v as $repr }
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$var,)*];
        }
    };
}

uapi_enum! {
    /// `ACCEL_QUERY_*`.
    pub enum QueryId: u32 {
        /// struct accel_device_info.
        DeviceInfo = sys::ACCEL_QUERY_DEVICE_INFO,
        /// accel_query_engines + entries.
        Engines = sys::ACCEL_QUERY_ENGINES,
        /// accel_query_memory_regions + entries.
        MemoryRegions = sys::ACCEL_QUERY_MEMORY_REGIONS,
        /// struct accel_va_range.
        VaRange = sys::ACCEL_QUERY_VA_RANGE,
        /// accel_query_ports + entries.
        Ports = sys::ACCEL_QUERY_PORTS,
        /// struct accel_limits.
        Limits = sys::ACCEL_QUERY_LIMITS,
    }
}

uapi_enum! {
    /// `ACCEL_ENGINE_CLASS_*`.
    pub enum EngineClass: u32 {
        /// Compute engines.
        Compute = sys::ACCEL_ENGINE_CLASS_COMPUTE,
        /// Copy (DMA) engines.
        Copy = sys::ACCEL_ENGINE_CLASS_COPY,
        /// Fabric (NIC) engines.
        Fabric = sys::ACCEL_ENGINE_CLASS_FABRIC,
    }
}

uapi_enum! {
    /// `ACCEL_MEM_REGION_HOST/DEVICE`.
    pub enum MemRegionKind: u32 {
        /// System memory.
        Host = sys::ACCEL_MEM_REGION_HOST,
        /// Device-local memory.
        Device = sys::ACCEL_MEM_REGION_DEVICE,
    }
}

uapi_enum! {
    /// `ACCEL_PORT_*`.
    pub enum PortState: u32 {
        /// Link down.
        Down = sys::ACCEL_PORT_DOWN,
        /// Initialising.
        Init = sys::ACCEL_PORT_INIT,
        /// Armed.
        Armed = sys::ACCEL_PORT_ARMED,
        /// Up.
        Active = sys::ACCEL_PORT_ACTIVE,
    }
}

uapi_enum! {
    /// `ACCEL_MTU_*`.
    pub enum Mtu: u32 {
        /// 256 bytes.
        Mtu256 = sys::ACCEL_MTU_256,
        /// 512 bytes.
        Mtu512 = sys::ACCEL_MTU_512,
        /// 1024 bytes.
        Mtu1024 = sys::ACCEL_MTU_1024,
        /// 2048 bytes.
        Mtu2048 = sys::ACCEL_MTU_2048,
        /// 4096 bytes.
        Mtu4096 = sys::ACCEL_MTU_4096,
    }
}

impl Mtu {
    /// The MTU in bytes.
    pub const fn bytes(self) -> u32 {
        128 << (self as u32)
    }
}

uapi_enum! {
    /// `ACCEL_VM_BIND_OP_*`.
    pub enum VmBindOp: u32 {
        /// Map a BO range.
        Map = sys::ACCEL_VM_BIND_OP_MAP,
        /// Unmap a VA range.
        Unmap = sys::ACCEL_VM_BIND_OP_UNMAP,
    }
}

uapi_enum! {
    /// `ACCEL_PRIORITY_*`.
    pub enum Priority: u32 {
        /// Low.
        Low = sys::ACCEL_PRIORITY_LOW,
        /// Normal.
        Normal = sys::ACCEL_PRIORITY_NORMAL,
        /// High.
        High = sys::ACCEL_PRIORITY_HIGH,
    }
}

uapi_enum! {
    /// `ACCEL_CHUNK_*`.
    pub enum ChunkKind: u32 {
        /// Portable command stream.
        Portable = sys::ACCEL_CHUNK_PORTABLE,
        /// Vendor command buffer.
        Native = sys::ACCEL_CHUNK_NATIVE,
    }
}

uapi_enum! {
    /// Work completion status (`ACCEL_WC_*`, IB values).
    pub enum WcStatus: u32 {
        /// Success.
        Success = sys::ACCEL_WC_SUCCESS,
        /// Local length error.
        LocLenErr = sys::ACCEL_WC_LOC_LEN_ERR,
        /// Local QP operation error.
        LocQpOpErr = sys::ACCEL_WC_LOC_QP_OP_ERR,
        /// Local protection error.
        LocProtErr = sys::ACCEL_WC_LOC_PROT_ERR,
        /// Flushed.
        WrFlushErr = sys::ACCEL_WC_WR_FLUSH_ERR,
        /// Bad response.
        BadRespErr = sys::ACCEL_WC_BAD_RESP_ERR,
        /// Local access error.
        LocAccessErr = sys::ACCEL_WC_LOC_ACCESS_ERR,
        /// Remote invalid request.
        RemInvReqErr = sys::ACCEL_WC_REM_INV_REQ_ERR,
        /// Remote access error.
        RemAccessErr = sys::ACCEL_WC_REM_ACCESS_ERR,
        /// Remote operation error.
        RemOpErr = sys::ACCEL_WC_REM_OP_ERR,
        /// Transport retry counter exceeded.
        RetryExcErr = sys::ACCEL_WC_RETRY_EXC_ERR,
        /// RNR retry counter exceeded.
        RnrRetryExcErr = sys::ACCEL_WC_RNR_RETRY_EXC_ERR,
        /// Fatal error.
        FatalErr = sys::ACCEL_WC_FATAL_ERR,
        /// General error.
        GeneralErr = sys::ACCEL_WC_GENERAL_ERR,
    }
}

uapi_enum! {
    /// Work completion opcode (`ACCEL_WC_*`, IB values).
    pub enum WcOpcode: u32 {
        /// A SEND completed.
        Send = sys::ACCEL_WC_SEND,
        /// An RDMA WRITE completed.
        RdmaWrite = sys::ACCEL_WC_RDMA_WRITE,
        /// An RDMA READ completed.
        RdmaRead = sys::ACCEL_WC_RDMA_READ,
        /// A receive completed.
        Recv = sys::ACCEL_WC_RECV,
        /// An RDMA WRITE with immediate consumed a receive.
        RecvRdmaWithImm = sys::ACCEL_WC_RECV_RDMA_WITH_IMM,
    }
}

uapi_enum! {
    /// `ACCEL_QPT_*`.
    pub enum QpType: u32 {
        /// Reliable connected.
        Rc = sys::ACCEL_QPT_RC,
    }
}

uapi_enum! {
    /// `ACCEL_QPS_*` (IB values).
    pub enum QpState: u32 {
        /// Reset.
        Reset = sys::ACCEL_QPS_RESET,
        /// Initialised.
        Init = sys::ACCEL_QPS_INIT,
        /// Ready to receive.
        Rtr = sys::ACCEL_QPS_RTR,
        /// Ready to send.
        Rts = sys::ACCEL_QPS_RTS,
        /// Send queue drained.
        Sqd = sys::ACCEL_QPS_SQD,
        /// Send queue error.
        Sqe = sys::ACCEL_QPS_SQE,
        /// Error.
        Err = sys::ACCEL_QPS_ERR,
    }
}

uapi_enum! {
    /// Send work request opcodes (`ACCEL_WR_*`, IB values).
    pub enum WrOpcode: u32 {
        /// RDMA WRITE.
        RdmaWrite = sys::ACCEL_WR_RDMA_WRITE,
        /// RDMA WRITE with immediate.
        RdmaWriteWithImm = sys::ACCEL_WR_RDMA_WRITE_WITH_IMM,
        /// SEND.
        Send = sys::ACCEL_WR_SEND,
        /// SEND with immediate.
        SendWithImm = sys::ACCEL_WR_SEND_WITH_IMM,
        /// RDMA READ.
        RdmaRead = sys::ACCEL_WR_RDMA_READ,
    }
}

uapi_enum! {
    /// Async event types (`ACCEL_EVENT_*`, IB values).
    pub enum EventType: u32 {
        /// CQ overrun.
        CqErr = sys::ACCEL_EVENT_CQ_ERR,
        /// QP fatal error.
        QpFatal = sys::ACCEL_EVENT_QP_FATAL,
        /// Invalid request on a QP.
        QpReqErr = sys::ACCEL_EVENT_QP_REQ_ERR,
        /// Access violation on a QP.
        QpAccessErr = sys::ACCEL_EVENT_QP_ACCESS_ERR,
        /// Port became active.
        PortActive = sys::ACCEL_EVENT_PORT_ACTIVE,
        /// Port went down.
        PortErr = sys::ACCEL_EVENT_PORT_ERR,
    }
}

uapi_enum! {
    /// Portable command opcodes (`ACCEL_CMD_*`).
    pub enum CmdOpcode: u16 {
        /// COPY.
        Copy = sys::ACCEL_CMD_COPY,
        /// FILL.
        Fill = sys::ACCEL_CMD_FILL,
        /// WRITE_VALUE.
        WriteValue = sys::ACCEL_CMD_WRITE_VALUE,
        /// WAIT_VALUE.
        WaitValue = sys::ACCEL_CMD_WAIT_VALUE,
        /// TIMESTAMP.
        Timestamp = sys::ACCEL_CMD_TIMESTAMP,
        /// BARRIER.
        Barrier = sys::ACCEL_CMD_BARRIER,
        /// REDUCE.
        Reduce = sys::ACCEL_CMD_REDUCE,
    }
}

impl CmdOpcode {
    /// The exact length in bytes of this command's struct.
    pub const fn length(self) -> usize {
        match self {
            CmdOpcode::Copy => size_of::<sys::accel_cmd_copy>(),
            CmdOpcode::Fill => size_of::<sys::accel_cmd_fill>(),
            CmdOpcode::WriteValue => size_of::<sys::accel_cmd_write_value>(),
            CmdOpcode::WaitValue => size_of::<sys::accel_cmd_wait_value>(),
            CmdOpcode::Timestamp => size_of::<sys::accel_cmd_timestamp>(),
            CmdOpcode::Barrier => size_of::<sys::accel_cmd_barrier>(),
            CmdOpcode::Reduce => size_of::<sys::accel_cmd_reduce>(),
        }
    }
}

uapi_enum! {
    /// `ACCEL_CMP_*` of WAIT_VALUE.
    pub enum CmpOp: u32 {
        /// ==
        Eq = sys::ACCEL_CMP_EQ,
        /// !=
        Ne = sys::ACCEL_CMP_NE,
        /// <
        Lt = sys::ACCEL_CMP_LT,
        /// <=
        Le = sys::ACCEL_CMP_LE,
        /// >
        Gt = sys::ACCEL_CMP_GT,
        /// >=
        Ge = sys::ACCEL_CMP_GE,
    }
}

impl CmpOp {
    /// Evaluate `lhs op rhs`.
    pub fn holds(self, lhs: u64, rhs: u64) -> bool {
        match self {
            CmpOp::Eq => lhs == rhs,
            CmpOp::Ne => lhs != rhs,
            CmpOp::Lt => lhs < rhs,
            CmpOp::Le => lhs <= rhs,
            CmpOp::Gt => lhs > rhs,
            CmpOp::Ge => lhs >= rhs,
        }
    }
}

uapi_enum! {
    /// `ACCEL_REDUCE_*`.
    pub enum ReduceOp: u32 {
        /// Sum (integers wrap).
        Sum = sys::ACCEL_REDUCE_SUM,
        /// Minimum.
        Min = sys::ACCEL_REDUCE_MIN,
        /// Maximum.
        Max = sys::ACCEL_REDUCE_MAX,
    }
}

uapi_enum! {
    /// `ACCEL_DTYPE_*` of REDUCE.
    pub enum DType: u32 {
        /// IEEE-754 binary32.
        F32 = sys::ACCEL_DTYPE_F32,
        /// i32.
        I32 = sys::ACCEL_DTYPE_I32,
        /// u32.
        U32 = sys::ACCEL_DTYPE_U32,
        /// u64.
        U64 = sys::ACCEL_DTYPE_U64,
    }
}

impl DType {
    /// Element size in bytes.
    pub const fn size(self) -> usize {
        match self {
            DType::F32 | DType::I32 | DType::U32 => 4,
            DType::U64 => 8,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn try_from_accepts_every_variant_and_rejects_the_rest() {
        for v in QpState::ALL {
            assert_eq!(QpState::try_from(u32::from(*v)), Ok(*v));
        }
        assert_eq!(QpState::try_from(7), Err(UnknownValue { what: "QpState", value: 7 }));
        assert_eq!(CmdOpcode::try_from(0u16).unwrap_err().to_string(), "0 is not a valid CmdOpcode");
        assert_eq!(WcOpcode::try_from(128), Ok(WcOpcode::Recv));
        assert_eq!(Mtu::Mtu1024.bytes(), 1024);
        assert_eq!(Mtu::Mtu4096.bytes(), 4096);
    }
}
