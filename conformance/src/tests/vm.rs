//! Area: vm — contexts and VM_BIND: map, unmap, split, all-or-nothing, every
//! validation with its exact errno, and the in/out syncs of a bind. Whether a
//! VA is mapped is observed through the UAPI only: a MAP over it is EEXIST.

use super::{Ctx, ensure, expect_errno, tests};
use crate::{Area, Env, TestCase};
use accel::{map_op, unmap_op};
use accel_uapi::flags::{BoFlags, Caps, VmBindFlags};
use accel_uapi::{Errno, sys};

pub(crate) fn tests() -> Vec<TestCase> {
    let mut v = tests!(
        Area::Vm,
        Caps::MEMORY,
        [
            map_then_unmap,
            partial_unmap_splits_the_mapping,
            remap_in_one_call,
            unmap_of_an_unmapped_range_is_allowed,
            unmap_covering_several_mappings_removes_them_all,
            overlapping_map_is_eexist,
            misaligned_va_is_einval,
            misaligned_range_is_einval,
            misaligned_bo_offset_is_einval,
            zero_range_is_einval,
            range_past_the_end_of_the_bo_is_einval,
            va_below_the_va_range_is_einval,
            va_past_the_va_range_is_einval,
            va_in_the_reserved_range_is_einval,
            va_plus_range_wrapping_is_einval,
            map_without_permissions_is_einval,
            any_permission_set_is_accepted,
            unmap_with_a_handle_flags_or_bo_offset_is_einval,
            unknown_op_is_einval,
            map_of_an_unknown_bo_is_enoent,
            bind_on_an_unknown_context_is_enoent,
            bind_without_ops_is_einval,
            bind_flags_must_be_zero,
            a_failing_op_applies_nothing,
            a_mapping_keeps_its_bo_alive,
            one_bo_range_at_two_vas,
            context_create_and_destroy,
            destroy_of_a_destroyed_context_is_enoent,
            contexts_up_to_max_contexts_then_ebusy,
            max_vm_bind_ops_in_one_call,
        ]
    );
    v.extend(tests!(
        Area::Vm,
        Caps::MEMORY.union(Caps::SYNCOBJ),
        [
            binary_out_sync_is_signalled_on_return,
            signalled_in_sync_is_accepted,
            in_sync_without_a_fence_is_einval,
            unknown_sync_handle_is_enoent,
            binary_sync_with_a_point_is_einval,
        ]
    ));
    v.extend(tests!(
        Area::Vm,
        Caps::MEMORY.union(Caps::SYNCOBJ).union(Caps::SYNCOBJ_TIMELINE),
        [timeline_out_sync_point_is_signalled_on_return,]
    ));
    v
}

// ------------------------------------------------------------------ helpers

const RW: VmBindFlags = VmBindFlags::READ.union(VmBindFlags::WRITE);

fn align_up(x: u64, page: u64) -> Option<u64> {
    x.checked_add(page - 1).map(|v| v / page * page)
}

fn align_down(x: u64, page: u64) -> u64 {
    x / page * page
}

/// A context, a BO, and a free, usable VA window of the device.
struct Vm {
    ctx: accel::Context,
    bo: accel::Bo,
    region: u32,
    /// Start of the window: page-aligned, outside the reserved range.
    va: u64,
    /// The mapping granule: the BO region's smallest page, at least the VA range's.
    page: u64,
}

/// A BO of `bo_pages` pages and a window of `span` free pages.
fn setup_span(env: &Env, bo_pages: u64, span: u64) -> Result<Vm, String> {
    let v = env.dev.va_range().ctx("VA_RANGE")?;
    let r = *env.dev.memory_regions().ctx("MEMORY_REGIONS")?.first().ok_or("no memory regions")?;
    let page = (1u64 << r.page_sizes.trailing_zeros().min(63)).max(v.min_page_size).max(4096);
    let len = span.checked_mul(page).ok_or("window too large")?;
    let mut va = align_up(v.start, page).ok_or("VA start overflows")?;
    if v.reserved_start < v.reserved_end && va < v.reserved_end && v.reserved_start < va.saturating_add(len) {
        va = align_up(v.reserved_end, page).ok_or("reserved end overflows")?;
    }
    ensure!(va.checked_add(len).is_some_and(|e| e <= v.end), "no free VA window of {span} pages");
    let ctx = env.dev.create_context().ctx("CONTEXT_CREATE")?;
    let bo = env.dev.create_bo(bo_pages * page, r.region_id, BoFlags::empty()).ctx("BO_CREATE")?;
    Ok(Vm { ctx, bo, region: r.region_id, va, page })
}

