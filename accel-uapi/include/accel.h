/* SPDX-License-Identifier: (GPL-2.0 WITH Linux-syscall-note) OR MIT */
/*
 * accel.h - the accel user/kernel ABI, version 1.0.
 *
 * This header is canonical: the Rust bindings (accel-uapi/src/sys.rs) are
 * generated from it and the ABI snapshot (accel-uapi/abi/accel-abi-v1.txt)
 * records the layout of every released struct.  See docs/uapi.md.
 *
 * Rules (UAPI-RULES.md, checked by `cargo xtask uapi --check`):
 *  - only __u8/__u16/__u32/__u64/__s32/__s64 fields and arrays of them or of
 *    accel structs; pointers travel as __u64; no bool, enum, long, bit-fields;
 *  - every field naturally aligned, every hole an explicit pad/reserved field,
 *    every struct a multiple of 8 bytes, identical on 32- and 64-bit;
 *  - pad and reserved fields must be zero, unknown flag bits must be zero;
 *  - timeouts are absolute CLOCK_MONOTONIC nanoseconds (__s64), 0 = poll;
 *  - handles are per open file and never 0.
 */
#ifndef ACCEL_UAPI_ACCEL_H
#define ACCEL_UAPI_ACCEL_H

#include <linux/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* Version and ioctl number encoding                                         */
/* ------------------------------------------------------------------------ */

#define ACCEL_ABI_MAJOR 1
#define ACCEL_ABI_MINOR 0

/*
 * ioctl numbers use the generic Linux _IOC layout so a character device could
 * serve the same numbers: nr bits 0-7, type bits 8-15, size bits 16-29,
 * direction bits 30-31 (1 = userspace writes, 2 = userspace reads).
 */
#define ACCEL_IOCTL_BASE 0xAC
#define ACCEL_IOC_NRSHIFT 0
#define ACCEL_IOC_TYPESHIFT 8
#define ACCEL_IOC_SIZESHIFT 16
#define ACCEL_IOC_DIRSHIFT 30
#define ACCEL_IOC_NONE 0U
#define ACCEL_IOC_WRITE 1U
#define ACCEL_IOC_READ 2U
#define ACCEL_IOC(dir, nr, size)                                                \
	(((dir) << ACCEL_IOC_DIRSHIFT) | ((size) << ACCEL_IOC_SIZESHIFT) |       \
	 (ACCEL_IOCTL_BASE << ACCEL_IOC_TYPESHIFT) | ((nr) << ACCEL_IOC_NRSHIFT))
#define ACCEL_IOR(nr, type) ACCEL_IOC(ACCEL_IOC_READ, (nr), sizeof(type))
#define ACCEL_IOW(nr, type) ACCEL_IOC(ACCEL_IOC_WRITE, (nr), sizeof(type))
#define ACCEL_IOWR(nr, type)                                                    \
	ACCEL_IOC(ACCEL_IOC_READ | ACCEL_IOC_WRITE, (nr), sizeof(type))

/* ------------------------------------------------------------------------ */
/* Capabilities: every ioctl group and optional field is announced here.     */
/* ------------------------------------------------------------------------ */

/* Contexts, buffer objects, VM_BIND (always set by a conforming core). */
#define ACCEL_CAP_MEMORY (1ULL << 0)
/* BO export/import between files. */
#define ACCEL_CAP_BO_SHARE (1ULL << 1)
/* Queues and SUBMIT. */
#define ACCEL_CAP_SUBMIT (1ULL << 2)
/* Portable command set chunks (ACCEL_CHUNK_PORTABLE). */
#define ACCEL_CAP_PORTABLE_CS (1ULL << 3)
/* Native command buffer chunks (ACCEL_CHUNK_NATIVE). */
#define ACCEL_CAP_NATIVE_CS (1ULL << 4)
/* Binary syncobjs: create/destroy/wait/signal/reset/query. */
#define ACCEL_CAP_SYNCOBJ (1ULL << 5)
/* Timeline syncobjs, timeline signal, transfer. */
#define ACCEL_CAP_SYNCOBJ_TIMELINE (1ULL << 6)
/* Syncobj export/import between files. */
#define ACCEL_CAP_SYNCOBJ_SHARE (1ULL << 7)
/* Fabric verbs: PD, MR, CQ, QP, post/poll, async events. */
#define ACCEL_CAP_FABRIC (1ULL << 8)
/* CONTEXT_QUERY: fault and ban state of a context. */
#define ACCEL_CAP_CONTEXT_QUERY (1ULL << 9)
/* Device-local memory regions exist (ACCEL_MEM_REGION_DEVICE). */
#define ACCEL_CAP_DEVICE_MEMORY (1ULL << 10)

/* ------------------------------------------------------------------------ */
/* VERSION                                                                   */
/* ------------------------------------------------------------------------ */

/* ACCEL_IOCTL_VERSION: ABI version and capability bits of this device. */
struct accel_version {
	__u16 major;   /* out: ACCEL_ABI_MAJOR */
	__u16 minor;   /* out: ACCEL_ABI_MINOR of the core */
	__u32 pad;     /* must be 0 */
	__u64 caps;    /* out: ACCEL_CAP_* */
};

/* ------------------------------------------------------------------------ */
/* DEVICE_QUERY: typed query ids, size-then-fill                             */
/* ------------------------------------------------------------------------ */

