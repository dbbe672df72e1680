//! The `threadline` binary: `demo` shows context following one order through a store,
//! a warehouse and a background worker; `proxy` runs the context sidecar; `inspect`
//! decodes context headers.

use std::io::{BufRead, IsTerminal};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod inspect;
mod proxy;

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
    /// The context sidecar: a reverse proxy in front of a service in any language that
    /// applies the policy (trust boundary, ids minted, context forwarded as headers,
    /// correlation id echoed), routes by rule, logs a JSON line per request.
    Proxy(proxy::ProxyArgs),
    /// Decode traceparent, tracestate, baggage, b3, X-Cloud-Trace-Context, X-Amzn-Trace-Id,
    /// uber-trace-id, x-datadog-*, ot-tracer-* and correlation ids, each trace shown in
    /// the other formats; exits 1 when any value breaks a rule. Headers as arguments
    /// (`"traceparent: 00-…"`) or on stdin.
    Inspect {
        /// `Name: value` pairs; read from stdin, one per line, when none are given.
        headers: Vec<String>,
        /// Judge the headers as coming from an untrusted caller (trusted-only headers,
        /// local fields and, in edge mode, ids and baggage are refused).
        #[arg(long)]
        untrusted: bool,
        /// Judge them as the headers of a message or job (where local fields
        /// `tl-field-*` travel) rather than of an HTTP request.
        #[arg(long)]
        message: bool,
        /// A policy file (TOML, see threadline::PolicyConfig); the default policy otherwise.
        #[arg(long, value_name = "FILE")]
        policy: Option<std::path::PathBuf>,
        /// Add a custom header to the default policy (repeatable).
        #[arg(long = "header", value_name = "NAME")]
        extra_headers: Vec<String>,
        /// Add a trusted-only custom header to the default policy (repeatable).
        #[arg(long = "trusted-only", value_name = "NAME")]
        trusted_only: Vec<String>,
        /// A route table file (`[[rule]]` tables): list it, or say why it is refused;
        /// with headers, where their routing key would go. Alone, no headers needed.
        #[arg(long, value_name = "FILE")]
        routes: Option<std::path::PathBuf>,
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
        Command::Proxy(args) => match proxy::run(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("threadline proxy: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Inspect {
            headers,
            untrusted,
            message,
            policy,
            extra_headers,
            trusted_only,
            routes,
        } => {
            let mut table = None;
            if let Some(path) = &routes {
                let (report, t) = inspect::routes_report(path);
                print!("{report}");
                if t.is_none() {
                    return ExitCode::FAILURE;
                }
                table = t;
                if headers.is_empty() && std::io::stdin().is_terminal() {
                    return ExitCode::SUCCESS;
                }
            }
            let policy = match inspect_policy(policy.as_deref(), &extra_headers, &trusted_only) {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("threadline inspect: {e}");
                    return ExitCode::from(2);
                }
            };
            let opts = inspect::Options {
                policy,
                untrusted,
                message,
                routes: table,
            };
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
            if lines.is_empty() && routes.is_some() {
                return ExitCode::SUCCESS;
            }
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
            let (report, ok) = inspect::inspect(&inputs, &opts);
            print!("{report}");
            if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// The policy `inspect` judges by: a file, or the default with extra header rules.
fn inspect_policy(
    file: Option<&std::path::Path>,
    headers: &[String],
    trusted_only: &[String],
) -> Result<threadline::Policy, String> {
    if let Some(path) = file {
        if !headers.is_empty() || !trusted_only.is_empty() {
            return Err(
                "--header and --trusted-only add to the default policy; with \
                        --policy, list the headers in the file"
                    .into(),
            );
        }
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        return threadline::Policy::from_toml(&text).map_err(|e| e.to_string());
    }
    let mut b = threadline::Policy::builder();
    for h in headers {
        b = b.header(h.as_str());
    }
    for h in trusted_only {
        b = b.header_rule(threadline::HeaderRule::new(h.as_str()).trusted_only());
    }
    b.build().map_err(|e| e.to_string())
}
