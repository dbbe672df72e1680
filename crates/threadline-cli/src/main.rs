//! The `threadline` binary: `demo` shows context following one order through a store,
//! a warehouse and a background worker; `inspect` decodes context headers.

use std::io::{BufRead, IsTerminal};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod inspect;

use threadline_cli::demo;

#[derive(Parser)]
#[command(
    name = "threadline",
    version,
    about = "Request context that follows the work"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Follow orders through a store, a warehouse and a worker, printing every log line
    /// with the context it carries.
    Demo(demo::Args),
    /// Decode traceparent, tracestate, baggage, b3 and correlation ids; exits 1 when any
    /// value breaks a rule. Headers as arguments (`"traceparent: 00-…"`) or on stdin.
    Inspect {
        /// `Name: value` pairs; read from stdin, one per line, when none are given.
        headers: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Demo(args) => match demo::run(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("threadline demo: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Inspect { headers } => {
            let lines: Vec<String> = if headers.is_empty() {
                if std::io::stdin().is_terminal() {
                    eprintln!(
                        "threadline inspect: give headers as arguments or on stdin (`Name: value` per line)"
                    );
                    return ExitCode::from(2);
                }
                std::io::stdin()
                    .lock()
                    .lines()
                    .map_while(Result::ok)
                    .filter(|l| !l.trim().is_empty())
                    .collect()
            } else {
                headers
            };
            let mut inputs = Vec::new();
            for l in &lines {
                match inspect::parse_line(l) {
                    Ok(i) => inputs.push(i),
                    Err(e) => {
                        eprintln!("threadline inspect: {e}");
                        return ExitCode::from(2);
                    }
                }
            }
            let (report, ok) = inspect::inspect(&inputs);
            print!("{report}");
            if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