#define ACCEL_QUERY_DEVICE_INFO 1    /* struct accel_device_info */
#define ACCEL_QUERY_ENGINES 2        /* struct accel_query_engines + entries */
#define ACCEL_QUERY_MEMORY_REGIONS 3 /* struct accel_query_memory_regions + entries */
#define ACCEL_QUERY_VA_RANGE 4       /* struct accel_va_range */
#define ACCEL_QUERY_PORTS 5          /* struct accel_query_ports + entries */
#define ACCEL_QUERY_LIMITS 6         /* struct accel_limits */

/*
 * ACCEL_IOCTL_DEVICE_QUERY: call with size = 0 to learn the size of the
 * result, then again with a buffer of at least that size.  A non-zero size
 * smaller than the result is EINVAL.  On success size is set to the number
 * of bytes written.
 */
struct accel_device_query {
	__u32 query_id; /* in: ACCEL_QUERY_* */
	__u32 size;     /* in: buffer size (0 = ask); out: result size */
	__u64 data_ptr; /* in: user pointer to the result buffer */
	__u32 flags;    /* must be 0 */
	__u32 pad;      /* must be 0 */
};

#define ACCEL_NAME_LEN 32

/* ACCEL_QUERY_DEVICE_INFO */
struct accel_device_info {
	__u32 vendor_id;
	__u32 device_id;
	__u32 revision;
	__u32 index;                       /* N of accelN */
	__u8 driver_name[ACCEL_NAME_LEN];  /* NUL-padded */
	__u8 name[ACCEL_NAME_LEN];         /* "accelN", NUL-padded */
	__u64 caps;                        /* ACCEL_CAP_* */
};

#define ACCEL_ENGINE_CLASS_COMPUTE 0
#define ACCEL_ENGINE_CLASS_COPY 1
#define ACCEL_ENGINE_CLASS_FABRIC 2

/* One engine class of ACCEL_QUERY_ENGINES. */
struct accel_engine_info {
	__u32 engine_class; /* ACCEL_ENGINE_CLASS_* */
	__u32 count;        /* number of engines of this class */
};

/* ACCEL_QUERY_ENGINES: header followed by num_engines accel_engine_info. */
struct accel_query_engines {
	__u32 num_engines;
	__u32 pad;
};

#define ACCEL_MEM_REGION_HOST 0
#define ACCEL_MEM_REGION_DEVICE 1

/* Region flags. */
#define ACCEL_MEM_REGION_CPU_VISIBLE (1U << 0)

/* One region of ACCEL_QUERY_MEMORY_REGIONS. */
struct accel_memory_region {
	__u32 region_id;  /* value for accel_bo_create.region */
	__u32 kind;       /* ACCEL_MEM_REGION_HOST/DEVICE */
	__u64 size;       /* bytes */
	__u64 available;  /* bytes free at query time */
	__u64 page_sizes; /* bitmask: bit n set = 2^n-byte pages supported */
	__u32 flags;      /* ACCEL_MEM_REGION_CPU_VISIBLE */
	__u32 pad;
};

/* ACCEL_QUERY_MEMORY_REGIONS: header followed by num_regions entries. */
struct accel_query_memory_regions {
	__u32 num_regions;
	__u32 pad;
};

/* ACCEL_QUERY_VA_RANGE: the VA window usable by VM_BIND in a context. */
struct accel_va_range {
	__u64 start;          /* first usable address */
	__u64 end;            /* one past the last usable address */
	__u64 min_page_size;  /* VM_BIND granularity */
	__u64 reserved_start; /* [reserved_start, reserved_end) belongs to the core */
	__u64 reserved_end;
};

/* Port states, as in InfiniBand (IBV_PORT_*). */
#define ACCEL_PORT_DOWN 1
#define ACCEL_PORT_INIT 2
#define ACCEL_PORT_ARMED 3
#define ACCEL_PORT_ACTIVE 4

/* MTU codes, as in InfiniBand (IBV_MTU_*). */
#define ACCEL_MTU_256 1
#define ACCEL_MTU_512 2
#define ACCEL_MTU_1024 3
#define ACCEL_MTU_2048 4
#define ACCEL_MTU_4096 5

/* One port of ACCEL_QUERY_PORTS. */
struct accel_port_info {
	__u32 port_num;    /* 1-based, as in verbs */
	__u32 state;       /* ACCEL_PORT_* */
	__u32 max_mtu;     /* ACCEL_MTU_* */
	__u32 active_mtu;  /* ACCEL_MTU_* */
	__u8 gid[16];      /* RoCE v2 GID (IPv4-mapped or IPv6) */
	__u64 speed_mbps;
	__u32 flags;       /* reserved for future port flags, 0 */
	__u32 pad;
};

/* ACCEL_QUERY_PORTS: header followed by num_ports entries. */
struct accel_query_ports {
	__u32 num_ports;
	__u32 pad;
};

/* ACCEL_QUERY_LIMITS: the hard maxima of this device and core. */
struct accel_limits {
	__u32 max_contexts;
	__u32 max_queues_per_context;
	__u64 max_bo_size;
	__u32 max_vm_bind_ops;     /* per VM_BIND call */
	__u32 max_submit_chunks;   /* per SUBMIT */
	__u32 max_submit_syncs;    /* waits or signals per SUBMIT or VM_BIND */
	__u32 max_syncobj_wait;    /* handles per SYNCOBJ_WAIT */
	__u32 max_queue_depth;
	__u32 max_pd;
	__u32 max_mr;
	__u32 max_cq;
	__u32 max_cqe;
	__u32 max_qp;
	__u32 max_qp_wr;
	__u32 max_sge;
	__u32 max_post_wrs;        /* per POST_SEND/POST_RECV */
	__u32 max_msg_size;
	__u64 default_job_timeout_ns;
};

