//! Area: memory — buffer objects in every region, their CPU mappings, and
//! export/import between files. Sizes, regions and limits come from the
//! device queries, never from one backend's values.

use super::{Ctx, cpu_region, ensure, expect_errno, tests};
use crate::{Area, Env, TestCase};
use accel_uapi::flags::{BoFlags, Caps};
use accel_uapi::{Errno, sys};
use std::collections::HashSet;
use std::os::fd::{AsFd, AsRawFd};

pub(crate) fn tests() -> Vec<TestCase> {
    let mut v = tests!(
        Area::Memory,
        Caps::MEMORY,
        [
            bo_create_in_every_region,
            bo_size_is_rounded_up_to_the_region_page,
            new_bo_content_is_zero,
            bo_info_reports_region_and_flags,
            bo_info_after_close_is_enoent,
            double_close_is_enoent,
            size_zero_is_einval,
            size_over_max_bo_size_is_e2big,
            unknown_region_is_einval,
            cpu_visible_on_a_non_cpu_visible_region_is_einval,
            unknown_flag_is_einval,
            mmap_write_then_read_round_trip,
            mmap_offset_is_stable,
            mmap_offset_without_cpu_visible_is_einval,
            two_mappings_see_the_same_bytes,
            a_cpu_mapping_keeps_the_bo_alive,
            creating_and_closing_64_bos_leaves_available_unchanged,
            handles_are_never_zero_nor_reused,
            available_drops_by_the_bo_size,
        ]
    );
    v.extend(tests!(
        Area::Memory,
        Caps::MEMORY.union(Caps::BO_SHARE),
        [
            export_import_shares_memory_between_files,
            import_reports_the_size_region_and_flags,
            importing_twice_returns_the_same_handle,
            importing_into_the_exporter_returns_its_handle,
            two_exports_name_the_same_bo,
            import_of_a_bad_fd_is_ebadf,
            import_of_a_non_export_fd_is_ebadf,
            export_of_an_unknown_handle_is_enoent,
            an_import_outlives_the_exporters_file,
            import_after_the_bo_is_gone_is_ebadf,
        ]
    ));
    v
}

// ------------------------------------------------------------------ helpers

fn regions(env: &Env) -> Result<Vec<sys::accel_memory_region>, String> {
    let r = env.dev.memory_regions().ctx("MEMORY_REGIONS")?;
    ensure!(!r.is_empty(), "the device reports no memory regions");
    Ok(r)
}

/// The smallest page size of a region: the BO granule.
fn page_of(r: &sys::accel_memory_region) -> u64 {
    1u64 << r.page_sizes.trailing_zeros().min(63)
}

fn cpu_visible(r: &sys::accel_memory_region) -> bool {
    r.flags & sys::ACCEL_MEM_REGION_CPU_VISIBLE != 0
}

fn region(env: &Env, id: u32) -> Result<sys::accel_memory_region, String> {
    regions(env)?.into_iter().find(|r| r.region_id == id).ok_or_else(|| format!("region {id} disappeared"))
}

/// A CPU-visible BO of `pages` pages of the CPU-visible region, and that page size.
fn cpu_bo(env: &Env, pages: u64) -> Result<(accel::Bo, u64), String> {
    let r = region(env, cpu_region(&env.dev)?)?;
    let page = page_of(&r);
    let bo = env.dev.create_bo(pages * page, r.region_id, BoFlags::CPU_VISIBLE).ctx("BO_CREATE")?;
    Ok((bo, page))
}

fn info_raw(dev: &accel::Device, handle: u32) -> accel::Result<sys::accel_bo_info> {
    let mut a = sys::accel_bo_info { handle, ..Default::default() };
    dev.ioctl("BO_INFO", sys::ACCEL_IOCTL_BO_INFO, &mut a).map(|()| a)
}

fn close_raw(dev: &accel::Device, handle: u32) -> accel::Result<()> {
    let mut a = sys::accel_bo_close { handle, pad: 0 };
    dev.ioctl("BO_CLOSE", sys::ACCEL_IOCTL_BO_CLOSE, &mut a)
}

fn create_raw(dev: &accel::Device, size: u64, region: u32, flags: u32) -> accel::Result<u32> {
    let mut a = sys::accel_bo_create { size, region, flags, ..Default::default() };
    dev.ioctl("BO_CREATE", sys::ACCEL_IOCTL_BO_CREATE, &mut a).map(|()| a.handle)
}

