//! `cargo xtask uapi`: lint the header, regenerate or verify every file
//! derived from it, and build the C snapshot check for both word sizes.

use crate::layout::{self, Target};
use crate::model::ioc_number;
use crate::snapshot::{self, Change, Snapshot};
use crate::{bindings, generate, lint};
use clang::Clang;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The files `cargo xtask uapi` reads and writes.
#[derive(Clone, Debug)]
pub struct Paths {
    /// The canonical header.
    pub header: PathBuf,
    /// Generated bindings.
    pub sys_rs: PathBuf,
    /// Committed ABI snapshot.
    pub snapshot: PathBuf,
    /// Generated C check program.
    pub c_check: PathBuf,
    /// Generated Rust compile-time checks.
    pub rust_check: PathBuf,
    /// Scratch directory for compiler output.
    pub scratch: PathBuf,
}

impl Paths {
    /// The paths inside the repository.
    pub fn in_repo(root: &Path) -> Paths {
        let uapi = root.join("accel-uapi");
        Paths {
            header: uapi.join("include/accel.h"),
            sys_rs: uapi.join("src/sys.rs"),
            snapshot: uapi.join("abi/accel-abi-v1.txt"),
            c_check: uapi.join("tests/abi_check.c"),
            rust_check: uapi.join("src/abi.rs"),
            scratch: root.join("target/xtask"),
        }
    }
}

/// What to do with differences.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Write regenerated files; refuse breaking changes.
    Write,
    /// Write regenerated files, accepting breaking snapshot changes.
    Bless,
    /// Write nothing; fail on any difference.
    Check,
}

/// The compiler flags of UAPI-RULES.md rule 2.
pub const GCC_FLAGS: &[&str] = &["-std=c99", "-Wall", "-Wextra", "-Wpadded", "-Werror"];

/// Compile the header alone (`-fsyntax-only` on a file that includes only it).
pub fn gcc_standalone(header: &Path, scratch: &Path, m: &str) -> Result<(), String> {
    std::fs::create_dir_all(scratch).map_err(|e| format!("{}: {e}", scratch.display()))?;
    let src = scratch.join("standalone.c");
    std::fs::write(&src, format!("#include \"{}\"\n", header.display())).map_err(|e| e.to_string())?;
    let out = Command::new("gcc")
        .args(GCC_FLAGS)
        .arg(m)
        .args(["-fsyntax-only"])
        .arg(&src)
        .output()
        .map_err(|e| format!("cannot run gcc: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "rule 2: gcc {} {m} rejects the header:\n{}",
            GCC_FLAGS.join(" "),
            String::from_utf8_lossy(&out.stderr).trim_end()
        ))
    }
}

/// Build and run the generated C snapshot check.
pub fn gcc_abi_check(header: &Path, c_check: &str, scratch: &Path, m: &str) -> Result<(), String> {
    std::fs::create_dir_all(scratch).map_err(|e| format!("{}: {e}", scratch.display()))?;
    let src = scratch.join("abi_check.c");
    std::fs::write(&src, c_check).map_err(|e| e.to_string())?;
    let exe = scratch.join(format!("abi_check{m}"));
    let include = header.parent().unwrap_or(Path::new("."));
    let out = Command::new("gcc")
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror", m, "-I"])
        .arg(include)
        .arg(&src)
        .arg("-o")
        .arg(&exe)
        .output()
        .map_err(|e| format!("cannot run gcc: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "rule 4: the header does not match the ABI snapshot ({m}):\n{}",
            String::from_utf8_lossy(&out.stderr).trim_end()
        ));
    }
    let run = Command::new(&exe).status().map_err(|e| format!("{}: {e}", exe.display()))?;
    if !run.success() {
        return Err(format!("{} failed", exe.display()));
    }
    Ok(())
}

fn version(consts: &[(String, u64)]) -> (u32, u32) {
    let get = |n: &str| consts.iter().find(|(c, _)| c == n).map_or(0, |(_, v)| *v as u32);
    (get("ACCEL_ABI_MAJOR"), get("ACCEL_ABI_MINOR"))
}