/* ------------------------------------------------------------------------ */
/* Contexts                                                                  */
/* ------------------------------------------------------------------------ */

/* ACCEL_IOCTL_CONTEXT_CREATE */
struct accel_context_create {
	__u32 flags;  /* must be 0 */
	__u32 ctx_id; /* out */
};

/* ACCEL_IOCTL_CONTEXT_DESTROY */
struct accel_context_destroy {
	__u32 ctx_id;
	__u32 pad;
};

/* Context status bits of accel_context_query.status. */
#define ACCEL_CONTEXT_FAULTED (1U << 0) /* a job took a GPU page fault */
#define ACCEL_CONTEXT_BANNED (1U << 1)  /* later submits fail with EIO */

/* Fault access kinds of accel_context_query.fault_access. */
#define ACCEL_FAULT_READ (1U << 0)
#define ACCEL_FAULT_WRITE (1U << 1)
#define ACCEL_FAULT_EXEC (1U << 2)

/* ACCEL_IOCTL_CONTEXT_QUERY (ACCEL_CAP_CONTEXT_QUERY) */
struct accel_context_query {
	__u32 ctx_id;       /* in */
	__u32 flags;        /* must be 0 */
	__u32 status;       /* out: ACCEL_CONTEXT_* */
	__u32 fault_access; /* out: ACCEL_FAULT_* of the first fault */
	__u64 fault_addr;   /* out: VA of the first fault */
	__u64 fault_seqno;  /* out: sequence number of the faulting job */
	__u32 ban_errno;    /* out: errno that banned the context, 0 if none */
	__u32 pad;
};

/* ------------------------------------------------------------------------ */
/* Buffer objects                                                            */
/* ------------------------------------------------------------------------ */

#define ACCEL_BO_CPU_VISIBLE (1U << 0) /* may be mmapped */
#define ACCEL_BO_ZEROED (1U << 1)      /* contents start as zero */

/* ACCEL_IOCTL_BO_CREATE */
struct accel_bo_create {
	__u64 size;   /* bytes, rounded up to the region's page size */
	__u32 region; /* accel_memory_region.region_id */
	__u32 flags;  /* ACCEL_BO_* */
	__u32 handle; /* out */
	__u32 pad;
};

/* ACCEL_IOCTL_BO_CLOSE */
struct accel_bo_close {
	__u32 handle;
	__u32 pad;
};

/* ACCEL_IOCTL_BO_INFO */
struct accel_bo_info {
	__u32 handle; /* in */
	__u32 flags;  /* out: ACCEL_BO_* the BO was created with */
	__u64 size;   /* out */
	__u32 region; /* out */
	__u32 pad;
};

/* ACCEL_IOCTL_BO_MMAP_OFFSET: the offset to pass to mmap for this BO. */
struct accel_bo_mmap_offset {
	__u32 handle; /* in */
	__u32 flags;  /* must be 0 */
	__u64 offset; /* out */
};

/* ACCEL_IOCTL_BO_EXPORT (ACCEL_CAP_BO_SHARE) */
struct accel_bo_export {
	__u32 handle; /* in */
	__u32 flags;  /* must be 0 */
	__s32 fd;     /* out: a file descriptor naming the BO */
	__u32 pad;
};

/* ACCEL_IOCTL_BO_IMPORT (ACCEL_CAP_BO_SHARE) */
struct accel_bo_import {
	__s32 fd;     /* in: from BO_EXPORT, possibly of another file */
	__u32 flags;  /* must be 0 */
	__u32 handle; /* out */
	__u32 pad;
	__u64 size;   /* out */
};

/* ------------------------------------------------------------------------ */
/* Synchronisation references shared by VM_BIND and SUBMIT                   */
/* ------------------------------------------------------------------------ */

/* One syncobj to wait on or signal; point is used only by timeline syncobjs. */
struct accel_sync {
	__u32 handle; /* syncobj handle */
	__u32 flags;  /* must be 0 */
	__u64 point;  /* timeline point; must be 0 for a binary syncobj */
};

/* ------------------------------------------------------------------------ */
/* VM_BIND                                                                   */
/* ------------------------------------------------------------------------ */

#define ACCEL_VM_BIND_OP_MAP 0
#define ACCEL_VM_BIND_OP_UNMAP 1

/* Mapping permissions (accel_vm_bind_op.flags). */
#define ACCEL_VM_BIND_READ (1U << 0)
#define ACCEL_VM_BIND_WRITE (1U << 1)
#define ACCEL_VM_BIND_EXEC (1U << 2)

/* One map or unmap operation. */
struct accel_vm_bind_op {
	__u32 op;        /* ACCEL_VM_BIND_OP_* */
	__u32 flags;     /* MAP: ACCEL_VM_BIND_* permissions; UNMAP: 0 */
	__u32 handle;    /* MAP: BO handle; UNMAP: 0 */
	__u32 pad;
	__u64 bo_offset; /* MAP: offset in the BO; UNMAP: 0 */
	__u64 va;        /* page-aligned */
	__u64 range;     /* bytes, page-aligned, non-zero */
};

/*
 * ACCEL_IOCTL_VM_BIND: apply ops in order, all or nothing.  Waits on
 * in_syncs_ptr before the new mappings are visible to jobs, signals
 * out_syncs_ptr once they are.
 */