fn setup(env: &Env, bo_pages: u64) -> Result<Vm, String> {
    setup_span(env, bo_pages, 64)
}

impl Vm {
    /// The VA of page `n` of the window.
    fn at(&self, n: u64) -> u64 {
        self.va + n * self.page
    }

    /// MAP `pages` pages of the BO (from offset 0) at page `n`.
    fn map(&self, n: u64, pages: u64) -> accel::Result<()> {
        self.ctx.map(&self.bo, 0, self.at(n), pages * self.page, RW)
    }

    fn op(&self, bo_offset: u64, n: u64, pages: u64) -> sys::accel_vm_bind_op {
        map_op(&self.bo, bo_offset, self.at(n), pages * self.page, RW)
    }

    /// Page `n` is mapped: a MAP over it is EEXIST.
    fn is_mapped(&self, n: u64) -> Result<(), String> {
        expect_errno(self.map(n, 1), Errno::EEXIST, &format!("MAP over page {n}, which should be mapped"))
    }

    /// Page `n` is free: a MAP of it succeeds (and is undone).
    fn is_free(&self, n: u64) -> Result<(), String> {
        self.map(n, 1).ctx(&format!("MAP of page {n}, which should be free"))?;
        self.ctx.unmap(self.at(n), self.page).ctx("UNMAP")
    }
}

/// A raw VM_BIND: any ctx_id, flags and syncs.
fn bind_raw(
    dev: &accel::Device,
    ctx_id: u32,
    ops: &[sys::accel_vm_bind_op],
    ins: &[sys::accel_sync],
    flags: u32,
) -> accel::Result<()> {
    let mut a = sys::accel_vm_bind {
        ctx_id,
        num_ops: ops.len() as u32,
        ops_ptr: ops.as_ptr() as u64,
        num_in_syncs: ins.len() as u32,
        in_syncs_ptr: ins.as_ptr() as u64,
        flags,
        ..Default::default()
    };
    dev.ioctl("VM_BIND", sys::ACCEL_IOCTL_VM_BIND, &mut a)
}

fn ctx_create_raw(dev: &accel::Device) -> accel::Result<u32> {
    let mut a = sys::accel_context_create::default();
    dev.ioctl("CONTEXT_CREATE", sys::ACCEL_IOCTL_CONTEXT_CREATE, &mut a).map(|()| a.ctx_id)
}

fn ctx_destroy_raw(dev: &accel::Device, ctx_id: u32) -> accel::Result<()> {
    let mut a = sys::accel_context_destroy { ctx_id, pad: 0 };
    dev.ioctl("CONTEXT_DESTROY", sys::ACCEL_IOCTL_CONTEXT_DESTROY, &mut a)
}

fn available(env: &Env, region: u32) -> Result<u64, String> {
    let r = env.dev.memory_regions().ctx("MEMORY_REGIONS")?;
    r.iter().find(|r| r.region_id == region).map(|r| r.available).ok_or_else(|| format!("region {region} disappeared"))
}

// ------------------------------------------------------------------ map / unmap

fn map_then_unmap(env: &Env) -> Result<(), String> {
    let vm = setup(env, 4)?;
    vm.map(0, 4).ctx("MAP")?;
    vm.is_mapped(0)?;
    vm.is_mapped(3)?;
    vm.ctx.unmap(vm.at(0), 4 * vm.page).ctx("UNMAP")?;
    vm.is_free(0)?;
    vm.is_free(3)
}

