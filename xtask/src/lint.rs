//! UAPI-RULES.md rules 1-3, checked on the ABI model of the header.
//!
//! Rule 1: only fixed-width integer fields (and arrays of them, and nested
//! accel structs); no bool, enum, pointer, long, bit-field, union.
//! Rule 2: every field naturally aligned, no implicit hole, no tail padding,
//! size a multiple of 8, identical layout on 32- and 64-bit targets.
//! Rule 3: the header includes only `<linux/types.h>` or `<stdint.h>`.
//! Plus the naming and numbering rules of the ioctl table.

use crate::model::{Abi, FieldType, Struct};
use std::collections::BTreeMap;

/// The integer typedefs rule 1 allows, with their sizes.
pub const ALLOWED_INTS: &[(&str, usize)] =
    &[("__u8", 1), ("__u16", 2), ("__u32", 4), ("__u64", 8), ("__s32", 4), ("__s64", 8)];

/// Headers rule 3 allows.
pub const ALLOWED_INCLUDES: &[&str] = &["linux/types.h", "stdint.h"];

/// One violation: which rule, where, and what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// Rule number of UAPI-RULES.md (0 = naming/numbering convention).
    pub rule: u32,
    /// `struct.field`, a macro or an include.
    pub item: String,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.rule == 0 {
            write!(f, "convention: {}: {}", self.item, self.message)
        } else {
            write!(f, "rule {}: {}: {}", self.rule, self.item, self.message)
        }
    }
}

fn v(rule: u32, item: impl Into<String>, message: impl Into<String>) -> Violation {
    Violation { rule, item: item.into(), message: message.into() }
}

fn check_type(ty: &FieldType, abi: &Abi) -> Result<(), String> {
    match ty {
        FieldType::Int(name) => {
            if ALLOWED_INTS.iter().any(|(n, _)| n == name) {
                Ok(())
            } else {
                Err(format!("type `{name}` is not one of __u8/__u16/__u32/__u64/__s32/__s64"))
            }
        }
        FieldType::Array(elem, _) => check_type(elem, abi),
        FieldType::Struct(name) => {
            if name.starts_with("accel_") && abi.find_struct(name).is_some() {
                Ok(())
            } else {
                Err(format!("nested `struct {name}` is not an accel struct of this header"))
            }
        }
        FieldType::Other(name) => Err(format!(
            "type `{name}` is forbidden (no bool, enum, pointer, long, int, union: use fixed-width integers, pointers as __u64)"
        )),
    }
}

/// Rules 1 and 2 for one struct laid out on one target.
fn lint_struct(s: &Struct, abi: &Abi, out: &mut Vec<Violation>) {
    if !s.name.starts_with("accel_") {
        out.push(v(0, &s.name, "struct names start with `accel_`"));
    }
    let mut end = 0usize;
    for f in &s.fields {
        let item = format!("{}.{}", s.name, f.name);
        if f.bit_field {
            out.push(v(1, &item, "bit-fields are forbidden"));
        }
        if let Err(e) = check_type(&f.ty, abi) {
            out.push(v(1, &item, e));
        }
        if f.natural_align != 0 && !f.offset.is_multiple_of(f.natural_align) {
            out.push(v(
                2,
                &item,
                format!("offset {} is not a multiple of its natural alignment {}", f.offset, f.natural_align),
            ));
        }
        if f.offset > end {
            out.push(v(
                2,
                &item,
                format!("{}-byte hole before it at offset {}: add an explicit pad field", f.offset - end, end),
            ));
        }
        end = end.max(f.offset + f.size);
    }
    if s.size > end {
        out.push(v(
            2,
            &s.name,
            format!("{} bytes of tail padding after offset {}: add an explicit pad field", s.size - end, end),
        ));
    }
    if !s.size.is_multiple_of(8) {
        out.push(v(2, &s.name, format!("size {} is not a multiple of 8", s.size)));
    }
    if s.fields.is_empty() {
        out.push(v(2, &s.name, "empty struct"));
    }
}

