//! Regression tests for bugs found in review, each built from the trigger
//! that exposed it.

mod common;
use accel_uapi::{Errno, sys};
use common::*;
use std::thread;
use std::time::Duration;

const A: u64 = VA_START;
const TL: u32 = sys::ACCEL_SYNCOBJ_CREATE_TIMELINE;

fn destroy_syncobj(c: &accel_core::inproc::Client, h: u32) {
    let mut d = sys::accel_syncobj_destroy { handle: h, pad: 0 };
    io(c, sys::ACCEL_IOCTL_SYNCOBJ_DESTROY, &mut d).unwrap();
}

/// A blocking SUBMIT used to install its signal before waiting for room, so
/// a full queue whose head waited on that signal deadlocked for good.
#[test]
fn a_blocking_submit_does_not_hold_its_signal_while_waiting_for_room() {
    let rig = Rig::new();
    let sp = Space::new(rig.open(), 1);
    let q = queue_create(&sp.c, sp.ctx, sys::ACCEL_ENGINE_CLASS_COMPUTE, 1, None).unwrap();
    let (t, first) = (syncobj(&sp.c, TL).unwrap(), syncobj(&sp.c, 0).unwrap());
    // J1 waits for T@1 (wait-before-signal) and fills the depth-1 queue.
    submit(&sp.c, q, &[sp.chunk(0, &cmd::write(A, 1, 8))], &[sync(t, 1)], &[sync(first, 0)], 0).unwrap();
    let c2 = sp.c.clone();
    let chunk = sp.chunk(64, &cmd::write(A + 8, 2, 8));
    let blocked = thread::spawn(move || submit(&c2, q, &[chunk], &[], &[sync(t, 1)], sys::ACCEL_SUBMIT_BLOCK));
    thread::sleep(Duration::from_millis(30));
    assert_eq!(query(&sp.c, &[t])[0], (0, 0), "the blocked SUBMIT has not claimed T@1");
    // The host signals T@1: J1 runs, room appears, the blocked SUBMIT goes in.
    let (h, p) = ([t], [1u64]);
    let mut ts = sys::accel_syncobj_timeline_array {
        handles_ptr: h.as_ptr() as u64,
        points_ptr: p.as_ptr() as u64,
        count: 1,
        flags: 0,
    };
    io(&sp.c, sys::ACCEL_IOCTL_SYNCOBJ_TIMELINE_SIGNAL, &mut ts).unwrap();
    assert_eq!(finish(&sp.c, first), 0);
    assert_eq!(blocked.join().unwrap(), Err(Errno::EINVAL), "T@1 is taken by then: its point no longer increases");
}

/// A wait on a timeline point that was submitted but not reached used a
/// watcher owned by the syncobj: destroying the syncobj cancelled it.
#[test]
fn waiting_on_a_submitted_point_survives_destroying_the_syncobj() {
    let rig = Rig::new();
    let sp = Space::new(rig.open(), 1);
    let (q1, q2) = (sp.queue(), sp.queue());
    let (t, done) = (syncobj(&sp.c, TL).unwrap(), syncobj(&sp.c, 0).unwrap());
    submit(&sp.c, q1, &[sp.chunk(0, &cmd::wait(A, 1, sys::ACCEL_CMP_EQ, 5_000_000_000))], &[], &[sync(t, 1)], 0)
        .unwrap();
    submit(&sp.c, q2, &[sp.chunk(64, &cmd::write(A + 8, 7, 8))], &[sync(t, 1)], &[sync(done, 0)], 0).unwrap();
    destroy_syncobj(&sp.c, t);
    sp.map.write(0, &1u64.to_le_bytes()).unwrap();
    assert_eq!(finish(&sp.c, done), 0, "the dependent job ran once the producer finished");
    assert_eq!(sp.read_u64(8), 7);
}

/// A failed VM_BIND whose UNMAP split a mapping left the pieces behind and
/// the mapping counter off for good.
#[test]
fn a_failed_bind_restores_split_mappings_exactly() {
    let rig = Rig::new();
    let c = rig.open();
    let ctx = ctx_create(&c).unwrap();
    let bo = bo_create(&c, 8 * PAGE, REGION_HOST, 0).unwrap();
    vm_bind(&c, ctx, &[map_op(bo, 0, A, 3 * PAGE, RW), map_op(bo, 0, A + 16 * PAGE, PAGE, RW)]).unwrap();
    let ops = [unmap_op(A + PAGE, PAGE), map_op(bo, 0, A + 16 * PAGE, PAGE, RW)];
    assert_eq!(vm_bind(&c, ctx, &ops), Err(Errno::EEXIST));
    assert_eq!(c.file().context(ctx).unwrap().mapping_count(), 2, "one entry again, not three pieces");
    assert_eq!(rig.device.stats().mappings, 2);
    c.close();
    rig.assert_idle();
}

