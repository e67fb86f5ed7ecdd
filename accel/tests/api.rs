//! End-to-end tests of the safe API against the embedded default devices.

use accel::flags::{BoFlags, Caps, MrAccess, VmBindFlags};
use accel::types::{CmpOp, DType, EngineClass, Priority, ReduceOp};
use accel::{Commands, Device, Errno, Error, Submit, deadline_in, map_op, monotonic_ns, sys, unmap_op};
use std::os::fd::AsFd;
use std::time::Duration;

const PAGE: u64 = 4096;
const RW: VmBindFlags = VmBindFlags::READ.union(VmBindFlags::WRITE);

fn dev() -> Device {
    Device::open("accel0").expect("open accel0")
}

fn secs(n: u64) -> i64 {
    deadline_in(Duration::from_secs(n))
}

/// A context with a CPU-visible BO of `pages` pages mapped RW at the start of the VA window.
struct Space {
    dev: Device,
    ctx: accel::Context,
    bo: accel::Bo,
    map: accel::Mapping,
    va: u64,
}

fn space(pages: u64) -> Space {
    let dev = dev();
    let ctx = dev.create_context().unwrap();
    let bo = dev.create_bo(pages * PAGE, 0, BoFlags::CPU_VISIBLE).unwrap();
    let va = dev.va_range().unwrap().start;
    ctx.map(&bo, 0, va, pages * PAGE, RW).unwrap();
    let map = bo.map().unwrap();
    Space { dev, ctx, bo, map, va }
}

#[test]
fn device_list_open_and_queries() {
    let names = Device::list();
    assert!(names.iter().any(|n| n == "accel0"), "{names:?}");
    let d = dev();
    assert_eq!(d.name(), "accel0");
    assert_eq!(Device::open("/dev/accel/accel0").unwrap().name(), "accel0");

    let v = d.version().unwrap();
    assert_eq!(v.major, 1);
    let caps = d.caps().unwrap();
    assert!(caps.contains(Caps::MEMORY | Caps::SUBMIT | Caps::PORTABLE_CS | Caps::SYNCOBJ));
    assert_eq!(caps.bits(), v.caps);

    let info = d.info().unwrap();
    assert_eq!(&info.name[..7], b"accel0\0");
    assert_eq!(info.index, 0);
    assert_eq!(info.caps, v.caps);

    let engines = d.engines().unwrap();
    assert!(engines.iter().any(|e| e.engine_class == sys::ACCEL_ENGINE_CLASS_COMPUTE && e.count > 0));

    let regions = d.memory_regions().unwrap();
    let host = regions.iter().find(|r| r.region_id == 0).expect("region 0");
    assert_eq!(host.kind, sys::ACCEL_MEM_REGION_HOST);
    assert_ne!(host.flags & sys::ACCEL_MEM_REGION_CPU_VISIBLE, 0);
    assert!(host.size > 0);

    let va = d.va_range().unwrap();
    assert!(va.start < va.end && va.min_page_size.is_power_of_two());

    // (docs/uapi.md says num_ports = 0 without ACCEL_CAP_FABRIC; today's core lists its ports anyway.)
    let ports = d.ports().unwrap();
    let raw = d.query(sys::ACCEL_QUERY_PORTS).unwrap();
    assert_eq!(raw.len(), 8 + ports.len() * size_of::<sys::accel_port_info>());
    for (i, p) in ports.iter().enumerate() {
        assert_eq!(p.port_num as usize, i + 1, "1-based port numbers");
    }

    let limits = d.limits().unwrap();
    assert!(limits.max_contexts > 0 && limits.max_bo_size > 0 && limits.default_job_timeout_ns > 0);
    // The raw query is the same bytes.
    assert_eq!(d.query(sys::ACCEL_QUERY_LIMITS).unwrap().len(), size_of::<sys::accel_limits>());
    let e = d.query(0xdead).unwrap_err();
    assert_eq!(e, Error { call: "DEVICE_QUERY", errno: Errno::EINVAL });
}

#[test]
fn open_errors() {
    let e = Device::open("accel99").unwrap_err();
    assert_eq!(e.call, "OPEN");
    assert_eq!(e.errno, Errno::ENODEV);
}

