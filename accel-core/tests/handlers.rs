//! Behaviour of each handler through the UAPI: what it does, and one test per
//! validation it performs (each call otherwise valid, exact errno).

mod common;
use accel_core::Quota;
use accel_core::inproc::Client;
use accel_uapi::{Errno, sys};
use common::*;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use test_driver::MockConfig;
use zerocopy::FromBytes;

// ---------------------------------------------------------------- queries

fn query(c: &Client, id: u32) -> Result<Vec<u8>, Errno> {
    let mut q = sys::accel_device_query { query_id: id, ..Default::default() };
    io(c, sys::ACCEL_IOCTL_DEVICE_QUERY, &mut q)?;
    let mut buf = vec![0u8; q.size as usize];
    q.data_ptr = buf.as_mut_ptr() as u64;
    io(c, sys::ACCEL_IOCTL_DEVICE_QUERY, &mut q)?;
    assert_eq!(q.size as usize, buf.len());
    Ok(buf)
}

#[test]
fn version_reports_abi_and_caps() {
    let rig = Rig::new();
    let mut v = sys::accel_version::default();
    io(&rig.open(), sys::ACCEL_IOCTL_VERSION, &mut v).unwrap();
    assert_eq!((v.major, v.minor), (1, 0));
    let want = sys::ACCEL_CAP_MEMORY
        | sys::ACCEL_CAP_BO_SHARE
        | sys::ACCEL_CAP_DEVICE_MEMORY
        | sys::ACCEL_CAP_SUBMIT
        | sys::ACCEL_CAP_PORTABLE_CS
        | sys::ACCEL_CAP_SYNCOBJ
        | sys::ACCEL_CAP_SYNCOBJ_TIMELINE
        | sys::ACCEL_CAP_SYNCOBJ_SHARE
        | sys::ACCEL_CAP_CONTEXT_QUERY
        | sys::ACCEL_CAP_FABRIC;
    assert_eq!(v.caps, want, "what both the core and the mock implement: everything but NATIVE_CS");
}

#[test]
fn device_info_query() {
    let rig = Rig::new();
    let b = query(&rig.open(), sys::ACCEL_QUERY_DEVICE_INFO).unwrap();
    let i = sys::accel_device_info::read_from_bytes(&b).unwrap();
    assert_eq!((i.vendor_id, i.device_id, i.index), (test_driver::MOCK_VENDOR_ID, test_driver::MOCK_DEVICE_ID, 0));
    assert_eq!(&i.driver_name[..5], b"mock\0");
    assert_eq!(&i.name[..7], b"accel0\0");
}

#[test]
fn list_queries_return_a_header_and_entries() {
    let rig = Rig::new();
    let c = rig.open();
    let b = query(&c, sys::ACCEL_QUERY_ENGINES).unwrap();
    let (h, rest) = sys::accel_query_engines::read_from_prefix(&b).unwrap();
    assert_eq!(h.num_engines, 2);
    let e = <[sys::accel_engine_info]>::ref_from_bytes(rest).unwrap();
    assert_eq!((e[0].engine_class, e[0].count), (sys::ACCEL_ENGINE_CLASS_COMPUTE, 2));
    assert_eq!((e[1].engine_class, e[1].count), (sys::ACCEL_ENGINE_CLASS_COPY, 1));

    let b = query(&c, sys::ACCEL_QUERY_MEMORY_REGIONS).unwrap();
    let (h, rest) = sys::accel_query_memory_regions::read_from_prefix(&b).unwrap();
    assert_eq!(h.num_regions, 2);
    let r = <[sys::accel_memory_region]>::ref_from_bytes(rest).unwrap();
    assert_eq!((r[1].region_id, r[1].kind, r[1].size), (REGION_DEVICE, sys::ACCEL_MEM_REGION_DEVICE, 1 << 30));
    assert_eq!(r[0].page_sizes, (1 << 12) | (1 << 21));
    assert_eq!(r[0].available, 1 << 30);
    bo_create(&c, 1 << 20, REGION_HOST, 0).unwrap();
    let b = query(&c, sys::ACCEL_QUERY_MEMORY_REGIONS).unwrap();
    let r = <[sys::accel_memory_region]>::ref_from_bytes(&b[8..]).unwrap();
    assert_eq!(r[0].available, (1 << 30) - (1 << 20), "available tracks allocations");

    let b = query(&c, sys::ACCEL_QUERY_PORTS).unwrap();
    let (h, rest) = sys::accel_query_ports::read_from_prefix(&b).unwrap();
    assert_eq!(h.num_ports, 2);
    let p = <[sys::accel_port_info]>::ref_from_bytes(rest).unwrap();
    assert_eq!((p[1].port_num, p[1].state, p[1].active_mtu), (2, sys::ACCEL_PORT_ACTIVE, sys::ACCEL_MTU_4096));
    // ::ffff:10.a.b.2: a.b numbers the mock in the process, 2 is the port.
    assert_eq!(&p[1].gid[..12], &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]);
    assert_eq!((p[1].gid[12], p[1].gid[15]), (10, 2));
    assert_ne!(p[0].gid, p[1].gid);
}

