//! `maelstrom check` (a history file) and `maelstrom analyze` (a stored test): the checkers
//! without a run. Both print the results and the banner and return the exit code.

use crate::analysis;
use crate::checker::{self, Availability, linear};
use crate::cli::{AnalyzeArgs, CheckArgs, UsageError};
use crate::console::Console;
use crate::edn::{self, Edn, map};
use crate::history::{self, Op};
use crate::workload::{self, CheckContext, WorkloadOptions};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What `check` decided to do with the file.
enum Mode {
    Register(linear::Model),
    Workload(Box<dyn workload::Workload>),
}

fn workload(name: &str) -> Result<Box<dyn workload::Workload>, UsageError> {
    let opts = WorkloadOptions::defaults(vec![], 1);
    if !workload::ALL.contains(&name) {
        return Err(UsageError(format!(
            "Unknown workload {name:?}; expected one of {}",
            workload::ALL.join(", ")
        )));
    }
    workload::by_name(name, &opts).ok_or_else(|| {
        UsageError(format!(
            "The {name} workload's checker is not available in this build yet"
        ))
    })
}

/// Values are `[key value]` pairs: a keyed (lin-kv) history.
fn looks_keyed(ops: &[Edn]) -> bool {
    let client: Vec<&Edn> = ops
        .iter()
        .filter(|o| matches!(o.get("f"), Some(Edn::Keyword(f)) if f == "read" || f == "write"))
        .collect();
    !client.is_empty()
        && client
            .iter()
            .all(|o| matches!(o.get("value"), Some(Edn::Vector(v)) if v.len() == 2))
}

/// Runs `maelstrom check`; returns the exit code.
pub fn check(args: CheckArgs) -> Result<i32, UsageError> {
    let text = if args.file == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
            .map_err(|e| UsageError(format!("cannot read stdin: {e}")))?;
        s
    } else {
        std::fs::read_to_string(&args.file)
            .map_err(|e| UsageError(format!("cannot read {}: {e}", args.file)))?
    };
    let (forms, lines) =
        edn::parse_with_lines(&text).map_err(|e| UsageError(format!("{}: {e}", args.file)))?;
    let flat: Vec<Edn> = match forms.as_slice() {
        [Edn::Vector(items)] => items.clone(),
        _ => forms.clone(),
    };
    let mode = match (&args.model, &args.workload) {
        (Some(_), Some(_)) => return Err(UsageError("give either --model or -w, not both".into())),
        (Some(m), None) => Mode::Register(match m.as_str() {
            "cas-register" => linear::Model::CasRegister,
            "register" => linear::Model::Register,
            other => {
                return Err(UsageError(format!(
                    "Unknown --model {other:?}; expected cas-register or register"
                )));
            }
        }),
        (None, Some(w)) => Mode::Workload(workload(w)?),
        (None, None) if looks_keyed(&flat) => Mode::Workload(workload("lin-kv")?),
        (None, None) => Mode::Register(linear::Model::CasRegister),
    };
    let initial = match &args.initial_value {
        None => None,
        Some(t) => match edn::parse_all(t)
            .map_err(|e| UsageError(format!("--initial-value: {e}")))?
            .as_slice()
        {
            [Edn::Nil] => None,
            [v] => Some(v.clone()),
            _ => return Err(UsageError("--initial-value must be one EDN value".into())),
        },
    };
    if let Some(bad) = args
        .consistency_models
        .split(',')
        .map(str::trim)
        .find(|m| !m.is_empty() && !checker::elle::MODELS.contains(m))
    {
        return Err(UsageError(format!(
            "Unknown consistency model {bad:?}; expected a comma list of {}",
            checker::elle::MODELS.join(", ")
        )));
    }
    if let Some(dir) = &args.out {
        std::fs::create_dir_all(dir)
            .map_err(|e| UsageError(format!("cannot create --out {}: {e}", dir.display())))?;
    }
    let ctx = CheckContext {
        dir: args.out.clone(),
        timeout: Duration::from_secs_f64(args.checker_timeout.max(0.001)),
        memory: checker::memory_budget(),
        consistency_models: args
            .consistency_models
            .split(',')
            .map(|m| m.trim().to_string())
            .filter(|m| !m.is_empty())
            .collect(),
    };
    let (ops, result_key, result): (Vec<Op>, &str, Edn) = match mode {
        Mode::Register(model) => {
            let ops = history::from_edn_at(forms, &lines, None, Some(&["read", "write", "cas"]))
                .map_err(|e| UsageError(format!("{}: {e}", args.file)))?;
            let budget = linear::Budget {
                time: ctx.timeout,
                memory: ctx.memory,
            };
            let outcome = linear::check(&ops, model, initial, &linear::plain_op, budget);
            (ops, "linearizable", linear::result_edn(&outcome))
        }
        Mode::Workload(w) => {
            let fs = w.functions();
            let ops = history::from_edn_at(forms, &lines, fs.first().copied(), Some(fs))
                .map_err(|e| UsageError(format!("{}: {e}", args.file)))?;
            let r = analysis::run_checker(w.as_ref(), &ops, &ctx);
            (ops, "workload", r)
        }
    };
    // The verdict is the checker's: :stats is informational here, since a history file may
    // hold only one kind of operation.
    let valid = result
        .get("valid?")
        .cloned()
        .unwrap_or_else(checker::unknown);
    let mut results = map([("stats", checker::stats(&ops)), (result_key, result)]);
    results.push("valid?", valid.clone());
    let text = match args.format.as_str() {
        "json" => serde_json::to_string_pretty(&results.to_json()).expect("json"),
        "edn" => results.pretty(),
        other => {
            return Err(UsageError(format!(
                "Unknown --format {other:?}; expected edn or json"
            )));
        }
    };
    if let Some(dir) = &args.out {
        let _ = std::fs::write(dir.join("results.edn"), format!("{}\n", results.pretty()));
    }
    println!("{text}");
    let (line, code) = crate::banner(&valid);
    println!("\n{line}");
    Ok(code)
}

