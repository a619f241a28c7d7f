//! `maelstrom demo`: runs the project's example nodes (the `maelstrom-example-nodes` crate,
//! built beside `maelstrom`) against every workload they solve, each with the user's `test`
//! options, and sums up. Each run is an ordinary `maelstrom test`, so its command line, store
//! directory and results are exactly those of running the test by hand.

use crate::cli::UsageError;
use std::path::{Path, PathBuf};

/// One example node and the workload it solves.
#[derive(Clone, Copy, Debug)]
pub struct Example {
    /// The `-w` workload.
    pub workload: &'static str,
    /// The binary's file name.
    pub binary: &'static str,
}

/// Every bundled example, in the order the Gossip Glomers challenges take them.
pub const EXAMPLES: [Example; 6] = [
    Example {
        workload: "echo",
        binary: "maelstrom-echo",
    },
    Example {
        workload: "unique-ids",
        binary: "maelstrom-unique-ids",
    },
    Example {
        workload: "broadcast",
        binary: "maelstrom-broadcast",
    },
    Example {
        workload: "g-set",
        binary: "maelstrom-g-set",
    },
    Example {
        workload: "g-counter",
        binary: "maelstrom-counter",
    },
    Example {
        workload: "pn-counter",
        binary: "maelstrom-pn-counter",
    },
];

/// Workloads no bundled example solves yet; the summary names them rather than hide them.
pub fn uncovered() -> Vec<&'static str> {
    crate::workload::ALL
        .into_iter()
        .filter(|w| !EXAMPLES.iter().any(|e| e.workload == *w))
        .collect()
}

/// Refuses the options `demo` sets itself.
pub fn check_options(args: &[String]) -> Result<(), UsageError> {
    for a in args {
        let name = a.split('=').next().unwrap_or(a);
        if matches!(name, "--bin" | "-w" | "--workload") || a.starts_with("-w") && a.len() > 2 {
            return Err(UsageError(format!(
                "maelstrom demo chooses the workload and the node program itself; drop {name}.\n\
                 Fix: to test your own node, run `maelstrom test -w WORKLOAD --bin PROGRAM` instead."
            )));
        }
    }
    Ok(())
}

/// The example binaries, looked up in `dir` (the directory of the running `maelstrom`).
pub fn locate(dir: &Path) -> Result<Vec<(Example, PathBuf)>, UsageError> {
    let found: Vec<(Example, PathBuf)> =
        EXAMPLES.iter().map(|e| (*e, dir.join(e.binary))).collect();
    let missing: Vec<&str> = found
        .iter()
        .filter(|(_, p)| !p.is_file())
        .map(|(e, _)| e.binary)
        .collect();
    if missing.is_empty() {
        return Ok(found);
    }
    Err(UsageError(format!(
        "maelstrom demo runs the example nodes found next to maelstrom, in {}, but {} {} missing.\n\
         Fix: build them into the same directory: `cargo build --release -p maelstrom -p maelstrom-example-nodes` \
         (or `cargo install --path nodes` after installing maelstrom), then run target/release/maelstrom demo.",
        dir.display(),
        missing.join(", "),
        if missing.len() == 1 { "is" } else { "are" }
    )))
}

/// The `maelstrom test` command line one example runs with.
pub fn test_argv(program: &str, example: Example, bin: &Path, options: &[String]) -> Vec<String> {
    let mut argv = vec![
        program.to_string(),
        "test".into(),
        "-w".into(),
        example.workload.into(),
        "--bin".into(),
        bin.display().to_string(),
    ];
    argv.extend(options.iter().cloned());
    argv
}

/// How one example's run ended.
pub enum Ending {
    /// Analysed: the `:valid?` and the store directory.
    Checked(crate::edn::Edn, PathBuf),
    /// The run broke (exit 255 for `test`): why.
    Broke(String),
}

/// The summary table printed before the final banner.
pub fn summary(results: &[(Example, Ending)]) -> String {
    let mut s = String::from("Demo summary:\n");
    for (e, ending) in results {
        let (verdict, detail) = match ending {
            Ending::Checked(v, dir) => (
                match v {
                    crate::edn::Edn::Bool(true) => "valid".to_string(),
                    crate::edn::Edn::Bool(false) => "INVALID".to_string(),
                    _ => "unknown".to_string(),
                },
                dir.display().to_string(),
            ),
            Ending::Broke(why) => (
                "BROKE".to_string(),
                why.lines().next().unwrap_or("").to_string(),
            ),
        };
        s.push_str(&format!(
            "  {:<11} {:<21} {:<8} {}\n",
            e.workload, e.binary, verdict, detail
        ));
    }
    let rest = uncovered();
    if !rest.is_empty() {
        s.push_str(&format!(
            "  (no bundled example node for {} yet)\n",
            rest.join(", ")
        ));
    }
    s
}

/// The exit code (spec §7.4): 255 if a run broke, else 2 if one was unknown, else 1 if one was
/// invalid, else 0.
pub fn exit_code(results: &[(Example, Ending)]) -> i32 {
    let mut code = 0;
    for (_, ending) in results {
        let c = match ending {
            Ending::Broke(_) => return 255,
            Ending::Checked(crate::edn::Edn::Bool(true), _) => 0,
            Ending::Checked(crate::edn::Edn::Bool(false), _) => 1,
            Ending::Checked(..) => 2,
        };
        code = match (code, c) {
            (2, _) | (_, 2) => 2,
            (a, b) => a.max(b),
        };
    }
    code
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::edn::Edn;

    #[test]
    fn unknown_outranks_invalid_and_a_broken_run_outranks_both() {
        let e = EXAMPLES[0];
        let ok = || Ending::Checked(Edn::Bool(true), PathBuf::new());
        let bad = || Ending::Checked(Edn::Bool(false), PathBuf::new());
        let unknown = || Ending::Checked(Edn::Keyword("unknown".into()), PathBuf::new());
        assert_eq!(exit_code(&[(e, ok()), (e, ok())]), 0);
        assert_eq!(exit_code(&[(e, ok()), (e, bad())]), 1);
        assert_eq!(exit_code(&[(e, bad()), (e, unknown()), (e, bad())]), 2);
        assert_eq!(
            exit_code(&[(e, unknown()), (e, Ending::Broke("x".into()))]),
            255
        );
    }

    #[test]
    fn options_that_demo_sets_itself_are_refused() {
        for bad in ["--bin", "--bin=x", "-w", "-wecho", "--workload=echo"] {
            assert!(check_options(&[bad.to_string()]).is_err(), "{bad}");
        }
        assert!(check_options(&["--time-limit".into(), "5".into()]).is_ok());
    }
}