#[test]
fn va_range_and_limits_queries() {
    let rig = Rig::new();
    let c = rig.open();
    let va = sys::accel_va_range::read_from_bytes(&query(&c, sys::ACCEL_QUERY_VA_RANGE).unwrap()).unwrap();
    assert_eq!((va.start, va.end, va.min_page_size, va.reserved_start), (VA_START, 1 << 48, 4096, VA_RESERVED_START));
    let l = sys::accel_limits::read_from_bytes(&query(&c, sys::ACCEL_QUERY_LIMITS).unwrap()).unwrap();
    assert_eq!((l.max_contexts, l.max_vm_bind_ops, l.max_bo_size), (16, 4096, 256 << 20));
}

#[test]
fn query_size_zero_reports_the_size() {
    let rig = Rig::new();
    let mut q = sys::accel_device_query { query_id: sys::ACCEL_QUERY_DEVICE_INFO, ..Default::default() };
    io(&rig.open(), sys::ACCEL_IOCTL_DEVICE_QUERY, &mut q).unwrap();
    assert_eq!(q.size as usize, size_of::<sys::accel_device_info>());
}

#[test]
fn query_unknown_id_is_einval() {
    let rig = Rig::new();
    let mut q = sys::accel_device_query { query_id: 99, ..Default::default() };
    assert_eq!(io(&rig.open(), sys::ACCEL_IOCTL_DEVICE_QUERY, &mut q), Err(Errno::EINVAL));
}

#[test]
fn query_buffer_too_small_is_einval() {
    let rig = Rig::new();
    let mut buf = [0u8; 16];
    let mut q = sys::accel_device_query {
        query_id: sys::ACCEL_QUERY_DEVICE_INFO,
        size: 16,
        data_ptr: buf.as_mut_ptr() as u64,
        ..Default::default()
    };
    assert_eq!(io(&rig.open(), sys::ACCEL_IOCTL_DEVICE_QUERY, &mut q), Err(Errno::EINVAL));
}

#[test]
fn query_with_size_and_null_pointer_is_efault() {
    let rig = Rig::new();
    let mut q = sys::accel_device_query { query_id: sys::ACCEL_QUERY_LIMITS, size: 80, ..Default::default() };
    assert_eq!(io(&rig.open(), sys::ACCEL_IOCTL_DEVICE_QUERY, &mut q), Err(Errno::EFAULT));
}

// ---------------------------------------------------------------- contexts

#[test]
fn contexts_past_the_driver_limit_are_ebusy() {
    let rig = Rig::with(MockConfig { max_contexts: 2, ..Default::default() });
    let (a, b) = (rig.open(), rig.open());
    ctx_create(&a).unwrap();
    let x = ctx_create(&b).unwrap();
    assert_eq!(ctx_create(&a), Err(Errno::EBUSY), "the limit is per device, across files");
    ctx_destroy(&b, x).unwrap();
    ctx_create(&a).unwrap();
}

#[test]
fn handle_quota_is_enospc() {
    let rig = Rig::new();
    rig.device.set_default_quota(Quota { max_handles: 2, ..Quota::default() });
    let c = rig.open();
    ctx_create(&c).unwrap();
    bo_create(&c, PAGE, REGION_HOST, 0).unwrap();
    assert_eq!(ctx_create(&c), Err(Errno::ENOSPC));
    assert_eq!(bo_create(&c, PAGE, REGION_HOST, 0), Err(Errno::ENOSPC));
    assert_eq!(rig.device.stats().contexts, 1, "the refused context was not left behind");
}

