//! `cargo xtask uapi --selftest`: every ABI rule check must fail on a
//! header that violates it. Fixture headers live in `xtask/fixtures/`; the
//! regeneration and snapshot cases mutate a copy of the real header while
//! keeping the committed generated files, exactly as a forgetful change
//! would.

use crate::uapi::{self, Mode, Paths};
use clang::Clang;
use std::path::Path;

struct Case {
    name: &'static str,
    /// Fixture file, or `None` to mutate the real header.
    fixture: Option<&'static str>,
    /// (from, to) replacement applied to the real header.
    mutate: Option<(&'static str, &'static str)>,
    /// Text the errors must contain.
    expect: &'static str,
}

const CASES: &[Case] = &[
    Case {
        name: "rule 1: bool field",
        fixture: Some("rule1-bool.h"),
        mutate: None,
        expect: "rule 1: accel_fixture.enabled: type `_Bool` is forbidden",
    },
    Case {
        name: "rule 1: pointer field",
        fixture: Some("rule1-pointer.h"),
        mutate: None,
        expect: "rule 1: accel_fixture.data: type `void *` is forbidden",
    },
    Case {
        name: "rule 1: enum type",
        fixture: Some("rule1-enum.h"),
        mutate: None,
        expect: "rule 1: enum accel_fixture_kind",
    },
    Case {
        name: "rule 1: long field",
        fixture: Some("rule1-long.h"),
        mutate: None,
        expect: "rule 1: accel_fixture.value: type `long` is forbidden",
    },
    Case {
        name: "rule 1: bit-field",
        fixture: Some("rule1-bitfield.h"),
        mutate: None,
        expect: "rule 1: accel_fixture.mode: bit-fields are forbidden",
    },
    Case {
        name: "rule 2: implicit hole",
        fixture: Some("rule2-hole.h"),
        mutate: None,
        expect: "rule 2: accel_fixture.size: 4-byte hole before it",
    },
    Case {
        name: "rule 2: hole seen by gcc -Wpadded",
        fixture: Some("rule2-hole.h"),
        mutate: None,
        expect: "-Werror=padded",
    },
    Case {
        name: "rule 2: 32/64-bit layouts differ",
        fixture: Some("rule2-hole.h"),
        mutate: None,
        expect: "size 16 on 64-bit but 12 on 32-bit",
    },
    Case {
        name: "rule 2: size not a multiple of 8",
        fixture: Some("rule2-size.h"),
        mutate: None,
        expect: "rule 2: accel_fixture: size 12 is not a multiple of 8",
    },
    Case {
        name: "rule 3: foreign include",
        fixture: Some("rule3-include.h"),
        mutate: None,
        expect: "rule 3: #include <stddef.h>",
    },
    Case {
        name: "rule 3: header changed, bindings not regenerated",
        fixture: None,
        mutate: Some((
            "#define ACCEL_BO_ZEROED (1U << 1)",
            "#define ACCEL_BO_ZEROED (1U << 1)\n#define ACCEL_BO_SELFTEST_NEW (1U << 2)",
        )),
        expect: "rule 3: generated bindings are out of date",
    },
    Case {
        name: "rule 4: released fields swapped",
        fixture: None,
        mutate: Some((
            "\t__u32 region; /* accel_memory_region.region_id */\n\t__u32 flags;  /* ACCEL_BO_* */",
            "\t__u32 flags;  /* ACCEL_BO_* */\n\t__u32 region; /* accel_memory_region.region_id */",
        )),
        expect: "rule 4: breaking ABI change: struct accel_bo_create: field `__u32 region` at offset 8",
    },
    Case {
        name: "rule 4: released constant changed",
        fixture: None,
        mutate: Some(("#define ACCEL_BO_ZEROED (1U << 1)", "#define ACCEL_BO_ZEROED (1U << 2)")),
        expect: "rule 4: breaking ABI change: constant ACCEL_BO_ZEROED changed from 0x2 to 0x4",
    },
    Case {
        name: "rule 4: struct extended but snapshot not recorded",
        fixture: None,
        mutate: Some((
            "\t__u32 region; /* out */\n\t__u32 pad;\n};",
            "\t__u32 region; /* out */\n\t__u32 pad;\n\t__u64 created_ns;\n};",
        )),
        expect: "rule 4: not recorded in the snapshot: struct accel_bo_info grew from 24 to 32 bytes at its end",
    },
];

/// Run every case; all must fail with the expected message, and the real header must pass.
pub fn run(clang: &Clang, root: &Path) -> Result<(), Vec<String>> {
    let real = Paths::in_repo(root);
    let real_header =
        std::fs::read_to_string(&real.header).map_err(|e| vec![format!("{}: {e}", real.header.display())])?;
    let mut failures = Vec::new();
    match uapi::run(clang, &real, Mode::Check) {
        Ok(_) => println!("ok   the real header passes every check"),
        Err(e) => failures.push(format!("the real header fails its checks: {}", e.join("; "))),
    }
    for (i, case) in CASES.iter().enumerate() {
        let dir = root.join(format!("target/xtask/selftest/{i:02}"));
        std::fs::create_dir_all(&dir).map_err(|e| vec![format!("{}: {e}", dir.display())])?;
        let mut paths = real.clone();
        paths.scratch = dir.clone();
        paths.header = dir.join("accel.h");
        let text = match (case.fixture, case.mutate) {
            (Some(f), _) => {
                std::fs::read_to_string(root.join("xtask/fixtures").join(f)).map_err(|e| vec![format!("{f}: {e}")])?
            }
            (None, Some((from, to))) => {
                if !real_header.contains(from) {
                    failures
                        .push(format!("{}: the real header no longer contains the text the case mutates", case.name));
                    continue;
                }
                real_header.replacen(from, to, 1)
            }
            (None, None) => real_header.clone(),
        };
        std::fs::write(&paths.header, text).map_err(|e| vec![e.to_string()])?;
        if case.fixture.is_some() {
            // Fixtures have their own (empty) generated files: only the rules can fail.
            paths.snapshot = dir.join("snapshot.txt");
            paths.sys_rs = dir.join("sys.rs");
            paths.c_check = dir.join("abi_check.c");
            paths.rust_check = dir.join("abi.rs");
        }
        match uapi::run(clang, &paths, Mode::Check) {
            Ok(_) => failures.push(format!("{}: the checks passed a violating header", case.name)),
            Err(errors) => match errors.iter().find(|e| e.contains(case.expect)) {
                Some(e) => {
                    println!("ok   {:<52} -> {}", case.name, e.lines().find(|l| l.contains(case.expect)).unwrap_or(e))
                }
                None => {
                    failures.push(format!("{}: expected `{}`, got: {}", case.name, case.expect, errors.join(" | ")))
                }
            },
        }
    }
    if failures.is_empty() {
        println!("{} passed, 0 failed", CASES.len() + 1);
        Ok(())
    } else {
        Err(failures)
    }
}
