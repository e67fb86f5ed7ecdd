//! Random input through the one dispatcher: no panic, only documented
//! errnos, and every object released afterwards. Deterministic (seeded).
//!
//! User memory is simulated ([`FakeMemory`]): a few regions of random bytes at
//! fixed addresses; anything else is EFAULT. Blocking is avoided on purpose
//! (waits poll, SUBMIT never blocks, VM_BIND has no in-syncs) so the run is
//! bounded; those paths have their own tests.

mod common;
use accel_core::UserMemory;
use accel_uapi::ioctl::{self, Dir, IOCTLS};
use accel_uapi::{Errno, sys};
use common::*;
use parking_lot::Mutex;

/// xorshift64*: small, deterministic, good enough to cover inputs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

const REGION: u64 = 0x1000_0000;
const REGION_LEN: usize = 64 * 1024;
const REGIONS: u64 = 4;

struct FakeMemory {
    regions: Mutex<Vec<Vec<u8>>>,
}

impl FakeMemory {
    fn new(rng: &mut Rng) -> FakeMemory {
        let regions = (0..REGIONS)
            .map(|_| {
                let mut v = vec![0u8; REGION_LEN];
                for w in v.chunks_exact_mut(4) {
                    w.copy_from_slice(&word(rng).to_ne_bytes());
                }
                v
            })
            .collect();
        FakeMemory { regions: Mutex::new(regions) }
    }

    fn locate(&self, addr: u64, len: usize) -> Result<(usize, usize), Errno> {
        let i = addr.checked_sub(REGION).ok_or(Errno::EFAULT)? / (1 << 24);
        let off = (addr - REGION - i * (1 << 24)) as usize;
        if i >= REGIONS || off.checked_add(len).is_none_or(|e| e > REGION_LEN) {
            return Err(Errno::EFAULT);
        }
        Ok((i as usize, off))
    }
}

impl UserMemory for FakeMemory {
    fn copy_in(&self, addr: u64, dst: &mut [u8]) -> Result<(), Errno> {
        let (i, off) = self.locate(addr, dst.len())?;
        dst.copy_from_slice(&self.regions.lock()[i][off..off + dst.len()]);
        Ok(())
    }
    fn copy_out(&self, addr: u64, src: &[u8]) -> Result<(), Errno> {
        let (i, off) = self.locate(addr, src.len())?;
        self.regions.lock()[i][off..off + src.len()].copy_from_slice(src);
        Ok(())
    }
    fn check_writable(&self, addr: u64, len: usize) -> Result<(), Errno> {
        self.locate(addr, len).map(|_| ())
    }
}

const DOCUMENTED: &[Errno] = &[
    Errno::EPERM,
    Errno::ENOENT,
    Errno::EIO,
    Errno::E2BIG,
    Errno::EBADF,
    Errno::EAGAIN,
    Errno::ENOMEM,
    Errno::EFAULT,
    Errno::EBUSY,
    Errno::EEXIST,
    Errno::EINVAL,
    Errno::ENOTTY,
    Errno::ENOSPC,
    Errno::EOVERFLOW,
    Errno::EOPNOTSUPP,
    Errno::ETIMEDOUT,
];

/// A 32-bit word that is mostly 0 or a small value (a handle, a count, an
/// enum, a flag), sometimes page-sized, rarely anything.
fn word(rng: &mut Rng) -> u32 {
    match rng.below(20) {
        0..=9 => 0,
        10..=15 => rng.below(5) as u32,
        16..=18 => (rng.below(4) as u32) << 12,
        _ => rng.next() as u32,
    }
}