fn import_raw(dev: &accel::Device, fd: i32) -> accel::Result<sys::accel_bo_import> {
    let mut a = sys::accel_bo_import { fd, ..Default::default() };
    dev.ioctl("BO_IMPORT", sys::ACCEL_IOCTL_BO_IMPORT, &mut a).map(|()| a)
}

// ------------------------------------------------------------------ BO_CREATE / BO_INFO / BO_CLOSE

fn bo_create_in_every_region(env: &Env) -> Result<(), String> {
    for r in regions(env)? {
        let page = page_of(&r);
        let bo = env.dev.create_bo(page, r.region_id, BoFlags::empty()).ctx("BO_CREATE")?;
        let i = bo.info().ctx("BO_INFO")?;
        ensure!(i.region == r.region_id, "region {}: BO_INFO says region {}", r.region_id, i.region);
        ensure!(i.size == page, "region {}: {page}-byte BO reports size {}", r.region_id, i.size);
    }
    Ok(())
}

fn bo_size_is_rounded_up_to_the_region_page(env: &Env) -> Result<(), String> {
    let max = env.dev.limits().ctx("LIMITS")?.max_bo_size;
    for r in regions(env)? {
        let page = page_of(&r);
        if 2 * page > max {
            continue;
        }
        for (size, want) in [(1, page), (page - 1, page), (page + 1, 2 * page)] {
            let bo = env.dev.create_bo(size, r.region_id, BoFlags::empty()).ctx("BO_CREATE")?;
            let got = bo.info().ctx("BO_INFO")?.size;
            ensure!(got == want, "region {}: size {size} reported as {got}, want {want}", r.region_id);
        }
    }
    Ok(())
}

fn new_bo_content_is_zero(env: &Env) -> Result<(), String> {
    // The second round may get the memory the first one dirtied: it must still read zero.
    for round in 0..2 {
        let (bo, _) = cpu_bo(env, 4)?;
        let m = bo.map().ctx("map")?;
        let mut buf = vec![0xAAu8; m.len()];
        m.read(0, &mut buf).ctx("read")?;
        if let Some(at) = buf.iter().position(|b| *b != 0) {
            return Err(format!("round {round}: new BO byte {at} is {:#x}", buf[at]));
        }
        m.write(0, &vec![0x5A; m.len()]).ctx("dirty")?;
    }
    Ok(())
}

fn bo_info_reports_region_and_flags(env: &Env) -> Result<(), String> {
    for r in regions(env)? {
        let mut sets = vec![BoFlags::empty(), BoFlags::ZEROED];
        if cpu_visible(&r) {
            sets.extend([BoFlags::CPU_VISIBLE, BoFlags::CPU_VISIBLE | BoFlags::ZEROED]);
        }
        for flags in sets {
            let bo = env.dev.create_bo(page_of(&r), r.region_id, flags).ctx("BO_CREATE")?;
            let i = bo.info().ctx("BO_INFO")?;
            let want = (flags | BoFlags::ZEROED).bits();
            ensure!(
                i.flags == want,
                "region {} flags {flags:?}: BO_INFO flags {:#x}, want {want:#x}",
                r.region_id,
                i.flags
            );
            ensure!(
                i.region == r.region_id && i.pad == 0,
                "region {}: BO_INFO region {} pad {}",
                r.region_id,
                i.region,
                i.pad
            );
        }
    }
    Ok(())
}

fn bo_info_after_close_is_enoent(env: &Env) -> Result<(), String> {
    let bo = env.dev.create_bo(4096, cpu_region(&env.dev)?, BoFlags::empty()).ctx("BO_CREATE")?;
    let h = bo.handle().get();
    info_raw(&env.dev, h).ctx("BO_INFO before the close")?;
    drop(bo); // BO_CLOSE
    expect_errno(info_raw(&env.dev, h), Errno::ENOENT, "BO_INFO after BO_CLOSE")
}

fn double_close_is_enoent(env: &Env) -> Result<(), String> {
    let bo = env.dev.create_bo(4096, cpu_region(&env.dev)?, BoFlags::empty()).ctx("BO_CREATE")?;
    close_raw(&env.dev, bo.handle().get()).ctx("first BO_CLOSE")?;
    expect_errno(close_raw(&env.dev, bo.handle().get()), Errno::ENOENT, "second BO_CLOSE")
}

fn size_zero_is_einval(env: &Env) -> Result<(), String> {
    expect_errno(env.dev.create_bo(0, cpu_region(&env.dev)?, BoFlags::empty()), Errno::EINVAL, "size 0")
}