struct accel_vm_bind {
	__u32 ctx_id;
	__u32 num_ops;
	__u64 ops_ptr;       /* struct accel_vm_bind_op[num_ops] */
	__u32 num_in_syncs;
	__u32 num_out_syncs;
	__u64 in_syncs_ptr;  /* struct accel_sync[num_in_syncs] */
	__u64 out_syncs_ptr; /* struct accel_sync[num_out_syncs] */
	__u32 flags;         /* must be 0 */
	__u32 pad;
};

/* ------------------------------------------------------------------------ */
/* Queues and submission                                                     */
/* ------------------------------------------------------------------------ */

#define ACCEL_PRIORITY_LOW 0
#define ACCEL_PRIORITY_NORMAL 1
#define ACCEL_PRIORITY_HIGH 2

/* accel_queue_create.flags */
#define ACCEL_QUEUE_TIMEOUT (1U << 0) /* timeout_ns is valid */

/* ACCEL_IOCTL_QUEUE_CREATE (ACCEL_CAP_SUBMIT) */
struct accel_queue_create {
	__u32 ctx_id;
	__u32 engine_class; /* ACCEL_ENGINE_CLASS_* */
	__u32 priority;     /* ACCEL_PRIORITY_* */
	__u32 flags;        /* ACCEL_QUEUE_* */
	__u32 depth;        /* max jobs in flight, 0 = driver default */
	__u32 queue_id;     /* out */
	__u64 timeout_ns;   /* job timeout, may only lower the driver default */
};

/* ACCEL_IOCTL_QUEUE_DESTROY */
struct accel_queue_destroy {
	__u32 queue_id;
	__u32 pad;
};

#define ACCEL_CHUNK_PORTABLE 0 /* portable command stream (ACCEL_CMD_*) */
#define ACCEL_CHUNK_NATIVE 1   /* vendor command buffer, validated by the driver */

/* One command buffer: a range of a BO. */
struct accel_chunk {
	__u32 kind;   /* ACCEL_CHUNK_* */
	__u32 handle; /* BO holding the commands */
	__u64 offset; /* 8-byte aligned */
	__u64 size;   /* bytes, multiple of 8 */
	__u32 flags;  /* must be 0 */
	__u32 pad;
};

/* accel_submit.flags */
#define ACCEL_SUBMIT_BLOCK (1U << 0) /* wait for room instead of EAGAIN */

/* ACCEL_IOCTL_SUBMIT (ACCEL_CAP_SUBMIT) */
struct accel_submit {
	__u32 queue_id;
	__u32 flags;       /* ACCEL_SUBMIT_* */
	__u32 num_chunks;
	__u32 num_waits;
	__u32 num_signals;
	__u32 pad;
	__u64 chunks_ptr;  /* struct accel_chunk[num_chunks] */
	__u64 waits_ptr;   /* struct accel_sync[num_waits] */
	__u64 signals_ptr; /* struct accel_sync[num_signals] */
	__u64 seqno;       /* out: never 0 nor ~0 */
};

/* ------------------------------------------------------------------------ */
/* Syncobjs                                                                  */
/* ------------------------------------------------------------------------ */

/* accel_syncobj_create.flags */
#define ACCEL_SYNCOBJ_CREATE_SIGNALED (1U << 0)
#define ACCEL_SYNCOBJ_CREATE_TIMELINE (1U << 1)

/* ACCEL_IOCTL_SYNCOBJ_CREATE (ACCEL_CAP_SYNCOBJ) */
struct accel_syncobj_create {
	__u32 flags;
	__u32 handle; /* out */
};

/* ACCEL_IOCTL_SYNCOBJ_DESTROY */
struct accel_syncobj_destroy {
	__u32 handle;
	__u32 pad;
};

/* accel_syncobj_wait.flags */
#define ACCEL_SYNCOBJ_WAIT_ALL (1U << 0)             /* else: any */
#define ACCEL_SYNCOBJ_WAIT_FOR_SUBMIT (1U << 1)      /* wait for a fence to appear */

/*
 * ACCEL_IOCTL_SYNCOBJ_WAIT: wait until all (or any) of the syncobjs are
 * signalled, or until the absolute CLOCK_MONOTONIC deadline (ETIMEDOUT).
 * A signalled fence with an error status completes the wait; query it.
 */
struct accel_syncobj_wait {
	__u64 handles_ptr;    /* __u32[count] */
	__u64 points_ptr;     /* __u64[count] timeline points, 0 = all points 0 */
	__s64 timeout_ns;     /* absolute CLOCK_MONOTONIC, 0 = poll */
	__u32 count;
	__u32 flags;          /* ACCEL_SYNCOBJ_WAIT_* */
	__u32 first_signaled; /* out: index of the first signalled (ANY) */
	__u32 pad;
};

/* ACCEL_IOCTL_SYNCOBJ_SIGNAL and ACCEL_IOCTL_SYNCOBJ_RESET: binary syncobjs. */
struct accel_syncobj_array {
	__u64 handles_ptr; /* __u32[count] */
	__u32 count;
	__u32 flags;       /* must be 0 */
};

/* ACCEL_IOCTL_SYNCOBJ_TIMELINE_SIGNAL (ACCEL_CAP_SYNCOBJ_TIMELINE) */
struct accel_syncobj_timeline_array {
	__u64 handles_ptr; /* __u32[count] */
	__u64 points_ptr;  /* __u64[count] */
	__u32 count;
	__u32 flags;       /* must be 0 */
};