fn partial_unmap_splits_the_mapping(env: &Env) -> Result<(), String> {
    let vm = setup(env, 4)?;
    vm.map(0, 4).ctx("MAP")?;
    vm.ctx.unmap(vm.at(1), 2 * vm.page).ctx("UNMAP of the middle")?;
    vm.is_mapped(0)?;
    vm.is_mapped(3)?;
    vm.is_free(1)?;
    vm.is_free(2)?;
    vm.ctx.map(&vm.bo, vm.page, vm.at(1), 2 * vm.page, RW).ctx("MAP filling the hole exactly")?;
    vm.ctx.unmap(vm.at(0), vm.page).ctx("UNMAP of the head piece")?;
    vm.is_free(0)?;
    vm.is_mapped(3)
}

fn remap_in_one_call(env: &Env) -> Result<(), String> {
    let vm = setup(env, 4)?;
    vm.map(0, 1).ctx("MAP")?;
    vm.is_mapped(0)?; // a MAP alone over it is refused...
    let ops = [unmap_op(vm.at(0), vm.page), map_op(&vm.bo, vm.page, vm.at(0), vm.page, VmBindFlags::READ)];
    vm.ctx.bind(&ops).ctx("UNMAP + MAP in one call")?; // ...but not after an UNMAP of the same call
    vm.is_mapped(0)?;
    vm.is_free(1)
}

fn unmap_of_an_unmapped_range_is_allowed(env: &Env) -> Result<(), String> {
    let vm = setup(env, 4)?;
    vm.ctx.unmap(vm.at(0), 8 * vm.page).ctx("UNMAP of nothing")?;
    vm.map(2, 1).ctx("MAP")?;
    vm.ctx.unmap(vm.at(0), 8 * vm.page).ctx("UNMAP of a range partly mapped")?;
    vm.is_free(2)
}

fn unmap_covering_several_mappings_removes_them_all(env: &Env) -> Result<(), String> {
    let vm = setup(env, 8)?;
    vm.ctx.bind(&[vm.op(0, 0, 1), vm.op(0, 2, 2), vm.op(0, 5, 1)]).ctx("three MAPs")?;
    vm.is_mapped(3)?;
    vm.ctx.unmap(vm.at(0), 6 * vm.page).ctx("UNMAP of all three")?;
    vm.map(0, 6).ctx("MAP over the whole unmapped range")
}

fn overlapping_map_is_eexist(env: &Env) -> Result<(), String> {
    let vm = setup(env, 4)?;
    vm.map(1, 1).ctx("MAP")?;
    expect_errno(vm.map(0, 2), Errno::EEXIST, "MAP over the head of a mapping")?;
    expect_errno(vm.map(1, 1), Errno::EEXIST, "MAP over the same range")?;
    expect_errno(vm.map(0, 3), Errno::EEXIST, "MAP around a mapping")?;
    vm.map(0, 1).ctx("MAP of the page before")?;
    vm.map(2, 1).ctx("MAP of the page after")
}

// ------------------------------------------------------------------ validation

fn misaligned_va_is_einval(env: &Env) -> Result<(), String> {
    let vm = setup(env, 4)?;
    let got = vm.ctx.map(&vm.bo, 0, vm.at(1) + vm.page / 2, vm.page, RW);
    expect_errno(got, Errno::EINVAL, "MAP at half a page")?;
    vm.is_free(1)
}

fn misaligned_range_is_einval(env: &Env) -> Result<(), String> {
    let vm = setup(env, 4)?;
    let got = vm.ctx.map(&vm.bo, 0, vm.at(0), vm.page + vm.page / 2, RW);
    expect_errno(got, Errno::EINVAL, "MAP of a page and a half")?;
    vm.is_free(0)
}

fn misaligned_bo_offset_is_einval(env: &Env) -> Result<(), String> {
    let vm = setup(env, 4)?;
    let got = vm.ctx.map(&vm.bo, vm.page / 2, vm.at(0), vm.page, RW);
    expect_errno(got, Errno::EINVAL, "MAP from half a page into the BO")?;
    vm.is_free(0)
}

fn zero_range_is_einval(env: &Env) -> Result<(), String> {
    let vm = setup(env, 4)?;
    expect_errno(vm.ctx.map(&vm.bo, 0, vm.at(0), 0, RW), Errno::EINVAL, "MAP of 0 bytes")?;
    expect_errno(vm.ctx.unmap(vm.at(0), 0), Errno::EINVAL, "UNMAP of 0 bytes")
}