fn size_over_max_bo_size_is_e2big(env: &Env) -> Result<(), String> {
    let max = env.dev.limits().ctx("LIMITS")?.max_bo_size;
    if max == u64::MAX {
        return Ok(()); // nothing is over the limit: passes vacuously
    }
    for r in regions(env)? {
        expect_errno(env.dev.create_bo(max + 1, r.region_id, BoFlags::empty()), Errno::E2BIG, "max_bo_size + 1")?;
    }
    Ok(())
}

fn unknown_region_is_einval(env: &Env) -> Result<(), String> {
    let ids: HashSet<u32> = regions(env)?.iter().map(|r| r.region_id).collect();
    let unknown = (0..=u32::MAX).find(|id| !ids.contains(id)).ok_or("every region id is in use")?;
    expect_errno(
        env.dev.create_bo(4096, unknown, BoFlags::empty()),
        Errno::EINVAL,
        &format!("unknown region {unknown}"),
    )
}

fn cpu_visible_on_a_non_cpu_visible_region_is_einval(env: &Env) -> Result<(), String> {
    // A device whose regions are all CPU-visible has nothing to refuse: passes vacuously.
    for r in regions(env)?.iter().filter(|r| !cpu_visible(r)) {
        let got = env.dev.create_bo(page_of(r), r.region_id, BoFlags::CPU_VISIBLE);
        expect_errno(got, Errno::EINVAL, &format!("CPU_VISIBLE BO in region {}", r.region_id))?;
    }
    Ok(())
}

fn unknown_flag_is_einval(env: &Env) -> Result<(), String> {
    let region = cpu_region(&env.dev)?;
    for bit in (0..32).map(|n| 1u32 << n).filter(|b| b & BoFlags::all().bits() == 0) {
        expect_errno(create_raw(&env.dev, 4096, region, bit), Errno::EINVAL, &format!("flag {bit:#x}"))?;
    }
    Ok(())
}

// ------------------------------------------------------------------ CPU mappings

fn mmap_write_then_read_round_trip(env: &Env) -> Result<(), String> {
    let (bo, page) = cpu_bo(env, 2)?;
    let m = bo.map().ctx("map")?;
    ensure!(m.len() as u64 == bo.size(), "mapping of {} bytes for a {}-byte BO", m.len(), bo.size());
    let pattern: Vec<u8> = (0..64u8).map(|i| i.wrapping_mul(37) | 1).collect();
    let across = page as usize - 32; // spans the page boundary
    m.write(across, &pattern).ctx("write")?;
    m.write_u64(m.len() - 8, 0x0123_4567_89ab_cdef).ctx("write at the end")?;
    let mut back = vec![0u8; 64];
    m.read(across, &mut back).ctx("read")?;
    ensure!(back == pattern, "read back {back:?}, wrote {pattern:?}");
    ensure!(m.read_u64(m.len() - 8).ctx("read")? == 0x0123_4567_89ab_cdef, "last word lost");
    ensure!(m.read_u64(0).ctx("read")? == 0, "an unwritten word changed");
    Ok(())
}

fn mmap_offset_is_stable(env: &Env) -> Result<(), String> {
    let (a, _) = cpu_bo(env, 1)?;
    let (b, _) = cpu_bo(env, 1)?;
    let off = a.mmap_offset().ctx("BO_MMAP_OFFSET")?;
    let m = a.map().ctx("map")?;
    m.write_u64(0, 1).ctx("write")?;
    ensure!(a.mmap_offset().ctx("BO_MMAP_OFFSET")? == off, "the offset changed");
    ensure!(b.mmap_offset().ctx("BO_MMAP_OFFSET")? != off, "two BOs share an mmap offset");
    Ok(())
}

fn mmap_offset_without_cpu_visible_is_einval(env: &Env) -> Result<(), String> {
    let bo = env.dev.create_bo(4096, cpu_region(&env.dev)?, BoFlags::empty()).ctx("BO_CREATE")?;
    expect_errno(bo.mmap_offset(), Errno::EINVAL, "BO_MMAP_OFFSET without CPU_VISIBLE")
}

fn two_mappings_see_the_same_bytes(env: &Env) -> Result<(), String> {
    let (bo, page) = cpu_bo(env, 2)?;
    let (m1, m2) = (bo.map().ctx("map 1")?, bo.map().ctx("map 2")?);
    m1.write(16, b"through one").ctx("write 1")?;
    let mut b = [0u8; 11];
    m2.read(16, &mut b).ctx("read 2")?;
    ensure!(&b == b"through one", "mapping 2 read {b:?}");
    m2.write_u64(page as usize, 0xfeed).ctx("write 2")?;
    ensure!(m1.read_u64(page as usize).ctx("read 1")? == 0xfeed, "mapping 1 missed mapping 2's write");
    Ok(())
}