/// Two handles of one syncobj (an import into the same file) in one
/// TIMELINE_SIGNAL half-applied before failing.
#[test]
fn one_syncobj_under_two_handles_is_listed_twice() {
    let rig = Rig::new();
    let c = rig.open();
    let t = syncobj(&c, TL).unwrap();
    let mut ex = sys::accel_syncobj_export { handle: t, ..Default::default() };
    io(&c, sys::ACCEL_IOCTL_SYNCOBJ_EXPORT, &mut ex).unwrap();
    let mut im = sys::accel_syncobj_import { fd: ex.fd, ..Default::default() };
    io(&c, sys::ACCEL_IOCTL_SYNCOBJ_IMPORT, &mut im).unwrap();
    // SAFETY: SYNCOBJ_EXPORT returned a descriptor this test owns.
    drop(unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(ex.fd) });
    assert_ne!(im.handle, t);
    let (h, p) = ([t, im.handle], [5u64, 3]);
    let mut ts = sys::accel_syncobj_timeline_array {
        handles_ptr: h.as_ptr() as u64,
        points_ptr: p.as_ptr() as u64,
        count: 2,
        flags: 0,
    };
    assert_eq!(io(&c, sys::ACCEL_IOCTL_SYNCOBJ_TIMELINE_SIGNAL, &mut ts), Err(Errno::EINVAL));
    assert_eq!(query(&c, &[t])[0], (0, 0), "nothing was signalled");
}

/// A job waiting on a point its own signal provides waited forever.
#[test]
fn a_job_that_would_wait_on_its_own_signal_is_einval() {
    let rig = Rig::new();
    let sp = Space::new(rig.open(), 1);
    let q = sp.queue();
    let t = syncobj(&sp.c, TL).unwrap();
    let c = sp.chunk(0, &cmd::write(A, 1, 8));
    assert_eq!(submit(&sp.c, q, &[c], &[sync(t, 2)], &[sync(t, 2)], 0), Err(Errno::EINVAL));
    assert_eq!(submit(&sp.c, q, &[c], &[sync(t, 1)], &[sync(t, 3)], 0), Err(Errno::EINVAL));
    submit(&sp.c, q, &[c], &[], &[sync(t, 1)], 0).unwrap();
    submit(&sp.c, q, &[c], &[sync(t, 1)], &[sync(t, 2)], 0).unwrap(); // chaining on a submitted point is fine
    wait(&sp.c, &[t], Some(&[2]), 0, in_ms(5000)).unwrap();
}

/// Command streams had no total bound: 512 chunks of one big BO.
#[test]
fn too_many_command_bytes_in_one_submit_is_e2big() {
    let rig = Rig::new();
    let sp = Space::new(rig.open(), 1);
    let q = sp.queue();
    let chunk = sys::accel_chunk { size: CMD_BYTES, ..sp.chunk(0, &cmd::barrier()) };
    let chunks = vec![chunk; 512]; // 32 MiB in all
    assert_eq!(submit(&sp.c, q, &chunks, &[], &[], 0), Err(Errno::E2BIG));
}

/// A finished job's queue still counted against its context for a moment,
/// so destroying the context right after its queue was EBUSY.
#[test]
fn a_context_can_be_destroyed_right_after_its_queue() {
    let rig = Rig::new();
    let sp = Space::new(rig.open(), 1);
    for _ in 0..50 {
        let ctx = ctx_create(&sp.c).unwrap();
        let q = queue_create(&sp.c, ctx, sys::ACCEL_ENGINE_CLASS_COMPUTE, 1, None).unwrap();
        let s = syncobj(&sp.c, 0).unwrap();
        submit(&sp.c, q, &[sp.chunk(0, &cmd::barrier())], &[], &[sync(s, 0)], 0).unwrap();
        assert_eq!(finish(&sp.c, s), 0);
        // The fence has signalled: the slot is free already.
        submit(&sp.c, q, &[sp.chunk(0, &cmd::barrier())], &[], &[], 0).unwrap();
        let mut d = sys::accel_queue_destroy { queue_id: q, pad: 0 };
        io(&sp.c, sys::ACCEL_IOCTL_QUEUE_DESTROY, &mut d).unwrap();
        ctx_destroy(&sp.c, ctx).unwrap();
        destroy_syncobj(&sp.c, s);
    }
}

/// VM_BIND claimed its out-syncs only after binding: a failure left them
/// untouched, a success could leave them unsignalled.
#[test]
fn a_failed_bind_leaves_its_out_syncs_as_they_were() {
    let rig = Rig::new();
    let c = rig.open();
    let ctx = ctx_create(&c).unwrap();
    let bo = bo_create(&c, PAGE, REGION_HOST, 0).unwrap();
    let t = syncobj(&c, TL).unwrap();
    vm_bind(&c, ctx, &[map_op(bo, 0, A, PAGE, RW)]).unwrap();
    let ops = [map_op(bo, 0, A, PAGE, RW)];
    let outs = [sync(t, 4)];
    let mut a = sys::accel_vm_bind {
        ctx_id: ctx,
        num_ops: 1,
        ops_ptr: ops.as_ptr() as u64,
        num_out_syncs: 1,
        out_syncs_ptr: outs.as_ptr() as u64,
        ..Default::default()
    };
    assert_eq!(io(&c, sys::ACCEL_IOCTL_VM_BIND, &mut a), Err(Errno::EEXIST));
    assert_eq!(query(&c, &[t])[0], (0, 0));
    let unmap = [unmap_op(A, PAGE)];
    a.ops_ptr = unmap.as_ptr() as u64;
    io(&c, sys::ACCEL_IOCTL_VM_BIND, &mut a).unwrap();
    assert_eq!(query(&c, &[t])[0], (4, 0), "signalled on success");
}