fn range_past_the_end_of_the_bo_is_einval(env: &Env) -> Result<(), String> {
    let vm = setup(env, 4)?;
    let p = vm.page;
    expect_errno(vm.ctx.map(&vm.bo, 3 * p, vm.at(0), 2 * p, RW), Errno::EINVAL, "MAP one page past the BO")?;
    expect_errno(vm.ctx.map(&vm.bo, 4 * p, vm.at(0), p, RW), Errno::EINVAL, "MAP from the BO's end")?;
    expect_errno(vm.ctx.map(&vm.bo, 0, vm.at(0), 5 * p, RW), Errno::EINVAL, "MAP larger than the BO")?;
    vm.is_free(0)
}

fn va_below_the_va_range_is_einval(env: &Env) -> Result<(), String> {
    let vm = setup(env, 2)?;
    let v = env.dev.va_range().ctx("VA_RANGE")?;
    // A range starting at 0 has nothing below it: passes vacuously.
    let Some(below) = align_down(v.start, vm.page).checked_sub(vm.page) else { return Ok(()) };
    expect_errno(vm.ctx.map(&vm.bo, 0, below, vm.page, RW), Errno::EINVAL, "MAP below the VA range")?;
    expect_errno(vm.ctx.map(&vm.bo, 0, below, 2 * vm.page, RW), Errno::EINVAL, "MAP across the VA start")
}

fn va_past_the_va_range_is_einval(env: &Env) -> Result<(), String> {
    let vm = setup(env, 2)?;
    let v = env.dev.va_range().ctx("VA_RANGE")?;
    // A range reaching the top of the address space has nothing past it: passes vacuously.
    let Some(past) = align_up(v.end, vm.page).filter(|p| p.checked_add(vm.page).is_some()) else { return Ok(()) };
    expect_errno(vm.ctx.map(&vm.bo, 0, past, vm.page, RW), Errno::EINVAL, "MAP past the VA range")?;
    expect_errno(vm.ctx.unmap(past, vm.page), Errno::EINVAL, "UNMAP past the VA range")
}

fn va_in_the_reserved_range_is_einval(env: &Env) -> Result<(), String> {
    let vm = setup(env, 2)?;
    let v = env.dev.va_range().ctx("VA_RANGE")?;
    if v.reserved_start >= v.reserved_end {
        return Ok(()); // the device reserves nothing: passes vacuously
    }
    if let Some(r) = align_up(v.reserved_start, vm.page).filter(|r| *r < v.reserved_end) {
        expect_errno(vm.ctx.map(&vm.bo, 0, r, vm.page, RW), Errno::EINVAL, "MAP inside the reserved range")?;
    }
    let across = align_down(v.reserved_start, vm.page).checked_sub(vm.page).filter(|a| *a >= v.start);
    if let Some(a) = across {
        expect_errno(vm.ctx.map(&vm.bo, 0, a, 2 * vm.page, RW), Errno::EINVAL, "MAP across the reserved start")?;
    }
    Ok(())
}

fn va_plus_range_wrapping_is_einval(env: &Env) -> Result<(), String> {
    let vm = setup(env, 2)?;
    let top = align_down(u64::MAX, vm.page);
    expect_errno(vm.ctx.unmap(top, 2 * vm.page), Errno::EINVAL, "UNMAP wrapping past 2^64")?;
    expect_errno(vm.ctx.map(&vm.bo, 0, top, 2 * vm.page, RW), Errno::EINVAL, "MAP wrapping past 2^64")
}

fn map_without_permissions_is_einval(env: &Env) -> Result<(), String> {
    let vm = setup(env, 4)?;
    expect_errno(
        vm.ctx.map(&vm.bo, 0, vm.at(0), vm.page, VmBindFlags::empty()),
        Errno::EINVAL,
        "MAP with no permission",
    )?;
    vm.is_free(0)
}

fn any_permission_set_is_accepted(env: &Env) -> Result<(), String> {
    let vm = setup(env, 1)?;
    let (r, w, x) = (VmBindFlags::READ, VmBindFlags::WRITE, VmBindFlags::EXEC);
    for (n, perms) in [r, w, x, r | w, r | x, r | w | x].into_iter().enumerate() {
        vm.ctx.map(&vm.bo, 0, vm.at(n as u64), vm.page, perms).ctx(&format!("MAP with {perms:?}"))?;
        vm.is_mapped(n as u64)?;
    }
    Ok(())
}

