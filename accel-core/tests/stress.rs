//! Concurrency: >= 8 threads creating, binding, unbinding and closing at
//! once, including closing a file while other threads use it. Must finish
//! without deadlock and with every counter back to zero.

mod common;
use accel_uapi::{Errno, sys};
use common::*;
use std::sync::{Arc, Barrier};
use std::thread;

const THREADS: usize = 8;
const ROUNDS: usize = 1000;

#[test]
fn eight_threads_create_bind_unbind_and_close_concurrently() {
    let rig = Arc::new(Rig::new());
    let barrier = Arc::new(Barrier::new(THREADS + 3));
    let mut workers = Vec::new();
    // Private-file workers: full object life cycles.
    for t in 0..THREADS {
        let (rig, barrier) = (rig.clone(), barrier.clone());
        workers.push(thread::spawn(move || {
            barrier.wait();
            for r in 0..ROUNDS {
                let c = rig.open();
                let ctx = ctx_create(&c).unwrap();
                let bo = bo_create(&c, 4 * PAGE, REGION_HOST, sys::ACCEL_BO_CPU_VISIBLE).unwrap();
                let va = VA_START + ((t * ROUNDS + r) as u64) * (1 << 20);
                vm_bind(&c, ctx, &[map_op(bo, 0, va, 4 * PAGE, RW)]).unwrap();
                vm_bind(&c, ctx, &[unmap_op(va + PAGE, PAGE)]).unwrap();
                if r % 3 == 0 {
                    bo_close(&c, bo).unwrap(); // still mapped: lives on
                }
                if r % 2 == 0 {
                    ctx_destroy(&c, ctx).unwrap();
                }
                c.close(); // whatever is left goes here
            }
        }));
    }
    // A file shared by two threads: one binds in a loop, the other closes the file under it.
    let shared = rig.open();
    let ctx = ctx_create(&shared).unwrap();
    let bo = bo_create(&shared, PAGE, REGION_HOST, 0).unwrap();
    let user = {
        let (c, barrier) = (shared.clone(), barrier.clone());
        thread::spawn(move || {
            barrier.wait();
            let mut ok = 0u64;
            for i in 0..100_000u64 {
                let va = VA_START + i * PAGE;
                match vm_bind(&c, ctx, &[map_op(bo, 0, va, PAGE, RW)]) {
                    Ok(()) => ok += 1,
                    Err(e) => {
                        assert_eq!(e, Errno::EBADF, "calls on a closed file fail with EBADF");
                        return ok;
                    }
                }
                vm_bind(&c, ctx, &[unmap_op(va, PAGE)]).ok();
            }
            ok
        })
    };
    let closer = {
        let (c, barrier) = (shared.clone(), barrier.clone());
        thread::spawn(move || {
            barrier.wait();
            thread::sleep(std::time::Duration::from_millis(20));
            c.close();
        })
    };
    barrier.wait();
    for w in workers {
        w.join().unwrap();
    }
    closer.join().unwrap();
    let bound = user.join().unwrap();
    assert!(bound > 0, "the shared file was used before it closed");
    drop(shared);
    rig.assert_idle();
}

#[test]
fn eight_threads_share_one_context_and_export_between_files() {
    let rig = Arc::new(Rig::new());
    let owner = rig.open();
    let ctx = ctx_create(&owner).unwrap();
    let shared_bo = bo_create(&owner, 64 * PAGE, REGION_HOST, sys::ACCEL_BO_CPU_VISIBLE).unwrap();
    let mut ex = sys::accel_bo_export { handle: shared_bo, ..Default::default() };
    io(&owner, sys::ACCEL_IOCTL_BO_EXPORT, &mut ex).unwrap();
    // SAFETY: BO_EXPORT returned a descriptor this test owns.
    let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(ex.fd) };
    let raw = std::os::fd::AsRawFd::as_raw_fd(&fd);
    let mut handles = Vec::new();
    for t in 0..THREADS {
        let (rig, owner) = (rig.clone(), owner.clone());
        handles.push(thread::spawn(move || {
            let other = rig.open();
            for r in 0..500u64 {
                // Same context, disjoint VA per thread: contention on one VM lock.
                let va = VA_START + (t as u64) * (1 << 30) + (r % 64) * PAGE;
                vm_bind(&owner, ctx, &[map_op(shared_bo, (r % 64) * PAGE, va, PAGE, RW)]).unwrap();
                vm_bind(&owner, ctx, &[unmap_op(va, PAGE)]).unwrap();
                // Meanwhile another file imports the same BO and lets it go.
                let mut im = sys::accel_bo_import { fd: raw, ..Default::default() };
                io(&other, sys::ACCEL_IOCTL_BO_IMPORT, &mut im).unwrap();
                bo_close(&other, im.handle).unwrap();
            }
            other.close();
        }));
    }
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(owner.file().context(ctx).unwrap().mapping_count(), 0);
    owner.close();
    drop(fd);
    rig.assert_idle();
}