#[test]
fn errors_carry_call_and_errno() {
    let d = dev();
    let e = d.create_bo(0, 0, BoFlags::CPU_VISIBLE).unwrap_err();
    assert_eq!(e, Error { call: "BO_CREATE", errno: Errno::EINVAL });
    assert_eq!(e.to_string(), "BO_CREATE: EINVAL (22): Invalid argument");
    let max = d.limits().unwrap().max_bo_size;
    assert_eq!(d.create_bo(max + 1, 0, BoFlags::empty()).unwrap_err(), Error::new("BO_CREATE", Errno::E2BIG));
    assert_eq!(d.create_bo(PAGE, 77, BoFlags::empty()).unwrap_err().errno, Errno::EINVAL);

    // Not CPU-visible: no mmap offset.
    let bo = d.create_bo(PAGE, 0, BoFlags::empty()).unwrap();
    assert_eq!(bo.map().unwrap_err(), Error::new("BO_MMAP_OFFSET", Errno::EINVAL));

    // Fabric verbs are not announced by the mock.
    if !d.caps().unwrap().contains(Caps::FABRIC) {
        assert_eq!(d.alloc_pd().unwrap_err(), Error::new("PD_ALLOC", Errno::EOPNOTSUPP));
        assert_eq!(d.create_cq(16).unwrap_err(), Error::new("CQ_CREATE", Errno::EOPNOTSUPP));
        assert_eq!(d.async_event().unwrap_err(), Error::new("GET_ASYNC_EVENT", Errno::EOPNOTSUPP));
    }

    // Raw ioctls report the given call name.
    let mut a = sys::accel_bo_info { handle: 0xffff, ..Default::default() };
    assert_eq!(d.ioctl("BO_INFO", sys::ACCEL_IOCTL_BO_INFO, &mut a).unwrap_err(), Error::new("BO_INFO", Errno::ENOENT));
    let mut junk = [0u8; 8];
    assert_eq!(d.ioctl_bytes("JUNK", 0xdead_beef, &mut junk).unwrap_err(), Error::new("JUNK", Errno::ENOTTY));

    // Syncobj errors.
    let s = d.create_syncobj(false, false).unwrap();
    assert_eq!(s.wait(0, 0).unwrap_err(), Error::new("SYNCOBJ_WAIT", Errno::ETIMEDOUT));
    assert_eq!(d.wait(&[(&s, 0)], true, false, 0).unwrap_err(), Error::new("SYNCOBJ_WAIT", Errno::EINVAL));
    assert_eq!(d.wait(&[], true, true, 0).unwrap_err(), Error::new("SYNCOBJ_WAIT", Errno::EINVAL));
    assert_eq!(s.timeline_signal(1).unwrap_err(), Error::new("SYNCOBJ_TIMELINE_SIGNAL", Errno::EINVAL));
    assert_eq!(d.create_syncobj(true, true).unwrap_err(), Error::new("SYNCOBJ_CREATE", Errno::EINVAL));
    let t = d.create_syncobj(true, false).unwrap();
    assert_eq!(t.signal().unwrap_err(), Error::new("SYNCOBJ_SIGNAL", Errno::EINVAL));
}

#[test]
fn bo_info_and_mapping() {
    let d = dev();
    let bo = d.create_bo(100, 0, BoFlags::CPU_VISIBLE).unwrap();
    assert_eq!(bo.size() % PAGE, 0, "rounded to the page size");
    assert!(bo.size() >= 100);
    let info = bo.info().unwrap();
    assert_eq!(info.handle, bo.handle().get());
    assert_eq!(info.size, bo.size());
    assert_eq!(info.region, 0);
    assert_ne!(info.flags & sys::ACCEL_BO_CPU_VISIBLE, 0);
    assert_eq!(bo.mmap_offset().unwrap(), bo.mmap_offset().unwrap(), "stable offset");

    let m = bo.map().unwrap();
    assert_eq!(m.len() as u64, bo.size());
    assert!(!m.is_empty());
    assert!(!m.as_ptr().is_null());
    let mut zero = vec![1u8; m.len()];
    m.read(0, &mut zero).unwrap();
    assert!(zero.iter().all(|&b| b == 0), "BOs start zeroed");
    m.write(10, b"abc").unwrap();
    let mut out = [0u8; 3];
    m.read(10, &mut out).unwrap();
    assert_eq!(&out, b"abc");
    m.write_u64(64, 0x1122_3344_5566_7788).unwrap();
    assert_eq!(m.read_u64(64).unwrap(), 0x1122_3344_5566_7788);
    assert_eq!(m.read_u64(m.len() - 4).unwrap_err(), Error::new("MAPPING_READ", Errno::EINVAL));
    assert_eq!(m.write(m.len(), b"x").unwrap_err(), Error::new("MAPPING_WRITE", Errno::EINVAL));

    // The mapping outlives the handle.
    let h = bo.handle();
    drop(bo);
    let mut a = sys::accel_bo_info { handle: h.get(), ..Default::default() };
    assert_eq!(d.ioctl("BO_INFO", sys::ACCEL_IOCTL_BO_INFO, &mut a).unwrap_err().errno, Errno::ENOENT);
    assert_eq!(m.read_u64(64).unwrap(), 0x1122_3344_5566_7788);
}

