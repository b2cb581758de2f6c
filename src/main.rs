//! The `organ` binary: parse the command line, run the command, print any error as one line.
//! Exit status: 0 done (or stopped by the user), 1 `check --deny-warnings` found warnings,
//! 2 error (an internal error too), 130 interrupted (128 + the signal number for others).
//!
//! Thin: clap parses (src/cli.rs), the flags become the library's plain argument structs, and
//! the library does the work.

mod cli;

use clap::Parser;
use cli::{BleCmd, Cli, Command, GrandorgueCommand};
use organ::app;

fn main() {
    let _ = organ::PROCESS_START.set(std::time::Instant::now());
    // A panic anywhere prints one line (no backtrace), and playback releases every key first.
    organ::session::install_panic_hook();
    let cli = Cli::parse();
    let result = std::panic::catch_unwind(|| match &cli.command {
        Command::Plan(c) => app::cmd_plan(&(&c.plan).into(), c.format.into()),
        Command::Check(c) => app::cmd_check(&(&c.plan).into(), c.deny_warnings),
        Command::Info(c) => app::cmd_info(&c.score, c.organ.as_deref()),
        Command::Play(c) => organ::play::cmd_play(&c.into()),
        Command::Ports => organ::play::cmd_ports(),
        Command::Panic(c) => organ::play::cmd_panic(&c.to, c.organ.as_deref()),
        Command::Ble(BleCmd::Scan(s)) => app::cmd_ble_scan(s.seconds),
        Command::Grandorgue(g) => match &g.command {
            GrandorgueCommand::Config(c) => app::cmd_grandorgue_config(&c.into()),
            GrandorgueCommand::Port(c) => app::cmd_grandorgue_port(&c.via),
        },
        Command::Service(c) => organ::service::cmd_service(&c.into()),
    });
    match result {
        Ok(Ok(status)) => std::process::exit(status),
        Ok(Err(e)) => {
            eprintln!("organ: error: {e}");
            std::process::exit(2);
        }
        // The panic hook has already said what happened.
        Err(_) => std::process::exit(2),
    }
}
