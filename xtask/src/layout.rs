//! Reads the header with libclang into the ABI model, once per target.
//!
//! Struct layouts come from clang's own record layout (sizeof, alignof,
//! offsetof), so what is checked is what a C compiler does. Constants and
//! ioctl numbers are evaluated by clang too, through a probe translation unit
//! that includes the header and declares one variable per macro.

use crate::model::{Abi, Dir, Field, FieldType, Ioctl, Struct};
use clang::{Clang, Entity, EntityKind, EvaluationResult, Index, Type, TypeKind, Unsaved};
use std::path::{Path, PathBuf};

/// A target to lay the header out for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// x86-64 Linux (LP64).
    X86_64,
    /// i386 Linux (ILP32, 4-byte aligned `long long` inside structs).
    I386,
}

impl Target {
    /// The clang triple.
    pub fn triple(self) -> &'static str {
        match self {
            Target::X86_64 => "x86_64-unknown-linux-gnu",
            Target::I386 => "i386-unknown-linux-gnu",
        }
    }
}

/// Clang arguments that make `<linux/types.h>` resolve on Debian for both targets.
pub fn clang_args(target: Target) -> Vec<String> {
    let mut args = vec![format!("--target={}", target.triple()), "-std=c99".to_string()];
    for dir in ["/usr/include/x86_64-linux-gnu", "/usr/include"] {
        if Path::new(dir).is_dir() {
            args.push(format!("-isystem{dir}"));
        }
    }
    args
}

/// One `#define` of the header, continuation lines joined.
#[derive(Clone, Debug)]
pub struct Define {
    /// Macro name.
    pub name: String,
    /// Replacement text (empty for a bare `#define X`).
    pub body: String,
    /// Function-like (`#define F(x) ...`).
    pub function_like: bool,
}

/// The `#define` and `#include` lines of a header, read as text.
pub fn scan_directives(text: &str) -> (Vec<Define>, Vec<String>) {
    let mut logical = Vec::new();
    let mut cur = String::new();
    for line in text.lines() {
        if let Some(stripped) = line.strip_suffix('\\') {
            cur.push_str(stripped);
            cur.push(' ');
            continue;
        }
        cur.push_str(line);
        logical.push(std::mem::take(&mut cur));
    }
    let mut defines = Vec::new();
    let mut includes = Vec::new();
    for l in logical {
        let t = l.trim_start();
        let Some(rest) = t.strip_prefix('#') else { continue };
        let rest = rest.trim_start();
        if let Some(def) = rest.strip_prefix("define") {
            let def = def.trim_start();
            let name_end = def.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(def.len());
            let name = def[..name_end].to_string();
            let function_like = def[name_end..].starts_with('(');
            let body = strip_comments(&def[name_end..]).trim().to_string();
            defines.push(Define { name, body, function_like });
        } else if let Some(inc) = rest.strip_prefix("include") {
            let inc = inc.trim();
            let inner = inc.trim_start_matches(['<', '"']).trim_end_matches(['>', '"']);
            includes.push(inner.to_string());
        }
    }
    (defines, includes)
}

fn strip_comments(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("/*") {
        out.push_str(&rest[..i]);
        match rest[i..].find("*/") {
            Some(j) => rest = &rest[i + j + 2..],
            None => return out,
        }
    }
    out.push_str(rest);
    out
}

/// Parse `ACCEL_IOWR(0x20, struct accel_bo_create)`.
pub fn parse_ioctl(name: &str, body: &str) -> Option<Ioctl> {
    let (mac, args) = body.split_once('(')?;
    let dir = match mac.trim() {
        "ACCEL_IOR" => Dir::R,
        "ACCEL_IOW" => Dir::W,
        "ACCEL_IOWR" => Dir::Rw,
        _ => return None,
    };
    let args = args.trim_end().strip_suffix(')')?;
    let (nr, ty) = args.split_once(',')?;
    let nr = nr.trim();
    let nr = match nr.strip_prefix("0x").or_else(|| nr.strip_prefix("0X")) {
        Some(h) => u8::from_str_radix(h, 16).ok()?,
        None => nr.parse().ok()?,
    };
    let arg = ty.trim().strip_prefix("struct")?.trim().to_string();
    Some(Ioctl { name: name.to_string(), nr, dir, arg })
}