#[test]
fn context_map_unmap() {
    let d = dev();
    let ctx = d.create_context().unwrap();
    assert_eq!(ctx.query().unwrap().status, 0);
    let bo = d.create_bo(4 * PAGE, 0, BoFlags::CPU_VISIBLE).unwrap();
    let va = d.va_range().unwrap().start;
    ctx.map(&bo, 0, va, 4 * PAGE, RW).unwrap();
    assert_eq!(ctx.map(&bo, 0, va, PAGE, RW).unwrap_err(), Error::new("VM_BIND", Errno::EEXIST));
    ctx.unmap(va + PAGE, PAGE).unwrap(); // splits the mapping
    ctx.map(&bo, PAGE, va + PAGE, PAGE, VmBindFlags::READ).unwrap();
    assert_eq!(ctx.map(&bo, 0, va + 1, PAGE, RW).unwrap_err(), Error::new("VM_BIND", Errno::EINVAL));
    assert_eq!(ctx.map(&bo, 0, va, 0, RW).unwrap_err().errno, Errno::EINVAL);
    // All or nothing: the second op fails, so the first is not applied.
    let err = ctx.bind(&[unmap_op(va, 4 * PAGE), map_op(&bo, 0, va, 8 * PAGE, RW)]).unwrap_err();
    assert_eq!(err, Error::new("VM_BIND", Errno::EINVAL));
    assert_eq!(ctx.map(&bo, 0, va, PAGE, RW).unwrap_err().errno, Errno::EEXIST);
    ctx.bind(&[unmap_op(va, 4 * PAGE), map_op(&bo, 0, va + 8 * PAGE, 4 * PAGE, RW)]).unwrap();
    ctx.map(&bo, 0, va, PAGE, RW).unwrap();

    // VM_BIND with syncs: waits on a signalled syncobj, signals another.
    let in_s = d.create_syncobj(false, true).unwrap();
    let out_s = d.create_syncobj(false, false).unwrap();
    ctx.bind_with_syncs(&[unmap_op(va, PAGE)], &[(&in_s, 0)], &[(&out_s, 0)]).unwrap();
    assert_eq!(out_s.query().unwrap(), (1, 0));

    // A BO of another open is refused (handles are per open).
    let other = dev();
    let foreign = other.create_bo(PAGE, 0, BoFlags::empty()).unwrap();
    assert_eq!(ctx.map(&foreign, 0, va, PAGE, RW).unwrap_err(), Error::new("VM_BIND", Errno::ENOENT));
}

#[test]
fn queue_run_copy_byte_for_byte() {
    let s = space(4);
    let src: Vec<u8> = (0..PAGE as usize).map(|i| (i * 7 + 3) as u8).collect();
    s.map.write(0, &src).unwrap();
    let q = s.ctx.create_queue(EngineClass::Compute).unwrap();
    let mut cmds = Commands::new();
    cmds.copy(s.va, s.va + PAGE, PAGE);
    let done = q.run(&cmds).unwrap();
    done.wait(0, secs(5)).unwrap();
    assert_eq!(done.query().unwrap(), (1, 0));
    let mut dst = vec![0u8; PAGE as usize];
    s.map.read(PAGE as usize, &mut dst).unwrap();
    assert_eq!(dst, src);
    assert_eq!(s.bo.size(), 4 * PAGE);
}