/// Check the header's model for one target. `other` is the same header laid out for the
/// other word size (rule 2: identical on 32- and 64-bit).
pub fn lint(abi: &Abi, other: Option<&Abi>) -> Vec<Violation> {
    let mut out = Vec::new();
    for inc in &abi.includes {
        if !ALLOWED_INCLUDES.contains(&inc.as_str()) {
            out.push(v(3, format!("#include <{inc}>"), "the header may include only <linux/types.h> or <stdint.h>"));
        }
    }
    for d in &abi.forbidden_decls {
        out.push(v(1, d, "only structs of fixed-width integers and #define constants belong in the UAPI header"));
    }
    for s in &abi.structs {
        lint_struct(s, abi, &mut out);
    }
    if let Some(other) = other {
        for s in &abi.structs {
            match other.find_struct(&s.name) {
                Some(o) => {
                    if o.size != s.size {
                        out.push(v(2, &s.name, format!("size {} on 64-bit but {} on 32-bit", s.size, o.size)));
                    }
                    for (a, b) in s.fields.iter().zip(&o.fields) {
                        if a.offset != b.offset {
                            out.push(v(
                                2,
                                format!("{}.{}", s.name, a.name),
                                format!("offset {} on 64-bit but {} on 32-bit", a.offset, b.offset),
                            ));
                        }
                    }
                }
                None => out.push(v(2, &s.name, "missing from the 32-bit layout")),
            }
        }
    }
    let mut nrs: BTreeMap<u8, &str> = BTreeMap::new();
    for io in &abi.ioctls {
        if !io.name.starts_with("ACCEL_IOCTL_") {
            out.push(v(0, &io.name, "ioctl names are ACCEL_IOCTL_<OBJECT>_<VERB>"));
        }
        if let Some(prev) = nrs.insert(io.nr, &io.name) {
            out.push(v(0, &io.name, format!("command number {:#04x} already used by {prev}", io.nr)));
        }
        if abi.find_struct(&io.arg).is_none() {
            out.push(v(0, &io.name, format!("argument `struct {}` is not defined in the header", io.arg)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Dir, Field, Ioctl};

    fn int(name: &str, off: usize) -> Field {
        let size = ALLOWED_INTS.iter().find(|(n, _)| *n == name).map_or(4, |(_, s)| *s);
        Field {
            name: format!("f{off}"),
            offset: off,
            size,
            natural_align: size,
            ty: FieldType::Int(name.into()),
            bit_field: false,
        }
    }

    fn st(name: &str, size: usize, fields: Vec<Field>) -> Struct {
        Struct { name: name.into(), size, align: 8, fields }
    }

    fn abi(structs: Vec<Struct>) -> Abi {
        Abi { structs, ..Abi::default() }
    }

    #[test]
    fn clean_struct_passes() {
        let a = abi(vec![st("accel_ok", 16, vec![int("__u32", 0), int("__u32", 4), int("__u64", 8)])]);
        assert_eq!(lint(&a, Some(&a)), vec![]);
    }

    #[test]
    fn rule1_rejects_bool_pointer_long_enum_and_bitfields() {
        for bad in ["_Bool", "void *", "long", "enum accel_kind", "int", "char"] {
            let mut f = int("__u64", 0);
            f.ty = FieldType::Other(bad.into());
            let a = abi(vec![st("accel_bad", 8, vec![f])]);
            let errs = lint(&a, None);
            assert_eq!(errs.len(), 1, "{bad}: {errs:?}");
            assert_eq!(errs[0].rule, 1);
            assert!(errs[0].message.contains(bad), "{}", errs[0]);
        }
        let mut f = int("__u32", 0);
        f.bit_field = true;
        let a = abi(vec![st("accel_bits", 8, vec![f, int("__u32", 4)])]);
        assert_eq!(lint(&a, None)[0].message, "bit-fields are forbidden");
    }

    #[test]
    fn rule1_rejects_forbidden_declarations() {
        let mut a = abi(vec![]);
        a.forbidden_decls.push("enum accel_mode".into());
        let errs = lint(&a, None);
        assert_eq!((errs.len(), errs[0].rule), (1, 1));
    }

    #[test]
    fn rule2_finds_holes_tail_padding_misalignment_and_odd_sizes() {
        // u32 then u64 at 8: a 4-byte hole.
        let a = abi(vec![st("accel_hole", 16, vec![int("__u32", 0), int("__u64", 8)])]);
        let e = lint(&a, None);
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].message, "4-byte hole before it at offset 4: add an explicit pad field");
        // u64 then u32: tail padding.
        let a = abi(vec![st("accel_tail", 16, vec![int("__u64", 0), int("__u32", 8)])]);
        assert_eq!(lint(&a, None)[0].message, "4 bytes of tail padding after offset 12: add an explicit pad field");
        // packed u64 at 4 (what i386 does): misaligned.
        let a = abi(vec![st("accel_mis", 16, vec![int("__u32", 0), int("__u64", 4), int("__u32", 12)])]);
        assert!(lint(&a, None)[0].message.starts_with("offset 4 is not a multiple"));
        // 12 bytes: not a multiple of 8.
        let a = abi(vec![st("accel_odd", 12, vec![int("__u32", 0), int("__u32", 4), int("__u32", 8)])]);
        assert_eq!(lint(&a, None)[0].message, "size 12 is not a multiple of 8");
    }

    #[test]
    fn rule2_compares_32_and_64_bit_layouts() {
        let a64 = abi(vec![st("accel_x", 16, vec![int("__u32", 0), int("__u32", 4), int("__u64", 8)])]);
        let mut a32 = a64.clone();
        a32.structs[0].size = 12;
        a32.structs[0].fields[2].offset = 4;
        let e = lint(&a64, Some(&a32));
        assert!(e.iter().any(|x| x.message == "size 16 on 64-bit but 12 on 32-bit"), "{e:?}");
        assert!(e.iter().any(|x| x.message == "offset 8 on 64-bit but 4 on 32-bit"), "{e:?}");
    }

    #[test]
    fn rule3_rejects_other_includes() {
        let mut a = abi(vec![]);
        a.includes = vec!["linux/types.h".into(), "stdbool.h".into()];
        let e = lint(&a, None);
        assert_eq!(e.len(), 1);
        assert_eq!((e[0].rule, e[0].item.as_str()), (3, "#include <stdbool.h>"));
    }

    #[test]
    fn ioctl_numbers_must_be_unique_and_structs_known() {
        let mut a = abi(vec![st("accel_a", 8, vec![int("__u64", 0)])]);
        a.ioctls = vec![
            Ioctl { name: "ACCEL_IOCTL_A".into(), nr: 1, dir: Dir::W, arg: "accel_a".into() },
            Ioctl { name: "ACCEL_IOCTL_B".into(), nr: 1, dir: Dir::W, arg: "accel_missing".into() },
        ];
        let e = lint(&a, None);
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(e[0].message.contains("already used by ACCEL_IOCTL_A"));
        assert!(e[1].message.contains("accel_missing"));
    }
}