/// Run the whole pipeline. Returns report lines, or every error found.
pub fn run(clang: &Clang, paths: &Paths, mode: Mode) -> Result<Vec<String>, Vec<String>> {
    let mut report = Vec::new();
    let r64 = layout::read(clang, &paths.header, Target::X86_64).map_err(|e| vec![e])?;
    let r32 = layout::read(clang, &paths.header, Target::I386).map_err(|e| vec![e])?;
    let mut errors: Vec<String> = r64.errors.clone();
    errors.extend(lint::lint(&r64.abi, Some(&r32.abi)).iter().map(|v| v.to_string()));
    for (name, value) in &r64.ioctl_numbers {
        if let Some(io) = r64.abi.ioctls.iter().find(|i| &i.name == name) {
            let size = r64.abi.find_struct(&io.arg).map_or(0, |s| s.size);
            if *value != u64::from(ioc_number(io.dir, io.nr, size)) {
                errors.push(format!(
                    "{name}: clang evaluates {value:#x}, the _IOC encoding gives {:#x}",
                    ioc_number(io.dir, io.nr, size)
                ));
            }
        }
    }
    for m in ["-m64", "-m32"] {
        if let Err(e) = gcc_standalone(&paths.header, &paths.scratch, m) {
            errors.push(e);
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    report.push(format!(
        "header: {} structs, {} ioctls, {} constants; rules 1-3 hold on x86-64 and i386",
        r64.abi.structs.len(),
        r64.abi.ioctls.len(),
        r64.abi.consts.len()
    ));

    let abi = &r64.abi;
    let ver = version(&abi.consts);
    let old = match std::fs::read_to_string(&paths.snapshot) {
        Ok(text) => Some(Snapshot::parse(&text).map_err(|e| vec![e])?),
        Err(_) if mode != Mode::Check => None,
        Err(e) => return Err(vec![format!("{}: {e}", paths.snapshot.display())]),
    };
    if let Some(old) = &old {
        let changes = snapshot::compare(old, abi);
        let breaking: Vec<String> = changes
            .iter()
            .filter_map(|c| match c {
                Change::Breaking(m) => Some(format!("rule 4: breaking ABI change: {m}")),
                Change::Addition(_) => None,
            })
            .collect();
        if !breaking.is_empty() && mode != Mode::Bless {
            return Err(breaking);
        }
        for c in &changes {
            match c {
                Change::Addition(m) if mode == Mode::Check => {
                    errors.push(format!("rule 4: not recorded in the snapshot: {m} (run `cargo xtask uapi`)"))
                }
                Change::Addition(m) | Change::Breaking(m) => report.push(format!("snapshot: {m}")),
            }
        }
    }
    let new_snap =
        if mode == Mode::Bless { snapshot::record(None, abi, ver) } else { snapshot::record(old.as_ref(), abi, ver) };
    let sys = bindings::generate(&paths.header, abi).map_err(|e| vec![e])?;
    let c_check = generate::c_check(&new_snap);
    let outputs = [
        (&paths.sys_rs, sys, "rule 3: generated bindings are out of date"),
        (&paths.snapshot, new_snap.render(), "rule 4: the ABI snapshot is out of date"),
        (&paths.c_check, c_check.clone(), "rule 4: the generated C ABI check is out of date"),
        (&paths.rust_check, generate::rust_check(&new_snap), "rule 4: the generated Rust ABI check is out of date"),
    ];
    for (path, text, what) in &outputs {
        let current = std::fs::read_to_string(path).unwrap_or_default();
        if current == *text {
            continue;
        }
        match mode {
            Mode::Check => errors.push(format!("{what}: {} differs (run `cargo xtask uapi`)", path.display())),
            Mode::Write | Mode::Bless => {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(|e| vec![format!("{}: {e}", dir.display())])?;
                }
                std::fs::write(path, text).map_err(|e| vec![format!("{}: {e}", path.display())])?;
                report.push(format!("wrote {}", path.display()));
            }
        }
    }
    for m in ["-m64", "-m32"] {
        if let Err(e) = gcc_abi_check(&paths.header, &c_check, &paths.scratch, m) {
            errors.push(e);
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    report.push(format!(
        "ABI snapshot {}.{}: {} structs, {} ioctls, {} constants match on -m64 and -m32",
        ver.0,
        ver.1,
        new_snap.structs.len(),
        new_snap.ioctls.len(),
        new_snap.consts.len()
    ));
    Ok(report)
}