/// A struct for `desc` with plausible fields: pads usually zero, flags
/// usually valid, pointers usually into the fake user memory.
fn arg_for(rng: &mut Rng, desc: &ioctl::IoctlDesc) -> Vec<u8> {
    let mut b = vec![0u8; desc.arg.size];
    for w in b.chunks_exact_mut(4) {
        w.copy_from_slice(&word(rng).to_ne_bytes());
    }
    if rng.below(8) != 0 {
        for z in desc.arg.zero {
            b[z.offset..z.offset + z.size].fill(0);
        }
        for f in desc.arg.flags {
            let v = u32::from_ne_bytes(b[f.offset..f.offset + 4].try_into().unwrap()) & f.valid;
            b[f.offset..f.offset + 4].copy_from_slice(&v.to_ne_bytes());
        }
    }
    for p in desc.ptrs {
        let ptr = match rng.below(6) {
            0 => 0,
            1 => rng.next(),
            _ => REGION + rng.below(REGIONS) * (1 << 24) + rng.below(REGION_LEN as u64),
        };
        b[p.offset..p.offset + 8].copy_from_slice(&ptr.to_ne_bytes());
        let count = if rng.below(8) == 0 { rng.next() as u32 } else { rng.below(6) as u32 };
        b[p.count_offset..p.count_offset + 4].copy_from_slice(&count.to_ne_bytes());
    }
    // Keep the run bounded: never block, never wait for long.
    match desc.nr {
        0x32 => b[4..8].copy_from_slice(&0u32.to_ne_bytes()), // SUBMIT flags: no BLOCK
        0x42 => b[16..24].copy_from_slice(&0i64.to_ne_bytes()), // SYNCOBJ_WAIT: poll
        0x26 => b[16..20].copy_from_slice(&0u32.to_ne_bytes()), // VM_BIND: no in-syncs
        _ => {}
    }
    b
}

#[test]
fn random_ioctls_never_panic_and_release_everything() {
    let rig = Rig::new();
    let mut rng = Rng(0x00ac_ce11_5eed_0001);
    let mem = FakeMemory::new(&mut rng);
    let mut clients = vec![rig.open(), rig.open()];
    let mut outcomes = std::collections::BTreeMap::<&'static str, (u64, u64)>::new();
    for i in 0..60_000u64 {
        if i % 5_000 == 4_999 {
            // Close one file mid-run and open a new one.
            let k = rng.below(clients.len() as u64) as usize;
            clients.remove(k).close();
            clients.push(rig.open());
        }
        let c = &clients[rng.below(clients.len() as u64) as usize];
        let desc = &IOCTLS[rng.below(IOCTLS.len() as u64) as usize];
        let (cmd, mut arg) = match rng.below(10) {
            // A mutated number: other direction, other size, other type byte.
            0 => {
                let size = rng.below(256) as usize;
                let dir = [Dir::Read, Dir::Write, Dir::ReadWrite][rng.below(3) as usize];
                (ioctl::ioc(dir, desc.nr, size), (0..size).map(|_| rng.next() as u8).collect::<Vec<u8>>())
            }
            1 => {
                let cmd = rng.next() as u32;
                let size = ioctl::decode(cmd).size.min(4096);
                (cmd, vec![rng.next() as u8; size])
            }
            _ => (desc.number(), arg_for(&mut rng, desc)),
        };
        if ioctl::decode(cmd).size != arg.len() {
            arg.resize(ioctl::decode(cmd).size, 0);
        }
        let r = c.ioctl_with(cmd, &mut arg, &mem);
        let e = outcomes.entry(desc.name).or_default();
        match r {
            Ok(()) => {
                e.0 += 1;
                // Exports hand out descriptors: the caller owns and closes them.
                if (cmd == sys::ACCEL_IOCTL_BO_EXPORT || cmd == sys::ACCEL_IOCTL_SYNCOBJ_EXPORT) && arg.len() >= 12 {
                    let fd = i32::from_ne_bytes(arg[8..12].try_into().unwrap());
                    // SAFETY: the export succeeded, so fd is a new descriptor we own.
                    drop(unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) });
                }
            }
            Err(errno) => {
                e.1 += 1;
                assert!(DOCUMENTED.contains(&errno), "{} ({cmd:#010x}) returned undocumented {errno:?}", desc.name);
            }
        }
    }
    eprintln!("outcomes (ok, err) per command: {outcomes:?}");
    let reached = outcomes.values().filter(|v| v.0 > 0).count();
    assert!(reached >= 15, "the fuzzer gets past the dispatcher into most handlers: {outcomes:?}");
    for c in clients {
        c.close();
    }
    wait_idle(&rig);
}