/*
 * ACCEL_IOCTL_SYNCOBJ_QUERY: for each handle, the last signalled point
 * (binary: 1 if signalled, else 0) and the fence status (0 or -errno).
 */
struct accel_syncobj_query {
	__u64 handles_ptr; /* __u32[count] */
	__u64 points_ptr;  /* out: __u64[count] */
	__u64 status_ptr;  /* out: __s32[count], 0 = not wanted */
	__u32 count;
	__u32 flags;       /* must be 0 */
};

/* ACCEL_IOCTL_SYNCOBJ_TRANSFER (ACCEL_CAP_SYNCOBJ_TIMELINE) */
struct accel_syncobj_transfer {
	__u32 src_handle;
	__u32 dst_handle;
	__u64 src_point; /* 0 for a binary source */
	__u64 dst_point; /* 0 for a binary destination */
	__u32 flags;     /* must be 0 */
	__u32 pad;
};

/* ACCEL_IOCTL_SYNCOBJ_EXPORT (ACCEL_CAP_SYNCOBJ_SHARE) */
struct accel_syncobj_export {
	__u32 handle; /* in */
	__u32 flags;  /* must be 0 */
	__s32 fd;     /* out */
	__u32 pad;
};

/* ACCEL_IOCTL_SYNCOBJ_IMPORT (ACCEL_CAP_SYNCOBJ_SHARE) */
struct accel_syncobj_import {
	__s32 fd;     /* in */
	__u32 flags;  /* must be 0 */
	__u32 handle; /* out */
	__u32 pad;
};

/* ------------------------------------------------------------------------ */
/* Fabric verbs (ACCEL_CAP_FABRIC)                                           */
/* ------------------------------------------------------------------------ */

/* ACCEL_IOCTL_PD_ALLOC */
struct accel_pd_alloc {
	__u32 flags;  /* must be 0 */
	__u32 handle; /* out */
};

/* ACCEL_IOCTL_PD_FREE */
struct accel_pd_free {
	__u32 handle;
	__u32 pad;
};

/* MR access flags, as in verbs (IBV_ACCESS_*). */
#define ACCEL_ACCESS_LOCAL_WRITE (1U << 0)
#define ACCEL_ACCESS_REMOTE_WRITE (1U << 1)
#define ACCEL_ACCESS_REMOTE_READ (1U << 2)

/* ACCEL_IOCTL_MR_REG: register a BO range; SGEs and RETHs address it by iova. */
struct accel_mr_reg {
	__u32 pd_handle;
	__u32 bo_handle;
	__u64 bo_offset;
	__u64 length;
	__u64 iova;      /* address of byte bo_offset in work requests */
	__u32 access;    /* ACCEL_ACCESS_LOCAL_WRITE/REMOTE_* */
	__u32 handle;    /* out */
	__u32 lkey;      /* out */
	__u32 rkey;      /* out */
};

/* ACCEL_IOCTL_MR_DEREG */
struct accel_mr_dereg {
	__u32 handle;
	__u32 pad;
};

/* ACCEL_IOCTL_CQ_CREATE */
struct accel_cq_create {
	__u32 cqe;    /* in: minimum depth; out: actual depth */
	__u32 flags;  /* must be 0 */
	__u32 handle; /* out */
	__u32 pad;
};

/* ACCEL_IOCTL_CQ_DESTROY */
struct accel_cq_destroy {
	__u32 handle;
	__u32 pad;
};

/* Work completion status, as in verbs (IBV_WC_*). */
#define ACCEL_WC_SUCCESS 0
#define ACCEL_WC_LOC_LEN_ERR 1
#define ACCEL_WC_LOC_QP_OP_ERR 2
#define ACCEL_WC_LOC_PROT_ERR 4
#define ACCEL_WC_WR_FLUSH_ERR 5
#define ACCEL_WC_BAD_RESP_ERR 7
#define ACCEL_WC_LOC_ACCESS_ERR 8
#define ACCEL_WC_REM_INV_REQ_ERR 9
#define ACCEL_WC_REM_ACCESS_ERR 10
#define ACCEL_WC_REM_OP_ERR 11
#define ACCEL_WC_RETRY_EXC_ERR 12
#define ACCEL_WC_RNR_RETRY_EXC_ERR 13
#define ACCEL_WC_FATAL_ERR 19
#define ACCEL_WC_GENERAL_ERR 21

/* Work completion opcodes, as in verbs (IBV_WC_*). */
#define ACCEL_WC_SEND 0
#define ACCEL_WC_RDMA_WRITE 1
#define ACCEL_WC_RDMA_READ 2
#define ACCEL_WC_RECV 128
#define ACCEL_WC_RECV_RDMA_WITH_IMM 129

/* Work completion flags. */
#define ACCEL_WC_WITH_IMM (1U << 1)

/* One work completion. */
struct accel_wc {
	__u64 wr_id;
	__u32 status;     /* ACCEL_WC_* status */
	__u32 opcode;     /* ACCEL_WC_* opcode */
	__u32 vendor_err;
	__u32 byte_len;
	__u32 imm_data;   /* network byte order, valid with ACCEL_WC_WITH_IMM */
	__u32 qp_num;
	__u32 src_qp;
	__u32 wc_flags;
};

