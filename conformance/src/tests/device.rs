//! Area: device — version, capabilities, every query id, limits.

use super::{Ctx, ensure, expect_errno, tests};
use crate::{Area, Env, TestCase};
use accel_uapi::flags::{Caps, MemRegionFlags};
use accel_uapi::types::{EngineClass, MemRegionKind, Mtu, PortState};
use accel_uapi::{Errno, sys};
use zerocopy::FromBytes;

pub(crate) fn tests() -> Vec<TestCase> {
    tests!(
        Area::Device,
        Caps::empty(),
        [
            version_is_1_x,
            caps_announce_memory,
            caps_are_known_bits,
            version_and_device_info_caps_agree,
            query_size_zero_reports_each_size,
            query_fills_exactly_the_reported_size,
            query_larger_buffer_is_accepted,
            query_smaller_buffer_is_einval,
            query_unknown_id_is_einval,
            query_size_with_null_pointer_is_efault,
            query_flags_must_be_zero,
            device_info_names_are_nul_terminated,
            device_info_name_matches_the_device,
            engines_are_known_classes_with_engines,
            memory_regions_are_sane,
            memory_region_ids_are_unique,
            va_range_is_sane,
            limits_are_sane,
            ports_are_sane,
            device_memory_cap_matches_regions,
            list_includes_the_device,
            open_by_path_works,
            open_of_unknown_device_is_enodev,
            queries_are_stable,
        ]
    )
}

fn version_is_1_x(env: &Env) -> Result<(), String> {
    let v = env.dev.version().ctx("VERSION")?;
    ensure!(v.major == 1, "ABI major {} (want 1)", v.major);
    ensure!(v.pad == 0, "pad {} not zeroed", v.pad);
    Ok(())
}

fn caps_announce_memory(env: &Env) -> Result<(), String> {
    let c = env.dev.caps().ctx("caps")?;
    ensure!(c.contains(Caps::MEMORY), "ACCEL_CAP_MEMORY missing: {c:?}");
    Ok(())
}

fn caps_are_known_bits(env: &Env) -> Result<(), String> {
    let v = env.dev.version().ctx("VERSION")?;
    ensure!(Caps::from_bits(v.caps).is_some(), "unknown capability bits {:#x}", v.caps & !Caps::all().bits());
    Ok(())
}

fn version_and_device_info_caps_agree(env: &Env) -> Result<(), String> {
    let v = env.dev.version().ctx("VERSION")?;
    let i = env.dev.info().ctx("DEVICE_INFO")?;
    ensure!(v.caps == i.caps, "VERSION caps {:#x} != DEVICE_INFO caps {:#x}", v.caps, i.caps);
    Ok(())
}

const IDS: [u32; 6] = [
    sys::ACCEL_QUERY_DEVICE_INFO,
    sys::ACCEL_QUERY_ENGINES,
    sys::ACCEL_QUERY_MEMORY_REGIONS,
    sys::ACCEL_QUERY_VA_RANGE,
    sys::ACCEL_QUERY_PORTS,
    sys::ACCEL_QUERY_LIMITS,
];

fn size_of_query(env: &Env, id: u32) -> Result<u32, String> {
    let mut q = sys::accel_device_query { query_id: id, ..Default::default() };
    env.dev.ioctl("DEVICE_QUERY", sys::ACCEL_IOCTL_DEVICE_QUERY, &mut q).ctx("DEVICE_QUERY size")?;
    Ok(q.size)
}

fn query_size_zero_reports_each_size(env: &Env) -> Result<(), String> {
    let fixed = [
        (sys::ACCEL_QUERY_DEVICE_INFO, size_of::<sys::accel_device_info>()),
        (sys::ACCEL_QUERY_VA_RANGE, size_of::<sys::accel_va_range>()),
        (sys::ACCEL_QUERY_LIMITS, size_of::<sys::accel_limits>()),
    ];
    for (id, want) in fixed {
        let got = size_of_query(env, id)? as usize;
        ensure!(got == want, "query {id}: size {got}, want {want}");
    }
    for id in [sys::ACCEL_QUERY_ENGINES, sys::ACCEL_QUERY_MEMORY_REGIONS, sys::ACCEL_QUERY_PORTS] {
        let got = size_of_query(env, id)?;
        ensure!(got >= 8 && (got - 8) % 8 == 0, "list query {id}: size {got} is not a header plus entries");
    }
    Ok(())
}

fn query_fills_exactly_the_reported_size(env: &Env) -> Result<(), String> {
    for id in IDS {
        let b = env.dev.query(id).ctx("DEVICE_QUERY")?;
        let n = size_of_query(env, id)? as usize;
        ensure!(b.len() == n, "query {id}: {} bytes written, {n} announced", b.len());
    }
    Ok(())
}