#[test]
fn destroy_of_unknown_zero_or_stale_context_is_enoent() {
    let rig = Rig::new();
    let c = rig.open();
    assert_eq!(ctx_destroy(&c, 0), Err(Errno::ENOENT));
    assert_eq!(ctx_destroy(&c, 77), Err(Errno::ENOENT));
    let x = ctx_create(&c).unwrap();
    ctx_destroy(&c, x).unwrap();
    assert_eq!(ctx_destroy(&c, x), Err(Errno::ENOENT));
    let y = ctx_create(&c).unwrap();
    assert_ne!(x, y, "handles are never reused");
}

#[test]
fn handles_are_per_file() {
    let rig = Rig::new();
    let (a, b) = (rig.open(), rig.open());
    let x = ctx_create(&a).unwrap();
    assert_eq!(ctx_destroy(&b, x), Err(Errno::ENOENT));
    let bo = bo_create(&a, PAGE, REGION_HOST, 0).unwrap();
    assert_eq!(bo_close(&b, bo), Err(Errno::ENOENT));
}

// ---------------------------------------------------------------- BOs

fn bo_info(c: &Client, h: u32) -> Result<sys::accel_bo_info, Errno> {
    let mut a = sys::accel_bo_info { handle: h, ..Default::default() };
    io(c, sys::ACCEL_IOCTL_BO_INFO, &mut a).map(|_| a)
}

#[test]
fn bo_create_rounds_up_and_info_reports_it() {
    let rig = Rig::new();
    let c = rig.open();
    let h = bo_create(&c, 5000, REGION_DEVICE, sys::ACCEL_BO_CPU_VISIBLE).unwrap();
    let i = bo_info(&c, h).unwrap();
    assert_eq!((i.size, i.region), (8192, REGION_DEVICE));
    assert_eq!(i.flags, sys::ACCEL_BO_CPU_VISIBLE | sys::ACCEL_BO_ZEROED, "memory is always zeroed");
    assert_eq!(rig.device.stats().bo_bytes, 8192);
}

#[test]
fn bo_size_zero_is_einval() {
    let rig = Rig::new();
    assert_eq!(bo_create(&rig.open(), 0, REGION_HOST, 0), Err(Errno::EINVAL));
}

#[test]
fn bo_over_max_size_is_e2big() {
    let rig = Rig::new();
    assert_eq!(bo_create(&rig.open(), (256 << 20) + 1, REGION_HOST, 0), Err(Errno::E2BIG));
}

#[test]
fn bo_size_rounding_overflow_is_eoverflow() {
    let rig = Rig::with(MockConfig { max_bo_size: u64::MAX, ..Default::default() });
    assert_eq!(bo_create(&rig.open(), u64::MAX - 10, REGION_HOST, 0), Err(Errno::EOVERFLOW));
}

#[test]
fn bo_in_unknown_region_is_einval() {
    let rig = Rig::new();
    assert_eq!(bo_create(&rig.open(), PAGE, 7, 0), Err(Errno::EINVAL));
}

#[test]
fn bo_over_the_file_memory_quota_is_enomem() {
    let rig = Rig::new();
    rig.device.set_default_quota(Quota { max_bytes: 3 * PAGE, ..Quota::default() });
    let c = rig.open();
    let a = bo_create(&c, 2 * PAGE, REGION_HOST, 0).unwrap();
    assert_eq!(bo_create(&c, 2 * PAGE, REGION_HOST, 0), Err(Errno::ENOMEM));
    bo_close(&c, a).unwrap();
    bo_create(&c, 3 * PAGE, REGION_HOST, 0).unwrap();
}

#[test]
fn bo_larger_than_free_region_memory_is_enomem() {
    let rig = Rig::with(MockConfig { host_memory: 8 * PAGE, ..Default::default() });
    let c = rig.open();
    bo_create(&c, 6 * PAGE, REGION_HOST, 0).unwrap();
    assert_eq!(bo_create(&c, 4 * PAGE, REGION_HOST, 0), Err(Errno::ENOMEM));
    assert_eq!(rig.device.stats().bos, 1);
}