#[test]
fn queue_run_every_command() {
    let s = space(4);
    let q = s.ctx.create_queue_with(EngineClass::Compute, Priority::High, 4, Some(2_000_000_000)).unwrap();
    let base = s.va + 2 * PAGE;
    let off = (2 * PAGE) as usize;
    s.map.write_u64(3 * PAGE as usize, 5).unwrap(); // WAIT_VALUE target, already satisfied
    for i in 0..4 {
        s.map.write_u64(off + 256 + 8 * i, 1 + i as u64).unwrap();
        s.map.write_u64(off + 512 + 8 * i, 10).unwrap();
    }
    let before = monotonic_ns();
    let mut cmds = Commands::new();
    cmds.fill(base, 64, 0xabcd_ef01)
        .write_value(base + 64, 0xfeed, 8)
        .wait_value(s.va + 3 * PAGE, CmpOp::Ge, 5, u64::MAX, 8, 0)
        .timestamp(base + 128)
        .barrier()
        .reduce(base + 256, base + 512, 4, ReduceOp::Sum, DType::U64);
    let done = q.run(&cmds).unwrap();
    done.wait(0, secs(5)).unwrap();
    assert_eq!(done.query().unwrap(), (1, 0));
    let mut fill = [0u8; 64];
    s.map.read(off, &mut fill).unwrap();
    assert!(fill.chunks(4).all(|c| c == 0xabcd_ef01u32.to_le_bytes()));
    assert_eq!(s.map.read_u64(off + 64).unwrap(), 0xfeed);
    let ts = s.map.read_u64(off + 128).unwrap() as i64;
    assert!(ts >= before && ts <= monotonic_ns());
    for i in 0..4 {
        assert_eq!(s.map.read_u64(off + 512 + 8 * i).unwrap(), 11 + i as u64);
    }

    // An empty stream is a synchronisation-only job.
    let sync_only = q.run(&Commands::new()).unwrap();
    sync_only.wait(0, secs(5)).unwrap();

    // A malformed stream fails SUBMIT with EINVAL.
    let mut bad = Commands::new();
    bad.raw(&[0xff; 8]);
    assert_eq!(q.run(&bad).unwrap_err(), Error::new("SUBMIT", Errno::EINVAL));
    // A job touching unmapped memory completes with -EFAULT and faults the context.
    let mut fault = Commands::new();
    fault.write_value(s.va + 64 * PAGE, 1, 8);
    let f = q.run(&fault).unwrap();
    f.wait(0, secs(5)).unwrap();
    assert_eq!(f.query().unwrap().1, -Errno::EFAULT.raw());
    let cq = s.ctx.query().unwrap();
    assert_ne!(cq.status & sys::ACCEL_CONTEXT_FAULTED, 0);
    assert_eq!(cq.fault_addr, s.va + 64 * PAGE);
}

#[test]
fn submit_builder_with_waits_and_signals() {
    let s = space(2);
    let q = s.ctx.create_queue(EngineClass::Compute).unwrap();
    let cmd_bo = s.dev.create_bo(PAGE, 0, BoFlags::CPU_VISIBLE).unwrap();
    let mut cmds = Commands::new();
    cmds.write_value(s.va, 42, 8);
    cmd_bo.map().unwrap().write(0, cmds.bytes()).unwrap();
    let len = cmds.len() as u64;

    // Wait-before-signal on a timeline point, signalled from the CPU.
    let gate = s.dev.create_syncobj(true, false).unwrap();
    let done = s.dev.create_syncobj(true, false).unwrap();
    let seq1 = q.submit(&Submit::new().chunk(&cmd_bo, 0, len).wait(&gate, 1).signal(&done, 1).block(true)).unwrap();
    assert!(seq1 != 0 && seq1 != u64::MAX);
    assert_eq!(done.wait(1, 0).unwrap_err().errno, Errno::ETIMEDOUT);
    assert_eq!(s.map.read_u64(0).unwrap(), 0);
    gate.timeline_signal(1).unwrap();
    done.wait(1, secs(5)).unwrap();
    assert_eq!(done.query().unwrap(), (1, 0));
    assert_eq!(s.map.read_u64(0).unwrap(), 42);

    // A sync-only job, a raw chunk, and seqnos increasing.
    let seq2 = q.submit(&Submit::new().signal(&done, 2)).unwrap();
    assert!(seq2 > seq1);
    let raw = sys::accel_chunk {
        kind: sys::ACCEL_CHUNK_PORTABLE,
        handle: cmd_bo.handle().get(),
        offset: 0,
        size: len,
        ..Default::default()
    };
    let seq3 = q.submit(&Submit::new().raw_chunk(raw).signal(&done, 3)).unwrap();
    assert!(seq3 > seq2);
    done.wait(3, secs(5)).unwrap();
    let any = s.dev.wait(&[(&gate, 1), (&done, 3)], false, false, secs(5)).unwrap();
    assert!(any < 2);

    // Chunk errors.
    assert_eq!(q.submit(&Submit::new().chunk(&cmd_bo, 4, 32)).unwrap_err(), Error::new("SUBMIT", Errno::EINVAL));
    if !s.dev.caps().unwrap().contains(Caps::NATIVE_CS) {
        let e = q.submit(&Submit::new().native_chunk(&cmd_bo, 0, 32)).unwrap_err();
        assert_eq!(e, Error::new("SUBMIT", Errno::EOPNOTSUPP));
    }
    // A syncobj or BO of another open is refused.
    let other = dev();
    let foreign = other.create_syncobj(false, true).unwrap();
    assert_eq!(q.submit(&Submit::new().wait(&foreign, 0)).unwrap_err(), Error::new("SUBMIT", Errno::ENOENT));
    let foreign_bo = other.create_bo(PAGE, 0, BoFlags::CPU_VISIBLE).unwrap();
    assert_eq!(q.submit(&Submit::new().chunk(&foreign_bo, 0, 32)).unwrap_err(), Error::new("SUBMIT", Errno::ENOENT));
}