fn a_cpu_mapping_keeps_the_bo_alive(env: &Env) -> Result<(), String> {
    let (bo, _) = cpu_bo(env, 1)?;
    let h = bo.handle().get();
    let m = bo.map().ctx("map")?;
    m.write_u64(8, 0x600d).ctx("write")?;
    drop(bo); // BO_CLOSE: the handle is gone, the memory is not
    expect_errno(info_raw(&env.dev, h), Errno::ENOENT, "BO_INFO after BO_CLOSE")?;
    ensure!(m.read_u64(8).ctx("read after close")? == 0x600d, "the content changed after BO_CLOSE");
    m.write_u64(16, 0xbeef).ctx("write after close")?;
    ensure!(m.read_u64(16).ctx("read")? == 0xbeef, "write after close lost");
    Ok(())
}

// ------------------------------------------------------------------ accounting and handles

fn creating_and_closing_64_bos_leaves_available_unchanged(env: &Env) -> Result<(), String> {
    for r in regions(env)? {
        let page = page_of(&r);
        let before = region(env, r.region_id)?.available;
        let bos: Vec<accel::Bo> = (0..64)
            .map(|_| env.dev.create_bo(page, r.region_id, BoFlags::empty()).ctx("BO_CREATE"))
            .collect::<Result<_, _>>()?;
        let during = region(env, r.region_id)?.available;
        ensure!(during + 64 * page <= before, "region {}: 64 BOs took only {} bytes", r.region_id, before - during);
        drop(bos);
        let after = region(env, r.region_id)?.available;
        ensure!(after == before, "region {}: available {before} before, {after} after", r.region_id);
    }
    Ok(())
}

fn handles_are_never_zero_nor_reused(env: &Env) -> Result<(), String> {
    let region = cpu_region(&env.dev)?;
    let mut seen = HashSet::new();
    for _ in 0..32 {
        let h = create_raw(&env.dev, 4096, region, 0).ctx("BO_CREATE")?;
        ensure!(h != 0, "BO_CREATE returned handle 0");
        ensure!(seen.insert(h), "handle {h} was reused after its close");
        close_raw(&env.dev, h).ctx("BO_CLOSE")?;
    }
    Ok(())
}

fn available_drops_by_the_bo_size(env: &Env) -> Result<(), String> {
    for r in regions(env)? {
        let before = region(env, r.region_id)?.available;
        let bo = env.dev.create_bo(4 * page_of(&r), r.region_id, BoFlags::empty()).ctx("BO_CREATE")?;
        let during = region(env, r.region_id)?.available;
        let dropped = before.checked_sub(during);
        ensure!(
            dropped == Some(bo.size()),
            "region {}: available {before} -> {during}, BO is {}",
            r.region_id,
            bo.size()
        );
        drop(bo);
        let after = region(env, r.region_id)?.available;
        ensure!(after == before, "region {}: available {after} after the close, {before} before", r.region_id);
    }
    Ok(())
}

// ------------------------------------------------------------------ export / import

fn export_import_shares_memory_between_files(env: &Env) -> Result<(), String> {
    let other = env.open()?;
    let (bo, page) = cpu_bo(env, 2)?;
    let fd = bo.export().ctx("BO_EXPORT")?;
    let theirs = other.import_bo(fd.as_fd()).ctx("BO_IMPORT")?;
    let (mine_m, their_m) = (bo.map().ctx("map mine")?, theirs.map().ctx("map theirs")?);
    mine_m.write(8, b"shared").ctx("write")?;
    let mut b = [0u8; 6];
    their_m.read(8, &mut b).ctx("read")?;
    ensure!(&b == b"shared", "the importer read {b:?}");
    their_m.write_u64(page as usize, 0x1234).ctx("write back")?;
    ensure!(mine_m.read_u64(page as usize).ctx("read")? == 0x1234, "the exporter missed the importer's write");
    Ok(())
}

fn import_reports_the_size_region_and_flags(env: &Env) -> Result<(), String> {
    let other = env.open()?;
    let (bo, _) = cpu_bo(env, 3)?;
    let fd = bo.export().ctx("BO_EXPORT")?;
    let a = import_raw(&other, fd.as_raw_fd()).ctx("BO_IMPORT")?;
    ensure!(a.size == bo.size(), "import size {}, BO size {}", a.size, bo.size());
    let (mine, theirs) = (bo.info().ctx("BO_INFO")?, info_raw(&other, a.handle).ctx("BO_INFO of the import")?);
    ensure!((theirs.size, theirs.region) == (mine.size, mine.region), "import {theirs:?} != export {mine:?}");
    ensure!(theirs.flags == mine.flags, "import flags {:#x} != {:#x}", theirs.flags, mine.flags);
    Ok(())
}

