//! The table walked against the committed ABI snapshot and the generated constants.

use super::*;
use std::collections::{BTreeMap, BTreeSet};

const SNAPSHOT: &str = include_str!("../../abi/accel-abi-v1.txt");

/// (name, offset, size, type spelling) of one snapshot field.
type SnapField = (String, usize, usize, String);

struct Snap {
    structs: BTreeMap<String, (usize, Vec<SnapField>)>,
    ioctls: Vec<(String, u8, String, String, usize)>,
}

fn snap() -> Snap {
    let mut structs: BTreeMap<String, (usize, Vec<SnapField>)> = BTreeMap::new();
    let mut ioctls = Vec::new();
    let num = |s: &str| match s.strip_prefix("0x") {
        Some(h) => usize::from_str_radix(h, 16).unwrap(),
        None => s.parse().unwrap(),
    };
    for l in SNAPSHOT.lines() {
        let w: Vec<&str> = l.split_whitespace().collect();
        match w.first() {
            Some(&"struct") => {
                structs.insert(w[1].into(), (num(w[2]), vec![]));
            }
            Some(&"field") => {
                structs.get_mut(w[1]).unwrap().1.push((w[2].into(), num(w[3]), num(w[4]), w[5..].join(" ")))
            }
            Some(&"ioctl") => ioctls.push((w[1].into(), num(w[2]) as u8, w[3].into(), w[4].into(), num(w[5]))),
            _ => {}
        }
    }
    Snap { structs, ioctls }
}

/// Every field of a struct with nested structs flattened: (path, offset, size, type).
fn flat(s: &Snap, name: &str) -> Vec<SnapField> {
    let mut out = Vec::new();
    for (f, off, size, ty) in &s.structs[name].1 {
        match ty.strip_prefix("struct ") {
            Some(inner) => {
                for (g, o2, z2, t2) in flat(s, inner) {
                    out.push((format!("{f}.{g}"), off + o2, z2, t2));
                }
            }
            None => out.push((f.clone(), *off, *size, ty.clone())),
        }
    }
    out
}

#[test]
fn table_matches_the_snapshot_one_to_one() {
    let s = snap();
    assert_eq!(IOCTLS.len(), s.ioctls.len());
    for (d, (name, nr, dir, arg, min)) in IOCTLS.iter().zip(&s.ioctls) {
        assert_eq!(d.name, name);
        assert_eq!(d.nr, *nr, "{name}");
        let want = match dir.as_str() {
            "r" => Dir::Read,
            "w" => Dir::Write,
            _ => Dir::ReadWrite,
        };
        assert_eq!(d.dir, want, "{name}");
        assert_eq!(d.arg.name, arg, "{name}");
        assert_eq!(d.min_size, *min, "{name}");
        assert_eq!(d.arg.size, s.structs[arg].0, "{name}");
    }
}

#[test]
fn numbers_match_the_generated_constants_and_never_collide() {
    macro_rules! nums {
        ($($n:ident),* $(,)?) => { [$((stringify!($n), sys::$n)),*] };
    }
    let consts = nums![
        ACCEL_IOCTL_VERSION,
        ACCEL_IOCTL_DEVICE_QUERY,
        ACCEL_IOCTL_GET_ASYNC_EVENT,
        ACCEL_IOCTL_CONTEXT_CREATE,
        ACCEL_IOCTL_CONTEXT_DESTROY,
        ACCEL_IOCTL_CONTEXT_QUERY,
        ACCEL_IOCTL_BO_CREATE,
        ACCEL_IOCTL_BO_CLOSE,
        ACCEL_IOCTL_BO_INFO,
        ACCEL_IOCTL_BO_MMAP_OFFSET,
        ACCEL_IOCTL_BO_EXPORT,
        ACCEL_IOCTL_BO_IMPORT,
        ACCEL_IOCTL_VM_BIND,
        ACCEL_IOCTL_QUEUE_CREATE,
        ACCEL_IOCTL_QUEUE_DESTROY,
        ACCEL_IOCTL_SUBMIT,
        ACCEL_IOCTL_SYNCOBJ_CREATE,
        ACCEL_IOCTL_SYNCOBJ_DESTROY,
        ACCEL_IOCTL_SYNCOBJ_WAIT,
        ACCEL_IOCTL_SYNCOBJ_SIGNAL,
        ACCEL_IOCTL_SYNCOBJ_RESET,
        ACCEL_IOCTL_SYNCOBJ_TIMELINE_SIGNAL,
        ACCEL_IOCTL_SYNCOBJ_QUERY,
        ACCEL_IOCTL_SYNCOBJ_TRANSFER,
        ACCEL_IOCTL_SYNCOBJ_EXPORT,
        ACCEL_IOCTL_SYNCOBJ_IMPORT,
        ACCEL_IOCTL_PD_ALLOC,
        ACCEL_IOCTL_PD_FREE,
        ACCEL_IOCTL_MR_REG,
        ACCEL_IOCTL_MR_DEREG,
        ACCEL_IOCTL_CQ_CREATE,
        ACCEL_IOCTL_CQ_DESTROY,
        ACCEL_IOCTL_CQ_POLL,
        ACCEL_IOCTL_QP_CREATE,
        ACCEL_IOCTL_QP_MODIFY,
        ACCEL_IOCTL_QP_QUERY,
        ACCEL_IOCTL_QP_DESTROY,
        ACCEL_IOCTL_POST_SEND,
        ACCEL_IOCTL_POST_RECV,
    ];
    assert_eq!(consts.len(), IOCTLS.len());
    let mut seen_nr = BTreeSet::new();
    let mut seen_num = BTreeSet::new();
    for (name, value) in consts {
        let d = by_name(name).unwrap_or_else(|| panic!("{name} missing from the table"));
        assert_eq!(d.number(), value, "{name}");
        assert!(seen_nr.insert(d.nr), "{name}: nr collides");
        assert!(seen_num.insert(value), "{name}: number collides");
        let dec = decode(value);
        assert_eq!((dec.dir, dec.ty, dec.nr, dec.size), (d.dir as u32, IOCTL_TYPE, d.nr, d.arg.size));
        assert_eq!(by_nr(d.nr), Some(d));
    }
    assert!(IOCTLS.windows(2).all(|w| w[0].nr < w[1].nr), "the table must stay sorted by nr");
}