fn unmap_with_a_handle_flags_or_bo_offset_is_einval(env: &Env) -> Result<(), String> {
    let vm = setup(env, 4)?;
    vm.map(0, 1).ctx("MAP")?;
    let h = vm.bo.handle().get();
    for (handle, flags, bo_offset) in [(h, 0, 0), (0, VmBindFlags::READ.bits(), 0), (0, 0, vm.page)] {
        let op = sys::accel_vm_bind_op { handle, flags, bo_offset, ..unmap_op(vm.at(0), vm.page) };
        expect_errno(
            vm.ctx.bind(&[op]),
            Errno::EINVAL,
            &format!("UNMAP with handle {handle} flags {flags} bo_offset {bo_offset}"),
        )?;
    }
    vm.is_mapped(0) // nothing was unmapped
}

fn unknown_op_is_einval(env: &Env) -> Result<(), String> {
    let vm = setup(env, 4)?;
    for code in [2, 9, u32::MAX] {
        let op = sys::accel_vm_bind_op { op: code, ..vm.op(0, 0, 1) };
        expect_errno(vm.ctx.bind(&[op]), Errno::EINVAL, &format!("op {code}"))?;
    }
    vm.is_free(0)
}

fn map_of_an_unknown_bo_is_enoent(env: &Env) -> Result<(), String> {
    let vm = setup(env, 4)?;
    let gone = env.dev.create_bo(vm.page, vm.region, BoFlags::empty()).ctx("BO_CREATE")?;
    let op = map_op(&gone, 0, vm.at(0), vm.page, RW);
    drop(gone); // BO_CLOSE: the op now names a stale handle
    expect_errno(vm.ctx.bind(&[op]), Errno::ENOENT, "MAP of a closed BO handle")?;
    vm.is_free(0)
}

fn bind_on_an_unknown_context_is_enoent(env: &Env) -> Result<(), String> {
    let vm = setup(env, 4)?;
    let gone = ctx_create_raw(&env.dev).ctx("CONTEXT_CREATE")?;
    ctx_destroy_raw(&env.dev, gone).ctx("CONTEXT_DESTROY")?;
    expect_errno(bind_raw(&env.dev, gone, &[vm.op(0, 0, 1)], &[], 0), Errno::ENOENT, "VM_BIND on a destroyed context")
}

fn bind_without_ops_is_einval(env: &Env) -> Result<(), String> {
    let vm = setup(env, 1)?;
    expect_errno(vm.ctx.bind(&[]), Errno::EINVAL, "VM_BIND with num_ops 0")
}

fn bind_flags_must_be_zero(env: &Env) -> Result<(), String> {
    let vm = setup(env, 4)?;
    expect_errno(bind_raw(&env.dev, vm.ctx.id().get(), &[vm.op(0, 0, 1)], &[], 1), Errno::EINVAL, "VM_BIND flags 1")?;
    vm.is_free(0)
}

// ------------------------------------------------------------------ semantics

fn a_failing_op_applies_nothing(env: &Env) -> Result<(), String> {
    let vm = setup(env, 4)?;
    vm.map(6, 1).ctx("MAP")?;
    // The last op overlaps the second: EEXIST, and none of the earlier ops stays applied.
    let ops = [unmap_op(vm.at(6), vm.page), vm.op(0, 0, 2), vm.op(0, 3, 1), vm.op(0, 1, 1)];
    expect_errno(vm.ctx.bind(&ops), Errno::EEXIST, "MAP over an earlier op of the call")?;
    vm.is_mapped(6)?; // the UNMAP was rolled back
    vm.is_free(0)?;
    vm.is_free(1)?;
    vm.is_free(3)
}