fn query_larger_buffer_is_accepted(env: &Env) -> Result<(), String> {
    let mut buf = vec![0xAAu8; 4096];
    let mut q = sys::accel_device_query {
        query_id: sys::ACCEL_QUERY_LIMITS,
        size: 4096,
        data_ptr: buf.as_mut_ptr() as u64,
        ..Default::default()
    };
    env.dev.ioctl("DEVICE_QUERY", sys::ACCEL_IOCTL_DEVICE_QUERY, &mut q).ctx("DEVICE_QUERY")?;
    ensure!(q.size as usize == size_of::<sys::accel_limits>(), "size written back: {}", q.size);
    ensure!(buf[q.size as usize..].iter().all(|b| *b == 0xAA), "bytes past the result were written");
    Ok(())
}

fn query_smaller_buffer_is_einval(env: &Env) -> Result<(), String> {
    let mut buf = [0u8; 8];
    let mut q = sys::accel_device_query {
        query_id: sys::ACCEL_QUERY_LIMITS,
        size: 8,
        data_ptr: buf.as_mut_ptr() as u64,
        ..Default::default()
    };
    expect_errno(env.dev.ioctl("DEVICE_QUERY", sys::ACCEL_IOCTL_DEVICE_QUERY, &mut q), Errno::EINVAL, "small buffer")
}

fn query_unknown_id_is_einval(env: &Env) -> Result<(), String> {
    expect_errno(env.dev.query(0x7777), Errno::EINVAL, "query 0x7777")
}

fn query_size_with_null_pointer_is_efault(env: &Env) -> Result<(), String> {
    let mut q = sys::accel_device_query { query_id: sys::ACCEL_QUERY_LIMITS, size: 4096, ..Default::default() };
    expect_errno(env.dev.ioctl("DEVICE_QUERY", sys::ACCEL_IOCTL_DEVICE_QUERY, &mut q), Errno::EFAULT, "NULL data_ptr")
}

fn query_flags_must_be_zero(env: &Env) -> Result<(), String> {
    let mut q = sys::accel_device_query { query_id: sys::ACCEL_QUERY_LIMITS, flags: 1, ..Default::default() };
    expect_errno(env.dev.ioctl("DEVICE_QUERY", sys::ACCEL_IOCTL_DEVICE_QUERY, &mut q), Errno::EINVAL, "flags 1")
}

fn device_info_names_are_nul_terminated(env: &Env) -> Result<(), String> {
    let i = env.dev.info().ctx("DEVICE_INFO")?;
    ensure!(i.driver_name.contains(&0) && i.driver_name[0] != 0, "driver_name is empty or not NUL-terminated");
    ensure!(i.name.contains(&0) && i.name[0] != 0, "name is empty or not NUL-terminated");
    Ok(())
}

fn device_info_name_matches_the_device(env: &Env) -> Result<(), String> {
    let i = env.dev.info().ctx("DEVICE_INFO")?;
    let name: Vec<u8> = i.name.iter().take_while(|b| **b != 0).copied().collect();
    let want = env.dev.name().rsplit('/').next().unwrap_or_default();
    ensure!(name == want.as_bytes(), "DEVICE_INFO.name {:?} != {want:?}", String::from_utf8_lossy(&name));
    ensure!(want == format!("accel{}", i.index), "name {want} does not match index {}", i.index);
    Ok(())
}

fn engines_are_known_classes_with_engines(env: &Env) -> Result<(), String> {
    let e = env.dev.engines().ctx("ENGINES")?;
    for x in &e {
        ensure!(EngineClass::try_from(x.engine_class).is_ok(), "unknown engine class {}", x.engine_class);
        ensure!(x.count > 0, "class {} listed with 0 engines", x.engine_class);
    }
    let mut classes: Vec<u32> = e.iter().map(|x| x.engine_class).collect();
    classes.dedup();
    ensure!(classes.len() == e.len(), "an engine class is listed twice");
    Ok(())
}

fn memory_regions_are_sane(env: &Env) -> Result<(), String> {
    let r = env.dev.memory_regions().ctx("MEMORY_REGIONS")?;
    ensure!(!r.is_empty(), "no memory regions");
    for x in &r {
        ensure!(MemRegionKind::try_from(x.kind).is_ok(), "region {}: unknown kind {}", x.region_id, x.kind);
        ensure!(
            x.size > 0 && x.available <= x.size,
            "region {}: size {} available {}",
            x.region_id,
            x.size,
            x.available
        );
        ensure!(
            x.page_sizes != 0 && x.page_sizes.trailing_zeros() >= 12,
            "region {}: page sizes {:#x}",
            x.region_id,
            x.page_sizes
        );
        ensure!(MemRegionFlags::from_bits(x.flags).is_some(), "region {}: unknown flags {:#x}", x.region_id, x.flags);
        ensure!(x.pad == 0, "region {}: pad not zero", x.region_id);
    }
    Ok(())
}

