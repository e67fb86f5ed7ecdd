//! DEVICE_QUERY results: each query id as the bytes of its result structs.

use crate::device::{Device, max};
use crate::error::{Error, Result};
use accel_uapi::flags::MemRegionFlags;
use accel_uapi::sys;
use accel_uapi::types::QueryId;
use zerocopy::{Immutable, IntoBytes};

fn name_bytes(s: &str) -> [u8; sys::ACCEL_NAME_LEN as usize] {
    let mut out = [0u8; sys::ACCEL_NAME_LEN as usize];
    let n = s.len().min(out.len() - 1);
    out[..n].copy_from_slice(&s.as_bytes()[..n]);
    out
}

fn list<H: IntoBytes + Immutable, E: IntoBytes + Immutable>(header: H, entries: &[E]) -> Vec<u8> {
    let mut v = header.as_bytes().to_vec();
    for e in entries {
        v.extend_from_slice(e.as_bytes());
    }
    v
}

/// The result of query `id` on `dev`.
pub fn build(dev: &Device, id: u32) -> Result<Vec<u8>> {
    let id = QueryId::try_from(id).map_err(|e| Error::invalid(e.to_string()))?;
    let drv = dev.driver();
    Ok(match id {
        QueryId::DeviceInfo => {
            let i = drv.info();
            sys::accel_device_info {
                vendor_id: i.vendor_id,
                device_id: i.device_id,
                revision: i.revision,
                index: dev.minor(),
                driver_name: name_bytes(&i.driver_name),
                name: name_bytes(dev.name()),
                caps: dev.caps().bits(),
            }
            .as_bytes()
            .to_vec()
        }
        QueryId::Engines => {
            let e: Vec<sys::accel_engine_info> = drv
                .engines()
                .iter()
                .map(|e| sys::accel_engine_info { engine_class: e.class.into(), count: e.count })
                .collect();
            list(sys::accel_query_engines { num_engines: e.len() as u32, pad: 0 }, &e)
        }
        QueryId::MemoryRegions => {
            let r: Vec<sys::accel_memory_region> = dev
                .regions
                .iter()
                .map(|r| sys::accel_memory_region {
                    region_id: r.id,
                    kind: r.kind.into(),
                    size: r.size,
                    available: r.size.saturating_sub(drv.region_used(r.id)),
                    page_sizes: r.page_sizes,
                    flags: if r.cpu_visible { MemRegionFlags::CPU_VISIBLE.bits() } else { 0 },
                    pad: 0,
                })
                .collect();
            list(sys::accel_query_memory_regions { num_regions: r.len() as u32, pad: 0 }, &r)
        }
        QueryId::VaRange => sys::accel_va_range {
            start: dev.layout.range.start,
            end: dev.layout.range.end,
            min_page_size: dev.min_page(),
            reserved_start: dev.layout.reserved.start,
            reserved_end: dev.layout.reserved.end,
        }
        .as_bytes()
        .to_vec(),
        QueryId::Ports => {
            let p: Vec<sys::accel_port_info> = drv
                .ports()
                .iter()
                .map(|p| sys::accel_port_info {
                    port_num: p.port_num,
                    state: p.state.into(),
                    max_mtu: p.max_mtu.into(),
                    active_mtu: p.active_mtu.into(),
                    gid: p.gid,
                    speed_mbps: p.speed_mbps,
                    flags: 0,
                    pad: 0,
                })
                .collect();
            list(sys::accel_query_ports { num_ports: p.len() as u32, pad: 0 }, &p)
        }
        QueryId::Limits => {
            let l = &dev.limits;
            let has_fabric = dev.caps().contains(accel_uapi::flags::Caps::FABRIC);
            let fabric = |n: u32| if has_fabric { n } else { 0 };
            sys::accel_limits {
                max_contexts: l.max_contexts,
                max_queues_per_context: l.max_queues_per_context,
                max_bo_size: l.max_bo_size,
                max_vm_bind_ops: max::VM_BIND_OPS,
                max_submit_chunks: max::SUBMIT_CHUNKS,
                max_submit_syncs: max::SYNCS,
                max_syncobj_wait: max::SYNCOBJ_WAIT,
                max_queue_depth: l.max_queue_depth,
                max_pd: fabric(max::PDS),
                max_mr: fabric(max::MRS),
                max_cq: fabric(max::CQS),
                max_cqe: l.max_cqe,
                max_qp: fabric(max::QPS),
                max_qp_wr: l.max_qp_wr,
                max_sge: l.max_sge,
                max_post_wrs: max::POST_WRS,
                max_msg_size: l.max_msg_size,
                default_job_timeout_ns: l.default_job_timeout_ns,
            }
            .as_bytes()
            .to_vec()
        }
    })
}