/* ACCEL_IOCTL_CQ_POLL: reap up to num_entries completions. */
struct accel_cq_poll {
	__u32 handle;
	__u32 num_entries;
	__u64 wc_ptr;  /* out: struct accel_wc[num_entries] */
	__u32 count;   /* out: completions written */
	__u32 flags;   /* must be 0 */
};

#define ACCEL_QPT_RC 2 /* reliable connected, as IBV_QPT_RC */

/* accel_qp_create.flags */
#define ACCEL_QP_SIG_ALL (1U << 0) /* every send WR generates a completion */

/* ACCEL_IOCTL_QP_CREATE */
struct accel_qp_create {
	__u32 pd_handle;
	__u32 send_cq;
	__u32 recv_cq;
	__u32 qp_type;      /* ACCEL_QPT_RC */
	__u32 max_send_wr;
	__u32 max_recv_wr;
	__u32 max_send_sge;
	__u32 max_recv_sge;
	__u32 port_num;
	__u32 flags;        /* ACCEL_QP_* */
	__u32 handle;       /* out */
	__u32 qp_num;       /* out: 24-bit QP number on the wire */
};

/* QP states, as in verbs (IBV_QPS_*). */
#define ACCEL_QPS_RESET 0
#define ACCEL_QPS_INIT 1
#define ACCEL_QPS_RTR 2
#define ACCEL_QPS_RTS 3
#define ACCEL_QPS_SQD 4
#define ACCEL_QPS_SQE 5
#define ACCEL_QPS_ERR 6

/* QP attribute mask bits, as in verbs (IBV_QP_*). */
#define ACCEL_QP_STATE (1U << 0)
#define ACCEL_QP_CUR_STATE (1U << 1)
#define ACCEL_QP_ACCESS_FLAGS (1U << 3)
#define ACCEL_QP_PKEY_INDEX (1U << 4)
#define ACCEL_QP_PORT (1U << 5)
#define ACCEL_QP_AV (1U << 7)
#define ACCEL_QP_PATH_MTU (1U << 8)
#define ACCEL_QP_TIMEOUT (1U << 9)
#define ACCEL_QP_RETRY_CNT (1U << 10)
#define ACCEL_QP_RNR_RETRY (1U << 11)
#define ACCEL_QP_RQ_PSN (1U << 12)
#define ACCEL_QP_MAX_QP_RD_ATOMIC (1U << 13)
#define ACCEL_QP_MIN_RNR_TIMER (1U << 15)
#define ACCEL_QP_SQ_PSN (1U << 16)
#define ACCEL_QP_MAX_DEST_RD_ATOMIC (1U << 17)
#define ACCEL_QP_DEST_QPN (1U << 20)

/* QP attributes for QP_MODIFY and QP_QUERY. */
struct accel_qp_attr {
	__u32 qp_state;          /* ACCEL_QPS_* */
	__u32 cur_qp_state;      /* ACCEL_QPS_* */
	__u32 path_mtu;          /* ACCEL_MTU_* */
	__u32 qp_access_flags;   /* ACCEL_ACCESS_REMOTE_* */
	__u8 dest_gid[16];       /* AV: destination GID */
	__u32 dest_qp_num;       /* 24-bit */
	__u32 rq_psn;            /* 24-bit */
	__u32 sq_psn;            /* 24-bit */
	__u32 port_num;
	__u32 pkey_index;
	__u32 max_rd_atomic;
	__u32 max_dest_rd_atomic;
	__u8 timeout;            /* 4.096 us * 2^timeout, 0 = infinite */
	__u8 retry_cnt;          /* 0..7 */
	__u8 rnr_retry;          /* 0..7, 7 = infinite */
	__u8 min_rnr_timer;      /* IB RNR timer code 0..31 */
	__u8 sgid_index;         /* AV: source GID index */
	__u8 hop_limit;          /* AV */
	__u8 traffic_class;      /* AV */
	__u8 pad0;
	__u32 flow_label;        /* AV */
};

/* ACCEL_IOCTL_QP_MODIFY */
struct accel_qp_modify {
	__u32 handle;
	__u32 attr_mask; /* ACCEL_QP_* attribute bits */
	struct accel_qp_attr attr;
};

/* ACCEL_IOCTL_QP_QUERY: attr is filled for every attribute. */
struct accel_qp_query {
	__u32 handle;
	__u32 flags; /* must be 0 */
	struct accel_qp_attr attr; /* out */
};

/* ACCEL_IOCTL_QP_DESTROY */
struct accel_qp_destroy {
	__u32 handle;
	__u32 pad;
};

/* Send work request opcodes, as in verbs (IBV_WR_*). */
#define ACCEL_WR_RDMA_WRITE 0
#define ACCEL_WR_RDMA_WRITE_WITH_IMM 1
#define ACCEL_WR_SEND 2
#define ACCEL_WR_SEND_WITH_IMM 3
#define ACCEL_WR_RDMA_READ 4

/* Send flags, as in verbs (IBV_SEND_*). */
#define ACCEL_SEND_FENCE (1U << 0)
#define ACCEL_SEND_SIGNALED (1U << 1)
#define ACCEL_SEND_SOLICITED (1U << 2)

/* One scatter/gather element. */
struct accel_sge {
	__u64 addr;   /* iova inside the MR named by lkey */
	__u32 length;
	__u32 lkey;
};

/*
 * One send work request.  Its SGEs are sges[first_sge .. first_sge+num_sge)
 * of the enclosing accel_post_send, so the whole call is one level deep.
 */
