//! The `organ` binary: parse the command line, run the command, print any error as one line.
//! Exit status: 0 done (or stopped by the user), 1 `check --deny-warnings` found warnings or
//! `selftest` found the path not fit for a service, 2 error (an internal error too), 130
//! interrupted (Ctrl-C), 129 the terminal closed or lost, 128 + N for another signal N (README:
//! "What organ guarantees on each way out").
//!
//! Thin: clap parses (src/cli.rs), the flags become the library's plain argument structs, and
//! the library does the work.

#![deny(clippy::print_stdout, clippy::print_stderr)]

mod cli;

use std::io::Write as _;

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
        // An order of service is checked item by item.
        Command::Check(c) if c.plan.score.extension().is_some_and(|x| x == "toml") => {
            organ::service::order::cmd_check(&c.plan.score, c.plan.organ.as_deref(), c.deny_warnings)
        }
        Command::Check(c) => app::cmd_check(&(&c.plan).into(), c.deny_warnings),
        Command::Info(c) => app::cmd_info(&c.score, c.organ.as_deref()),
        Command::Play(c) => organ::play::cmd_play(&c.into()),
        Command::Ports => console(organ::input::ports::cmd_ports()),
        Command::Monitor(c) => c.seconds.map_or(Ok(()), |s| app::check_seconds(s, 0.1, 86_400.0)).and_then(|()| {
            console(organ::input::monitor::run(&organ::input::monitor::MonitorArgs {
                from: c.from.clone(),
                organ: c.organ.clone(),
                seconds: c.seconds,
            }))
        }),
        Command::Learn(c) => console(learn(c)),
        Command::Record(c) => record(c),
        Command::Panic(c) => organ::play::cmd_panic(&c.to, c.organ.as_deref()),
        Command::Ble(BleCmd::Scan(s)) => app::cmd_ble_scan(s.seconds),
        Command::Grandorgue(g) => match &g.command {
            GrandorgueCommand::Config(c) => app::cmd_grandorgue_config(&c.into()),
            GrandorgueCommand::Organ(c) => app::cmd_grandorgue_organ(&c.into()),
            GrandorgueCommand::Port(c) => app::cmd_grandorgue_port(&c.via),
        },
        Command::Service(c) => organ::service::cmd_service(&c.into()),
        Command::Selftest(c) => organ::selftest::cmd_selftest(&c.into()),
    });
    match result {
        Ok(Ok(status)) => std::process::exit(status),
        Ok(Err(e)) => {
            // One line, whatever names from files the message quotes.
            // Never a panic over a message: stderr may be a closed pipe or a terminal gone away.
            let _ = writeln!(std::io::stderr(), "organ: error: {}", organ::text::shown(&e.to_string()));
            std::process::exit(2);
        }
        // The panic hook has already said what happened.
        Err(_) => std::process::exit(2),
    }
}

/// `organ monitor`/`learn`/`ports` errors, printed like every other command's.
fn console(r: Result<i32, organ::input::ConsoleError>) -> Result<i32, app::Error> {
    r.map_err(|e| app::Error::Other(e.to_string()))
}

fn record(c: &cli::RecordCmd) -> Result<i32, app::Error> {
    use organ::input::record;
    record::run(&record::RecordArgs {
        from: c.from.clone(),
        organ: c.organ.clone(),
        out: c.out.clone(),
        split: c.split.then(|| c.silence.unwrap_or(std::time::Duration::from_secs(5))),
        bpm: c.bpm,
        meter: c.meter.clone(),
        quiet: c.quiet,
    })
    .map_err(|e| app::Error::Other(e.to_string()))
}

fn learn(c: &cli::LearnCmd) -> Result<i32, organ::input::ConsoleError> {
    use organ::input::learn::{self, verify};
    if !c.verify && (!c.to.is_empty() || c.pace_ms.is_some()) {
        return Err(organ::input::ConsoleError::Usage(
            "--to and --pace-ms go with --verify (learning sends nothing)".into(),
        ));
    }
    if c.verify {
        return verify::run(&verify::VerifyArgs {
            organ: c.organ.clone(),
            to: c.to.clone(),
            pace_ms: c.pace_ms,
            only: c.only.clone(),
        });
    }
    learn::run(&learn::LearnArgs {
        from: c.from.clone().unwrap_or_default(),
        organ: c.organ.clone(),
        all: c.all,
        only: c.only.clone(),
        divisions: c.divisions.clone(),
        controls: c.stops.clone(),
        name: c.name.clone(),
        quiet: c.quiet,
        wait: c.wait,
    })
}