/// A header read for one target: the model and the ioctl numbers clang evaluated.
pub struct Read {
    /// The model.
    pub abi: Abi,
    /// (ioctl name, number evaluated by clang).
    pub ioctl_numbers: Vec<(String, u64)>,
    /// Problems that stop the read from being trusted (macros that are not integers, bad ioctl defines).
    pub errors: Vec<String>,
}

/// Read `header` for `target`.
pub fn read(clang: &Clang, header: &Path, target: Target) -> Result<Read, String> {
    let header = header.canonicalize().map_err(|e| format!("{}: {e}", header.display()))?;
    let text = std::fs::read_to_string(&header).map_err(|e| format!("{}: {e}", header.display()))?;
    let (defines, includes) = scan_directives(&text);
    let mut errors = Vec::new();
    let mut ioctls = Vec::new();
    let mut probes = Vec::new();
    for d in &defines {
        if d.function_like || d.body.is_empty() {
            continue;
        }
        if d.name.starts_with("ACCEL_IOCTL_") && d.name != "ACCEL_IOCTL_BASE" {
            match parse_ioctl(&d.name, &d.body) {
                Some(io) => ioctls.push(io),
                None => errors.push(format!(
                    "{}: ioctl numbers must be written ACCEL_IO{{R,W,WR}}(nr, struct accel_x), found `{}`",
                    d.name, d.body
                )),
            }
        }
        probes.push(d.name.clone());
    }
    let mut probe_src = format!("#include \"{}\"\n", header.display());
    for p in &probes {
        probe_src.push_str(&format!("static const unsigned long long accel_probe_{p} = (unsigned long long)({p});\n"));
    }
    let probe_path = PathBuf::from("/tmp/accel-xtask-probe.c");
    let index = Index::new(clang, false, false);
    let tu = index
        .parser(&probe_path)
        .arguments(&clang_args(target))
        .unsaved(&[Unsaved::new(&probe_path, &probe_src)])
        .parse()
        .map_err(|e| format!("libclang could not parse {}: {e:?}", header.display()))?;
    for d in tu.get_diagnostics() {
        if d.get_severity() >= clang::diagnostic::Severity::Error {
            let msg = d.get_text();
            // A probe of a macro that is not an integer expression shows up here.
            errors.push(format!("clang: {msg}"));
        }
    }

    let in_header =
        |e: &Entity| e.get_location().and_then(|l| l.get_file_location().file).is_some_and(|f| f.get_path() == header);
    let mut abi = Abi { includes, ioctls, ..Abi::default() };
    let mut consts = Vec::new();
    let mut ioctl_numbers = Vec::new();
    for e in tu.get_entity().get_children() {
        match e.get_kind() {
            EntityKind::StructDecl if in_header(&e) && e.is_definition() => {
                abi.structs.push(read_struct(&e)?);
            }
            EntityKind::VarDecl if !in_header(&e) => {
                let name = e.get_name().unwrap_or_default();
                let Some(mac) = name.strip_prefix("accel_probe_") else { continue };
                let value = e.get_children().first().and_then(|init| init.evaluate());
                let value = match value {
                    Some(EvaluationResult::UnsignedInteger(v)) => v,
                    Some(EvaluationResult::SignedInteger(v)) => v as u64,
                    _ => {
                        errors.push(format!("{mac}: not an integer constant"));
                        continue;
                    }
                };
                if abi.ioctls.iter().any(|io| io.name == mac) {
                    ioctl_numbers.push((mac.to_string(), value));
                } else if mac != "ACCEL_UAPI_ACCEL_H" {
                    consts.push((mac.to_string(), value));
                }
            }
            EntityKind::EnumDecl
            | EntityKind::UnionDecl
            | EntityKind::FunctionDecl
            | EntityKind::VarDecl
            | EntityKind::TypedefDecl
                if in_header(&e) =>
            {
                let kind = format!("{:?}", e.get_kind()).trim_end_matches("Decl").to_lowercase();
                abi.forbidden_decls.push(format!("{kind} {}", e.get_name().unwrap_or_else(|| "<anonymous>".into())));
            }
            _ => {}
        }
    }
    abi.consts = consts;
    Ok(Read { abi, ioctl_numbers, errors })
}