struct accel_send_wr {
	__u64 wr_id;
	__u32 opcode;      /* ACCEL_WR_* */
	__u32 send_flags;  /* ACCEL_SEND_* */
	__u32 first_sge;
	__u32 num_sge;
	__u32 imm_data;    /* network byte order, for *_WITH_IMM */
	__u32 rkey;        /* RDMA opcodes */
	__u64 remote_addr; /* RDMA opcodes */
};

/* One receive work request; SGEs as in accel_send_wr. */
struct accel_recv_wr {
	__u64 wr_id;
	__u32 first_sge;
	__u32 num_sge;
};

/* ACCEL_IOCTL_POST_SEND */
struct accel_post_send {
	__u32 handle;  /* QP */
	__u32 num_wrs;
	__u64 wrs_ptr;  /* struct accel_send_wr[num_wrs] */
	__u32 num_sges;
	__u32 bad_wr;   /* out: index of the first rejected WR on failure */
	__u64 sges_ptr; /* struct accel_sge[num_sges] */
	__u32 flags;    /* must be 0 */
	__u32 pad;
};

/* ACCEL_IOCTL_POST_RECV */
struct accel_post_recv {
	__u32 handle;  /* QP */
	__u32 num_wrs;
	__u64 wrs_ptr;  /* struct accel_recv_wr[num_wrs] */
	__u32 num_sges;
	__u32 bad_wr;   /* out */
	__u64 sges_ptr; /* struct accel_sge[num_sges] */
	__u32 flags;    /* must be 0 */
	__u32 pad;
};

/* Async event types, as in verbs (IBV_EVENT_*). */
#define ACCEL_EVENT_CQ_ERR 0
#define ACCEL_EVENT_QP_FATAL 1
#define ACCEL_EVENT_QP_REQ_ERR 2
#define ACCEL_EVENT_QP_ACCESS_ERR 3
#define ACCEL_EVENT_PORT_ACTIVE 9
#define ACCEL_EVENT_PORT_ERR 10

/* ACCEL_IOCTL_GET_ASYNC_EVENT: EAGAIN when no event is pending. */
struct accel_async_event {
	__u32 flags;      /* must be 0 */
	__u32 event_type; /* out: ACCEL_EVENT_* */
	__u32 handle;     /* out: CQ or QP handle, or port number */
	__u32 pad;
};

/* ------------------------------------------------------------------------ */
/* The portable command set (chunks of kind ACCEL_CHUNK_PORTABLE)            */
/* ------------------------------------------------------------------------ */

/*
 * A portable stream is a sequence of commands, each starting with an
 * accel_cmd_header whose length (bytes, a multiple of 8, including the
 * header) lets a parser skip and validate it.  Addresses are context VAs.
 */
#define ACCEL_CMD_COPY 1
#define ACCEL_CMD_FILL 2
#define ACCEL_CMD_WRITE_VALUE 3
#define ACCEL_CMD_WAIT_VALUE 4
#define ACCEL_CMD_TIMESTAMP 5
#define ACCEL_CMD_BARRIER 6
#define ACCEL_CMD_REDUCE 7

struct accel_cmd_header {
	__u16 opcode; /* ACCEL_CMD_* */
	__u16 flags;  /* must be 0 */
	__u32 length; /* bytes, including this header */
};

/* COPY: size bytes from src to dst (ranges must not overlap). */
struct accel_cmd_copy {
	struct accel_cmd_header hdr;
	__u64 src;
	__u64 dst;
	__u64 size;
};

/* FILL: size bytes (multiple of 4) at dst with the 32-bit pattern. */
struct accel_cmd_fill {
	struct accel_cmd_header hdr;
	__u64 dst;
	__u64 size;
	__u32 pattern;
	__u32 pad;
};

/* WRITE_VALUE: store a 4- or 8-byte value at addr (naturally aligned). */
struct accel_cmd_write_value {
	struct accel_cmd_header hdr;
	__u64 addr;
	__u64 value;
	__u32 width; /* 4 or 8 */
	__u32 pad;
};

#define ACCEL_CMP_EQ 0
#define ACCEL_CMP_NE 1
#define ACCEL_CMP_LT 2
#define ACCEL_CMP_LE 3
#define ACCEL_CMP_GT 4
#define ACCEL_CMP_GE 5

/*
 * WAIT_VALUE: stall the queue until (*addr & mask) <op> value, or fail the
 * job with ETIMEDOUT after timeout_ns (relative; 0 = the queue's timeout).
 */
struct accel_cmd_wait_value {
	struct accel_cmd_header hdr;
	__u64 addr;
	__u64 value;
	__u64 mask;
	__u64 timeout_ns;
	__u32 op;    /* ACCEL_CMP_* */
	__u32 width; /* 4 or 8 */
};

/* TIMESTAMP: store the engine's CLOCK_MONOTONIC ns as a __u64 at dst. */
struct accel_cmd_timestamp {
	struct accel_cmd_header hdr;
	__u64 dst;
};

/* BARRIER: every earlier command of the job completes before any later one. */
struct accel_cmd_barrier {
	struct accel_cmd_header hdr;
};

#define ACCEL_REDUCE_SUM 0
#define ACCEL_REDUCE_MIN 1
#define ACCEL_REDUCE_MAX 2

#define ACCEL_DTYPE_F32 0
#define ACCEL_DTYPE_I32 1
#define ACCEL_DTYPE_U32 2
#define ACCEL_DTYPE_U64 3