#[test]
fn queue_keeps_context_alive() {
    let d = dev();
    let ctx = d.create_context().unwrap();
    let q = ctx.create_queue(EngineClass::Compute).unwrap();
    let id = ctx.id();
    drop(ctx); // CONTEXT_DESTROY is deferred until the queue is gone
    let done = q.run(&Commands::new()).unwrap();
    done.wait(0, secs(5)).unwrap();
    drop(q);
    let mut a = sys::accel_context_query { ctx_id: id.get(), ..Default::default() };
    assert_eq!(d.ioctl("CONTEXT_QUERY", sys::ACCEL_IOCTL_CONTEXT_QUERY, &mut a).unwrap_err().errno, Errno::ENOENT);
}

#[test]
fn syncobj_binary_and_timeline() {
    let d = dev();
    let b = d.create_syncobj(false, false).unwrap();
    assert_eq!(b.query().unwrap(), (0, 0));
    b.signal().unwrap();
    assert_eq!(b.query().unwrap(), (1, 0));
    b.wait(0, 0).unwrap();
    b.reset().unwrap();
    assert_eq!(b.query().unwrap(), (0, 0));
    assert_eq!(b.wait(0, 0).unwrap_err().errno, Errno::ETIMEDOUT);
    let pre = d.create_syncobj(false, true).unwrap();
    assert_eq!(pre.query().unwrap(), (1, 0));

    let t = d.create_syncobj(true, false).unwrap();
    assert_eq!(t.query().unwrap(), (0, 0));
    t.timeline_signal(3).unwrap();
    assert_eq!(t.query().unwrap(), (3, 0));
    t.wait(2, 0).unwrap();
    assert_eq!(t.timeline_signal(2).unwrap_err(), Error::new("SYNCOBJ_TIMELINE_SIGNAL", Errno::EINVAL));

    // Transfer: timeline point -> binary, binary -> timeline point.
    let b2 = d.create_syncobj(false, false).unwrap();
    t.transfer_to(3, &b2, 0).unwrap();
    assert_eq!(b2.query().unwrap(), (1, 0));
    let t2 = d.create_syncobj(true, false).unwrap();
    b2.transfer_to(0, &t2, 5).unwrap();
    t2.wait(5, secs(5)).unwrap();
    assert_eq!(t2.query().unwrap().0, 5);

    // WAIT_ALL over several.
    assert_eq!(d.wait(&[(&pre, 0), (&t, 3), (&t2, 5)], true, false, secs(1)).unwrap(), 0);
}

