//! The syncobj ioctls (0x40..=0x49), as the dispatcher's handlers. Every
//! handle of an array is resolved (ENOENT) and every point checked (EINVAL)
//! before anything changes.

use crate::dispatch::Call;
use crate::error::{Error, Result};
use crate::fence::{deadline_from_monotonic_ns, wait_many};
use crate::file::File;
use crate::syncobj::Syncobj;
use accel_uapi::flags::{Caps, SyncobjCreateFlags, SyncobjWaitFlags};
use accel_uapi::sys;
use std::os::fd::IntoRawFd;
use std::sync::Arc;

fn resolve(file: &File, handles: &[u32]) -> Result<Vec<Arc<Syncobj>>> {
    if handles.is_empty() {
        return Err(Error::invalid("no syncobj handles"));
    }
    handles.iter().map(|h| file.syncobj(*h)).collect()
}

/// Handle one syncobj ioctl.
pub(crate) fn handle(file: &File, call: &mut Call<'_>) -> Result<()> {
    match call.desc().nr {
        0x40 => {
            let mut a: sys::accel_syncobj_create = call.arg()?;
            let f = SyncobjCreateFlags::from_bits_retain(a.flags);
            if f.contains(SyncobjCreateFlags::TIMELINE) && !call.device().caps().contains(Caps::SYNCOBJ_TIMELINE) {
                return Err(Error::NotSupported("timeline syncobjs".into()));
            }
            if f.contains(SyncobjCreateFlags::TIMELINE | SyncobjCreateFlags::SIGNALED) {
                return Err(Error::invalid("a timeline syncobj cannot be created signalled (its payload starts at 0)"));
            }
            a.handle = file
                .syncobj_create(f.contains(SyncobjCreateFlags::TIMELINE), f.contains(SyncobjCreateFlags::SIGNALED))?;
            call.set_arg(&a);
            Ok(())
        }
        0x41 => {
            let a: sys::accel_syncobj_destroy = call.arg()?;
            file.syncobj_destroy(a.handle)
        }
        0x42 => {
            let mut a: sys::accel_syncobj_wait = call.arg()?;
            let handles: Vec<u32> = call.input(0)?;
            let objs = resolve(file, &handles)?;
            let points: Vec<u64> = if a.points_ptr == 0 { vec![0; objs.len()] } else { call.input(1)? };
            let flags = SyncobjWaitFlags::from_bits_retain(a.flags);
            let wfs = flags.contains(SyncobjWaitFlags::WAIT_FOR_SUBMIT);
            let fences = objs.iter().zip(&points).map(|(o, p)| o.wait_fence(*p, wfs)).collect::<Result<Vec<_>>>()?;
            let deadline = deadline_from_monotonic_ns(a.timeout_ns);
            let first = wait_many(&fences, flags.contains(SyncobjWaitFlags::ALL), deadline)
                .map_err(|_| Error::TimedOut(format!("waiting on {} syncobjs", fences.len())))?;
            a.first_signaled = first;
            call.set_arg(&a);
            Ok(())
        }
        0x43 | 0x44 => {
            let handles: Vec<u32> = call.input(0)?;
            let objs = resolve(file, &handles)?;
            if objs.iter().any(|o| o.is_timeline()) {
                return Err(Error::invalid("SIGNAL/RESET take binary syncobjs"));
            }
            for o in objs {
                if call.desc().nr == 0x43 { o.signal()? } else { o.reset()? }
            }
            Ok(())
        }
        0x45 => {
            let handles: Vec<u32> = call.input(0)?;
            let points: Vec<u64> = call.input(1)?;
            let objs = resolve(file, &handles)?;
            if points.len() != objs.len() {
                return Err(Error::Fault { addr: 0, len: 0 });
            }
            for (i, (o, p)) in objs.iter().zip(&points).enumerate() {
                if !o.is_timeline() {
                    return Err(Error::invalid(format!("handles[{i}] is not a timeline syncobj")));
                }
                o.check_install(*p)?;
                if objs[..i].iter().any(|x| Arc::ptr_eq(x, o)) {
                    return Err(Error::invalid(format!("handles[{i}]: syncobj listed twice")));
                }
            }
            for (o, p) in objs.iter().zip(points) {
                o.timeline_signal(p)?;
            }
            Ok(())
        }
        0x46 => {
            let a: sys::accel_syncobj_query = call.arg()?;
            let handles: Vec<u32> = call.input(0)?;
            let objs = resolve(file, &handles)?;
            let (points, status): (Vec<u64>, Vec<i32>) = objs.iter().map(|o| o.query()).unzip();
            call.output(1, &points);
            if a.status_ptr != 0 {
                call.output(2, &status);
            }
            Ok(())
        }
        0x47 => {
            let a: sys::accel_syncobj_transfer = call.arg()?;
            let (src, dst) = (file.syncobj(a.src_handle)?, file.syncobj(a.dst_handle)?);
            dst.check_install(a.dst_point)?;
            let fence = src.wait_fence(a.src_point, false)?;
            dst.install(a.dst_point, fence).map(|_| ())
        }
        0x48 => {
            let mut a: sys::accel_syncobj_export = call.arg()?;
            a.fd = file.syncobj_export(a.handle)?.into_raw_fd();
            call.set_arg(&a);
            Ok(())
        }
        0x49 => {
            let mut a: sys::accel_syncobj_import = call.arg()?;
            a.handle = file.syncobj_import(a.fd)?;
            call.set_arg(&a);
            Ok(())
        }
        _ => Err(Error::NotSupported(format!("{} is not implemented by this core", call.desc().name))),
    }
}