#[test]
fn pointer_fields_lie_inside_their_struct_and_cover_every_ptr_field() {
    let s = snap();
    for d in IOCTLS {
        let fields = flat(&s, d.arg.name);
        let ptr_fields: BTreeSet<&str> =
            fields.iter().filter(|f| f.0.ends_with("_ptr")).map(|f| f.0.as_str()).collect();
        let listed: BTreeSet<&str> = d.ptrs.iter().map(|p| p.name).collect();
        assert_eq!(ptr_fields, listed, "{}", d.name);
        for p in d.ptrs {
            assert!(p.offset + 8 <= d.arg.size && p.count_offset + 4 <= d.arg.size, "{}.{}", d.name, p.name);
            let pf = fields.iter().find(|f| f.0 == p.name).unwrap();
            assert_eq!((pf.1, pf.2, pf.3.as_str()), (p.offset, 8, "__u64"), "{}.{}", d.name, p.name);
            let cf = fields.iter().find(|f| f.0 == p.count_name).unwrap();
            assert_eq!((cf.1, cf.2, cf.3.as_str()), (p.count_offset, 4, "__u32"), "{}.{}", d.name, p.count_name);
            if let Some(st) = s.structs.get(p.elem.name) {
                assert_eq!(st.0, p.elem.size, "{}", p.elem.name);
                assert!(
                    !flat(&s, p.elem.name).iter().any(|f| f.0.ends_with("_ptr")),
                    "nested arrays are one level deep"
                );
            }
            assert!(p.elem.size > 0);
        }
    }
}

/// Out-only fields: written by the core, so their input value is ignored.
const OUT_ONLY: &[(&str, &str)] = &[("accel_bo_info", "flags"), ("accel_qp_query", "attr."), ("accel_wc", "")];

fn is_out_only(st: &str, field: &str) -> bool {
    OUT_ONLY.iter().any(|(s, prefix)| *s == st && field.starts_with(prefix))
}

#[test]
fn every_pad_and_flag_word_of_every_input_struct_is_validated() {
    let s = snap();
    let mut descs: Vec<&StructDesc> = IOCTLS.iter().filter(|d| d.dir.copies_in()).map(|d| d.arg).collect();
    descs.extend(IOCTLS.iter().flat_map(|d| d.ptrs).filter(|p| p.access == Access::In).map(|p| p.elem));
    for desc in descs {
        let Some(_) = s.structs.get(desc.name) else { continue };
        for (f, off, size, _) in flat(&s, desc.name) {
            let leaf = f.rsplit('.').next().unwrap();
            if is_out_only(desc.name, &f) {
                continue;
            }
            if leaf.starts_with("pad") || leaf.starts_with("reserved") {
                assert!(
                    desc.zero.iter().any(|z| z.name == f && z.offset == off && z.size == size),
                    "{}.{f} must be checked for zero",
                    desc.name
                );
            }
            if leaf == "flags" || leaf == "send_flags" || leaf == "attr_mask" {
                assert!(
                    desc.flags.iter().any(|x| x.name == f && x.offset == off && size == 4),
                    "{}.{f} must be checked for unknown bits",
                    desc.name
                );
            }
        }
        for z in desc.zero {
            assert!(z.offset + z.size <= desc.size);
        }
        for x in desc.flags {
            assert!(x.offset + 4 <= desc.size);
        }
    }
}

#[test]
fn decode_splits_every_field() {
    let d = decode(ioc(Dir::ReadWrite, 0x20, 24));
    assert_eq!(d, Decoded { dir: 3, ty: 0xAC, nr: 0x20, size: 24 });
    assert_eq!(decode(0xFFFF_FFFF).size, MAX_SIZE);
}