/* REDUCE: dst[i] = op(dst[i], src[i]) for i < count (integers wrap). */
struct accel_cmd_reduce {
	struct accel_cmd_header hdr;
	__u64 src;
	__u64 dst;
	__u64 count; /* elements */
	__u32 op;    /* ACCEL_REDUCE_* */
	__u32 dtype; /* ACCEL_DTYPE_* */
};

/* ------------------------------------------------------------------------ */
/* ioctl numbers                                                             */
/* ------------------------------------------------------------------------ */

#define ACCEL_IOCTL_VERSION ACCEL_IOR(0x00, struct accel_version)
#define ACCEL_IOCTL_DEVICE_QUERY ACCEL_IOWR(0x01, struct accel_device_query)
#define ACCEL_IOCTL_GET_ASYNC_EVENT ACCEL_IOWR(0x02, struct accel_async_event)

#define ACCEL_IOCTL_CONTEXT_CREATE ACCEL_IOWR(0x10, struct accel_context_create)
#define ACCEL_IOCTL_CONTEXT_DESTROY ACCEL_IOW(0x11, struct accel_context_destroy)
#define ACCEL_IOCTL_CONTEXT_QUERY ACCEL_IOWR(0x12, struct accel_context_query)

#define ACCEL_IOCTL_BO_CREATE ACCEL_IOWR(0x20, struct accel_bo_create)
#define ACCEL_IOCTL_BO_CLOSE ACCEL_IOW(0x21, struct accel_bo_close)
#define ACCEL_IOCTL_BO_INFO ACCEL_IOWR(0x22, struct accel_bo_info)
#define ACCEL_IOCTL_BO_MMAP_OFFSET ACCEL_IOWR(0x23, struct accel_bo_mmap_offset)
#define ACCEL_IOCTL_BO_EXPORT ACCEL_IOWR(0x24, struct accel_bo_export)
#define ACCEL_IOCTL_BO_IMPORT ACCEL_IOWR(0x25, struct accel_bo_import)
#define ACCEL_IOCTL_VM_BIND ACCEL_IOW(0x26, struct accel_vm_bind)

#define ACCEL_IOCTL_QUEUE_CREATE ACCEL_IOWR(0x30, struct accel_queue_create)
#define ACCEL_IOCTL_QUEUE_DESTROY ACCEL_IOW(0x31, struct accel_queue_destroy)
#define ACCEL_IOCTL_SUBMIT ACCEL_IOWR(0x32, struct accel_submit)

#define ACCEL_IOCTL_SYNCOBJ_CREATE ACCEL_IOWR(0x40, struct accel_syncobj_create)
#define ACCEL_IOCTL_SYNCOBJ_DESTROY ACCEL_IOW(0x41, struct accel_syncobj_destroy)
#define ACCEL_IOCTL_SYNCOBJ_WAIT ACCEL_IOWR(0x42, struct accel_syncobj_wait)
#define ACCEL_IOCTL_SYNCOBJ_SIGNAL ACCEL_IOW(0x43, struct accel_syncobj_array)
#define ACCEL_IOCTL_SYNCOBJ_RESET ACCEL_IOW(0x44, struct accel_syncobj_array)
#define ACCEL_IOCTL_SYNCOBJ_TIMELINE_SIGNAL ACCEL_IOW(0x45, struct accel_syncobj_timeline_array)
#define ACCEL_IOCTL_SYNCOBJ_QUERY ACCEL_IOWR(0x46, struct accel_syncobj_query)
#define ACCEL_IOCTL_SYNCOBJ_TRANSFER ACCEL_IOW(0x47, struct accel_syncobj_transfer)
#define ACCEL_IOCTL_SYNCOBJ_EXPORT ACCEL_IOWR(0x48, struct accel_syncobj_export)
#define ACCEL_IOCTL_SYNCOBJ_IMPORT ACCEL_IOWR(0x49, struct accel_syncobj_import)

#define ACCEL_IOCTL_PD_ALLOC ACCEL_IOWR(0x50, struct accel_pd_alloc)
#define ACCEL_IOCTL_PD_FREE ACCEL_IOW(0x51, struct accel_pd_free)
#define ACCEL_IOCTL_MR_REG ACCEL_IOWR(0x52, struct accel_mr_reg)
#define ACCEL_IOCTL_MR_DEREG ACCEL_IOW(0x53, struct accel_mr_dereg)
#define ACCEL_IOCTL_CQ_CREATE ACCEL_IOWR(0x54, struct accel_cq_create)
#define ACCEL_IOCTL_CQ_DESTROY ACCEL_IOW(0x55, struct accel_cq_destroy)
#define ACCEL_IOCTL_CQ_POLL ACCEL_IOWR(0x56, struct accel_cq_poll)
#define ACCEL_IOCTL_QP_CREATE ACCEL_IOWR(0x57, struct accel_qp_create)
#define ACCEL_IOCTL_QP_MODIFY ACCEL_IOW(0x58, struct accel_qp_modify)
#define ACCEL_IOCTL_QP_QUERY ACCEL_IOWR(0x59, struct accel_qp_query)
#define ACCEL_IOCTL_QP_DESTROY ACCEL_IOW(0x5A, struct accel_qp_destroy)
#define ACCEL_IOCTL_POST_SEND ACCEL_IOWR(0x5B, struct accel_post_send)
#define ACCEL_IOCTL_POST_RECV ACCEL_IOWR(0x5C, struct accel_post_recv)

#ifdef __cplusplus
}
#endif

#endif /* ACCEL_UAPI_ACCEL_H */
