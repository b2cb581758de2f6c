//! The `organ` binary: parse the command line, run the command, print any error as one line.
//! Exit status: 0 done (or stopped by the user), 1 `check --deny-warnings` found warnings,
//! 2 error, 130 interrupted.

use clap::Parser;
use organ::app;
use organ::cli::{Cli, Command};

fn main() {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Plan(c) => app::cmd_plan(c),
        Command::Check(c) => app::cmd_check(c),
        Command::Info(c) => app::cmd_info(c),
        Command::Play(c) => organ::play::cmd_play(c),
        Command::Ports => organ::play::cmd_ports(),
        Command::Panic(c) => organ::play::cmd_panic(c),
        Command::Ble(c) => app::cmd_ble(c),
        Command::Service(c) => organ::service::cmd_service(&organ::service::ServiceArgs {
            file: c.file.clone(),
            to: c.to.clone(),
            organ: c.organ.clone(),
        }),
    };
    match result {
        Ok(status) => std::process::exit(status),
        Err(e) => {
            eprintln!("organ: error: {e}");
            std::process::exit(2);
        }
    }
}
