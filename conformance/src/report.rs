//! Report formats: a table with fabtests-like totals, KTAP (the kernel's
//! test output format: version line, plan, `ok`/`not ok`, `# SKIP` for NOT
//! SUPPORTED, `# TIMEOUT`), and JUnit XML.

use crate::Area;
use crate::runner::{Outcome, Report};
use std::fmt::Write as _;

/// The totals line: `# passed: N, failed: M, not supported: K, timed out: T, total: X`.
pub fn summary(r: &Report) -> String {
    format!(
        "# {}: passed: {}, failed: {}, not supported: {}, timed out: {}, total: {}",
        r.device,
        r.passed(),
        r.failed(),
        r.not_supported(),
        r.timed_out(),
        r.results.len()
    )
}

/// A human-readable table, then failure reasons, then the totals.
pub fn table(r: &Report) -> String {
    let w = r.results.iter().map(|t| t.name.len()).max().unwrap_or(4).max(4);
    let mut s = format!("{:<w$}  {:<13}  {:>9}\n", "test", "result", "time");
    let _ = writeln!(s, "{}", "-".repeat(w + 26));
    for t in &r.results {
        let _ = writeln!(s, "{:<w$}  {:<13}  {:>7.1}ms", t.name, t.outcome.label(), t.duration.as_secs_f64() * 1e3);
    }
    let failures: Vec<_> = r.results.iter().filter(|t| !matches!(t.outcome, Outcome::Pass)).collect();
    if !failures.is_empty() {
        s.push('\n');
        for t in failures {
            let why = match &t.outcome {
                Outcome::Fail(m) | Outcome::NotSupported(m) => m.as_str(),
                Outcome::Timeout => "did not finish within its time bound",
                Outcome::Pass => "",
            };
            let _ = writeln!(s, "{} {}: {}", t.outcome.label(), t.name, why);
        }
    }
    s.push('\n');
    s.push_str(&summary(r));
    s.push('\n');
    s
}

fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

/// KTAP version 1, one subtest per area.
pub fn ktap(r: &Report) -> String {
    let areas: Vec<Area> = Area::ALL.into_iter().filter(|a| r.results.iter().any(|t| t.area == *a)).collect();
    let mut s = String::from("KTAP version 1\n");
    let _ = writeln!(s, "# accel conformance on {}", r.device);
    let _ = writeln!(s, "1..{}", areas.len());
    for (ai, area) in areas.iter().enumerate() {
        let tests: Vec<_> = r.results.iter().filter(|t| t.area == *area).collect();
        let _ = writeln!(s, "    KTAP version 1");
        let _ = writeln!(s, "    # Subtest: {}", area.name());
        let _ = writeln!(s, "    1..{}", tests.len());
        for (i, t) in tests.iter().enumerate() {
            let short = t.name.split_once('.').map_or(t.name.as_str(), |(_, n)| n);
            let n = i + 1;
            match &t.outcome {
                Outcome::Pass => {
                    let _ = writeln!(s, "    ok {n} {short}");
                }
                Outcome::NotSupported(m) => {
                    let _ = writeln!(s, "    ok {n} {short} # SKIP not supported: {}", one_line(m));
                }
                Outcome::Fail(m) => {
                    let _ = writeln!(s, "    # {}", one_line(m));
                    let _ = writeln!(s, "    not ok {n} {short}");
                }
                Outcome::Timeout => {
                    let _ = writeln!(s, "    not ok {n} {short} # TIMEOUT");
                }
            }
        }
        let failed = tests.iter().any(|t| matches!(t.outcome, Outcome::Fail(_) | Outcome::Timeout));
        let all_skipped = tests.iter().all(|t| matches!(t.outcome, Outcome::NotSupported(_)));
        let status = if failed { "not ok" } else { "ok" };
        let skip = if all_skipped && !failed { " # SKIP" } else { "" };
        let _ = writeln!(s, "{status} {} {}{skip}", ai + 1, area.name());
    }
    s.push_str(&summary(r));
    s.push('\n');
    s
}

fn xml_escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            c if (c as u32) < 0x20 && c != '\n' && c != '\t' => o.push_str(&format!("&#x{:x};", c as u32)),
            c => o.push(c),
        }
    }
    o
}

/// JUnit XML: one `<testsuite>` per area.
pub fn junit(r: &Report) -> String {
    let total: f64 = r.results.iter().map(|t| t.duration.as_secs_f64()).sum();
    let mut s = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        s,
        "<testsuites name=\"accel conformance: {}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\" time=\"{:.6}\">",
        xml_escape(&r.device),
        r.results.len(),
        r.failed(),
        r.timed_out(),
        r.not_supported(),
        total
    );
    for area in Area::ALL {
        let tests: Vec<_> = r.results.iter().filter(|t| t.area == area).collect();
        if tests.is_empty() {
            continue;
        }
        let count = |f: fn(&Outcome) -> bool| tests.iter().filter(|t| f(&t.outcome)).count();
        let _ = writeln!(
            s,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\" time=\"{:.6}\">",
            area.name(),
            tests.len(),
            count(|o| matches!(o, Outcome::Fail(_))),
            count(|o| *o == Outcome::Timeout),
            count(|o| matches!(o, Outcome::NotSupported(_))),
            tests.iter().map(|t| t.duration.as_secs_f64()).sum::<f64>()
        );
        for t in tests {
            let short = t.name.split_once('.').map_or(t.name.as_str(), |(_, n)| n);
            let head = format!(
                "    <testcase name=\"{}\" classname=\"accel.{}\" time=\"{:.6}\"",
                xml_escape(short),
                area.name(),
                t.duration.as_secs_f64()
            );
            match &t.outcome {
                Outcome::Pass => {
                    let _ = writeln!(s, "{head}/>");
                }
                Outcome::Fail(m) => {
                    let _ = writeln!(
                        s,
                        "{head}>\n      <failure message=\"{}\" type=\"FAIL\"/>\n    </testcase>",
                        xml_escape(m)
                    );
                }
                Outcome::NotSupported(m) => {
                    let _ = writeln!(
                        s,
                        "{head}>\n      <skipped message=\"not supported: {}\"/>\n    </testcase>",
                        xml_escape(m)
                    );
                }
                Outcome::Timeout => {
                    let _ = writeln!(
                        s,
                        "{head}>\n      <error message=\"did not finish within its time bound\" type=\"TIMEOUT\"/>\n    </testcase>"
                    );
                }
            }
        }
        let _ = writeln!(s, "  </testsuite>");
    }
    s.push_str("</testsuites>\n");
    s
}