#[test]
fn injected_allocation_failure_is_enomem_and_leaves_nothing() {
    let rig = Rig::with(MockConfig { fail_alloc_at: Some(2), ..Default::default() });
    let c = rig.open();
    bo_create(&c, PAGE, REGION_HOST, 0).unwrap();
    assert_eq!(bo_create(&c, PAGE, REGION_HOST, 0), Err(Errno::ENOMEM));
    bo_create(&c, PAGE, REGION_HOST, 0).unwrap();
    assert_eq!(rig.device.stats().bos, 2);
    c.close();
    rig.assert_idle();
}

#[test]
fn bo_close_twice_or_unknown_is_enoent() {
    let rig = Rig::new();
    let c = rig.open();
    let h = bo_create(&c, PAGE, REGION_HOST, 0).unwrap();
    bo_close(&c, h).unwrap();
    assert_eq!(bo_close(&c, h), Err(Errno::ENOENT));
    assert_eq!(bo_info(&c, h).unwrap_err(), Errno::ENOENT);
    assert_eq!(rig.device.stats().bos, 0, "closing the only handle frees the BO");
}

fn mmap_offset(c: &Client, h: u32) -> Result<u64, Errno> {
    let mut a = sys::accel_bo_mmap_offset { handle: h, ..Default::default() };
    io(c, sys::ACCEL_IOCTL_BO_MMAP_OFFSET, &mut a).map(|_| a.offset)
}

#[test]
fn mmap_reads_and_writes_the_bo() {
    let rig = Rig::new();
    let c = rig.open();
    let h = bo_create(&c, 2 * PAGE, REGION_DEVICE, sys::ACCEL_BO_CPU_VISIBLE).unwrap();
    let off = mmap_offset(&c, h).unwrap();
    assert_eq!(mmap_offset(&c, h).unwrap(), off, "the offset is stable");
    let m = c.mmap(off, 2 * PAGE, true).unwrap();
    let mut buf = [0xffu8; 8];
    m.read(PAGE as usize, &mut buf).unwrap();
    assert_eq!(buf, [0; 8], "new BOs are zero");
    m.write(100, b"accel!").unwrap();
    let m2 = c.mmap(off, PAGE, false).unwrap();
    let mut b6 = [0u8; 6];
    m2.read(100, &mut b6).unwrap();
    assert_eq!(&b6, b"accel!");
    assert_eq!(m2.write(0, b"x"), Err(Errno::EPERM));
    bo_close(&c, h).unwrap();
    assert_eq!(rig.device.stats().bos, 1, "a CPU mapping keeps the BO alive");
    drop((m, m2));
    assert_eq!(rig.device.stats().bos, 0);
}

#[test]
fn mmap_offset_of_a_bo_without_cpu_visible_is_einval() {
    let rig = Rig::new();
    let c = rig.open();
    let h = bo_create(&c, PAGE, REGION_HOST, 0).unwrap();
    assert_eq!(mmap_offset(&c, h), Err(Errno::EINVAL));
}

#[test]
fn mmap_of_unknown_offset_or_bad_length_is_einval() {
    let rig = Rig::new();
    let c = rig.open();
    let h = bo_create(&c, PAGE, REGION_HOST, sys::ACCEL_BO_CPU_VISIBLE).unwrap();
    let off = mmap_offset(&c, h).unwrap();
    assert_eq!(c.mmap(off + (1 << 30), PAGE, true).unwrap_err(), Errno::EINVAL);
    assert_eq!(c.mmap(off, 2 * PAGE, true).unwrap_err(), Errno::EINVAL);
    assert_eq!(c.mmap(off, 0, true).unwrap_err(), Errno::EINVAL);
}

#[test]
fn mmap_of_another_files_bo_is_eperm() {
    let rig = Rig::new();
    let (a, b) = (rig.open(), rig.open());
    let h = bo_create(&a, PAGE, REGION_HOST, sys::ACCEL_BO_CPU_VISIBLE).unwrap();
    let off = mmap_offset(&a, h).unwrap();
    assert_eq!(b.mmap(off, PAGE, true).unwrap_err(), Errno::EPERM);
}

fn export(c: &Client, h: u32) -> Result<OwnedFd, Errno> {
    let mut a = sys::accel_bo_export { handle: h, ..Default::default() };
    io(c, sys::ACCEL_IOCTL_BO_EXPORT, &mut a)?;
    // SAFETY: BO_EXPORT returned a new descriptor that this test owns.
    Ok(unsafe { OwnedFd::from_raw_fd(a.fd) })
}

