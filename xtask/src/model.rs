//! The ABI model: what the header declares, independent of how it was read.
//!
//! `layout.rs` fills it from libclang; `lint.rs`, `snapshot.rs` and the
//! generators only ever look at this model, so their rules are unit-tested
//! on hand-built models without libclang.

/// The type of one struct field, as far as the ABI rules care.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FieldType {
    /// A fixed-width integer typedef, by its spelling (`__u32`).
    Int(String),
    /// `elem[len]`.
    Array(Box<FieldType>, usize),
    /// A nested `struct NAME`.
    Struct(String),
    /// Anything else, with its spelling: `bool`, `int`, `long`, a pointer, an enum, a union.
    Other(String),
}

impl FieldType {
    /// How the type is written in C (used in the snapshot).
    pub fn spelling(&self) -> String {
        match self {
            FieldType::Int(s) | FieldType::Other(s) => s.clone(),
            FieldType::Array(elem, len) => format!("{}[{len}]", elem.spelling()),
            FieldType::Struct(s) => format!("struct {s}"),
        }
    }
}

/// One field of a struct.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Field {
    /// Field name.
    pub name: String,
    /// Byte offset inside the struct.
    pub offset: usize,
    /// Size in bytes.
    pub size: usize,
    /// The natural alignment of the field's element type (a `__u64` is 8 even where the
    /// target aligns it to 4): what rule 2 requires.
    pub natural_align: usize,
    /// Its type.
    pub ty: FieldType,
    /// Declared as a bit-field.
    pub bit_field: bool,
}

/// One struct as laid out for one target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Struct {
    /// Name without the `struct ` keyword.
    pub name: String,
    /// `sizeof`.
    pub size: usize,
    /// `_Alignof` on this target.
    pub align: usize,
    /// Fields in declaration order.
    pub fields: Vec<Field>,
}

/// Direction bits of an ioctl number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    /// Userspace reads the struct (`_IOR`).
    R,
    /// Userspace writes the struct (`_IOW`).
    W,
    /// Both (`_IOWR`).
    Rw,
}

impl Dir {
    /// The `_IOC` direction value.
    pub fn bits(self) -> u32 {
        match self {
            Dir::W => 1,
            Dir::R => 2,
            Dir::Rw => 3,
        }
    }
    /// Short name used in the snapshot.
    pub fn as_str(self) -> &'static str {
        match self {
            Dir::R => "r",
            Dir::W => "w",
            Dir::Rw => "rw",
        }
    }
    /// Parse the snapshot spelling.
    pub fn parse(s: &str) -> Option<Dir> {
        match s {
            "r" => Some(Dir::R),
            "w" => Some(Dir::W),
            "rw" => Some(Dir::Rw),
            _ => None,
        }
    }
}

/// One `#define ACCEL_IOCTL_X ACCEL_IO{R,W,WR}(nr, struct s)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ioctl {
    /// Macro name.
    pub name: String,
    /// Command number inside the accel type.
    pub nr: u8,
    /// Direction.
    pub dir: Dir,
    /// Argument struct name.
    pub arg: String,
}

/// The `_IOC` type byte of accel.
pub const IOCTL_TYPE: u32 = 0xAC;

/// The full `_IOC` number for an ioctl whose struct has `size` bytes.
pub fn ioc_number(dir: Dir, nr: u8, size: usize) -> u32 {
    (dir.bits() << 30) | ((size as u32) << 16) | (IOCTL_TYPE << 8) | u32::from(nr)
}

/// Everything the header declares.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Abi {
    /// Structs in declaration order.
    pub structs: Vec<Struct>,
    /// ioctl definitions in declaration order.
    pub ioctls: Vec<Ioctl>,
    /// Integer constants (`#define NAME value`) in declaration order.
    pub consts: Vec<(String, u64)>,
    /// `#include` lines, by their target (`linux/types.h`).
    pub includes: Vec<String>,
    /// Other top-level declarations that rule 1 forbids (enum, union, function, global), by description.
    pub forbidden_decls: Vec<String>,
}

impl Abi {
    /// Look up a struct by name.
    pub fn find_struct(&self, name: &str) -> Option<&Struct> {
        self.structs.iter().find(|s| s.name == name)
    }
}
