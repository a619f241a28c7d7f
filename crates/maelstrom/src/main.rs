//! The `maelstrom` command: parses the command line and runs tests; see the library docs.

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
        _ => {
            eprintln!(
                "This command is not available in this build yet; `maelstrom test` is.\n{COMMANDS}"
            );
            std::process::exit(254);
        }
    };
    let cfg = match args.resolve(argv) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("{}", e.0);
            std::process::exit(254);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    // First Ctrl-C: the test tears down, keeps its history and exits 255. Second: exit now.
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
    let mut worst = Edn::Bool(true);
    for i in 0..cfg.test_count {
        let seed = cfg.seed.wrapping_add(i);
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            runtime.block_on(maelstrom::runner::run(&cfg, seed))
        }));
        match run {
            Err(_) => broke("an internal error (a panic, reported above)"),
            Ok(Err(fatal)) => broke(&fatal.0),
            Ok(Ok(verdict)) => {
                worst = maelstrom::checker::merge_valid([&worst, &verdict.valid]);
                // --test-count stops after the first invalid run.
                if verdict.valid == Edn::Bool(false) {
                    break;
                }
            }
        }
    }
    let (line, code) = maelstrom::banner(&worst);
    println!("\n{line}");
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