fn import(c: &Client, fd: i32) -> Result<(u32, u64), Errno> {
    let mut a = sys::accel_bo_import { fd, ..Default::default() };
    io(c, sys::ACCEL_IOCTL_BO_IMPORT, &mut a).map(|_| (a.handle, a.size))
}

#[test]
fn export_import_shares_memory_between_files() {
    let rig = Rig::new();
    let (a, b) = (rig.open(), rig.open());
    let ha = bo_create(&a, 3 * PAGE, REGION_DEVICE, sys::ACCEL_BO_CPU_VISIBLE).unwrap();
    let fd = export(&a, ha).unwrap();
    let (hb, size) = import(&b, fd.as_raw_fd()).unwrap();
    assert_eq!(size, 3 * PAGE);
    assert_eq!(import(&b, fd.as_raw_fd()).unwrap().0, hb, "a second import returns the same handle");
    assert_eq!(import(&a, fd.as_raw_fd()).unwrap().0, ha, "importing into the exporter returns its handle");
    let ma = a.mmap(mmap_offset(&a, ha).unwrap(), PAGE, true).unwrap();
    ma.write(8, b"shared").unwrap();
    let mb = b.mmap(mmap_offset(&b, hb).unwrap(), PAGE, false).unwrap();
    let mut buf = [0u8; 6];
    mb.read(8, &mut buf).unwrap();
    assert_eq!(&buf, b"shared");
    drop((ma, mb));
    a.close();
    assert_eq!(rig.device.stats().bos, 1, "the import keeps the BO alive after the exporter closed");
    b.close();
    drop(fd);
    rig.assert_idle();
}

#[test]
fn import_of_a_bad_fd_is_ebadf() {
    let rig = Rig::new();
    assert_eq!(import(&rig.open(), -1), Err(Errno::EBADF));
    assert_eq!(import(&rig.open(), 1_000_000), Err(Errno::EBADF));
}

#[test]
fn import_of_a_descriptor_that_is_no_export_is_ebadf() {
    let rig = Rig::new();
    let f = std::fs::File::open("/proc/self/stat").unwrap();
    assert_eq!(import(&rig.open(), f.as_raw_fd()), Err(Errno::EBADF));
}

#[test]
fn export_of_unknown_handle_is_enoent() {
    let rig = Rig::new();
    assert_eq!(export(&rig.open(), 9).unwrap_err(), Errno::ENOENT);
}

// ---------------------------------------------------------------- VM_BIND

fn setup(rig: &Rig) -> (Client, u32, u32) {
    let c = rig.open();
    let ctx = ctx_create(&c).unwrap();
    let bo = bo_create(&c, 16 * PAGE, REGION_HOST, sys::ACCEL_BO_CPU_VISIBLE).unwrap();
    (c, ctx, bo)
}

fn mapped(rig: &Rig, c: &Client, ctx: u32, va: u64) -> Option<(u64, u32)> {
    let ctx = c.file().context(ctx).unwrap();
    let (m, off) = ctx.translate(va)?;
    assert!(rig.mock.translate(ctx.vm_id(), va).is_some(), "core and driver page tables agree");
    Some((off, m.perms.bits()))
}

#[test]
fn map_then_partial_unmap_splits_the_mapping() {
    let rig = Rig::new();
    let (c, ctx, bo) = setup(&rig);
    vm_bind(&c, ctx, &[map_op(bo, 2 * PAGE, VA_START, 8 * PAGE, RW)]).unwrap();
    assert_eq!(mapped(&rig, &c, ctx, VA_START + 3 * PAGE + 5), Some((5 * PAGE + 5, RW)));
    vm_bind(&c, ctx, &[unmap_op(VA_START + 2 * PAGE, 2 * PAGE)]).unwrap();
    assert_eq!(mapped(&rig, &c, ctx, VA_START + 2 * PAGE), None);
    assert_eq!(mapped(&rig, &c, ctx, VA_START + 4 * PAGE), Some((6 * PAGE, RW)), "the tail keeps its BO offset");
    assert_eq!(mapped(&rig, &c, ctx, VA_START + PAGE), Some((3 * PAGE, RW)));
    assert_eq!(rig.device.stats().mappings, 2);
    assert_eq!(rig.mock.stats().live_ptes, 2);
}