fn a_mapping_keeps_its_bo_alive(env: &Env) -> Result<(), String> {
    let vm = setup(env, 1)?;
    let bo = env.dev.create_bo(4 * vm.page, vm.region, BoFlags::empty()).ctx("BO_CREATE")?;
    let (h, size) = (bo.handle().get(), bo.size());
    vm.ctx.map(&bo, 0, vm.at(0), size, RW).ctx("MAP")?;
    let before = available(env, vm.region)?;
    drop(bo); // BO_CLOSE: the handle goes, the mapping keeps the BO
    let mut info = sys::accel_bo_info { handle: h, ..Default::default() };
    expect_errno(env.dev.ioctl("BO_INFO", sys::ACCEL_IOCTL_BO_INFO, &mut info), Errno::ENOENT, "BO_INFO after close")?;
    ensure!(available(env, vm.region)? == before, "the mapped BO's memory was freed at BO_CLOSE");
    vm.is_mapped(0)?;
    vm.ctx.unmap(vm.at(1), vm.page).ctx("UNMAP splitting the closed BO's mapping")?;
    vm.is_mapped(3)?;
    vm.ctx.unmap(vm.at(0), 4 * vm.page).ctx("UNMAP of the rest")?;
    let after = available(env, vm.region)?;
    ensure!(after == before + size, "available {before} -> {after} after the last UNMAP of a {size}-byte BO");
    Ok(())
}

fn one_bo_range_at_two_vas(env: &Env) -> Result<(), String> {
    let vm = setup(env, 2)?;
    vm.ctx.bind(&[vm.op(0, 0, 2), vm.op(0, 4, 2)]).ctx("the same BO range at two VAs")?;
    vm.is_mapped(1)?;
    vm.is_mapped(5)?;
    vm.is_free(2)
}

// ------------------------------------------------------------------ contexts

fn context_create_and_destroy(env: &Env) -> Result<(), String> {
    let vm = setup(env, 1)?;
    let id = ctx_create_raw(&env.dev).ctx("CONTEXT_CREATE")?;
    ensure!(id != 0, "CONTEXT_CREATE returned ctx_id 0");
    ensure!(id != vm.ctx.id().get(), "two live contexts share ctx_id {id}");
    bind_raw(&env.dev, id, &[vm.op(0, 0, 1)], &[], 0).ctx("VM_BIND in the new context")?;
    ctx_destroy_raw(&env.dev, id).ctx("CONTEXT_DESTROY")?;
    expect_errno(bind_raw(&env.dev, id, &[vm.op(0, 0, 1)], &[], 0), Errno::ENOENT, "VM_BIND after destroy")
}

fn destroy_of_a_destroyed_context_is_enoent(env: &Env) -> Result<(), String> {
    let id = ctx_create_raw(&env.dev).ctx("CONTEXT_CREATE")?;
    ctx_destroy_raw(&env.dev, id).ctx("first CONTEXT_DESTROY")?;
    expect_errno(ctx_destroy_raw(&env.dev, id), Errno::ENOENT, "second CONTEXT_DESTROY")?;
    let next = ctx_create_raw(&env.dev).ctx("CONTEXT_CREATE")?;
    ensure!(next != id, "ctx_id {id} was reused after its destroy");
    ctx_destroy_raw(&env.dev, next).ctx("CONTEXT_DESTROY")
}

fn contexts_up_to_max_contexts_then_ebusy(env: &Env) -> Result<(), String> {
    let max = env.dev.limits().ctx("LIMITS")?.max_contexts;
    if max > 64 {
        return Ok(()); // only checked for small limits: passes vacuously
    }
    let mut held = (0..max)
        .map(|i| env.dev.create_context().ctx(&format!("context {} of {max}", i + 1)))
        .collect::<Result<Vec<_>, _>>()?;
    expect_errno(env.dev.create_context(), Errno::EBUSY, "context max_contexts + 1")?;
    expect_errno(env.open()?.create_context(), Errno::EBUSY, "the limit is per device: from another file")?;
    held.pop(); // CONTEXT_DESTROY frees a slot
    env.dev.create_context().ctx("CONTEXT_CREATE after a destroy")?;
    Ok(())
}

fn max_vm_bind_ops_in_one_call(env: &Env) -> Result<(), String> {
    let max = u64::from(env.dev.limits().ctx("LIMITS")?.max_vm_bind_ops);
    let vm = setup_span(env, 1, max + 1)?;
    let ops: Vec<_> = (0..max).map(|n| vm.op(0, n, 1)).collect();
    vm.ctx.bind(&ops).ctx(&format!("VM_BIND of {max} ops"))?;
    vm.is_mapped(0)?;
    vm.is_mapped(max - 1)?;
    vm.is_free(max)
}