fn memory_region_ids_are_unique(env: &Env) -> Result<(), String> {
    let r = env.dev.memory_regions().ctx("MEMORY_REGIONS")?;
    let mut ids: Vec<u32> = r.iter().map(|x| x.region_id).collect();
    ids.sort_unstable();
    ids.dedup();
    ensure!(ids.len() == r.len(), "duplicate region ids");
    Ok(())
}

fn va_range_is_sane(env: &Env) -> Result<(), String> {
    let v = env.dev.va_range().ctx("VA_RANGE")?;
    ensure!(v.start < v.end, "empty VA range {:#x}..{:#x}", v.start, v.end);
    ensure!(v.min_page_size.is_power_of_two() && v.min_page_size >= 4096, "min page {:#x}", v.min_page_size);
    ensure!(v.start % v.min_page_size == 0, "start {:#x} not page aligned", v.start);
    ensure!(
        v.reserved_start <= v.reserved_end
            && (v.reserved_start == v.reserved_end || (v.reserved_start >= v.start && v.reserved_end <= v.end)),
        "reserved range {:#x}..{:#x} outside the VA range",
        v.reserved_start,
        v.reserved_end
    );
    Ok(())
}

fn limits_are_sane(env: &Env) -> Result<(), String> {
    let l = env.dev.limits().ctx("LIMITS")?;
    ensure!(l.max_contexts >= 1, "max_contexts 0");
    ensure!(l.max_bo_size >= 4096, "max_bo_size {}", l.max_bo_size);
    ensure!(l.max_vm_bind_ops >= 1, "max_vm_bind_ops 0");
    if env.dev.caps().ctx("caps")?.contains(Caps::SUBMIT) {
        ensure!(l.max_queues_per_context >= 1 && l.max_queue_depth >= 1, "SUBMIT without queues");
        ensure!(l.default_job_timeout_ns > 0, "no default job timeout");
        ensure!(l.max_submit_chunks >= 1, "max_submit_chunks 0");
    }
    Ok(())
}

fn ports_are_sane(env: &Env) -> Result<(), String> {
    for p in env.dev.ports().ctx("PORTS")? {
        ensure!(p.port_num >= 1, "port number 0");
        ensure!(PortState::try_from(p.state).is_ok(), "port {}: state {}", p.port_num, p.state);
        let (a, m) = (Mtu::try_from(p.active_mtu), Mtu::try_from(p.max_mtu));
        ensure!(a.is_ok() && m.is_ok(), "port {}: MTU codes {} {}", p.port_num, p.active_mtu, p.max_mtu);
        ensure!(p.active_mtu <= p.max_mtu, "port {}: active MTU above max", p.port_num);
    }
    Ok(())
}

fn device_memory_cap_matches_regions(env: &Env) -> Result<(), String> {
    let has = env.dev.memory_regions().ctx("MEMORY_REGIONS")?.iter().any(|r| r.kind == sys::ACCEL_MEM_REGION_DEVICE);
    let cap = env.dev.caps().ctx("caps")?.contains(Caps::DEVICE_MEMORY);
    ensure!(has == cap, "DEVICE_MEMORY cap {cap} but device regions {has}");
    Ok(())
}

fn list_includes_the_device(env: &Env) -> Result<(), String> {
    let name = env.dev.name().rsplit('/').next().unwrap_or_default().to_string();
    let all = accel::Device::list();
    // A device of a private registry is not in the global list: only check global ones.
    if accel::Device::open(&name).is_ok() {
        ensure!(all.contains(&name), "{name} missing from {all:?}");
    }
    Ok(())
}

fn open_by_path_works(env: &Env) -> Result<(), String> {
    let d = env.open()?;
    let v = d.version().ctx("VERSION on a second open")?;
    ensure!(v.major == 1, "major {}", v.major);
    Ok(())
}

fn open_of_unknown_device_is_enodev(_env: &Env) -> Result<(), String> {
    expect_errno(accel::Device::open("accel999"), Errno::ENODEV, "open accel999")
}

fn queries_are_stable(env: &Env) -> Result<(), String> {
    for id in
        [sys::ACCEL_QUERY_DEVICE_INFO, sys::ACCEL_QUERY_ENGINES, sys::ACCEL_QUERY_VA_RANGE, sys::ACCEL_QUERY_LIMITS]
    {
        let (a, b) = (env.dev.query(id).ctx("query")?, env.dev.query(id).ctx("query")?);
        ensure!(a == b, "query {id} changed between two calls");
    }
    let _ = sys::accel_limits::read_from_bytes(&env.dev.query(sys::ACCEL_QUERY_LIMITS).ctx("limits")?)
        .map_err(|_| "LIMITS has the wrong size".to_string())?;
    Ok(())
}