fn importing_twice_returns_the_same_handle(env: &Env) -> Result<(), String> {
    let other = env.open()?;
    let (bo, _) = cpu_bo(env, 1)?;
    let fd = bo.export().ctx("BO_EXPORT")?;
    let first = import_raw(&other, fd.as_raw_fd()).ctx("first BO_IMPORT")?.handle;
    let second = import_raw(&other, fd.as_raw_fd()).ctx("second BO_IMPORT")?.handle;
    ensure!(first == second, "two imports gave handles {first} and {second}");
    close_raw(&other, first).ctx("BO_CLOSE")?;
    expect_errno(close_raw(&other, second), Errno::ENOENT, "the one handle closed once already")
}

fn importing_into_the_exporter_returns_its_handle(env: &Env) -> Result<(), String> {
    let (bo, _) = cpu_bo(env, 1)?;
    let fd = bo.export().ctx("BO_EXPORT")?;
    let h = import_raw(&env.dev, fd.as_raw_fd()).ctx("BO_IMPORT into the exporter")?.handle;
    ensure!(h == bo.handle().get(), "import into the exporter gave {h}, its handle is {}", bo.handle().get());
    Ok(())
}

fn two_exports_name_the_same_bo(env: &Env) -> Result<(), String> {
    let other = env.open()?;
    let (bo, _) = cpu_bo(env, 1)?;
    let (fd1, fd2) = (bo.export().ctx("BO_EXPORT 1")?, bo.export().ctx("BO_EXPORT 2")?);
    let a = other.import_bo(fd1.as_fd()).ctx("import 1")?;
    let b = other.import_bo(fd2.as_fd()).ctx("import 2")?;
    ensure!(a.handle() == b.handle(), "two exports of one BO imported as {:?} and {:?}", a.handle(), b.handle());
    Ok(())
}

fn import_of_a_bad_fd_is_ebadf(env: &Env) -> Result<(), String> {
    expect_errno(import_raw(&env.dev, -1), Errno::EBADF, "BO_IMPORT of fd -1")
}

fn import_of_a_non_export_fd_is_ebadf(env: &Env) -> Result<(), String> {
    let f = std::fs::File::open("/proc/self/stat").map_err(|e| format!("open /proc/self/stat: {e}"))?;
    expect_errno(env.dev.import_bo(f.as_fd()), Errno::EBADF, "BO_IMPORT of /proc/self/stat")
}

fn export_of_an_unknown_handle_is_enoent(env: &Env) -> Result<(), String> {
    let bo = env.dev.create_bo(4096, cpu_region(&env.dev)?, BoFlags::empty()).ctx("BO_CREATE")?;
    let h = bo.handle().get();
    drop(bo);
    let mut a = sys::accel_bo_export { handle: h, ..Default::default() };
    expect_errno(
        env.dev.ioctl("BO_EXPORT", sys::ACCEL_IOCTL_BO_EXPORT, &mut a),
        Errno::ENOENT,
        "export of a closed handle",
    )
}

fn an_import_outlives_the_exporters_file(env: &Env) -> Result<(), String> {
    let exporter = env.open()?;
    let r = region(env, cpu_region(&env.dev)?)?;
    let bo = exporter.create_bo(page_of(&r), r.region_id, BoFlags::CPU_VISIBLE).ctx("BO_CREATE")?;
    bo.map().ctx("map")?.write_u64(0, 0xfeed_f00d).ctx("write")?;
    let fd = bo.export().ctx("BO_EXPORT")?;
    let mine = env.dev.import_bo(fd.as_fd()).ctx("BO_IMPORT")?;
    drop((bo, fd));
    drop(exporter); // closes the exporter's file and everything in it
    mine.info().ctx("BO_INFO of the import")?;
    ensure!(mine.map().ctx("map")?.read_u64(0).ctx("read")? == 0xfeed_f00d, "content lost with the exporter");
    Ok(())
}

fn import_after_the_bo_is_gone_is_ebadf(env: &Env) -> Result<(), String> {
    let other = env.open()?;
    let (bo, _) = cpu_bo(env, 1)?;
    let fd = bo.export().ctx("BO_EXPORT")?;
    drop(bo); // the last reference: the BO is freed, the descriptor stays open
    expect_errno(other.import_bo(fd.as_fd()), Errno::EBADF, "import of a freed BO's export")
}