#[test]
fn remap_in_one_call_and_unmap_of_nothing() {
    let rig = Rig::new();
    let (c, ctx, bo) = setup(&rig);
    let r = sys::ACCEL_VM_BIND_READ;
    vm_bind(&c, ctx, &[map_op(bo, 0, VA_START, PAGE, RW)]).unwrap();
    vm_bind(&c, ctx, &[unmap_op(VA_START, PAGE), map_op(bo, PAGE, VA_START, PAGE, r)]).unwrap();
    assert_eq!(mapped(&rig, &c, ctx, VA_START), Some((PAGE, r)));
    vm_bind(&c, ctx, &[unmap_op(VA_START + 100 * PAGE, PAGE)]).unwrap();
}

#[test]
fn a_mapping_keeps_its_bo_alive() {
    let rig = Rig::new();
    let (c, ctx, bo) = setup(&rig);
    vm_bind(&c, ctx, &[map_op(bo, 0, VA_START, PAGE, RW)]).unwrap();
    bo_close(&c, bo).unwrap();
    assert_eq!(rig.device.stats().bos, 1);
    vm_bind(&c, ctx, &[unmap_op(VA_START, PAGE)]).unwrap();
    assert_eq!(rig.device.stats().bos, 0);
}

#[test]
fn a_failing_op_leaves_the_vm_unchanged() {
    let rig = Rig::new();
    let (c, ctx, bo) = setup(&rig);
    vm_bind(&c, ctx, &[map_op(bo, 0, VA_START + 10 * PAGE, PAGE, RW)]).unwrap();
    let ops = [
        unmap_op(VA_START + 10 * PAGE, PAGE),
        map_op(bo, 0, VA_START, 4 * PAGE, RW),
        map_op(bo, 0, VA_START + 2 * PAGE, PAGE, RW), // overlaps the op before it
    ];
    assert_eq!(vm_bind(&c, ctx, &ops), Err(Errno::EEXIST));
    assert_eq!(mapped(&rig, &c, ctx, VA_START), None);
    assert_eq!(mapped(&rig, &c, ctx, VA_START + 10 * PAGE), Some((0, RW)), "the unmap was rolled back");
    assert_eq!(rig.device.stats().mappings, 1);
    assert_eq!(rig.mock.stats().live_ptes, 1);
}

#[test]
fn driver_page_table_exhaustion_is_enomem_and_changes_nothing() {
    let rig = Rig::with(MockConfig { max_mappings: 3, ..Default::default() });
    let (c, ctx, bo) = setup(&rig);
    vm_bind(&c, ctx, &[map_op(bo, 0, VA_START, PAGE, RW), map_op(bo, 0, VA_START + PAGE, PAGE, RW)]).unwrap();
    let ops = [map_op(bo, 0, VA_START + 4 * PAGE, PAGE, RW), map_op(bo, 0, VA_START + 8 * PAGE, PAGE, RW)];
    assert_eq!(vm_bind(&c, ctx, &ops), Err(Errno::ENOMEM));
    assert_eq!(mapped(&rig, &c, ctx, VA_START + 4 * PAGE), None);
    assert_eq!((rig.device.stats().mappings, rig.mock.stats().live_ptes), (2, 2));
    // Teardown never needs page-table memory: closing at the budget frees everything.
    vm_bind(&c, ctx, &[map_op(bo, 0, VA_START + 4 * PAGE, PAGE, RW)]).unwrap();
    c.close();
    rig.assert_idle();
}

#[test]
fn bind_to_unknown_context_is_enoent() {
    let rig = Rig::new();
    let (c, _, bo) = setup(&rig);
    assert_eq!(vm_bind(&c, 42, &[map_op(bo, 0, VA_START, PAGE, RW)]), Err(Errno::ENOENT));
}

#[test]
fn bind_without_ops_is_einval() {
    let rig = Rig::new();
    let (c, ctx, _) = setup(&rig);
    assert_eq!(vm_bind(&c, ctx, &[]), Err(Errno::EINVAL));
}

