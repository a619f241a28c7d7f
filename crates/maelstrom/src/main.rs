//! The `maelstrom` command: parses the command line and runs tests, demos or the doc writer;
//! see the library docs.

use clap::Parser;
use maelstrom::cli::{Cli, Command};
use maelstrom::edn::Edn;

const COMMANDS: &str = "Commands: test, analyze, check, serve, demo, doc";

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    let cli = match Cli::try_parse_from(&argv) {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            let code = match e.kind() {
                ErrorKind::DisplayHelp
                | ErrorKind::DisplayVersion
                | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => 0,
                _ => 254,
            };
            let _ = e.print();
            if matches!(
                e.kind(),
                ErrorKind::InvalidSubcommand | ErrorKind::MissingSubcommand
            ) {
                eprintln!("{COMMANDS}");
            }
            std::process::exit(code);
        }
    };
    let args = match cli.command {
        Command::Test(args) => args,
        Command::Check(args) => finish(maelstrom::commands::check(args)),
        Command::Analyze(args) => finish(maelstrom::commands::analyze(args)),
        Command::Serve(args) => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("tokio runtime");
            let addr = std::net::SocketAddr::new(args.host, args.port);
            if let Err(e) = runtime.block_on(maelstrom::serve::serve(args.store, addr)) {
                eprintln!("{e}");
                std::process::exit(254);
            }
            std::process::exit(0);
        }
        Command::Doc(args) => match maelstrom::doc::write(&args.out) {
            Ok(paths) => {
                for p in paths {
                    println!("Wrote {}", p.display());
                }
                std::process::exit(0);
            }
            Err(e) => {
                eprintln!(
                    "cannot write the docs into {}: {e}\nFix: pass --out with a writable directory.",
                    args.out.display()
                );
                std::process::exit(254);
            }
        },
        Command::Demo(args) => demo(&argv[0], &args.options),
    };
    let cfg = resolve(*args, argv);
    let runtime = runtime();
    match run_tests(&runtime, &cfg) {
        Ok((worst, _)) => {
            let (line, code) = maelstrom::banner(&worst);
            println!("\n{line}");
            runtime.shutdown_timeout(std::time::Duration::from_secs(1));
            std::process::exit(code);
        }
        Err(why) => broke(&why),
    }
}

/// A checked test configuration, or exit 254 with the problem.
fn resolve(args: maelstrom::cli::TestArgs, argv: Vec<String>) -> maelstrom::cli::TestConfig {
    match args.resolve(argv) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("{}", e.0);
            std::process::exit(254);
        }
    }
}

/// The runtime tests run on, with Ctrl-C wired up: the first makes the running test tear
/// down, keep its history and exit 255; the second exits at once.
fn runtime() -> tokio::runtime::Runtime {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.spawn(async {
        let mut count = 0;
        while tokio::signal::ctrl_c().await.is_ok() {
            count += 1;
            if count > 1 {
                std::process::exit(255);
            }
            maelstrom::runner::INTERRUPTED.store(true, std::sync::atomic::Ordering::SeqCst);
            maelstrom::runner::INTERRUPT.notify_waiters();
        }
    });
    runtime
}

/// Runs `--test-count` tests (stopping after an invalid one): the worst validity and the last
/// test's directory, or why a run broke.
fn run_tests(
    runtime: &tokio::runtime::Runtime,
    cfg: &maelstrom::cli::TestConfig,
) -> Result<(Edn, std::path::PathBuf), String> {
    let mut worst = Edn::Bool(true);
    let mut last_dir = std::path::PathBuf::new();
    for i in 0..cfg.test_count {
        let seed = cfg.seed.wrapping_add(i);
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            runtime.block_on(maelstrom::runner::run(cfg, seed))
        }));
        match run {
            Err(_) => return Err("an internal error (a panic, reported above)".into()),
            Ok(Err(fatal)) => return Err(fatal.0),
            Ok(Ok(verdict)) => {
                worst = maelstrom::checker::merge_valid([&worst, &verdict.valid]);
                last_dir = verdict.dir;
                // --test-count stops after the first invalid run.
                if verdict.valid == Edn::Bool(false) {
                    break;
                }
            }
        }
        if maelstrom::runner::INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst) {
            break;
        }
    }
    Ok((worst, last_dir))
}

/// `maelstrom demo`: every bundled example node through `maelstrom test`, then a summary.
fn demo(program: &str, options: &[String]) -> ! {
    use maelstrom::demo::{self, Ending};
    let here = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(std::path::Path::to_path_buf))
        .unwrap_or_default();
    let examples = match demo::check_options(options).and_then(|()| demo::locate(&here)) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("{}", e.0);
            std::process::exit(254);
        }
    };
    // Every configuration is checked before the first run, so a typo costs nothing.
    let configs: Vec<_> = examples
        .iter()
        .map(|(example, bin)| {
            let argv = demo::test_argv(program, *example, bin, options);
            let Ok(Cli {
                command: Command::Test(args),
            }) = Cli::try_parse_from(&argv)
            else {
                // The options parse as `test` options or clap has already said why.
                let _ = Cli::try_parse_from(&argv).map_err(|e| e.print());
                std::process::exit(254);
            };
            (*example, resolve(*args, argv))
        })
        .collect();
    let runtime = runtime();
    let mut results = Vec::new();
    for (i, (example, cfg)) in configs.iter().enumerate() {
        println!(
            "\n== demo {}/{}: {} with {}",
            i + 1,
            configs.len(),
            example.workload,
            example.binary
        );
        let ending = match run_tests(&runtime, cfg) {
            Ok((valid, dir)) => {
                println!("{}", maelstrom::banner(&valid).0);
                Ending::Checked(valid, dir)
            }
            Err(why) => {
                println!("Oh jeez, I'm sorry, Maelstrom broke. Here's why:\n{why}");
                Ending::Broke(why)
            }
        };
        results.push((*example, ending));
        if maelstrom::runner::INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst) {
            break;
        }
    }
    println!("\n{}", demo::summary(&results));
    let code = demo::exit_code(&results);
    let line = match code {
        255 => "Oh jeez, I'm sorry, Maelstrom broke. Here's why:\na demo run broke (see above)",
        c => match c {
            0 => maelstrom::banner(&Edn::Bool(true)).0,
            1 => maelstrom::banner(&Edn::Bool(false)).0,
            _ => maelstrom::banner(&Edn::Keyword("unknown".into())).0,
        },
    };
    println!("{line}");
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    std::process::exit(code);
}

/// The original's last words for a run that could not finish, and exit 255.
fn broke(why: &str) -> ! {
    println!("Oh jeez, I'm sorry, Maelstrom broke. Here's why:\n{why}");
    std::process::exit(255);
}

/// Exits with a command's code, or 254 and its message.
fn finish(result: Result<i32, maelstrom::cli::UsageError>) -> ! {
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("{}", e.0);
            std::process::exit(254);
        }
    }
}
