//! The `organ` binary: parse the command line, run the command, print any error as one line.
//! Exit status: 0 done (or stopped by the user), 1 `check --deny-warnings` found warnings,
//! 2 error (an internal error too), 130 interrupted (128 + the signal number for others).

use clap::Parser;
use organ::app;
use organ::cli::{Cli, Command};

fn main() {
    let _ = organ::PROCESS_START.set(std::time::Instant::now());
    // A panic anywhere prints one line (no backtrace), and playback releases every key first.
    organ::play::install_panic_hook();
    let cli = Cli::parse();
    let result = std::panic::catch_unwind(|| match &cli.command {
        Command::Plan(c) => app::cmd_plan(c),
        Command::Check(c) => app::cmd_check(c),
        Command::Info(c) => app::cmd_info(c),
        Command::Play(c) => organ::play::cmd_play(c),
        Command::Ports => organ::play::cmd_ports(),
        Command::Panic(c) => organ::play::cmd_panic(c),
        Command::Ble(c) => app::cmd_ble(c),
        Command::Grandorgue(c) => app::cmd_grandorgue(c),
        Command::Service(c) => organ::service::cmd_service(&organ::service::ServiceArgs {
            file: c.file.clone(),
            to: c.to.clone(),
            organ: c.organ.clone(),
        }),
        Command::Selftest(c) => organ::selftest::cmd_selftest(&organ::selftest::SelftestArgs {
            to: c.to.clone(),
            organ: c.organ.clone(),
            seconds: c.seconds,
        }),
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