fn bind_with_syncs(
    c: &Client,
    ctx: u32,
    op: sys::accel_vm_bind_op,
    ins: &[sys::accel_sync],
    outs: &[sys::accel_sync],
) -> Result<(), Errno> {
    let ops = [op];
    let mut a = sys::accel_vm_bind {
        ctx_id: ctx,
        num_ops: 1,
        ops_ptr: ops.as_ptr() as u64,
        num_in_syncs: ins.len() as u32,
        in_syncs_ptr: ins.as_ptr() as u64,
        num_out_syncs: outs.len() as u32,
        out_syncs_ptr: outs.as_ptr() as u64,
        ..Default::default()
    };
    io(c, sys::ACCEL_IOCTL_VM_BIND, &mut a)
}

#[test]
fn bind_waits_for_in_syncs_and_signals_out_syncs() {
    let rig = Rig::new();
    let (c, ctx, bo) = setup(&rig);
    let ready = syncobj(&c, sys::ACCEL_SYNCOBJ_CREATE_SIGNALED).unwrap();
    let (done, tl) = (syncobj(&c, 0).unwrap(), syncobj(&c, sys::ACCEL_SYNCOBJ_CREATE_TIMELINE).unwrap());
    let ins = [sys::accel_sync { handle: ready, ..Default::default() }];
    let outs =
        [sys::accel_sync { handle: done, ..Default::default() }, sys::accel_sync { handle: tl, flags: 0, point: 7 }];
    bind_with_syncs(&c, ctx, map_op(bo, 0, VA_START, PAGE, RW), &ins, &outs).unwrap();
    assert_eq!(mapped(&rig, &c, ctx, VA_START), Some((0, RW)));
    assert_eq!(common::query(&c, &[done, tl]), vec![(1, 0), (7, 0)], "out-syncs signalled on return");
}

#[test]
fn bind_in_sync_without_a_fence_is_einval_and_unknown_is_enoent() {
    let rig = Rig::new();
    let (c, ctx, bo) = setup(&rig);
    let empty = syncobj(&c, 0).unwrap();
    let op = map_op(bo, 0, VA_START, PAGE, RW);
    assert_eq!(
        bind_with_syncs(&c, ctx, op, &[sys::accel_sync { handle: empty, ..Default::default() }], &[]),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        bind_with_syncs(&c, ctx, op, &[sys::accel_sync { handle: 77, ..Default::default() }], &[]),
        Err(Errno::ENOENT)
    );
    assert_eq!(
        bind_with_syncs(&c, ctx, op, &[], &[sys::accel_sync { handle: 77, ..Default::default() }]),
        Err(Errno::ENOENT)
    );
    assert_eq!(mapped(&rig, &c, ctx, VA_START), None, "nothing was mapped");
}

#[test]
fn unknown_op_is_einval() {
    let rig = Rig::new();
    let (c, ctx, bo) = setup(&rig);
    let mut op = map_op(bo, 0, VA_START, PAGE, RW);
    op.op = 9;
    assert_eq!(vm_bind(&c, ctx, &[op]), Err(Errno::EINVAL));
}

#[test]
fn zero_range_is_einval() {
    let rig = Rig::new();
    let (c, ctx, bo) = setup(&rig);
    assert_eq!(vm_bind(&c, ctx, &[map_op(bo, 0, VA_START, 0, RW)]), Err(Errno::EINVAL));
}

#[test]
fn misaligned_va_is_einval() {
    let rig = Rig::new();
    let (c, ctx, bo) = setup(&rig);
    assert_eq!(vm_bind(&c, ctx, &[map_op(bo, 0, VA_START + 8, PAGE, RW)]), Err(Errno::EINVAL));
}

#[test]
fn misaligned_range_is_einval() {
    let rig = Rig::new();
    let (c, ctx, bo) = setup(&rig);
    assert_eq!(vm_bind(&c, ctx, &[map_op(bo, 0, VA_START, PAGE + 1, RW)]), Err(Errno::EINVAL));
}

#[test]
fn misaligned_bo_offset_is_einval() {
    let rig = Rig::new();
    let (c, ctx, bo) = setup(&rig);
    assert_eq!(vm_bind(&c, ctx, &[map_op(bo, 512, VA_START, PAGE, RW)]), Err(Errno::EINVAL));
}