// ------------------------------------------------------------------ syncs

fn binary_out_sync_is_signalled_on_return(env: &Env) -> Result<(), String> {
    let vm = setup(env, 1)?;
    let s = env.dev.create_syncobj(false, false).ctx("SYNCOBJ_CREATE")?;
    ensure!(s.query().ctx("SYNCOBJ_QUERY")?.0 == 0, "a new syncobj is already signalled");
    vm.ctx.bind_with_syncs(&[vm.op(0, 0, 1)], &[], &[(&s, 0)]).ctx("VM_BIND")?;
    let got = s.query().ctx("SYNCOBJ_QUERY")?;
    ensure!(got == (1, 0), "out-sync after VM_BIND returned: {got:?}, want (1, 0)");
    vm.is_mapped(0)
}

fn timeline_out_sync_point_is_signalled_on_return(env: &Env) -> Result<(), String> {
    let vm = setup(env, 1)?;
    let s = env.dev.create_syncobj(true, false).ctx("SYNCOBJ_CREATE")?;
    vm.ctx.bind_with_syncs(&[vm.op(0, 0, 1)], &[], &[(&s, 7)]).ctx("VM_BIND signalling point 7")?;
    let got = s.query().ctx("SYNCOBJ_QUERY")?;
    ensure!(got == (7, 0), "timeline after VM_BIND returned: {got:?}, want (7, 0)");
    vm.ctx.bind_with_syncs(&[unmap_op(vm.at(0), vm.page)], &[], &[(&s, 9)]).ctx("VM_BIND signalling point 9")?;
    let got = s.query().ctx("SYNCOBJ_QUERY")?;
    ensure!(got == (9, 0), "timeline after the second VM_BIND: {got:?}, want (9, 0)");
    vm.is_free(0)
}

fn signalled_in_sync_is_accepted(env: &Env) -> Result<(), String> {
    let vm = setup(env, 1)?;
    let s = env.dev.create_syncobj(false, true).ctx("SYNCOBJ_CREATE signalled")?;
    vm.ctx.bind_with_syncs(&[vm.op(0, 0, 1)], &[(&s, 0)], &[]).ctx("VM_BIND waiting on a signalled syncobj")?;
    vm.is_mapped(0)
}

fn in_sync_without_a_fence_is_einval(env: &Env) -> Result<(), String> {
    let vm = setup(env, 1)?;
    let s = env.dev.create_syncobj(false, false).ctx("SYNCOBJ_CREATE")?;
    expect_errno(vm.ctx.bind_with_syncs(&[vm.op(0, 0, 1)], &[(&s, 0)], &[]), Errno::EINVAL, "in-sync without a fence")?;
    vm.is_free(0)
}

fn unknown_sync_handle_is_enoent(env: &Env) -> Result<(), String> {
    let vm = setup(env, 1)?;
    let s = env.dev.create_syncobj(false, true).ctx("SYNCOBJ_CREATE")?;
    let gone = sys::accel_sync { handle: s.handle().get(), flags: 0, point: 0 };
    drop(s); // SYNCOBJ_DESTROY: a stale handle from here
    let got = bind_raw(&env.dev, vm.ctx.id().get(), &[vm.op(0, 0, 1)], &[gone], 0);
    expect_errno(got, Errno::ENOENT, "in-sync of a destroyed syncobj")?;
    vm.is_free(0)
}

fn binary_sync_with_a_point_is_einval(env: &Env) -> Result<(), String> {
    let vm = setup(env, 1)?;
    let s = env.dev.create_syncobj(false, true).ctx("SYNCOBJ_CREATE")?;
    let op = [vm.op(0, 0, 1)];
    expect_errno(vm.ctx.bind_with_syncs(&op, &[(&s, 3)], &[]), Errno::EINVAL, "binary in-sync with point 3")?;
    expect_errno(vm.ctx.bind_with_syncs(&op, &[], &[(&s, 3)]), Errno::EINVAL, "binary out-sync with point 3")?;
    vm.is_free(0)
}