fn read_struct(e: &Entity) -> Result<Struct, String> {
    let name = e.get_name().unwrap_or_default();
    let ty = e.get_type().ok_or_else(|| format!("struct {name}: no type"))?;
    let size = ty.get_sizeof().map_err(|err| format!("struct {name}: sizeof: {err:?}"))?;
    let align = ty.get_alignof().map_err(|err| format!("struct {name}: alignof: {err:?}"))?;
    let mut fields = Vec::new();
    for f in e.get_children() {
        if f.get_kind() != EntityKind::FieldDecl {
            continue;
        }
        let fname = f.get_name().unwrap_or_default();
        let fty = f.get_type().ok_or_else(|| format!("{name}.{fname}: no type"))?;
        let offset_bits = f.get_offset_of_field().map_err(|err| format!("{name}.{fname}: offsetof: {err:?}"))?;
        fields.push(Field {
            name: fname,
            offset: offset_bits / 8,
            size: fty.get_sizeof().unwrap_or(0),
            natural_align: natural_align(&fty),
            ty: classify(&fty),
            bit_field: f.is_bit_field(),
        });
    }
    Ok(Struct { name, size, align, fields })
}

/// Strip `Elaborated` sugar (clang 16+ wraps every named type in it).
fn desugar<'a>(t: &Type<'a>) -> Type<'a> {
    let mut t = *t;
    while t.get_kind() == TypeKind::Elaborated {
        match t.get_elaborated_type() {
            Some(inner) => t = inner,
            None => break,
        }
    }
    t
}

fn classify(t: &Type) -> FieldType {
    let t = desugar(t);
    match t.get_kind() {
        TypeKind::Typedef => {
            let name = t.get_declaration().and_then(|d| d.get_name()).unwrap_or_else(|| t.get_display_name());
            if crate::lint::ALLOWED_INTS.iter().any(|(n, _)| *n == name) {
                FieldType::Int(name)
            } else {
                FieldType::Other(name)
            }
        }
        TypeKind::ConstantArray => match t.get_element_type() {
            Some(elem) => FieldType::Array(Box::new(classify(&elem)), t.get_size().unwrap_or(0)),
            None => FieldType::Other(t.get_display_name()),
        },
        TypeKind::Record => match t.get_declaration() {
            Some(d) if d.get_kind() == EntityKind::StructDecl => FieldType::Struct(d.get_name().unwrap_or_default()),
            _ => FieldType::Other(t.get_display_name()),
        },
        _ => FieldType::Other(t.get_display_name()),
    }
}

/// The alignment a field's type would have with every scalar aligned to its size.
fn natural_align(t: &Type) -> usize {
    let c = t.get_canonical_type();
    match c.get_kind() {
        TypeKind::ConstantArray => c.get_element_type().map_or(1, |e| natural_align(&e)),
        TypeKind::Record => c
            .get_declaration()
            .map(|d| {
                d.get_children()
                    .iter()
                    .filter(|f| f.get_kind() == EntityKind::FieldDecl)
                    .filter_map(|f| f.get_type())
                    .map(|ft| natural_align(&ft))
                    .max()
                    .unwrap_or(1)
            })
            .unwrap_or(1),
        _ => c.get_sizeof().unwrap_or(1).max(1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directives_join_continuations_and_drop_comments() {
        let (defs, incs) = scan_directives(
            "#include <linux/types.h>\n#define A (1U << 2) /* a flag */\n#define F(x) \\\n  ((x) + 1)\n#define ACCEL_IOCTL_X ACCEL_IOWR(0x20, struct accel_x)\n",
        );
        assert_eq!(incs, vec!["linux/types.h"]);
        assert_eq!((defs[0].name.as_str(), defs[0].body.as_str(), defs[0].function_like), ("A", "(1U << 2)", false));
        assert!(defs[1].function_like);
        let io = parse_ioctl(&defs[2].name, &defs[2].body).unwrap();
        assert_eq!((io.nr, io.dir, io.arg.as_str()), (0x20, Dir::Rw, "accel_x"));
    }

    #[test]
    fn malformed_ioctl_defines_are_rejected() {
        assert_eq!(parse_ioctl("X", "_IOWR('a', 1, struct accel_x)"), None);
        assert_eq!(parse_ioctl("X", "ACCEL_IOW(0x100, struct accel_x)"), None);
        assert_eq!(parse_ioctl("X", "ACCEL_IOW(0x10, accel_x)"), None);
    }
}