#[test]
fn range_past_the_end_of_the_bo_is_einval() {
    let rig = Rig::new();
    let (c, ctx, bo) = setup(&rig);
    assert_eq!(vm_bind(&c, ctx, &[map_op(bo, 15 * PAGE, VA_START, 2 * PAGE, RW)]), Err(Errno::EINVAL));
    assert_eq!(vm_bind(&c, ctx, &[map_op(bo, u64::MAX - 4095, VA_START, PAGE, RW)]), Err(Errno::EINVAL));
}

#[test]
fn va_outside_the_va_range_is_einval() {
    let rig = Rig::new();
    let (c, ctx, bo) = setup(&rig);
    assert_eq!(vm_bind(&c, ctx, &[map_op(bo, 0, 0, PAGE, RW)]), Err(Errno::EINVAL));
    assert_eq!(vm_bind(&c, ctx, &[map_op(bo, 0, 1 << 48, PAGE, RW)]), Err(Errno::EINVAL));
}

#[test]
fn va_in_the_reserved_range_is_einval() {
    let rig = Rig::new();
    let (c, ctx, bo) = setup(&rig);
    assert_eq!(vm_bind(&c, ctx, &[map_op(bo, 0, VA_RESERVED_START, PAGE, RW)]), Err(Errno::EINVAL));
    assert_eq!(vm_bind(&c, ctx, &[map_op(bo, 0, VA_RESERVED_START - PAGE, 2 * PAGE, RW)]), Err(Errno::EINVAL));
}

#[test]
fn va_plus_range_wrapping_is_einval() {
    let rig = Rig::new();
    let (c, ctx, _) = setup(&rig);
    assert_eq!(vm_bind(&c, ctx, &[unmap_op(u64::MAX - 4095, 2 * PAGE)]), Err(Errno::EINVAL));
}

#[test]
fn map_without_permissions_is_einval() {
    let rig = Rig::new();
    let (c, ctx, bo) = setup(&rig);
    assert_eq!(vm_bind(&c, ctx, &[map_op(bo, 0, VA_START, PAGE, 0)]), Err(Errno::EINVAL));
}

#[test]
fn map_of_unknown_bo_is_enoent() {
    let rig = Rig::new();
    let (c, ctx, _) = setup(&rig);
    assert_eq!(vm_bind(&c, ctx, &[map_op(999, 0, VA_START, PAGE, RW)]), Err(Errno::ENOENT));
}

#[test]
fn map_over_an_existing_mapping_is_eexist() {
    let rig = Rig::new();
    let (c, ctx, bo) = setup(&rig);
    vm_bind(&c, ctx, &[map_op(bo, 0, VA_START + PAGE, PAGE, RW)]).unwrap();
    assert_eq!(vm_bind(&c, ctx, &[map_op(bo, 0, VA_START, 2 * PAGE, RW)]), Err(Errno::EEXIST));
}

#[test]
fn unmap_with_a_handle_flags_or_offset_is_einval() {
    let rig = Rig::new();
    let (c, ctx, bo) = setup(&rig);
    for (h, f, o) in [(bo, 0, 0), (0, sys::ACCEL_VM_BIND_READ, 0), (0, 0, PAGE)] {
        let mut op = unmap_op(VA_START, PAGE);
        (op.handle, op.flags, op.bo_offset) = (h, f, o);
        assert_eq!(vm_bind(&c, ctx, &[op]), Err(Errno::EINVAL), "{h} {f} {o}");
    }
}

#[test]
fn contexts_have_private_address_spaces() {
    let rig = Rig::new();
    let c = rig.open();
    let (x, y) = (ctx_create(&c).unwrap(), ctx_create(&c).unwrap());
    let bo = bo_create(&c, PAGE, REGION_HOST, 0).unwrap();
    vm_bind(&c, x, &[map_op(bo, 0, VA_START, PAGE, RW)]).unwrap();
    vm_bind(&c, y, &[map_op(bo, 0, VA_START, PAGE, sys::ACCEL_VM_BIND_READ)]).unwrap();
    assert_eq!(mapped(&rig, &c, x, VA_START), Some((0, RW)));
    assert_eq!(mapped(&rig, &c, y, VA_START), Some((0, sys::ACCEL_VM_BIND_READ)));
    ctx_destroy(&c, x).unwrap();
    assert_eq!(mapped(&rig, &c, y, VA_START), Some((0, sys::ACCEL_VM_BIND_READ)));
    assert_eq!(rig.device.stats().mappings, 1);
}
