//! The fabric verbs ioctls (GET_ASYNC_EVENT 0x02, 0x50..=0x5C), as the
//! dispatcher's handlers. Objects live in [`crate::fabric::verbs`].

use crate::dispatch::Call;
use crate::error::{Error, Result};
use crate::fabric::verbs::QpCaps;
use crate::file::File;
use accel_uapi::flags::{MrAccess, QpAttrMask, QpCreateFlags};
use accel_uapi::sys;
use accel_uapi::types::QpType;
use zerocopy::{Immutable, IntoBytes};

/// Handle one verbs ioctl.
pub(crate) fn handle(file: &File, call: &mut Call<'_>) -> Result<()> {
    match call.desc().nr {
        0x02 => {
            let mut a: sys::accel_async_event = call.arg()?;
            let (ty, h) = file.async_event()?;
            a.event_type = ty as u32;
            a.handle = h;
            call.set_arg(&a);
            Ok(())
        }
        0x50 => {
            let mut a: sys::accel_pd_alloc = call.arg()?;
            a.handle = file.pd_alloc()?;
            call.set_arg(&a);
            Ok(())
        }
        0x51 => {
            let a: sys::accel_pd_free = call.arg()?;
            file.pd_free(a.handle)
        }
        0x52 => {
            let mut a: sys::accel_mr_reg = call.arg()?;
            let access = MrAccess::from_bits_retain(a.access);
            (a.handle, a.lkey, a.rkey) =
                file.mr_reg(a.pd_handle, a.bo_handle, a.bo_offset, a.length, a.iova, access)?;
            call.set_arg(&a);
            Ok(())
        }
        0x53 => {
            let a: sys::accel_mr_dereg = call.arg()?;
            file.mr_dereg(a.handle)
        }
        0x54 => {
            let mut a: sys::accel_cq_create = call.arg()?;
            (a.handle, a.cqe) = file.cq_create(a.cqe)?;
            call.set_arg(&a);
            Ok(())
        }
        0x55 => {
            let a: sys::accel_cq_destroy = call.arg()?;
            file.cq_destroy(a.handle)
        }
        0x56 => {
            let mut a: sys::accel_cq_poll = call.arg()?;
            let cq = file.cq(a.handle)?;
            let mut n = 0;
            call.output_with(0, |out| {
                n = cq.poll_each(a.num_entries as usize, |wc| out.extend_from_slice(wc.as_bytes()))?;
                Ok(())
            })?;
            a.count = n as u32;
            call.set_arg(&a);
            Ok(())
        }
        0x57 => {
            let mut a: sys::accel_qp_create = call.arg()?;
            if QpType::try_from(a.qp_type) != Ok(QpType::Rc) {
                return Err(Error::invalid(format!("qp_type {}: only ACCEL_QPT_RC", a.qp_type)));
            }
            let caps = QpCaps {
                max_send_wr: a.max_send_wr,
                max_recv_wr: a.max_recv_wr,
                max_send_sge: a.max_send_sge,
                max_recv_sge: a.max_recv_sge,
                sig_all: QpCreateFlags::from_bits_retain(a.flags).contains(QpCreateFlags::SIG_ALL),
            };
            (a.handle, a.qp_num) = file.qp_create(a.pd_handle, a.send_cq, a.recv_cq, caps, a.port_num)?;
            call.set_arg(&a);
            Ok(())
        }
        0x58 => {
            let a: sys::accel_qp_modify = call.arg()?;
            file.qp(a.handle)?.modify(QpAttrMask::from_bits_retain(a.attr_mask), &a.attr)
        }
        0x59 => {
            let mut a: sys::accel_qp_query = call.arg()?;
            a.attr = file.qp(a.handle)?.query();
            call.set_arg(&a);
            Ok(())
        }
        0x5A => {
            let a: sys::accel_qp_destroy = call.arg()?;
            file.qp_destroy(a.handle)
        }
        0x5B => {
            let a: sys::accel_post_send = call.arg()?;
            let qp = file.qp(a.handle)?;
            let checked = qp.check_sends(call.input_ref(0)?, call.input_ref(1)?);
            let posts = report_bad_wr(call, a, |a| &mut a.bad_wr, checked)?;
            qp.post_send(posts)
        }
        0x5C => {
            let a: sys::accel_post_recv = call.arg()?;
            let qp = file.qp(a.handle)?;
            let checked = qp.check_recvs(call.input_ref(0)?, call.input_ref(1)?);
            let posts = report_bad_wr(call, a, |a| &mut a.bad_wr, checked)?;
            qp.post_recv(posts)
        }
        _ => Err(Error::NotSupported(format!("{} is not implemented by this core", call.desc().name))),
    }
}

/// The WRs `checked` accepted, or its error. Either way `bad_wr` (the index
/// of the first rejected WR, 0 when none was) reaches the caller: the
/// struct is copied back even on failure.
fn report_bad_wr<A: IntoBytes + Immutable, T>(
    call: &mut Call<'_>,
    mut a: A,
    bad_wr: impl Fn(&mut A) -> &mut u32,
    checked: std::result::Result<T, (usize, Error)>,
) -> Result<T> {
    call.copy_back_on_error = true;
    *bad_wr(&mut a) = match &checked {
        Ok(_) => 0,
        Err((i, _)) => *i as u32,
    };
    call.set_arg(&a);
    checked.map_err(|(_, e)| e)
}