/// Every stored test directory, oldest first (names are timestamps).
fn stored_tests(store: &Path) -> Vec<PathBuf> {
    let mut tests = vec![];
    for w in std::fs::read_dir(store).into_iter().flatten().flatten() {
        let wp = w.path();
        if w.file_type().is_ok_and(|t| t.is_dir()) {
            for t in std::fs::read_dir(&wp).into_iter().flatten().flatten() {
                if t.file_type().is_ok_and(|t| t.is_dir()) && t.path().join("test.json").is_file() {
                    tests.push(t.path());
                }
            }
        }
    }
    tests.sort_by_key(|p| p.file_name().map(|f| f.to_os_string()));
    tests
}

/// Runs `maelstrom analyze`; returns the exit code.
pub fn analyze(args: AnalyzeArgs) -> Result<i32, UsageError> {
    let dir = match args.test.parse::<i64>() {
        Ok(i) => {
            let tests = stored_tests(&args.store);
            let n = tests.len() as i64;
            let at = if i < 0 { n + i } else { i };
            tests
                .get(usize::try_from(at).unwrap_or(usize::MAX))
                .cloned()
                .ok_or_else(|| {
                    UsageError(format!(
                        "No stored test at index {i}: {} has {n} tests",
                        args.store.display()
                    ))
                })?
        }
        Err(_) => PathBuf::from(&args.test),
    };
    let read = |name: &str| {
        std::fs::read_to_string(dir.join(name))
            .map_err(|e| UsageError(format!("cannot read {}: {e}", dir.join(name).display())))
    };
    let test: serde_json::Value = serde_json::from_str(&read("test.json")?)
        .map_err(|e| UsageError(format!("test.json: {e}")))?;
    let name = test["workload"].as_str().unwrap_or("").to_string();
    let nodes: Vec<String> = test["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n.as_str().map(String::from))
        .collect();
    let topology =
        maelstrom_services::topology::Topology::parse(test["topology"].as_str().unwrap_or("grid"))
            .unwrap_or(maelstrom_services::topology::Topology::Grid);
    let concurrency = test["concurrency"].as_u64().unwrap_or(1) as usize;
    let w = workload::by_name(
        &name,
        &WorkloadOptions {
            topology,
            ..WorkloadOptions::defaults(nodes, concurrency)
        },
    )
    .ok_or_else(|| {
        UsageError(format!(
            "{}: workload {name:?} is not available in this build",
            dir.display()
        ))
    })?;
    let (forms, lines) = edn::parse_with_lines(&read("history.edn")?)
        .map_err(|e| UsageError(format!("history.edn: {e}")))?;
    let ops = history::from_edn_at(forms, &lines, None, None)
        .map_err(|e| UsageError(format!("history.edn: {e}")))?;
    let old: serde_json::Value = read("results.json")
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    let availability = match &test["availability"] {
        serde_json::Value::String(s) if s == "total" => Some(Availability::Total),
        serde_json::Value::Number(n) => n.as_f64().map(Availability::AtLeast),
        _ => None,
    };
    let models: Vec<String> = test["consistency-models"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m.as_str().map(String::from))
        .collect();
    let console = Console::new(false);
    console.info(format!("Re-analyzing {}", dir.display()));
    let net = if old["net"].is_object() {
        Edn::from_json(&old["net"])
    } else {
        map([("valid?", Edn::Bool(true))])
    };
    let crashed = old
        .get("crashed")
        .filter(|c| c.is_object())
        .map(Edn::from_json);
    let inputs = analysis::Inputs {
        dir: &dir,
        ops: &ops,
        workload: w.as_ref(),
        availability,
        checker_timeout: test["checker-timeout"].as_f64().unwrap_or(60.0),
        consistency_models: &models,
        time_limit: test["time-limit"].as_f64().unwrap_or(60.0),
        net,
        crashed,
        seed: test["seed"].as_u64().unwrap_or(0),
    };
    let valid = analysis::analyze(&console, inputs).map_err(|f| UsageError(f.0))?;
    let (line, code) = crate::banner(&valid);
    println!("\n{line}");
    Ok(code)
}