#[test]
fn export_import_between_opens() {
    let a = dev();
    let b = dev();
    assert!(!a.same_open(&b));
    assert!(a.same_open(&a.clone()));

    // BO: data written through one open is seen through the other.
    let bo = a.create_bo(2 * PAGE, 0, BoFlags::CPU_VISIBLE).unwrap();
    bo.map().unwrap().write(PAGE as usize, b"shared bytes").unwrap();
    let fd = bo.export().unwrap();
    let imported = b.import_bo(fd.as_fd()).unwrap();
    assert_eq!(imported.size(), bo.size());
    let mut out = [0u8; 12];
    imported.map().unwrap().read(PAGE as usize, &mut out).unwrap();
    assert_eq!(&out, b"shared bytes");

    // Importing into the exporter's open returns the same handle; the handle
    // stays open until the last Bo value naming it is dropped.
    let again = a.import_bo(fd.as_fd()).unwrap();
    assert_eq!(again.handle(), bo.handle());
    drop(again);
    bo.info().unwrap();

    // Syncobj: signalled through one open, observed through the other.
    let s = a.create_syncobj(false, false).unwrap();
    let sfd = s.export().unwrap();
    let s2 = b.import_syncobj(sfd.as_fd()).unwrap();
    assert_eq!(s2.query().unwrap(), (0, 0));
    s.signal().unwrap();
    s2.wait(0, secs(5)).unwrap();
    assert_eq!(s2.query().unwrap(), (1, 0));

    // A BO descriptor is not a syncobj export, and vice versa.
    assert_eq!(b.import_syncobj(fd.as_fd()).unwrap_err(), Error::new("SYNCOBJ_IMPORT", Errno::EBADF));
    assert_eq!(b.import_bo(sfd.as_fd()).unwrap_err(), Error::new("BO_IMPORT", Errno::EBADF));
}

#[test]
fn fabric_wrappers() {
    let d = dev();
    if d.caps().unwrap().contains(Caps::FABRIC) {
        let pd = d.alloc_pd().unwrap();
        let cq = d.create_cq(16).unwrap();
        let bo = d.create_bo(PAGE, 0, BoFlags::CPU_VISIBLE).unwrap();
        let mr = pd.reg_mr(&bo, 0, PAGE, 0x1000, MrAccess::LOCAL_WRITE).unwrap();
        assert_ne!(mr.lkey(), 0);
        let qp = pd.create_qp(&cq, &cq, 4, 1).unwrap();
        assert_eq!(qp.query().unwrap().qp_state, sys::ACCEL_QPS_RESET);
        assert!(cq.poll(4).unwrap().is_empty());
        return;
    }
    assert_eq!(d.alloc_pd().unwrap_err(), Error::new("PD_ALLOC", Errno::EOPNOTSUPP));
    assert_eq!(d.create_cq(1).unwrap_err(), Error::new("CQ_CREATE", Errno::EOPNOTSUPP));
}

#[test]
fn deadlines() {
    let now = monotonic_ns();
    assert!(now > 0);
    let d = deadline_in(Duration::from_millis(100));
    assert!(d >= now + 100_000_000);
    assert_eq!(deadline_in(Duration::MAX), i64::MAX);
    // A short deadline expires with ETIMEDOUT, not earlier.
    let s = dev().create_syncobj(false, false).unwrap();
    let start = std::time::Instant::now();
    let e = s.wait(0, deadline_in(Duration::from_millis(20))).unwrap_err();
    assert_eq!(e.errno, Errno::ETIMEDOUT);
    assert!(start.elapsed() >= Duration::from_millis(15));
}

#[test]
fn objects_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Device>();
    check::<accel::Context>();
    check::<accel::Bo>();
    check::<accel::Mapping>();
    check::<accel::Queue>();
    check::<accel::Syncobj>();
    check::<accel::Pd>();
    check::<accel::Mr>();
    check::<accel::Cq>();
    check::<accel::Qp>();
    check::<Submit<'static>>();
    check::<Commands>();
    check::<Error>();
}

#[test]
fn threads_share_a_device() {
    let s = space(1);
    let q = s.ctx.create_queue(EngineClass::Compute).unwrap();
    std::thread::scope(|scope| {
        for i in 0..4u64 {
            let (q, va) = (&q, s.va);
            scope.spawn(move || {
                let done = q.run(Commands::new().write_value(va + 8 * i, 100 + i, 8)).unwrap();
                done.wait(0, secs(5)).unwrap();
            });
        }
    });
    for i in 0..4u64 {
        assert_eq!(s.map.read_u64(8 * i as usize).unwrap(), 100 + i);
    }
}
