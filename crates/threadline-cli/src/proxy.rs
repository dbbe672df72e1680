//! `threadline proxy`: parses the arguments and the TOML file, then runs
//! `threadline_proxy` until SIGINT or SIGTERM (draining requests in flight).

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::ValueEnum;
use threadline_proxy::{Proxy, ProxyFile};
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::{Layer, Registry};

/// How the proxy writes its log lines (the access log and its own events).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ProxyLog {
    /// One JSON object per line, with the request's context fields.
    Json,
    /// One line of text per event, the context fields at the end.
    Text,
    /// Nothing (warnings still go to stderr).
    Off,
}

/// Arguments of `threadline proxy`; they override the TOML file.
#[derive(clap::Args, Debug)]
pub struct ProxyArgs {
    /// Where the proxy listens [default: 127.0.0.1:8080, or `listen` in the file].
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// The app behind the proxy, `http://host:port` [or `upstream` in the file].
    #[arg(long)]
    pub upstream: Option<String>,
    /// A TOML file: the library's policy under `[policy]`, plus `[trust]`,
    /// `[[routes]]`, `[timeouts]`, `[limits]`, `[egress]`, `[tls]`.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The admin listener (`/healthz`, `/metrics`) [or `admin` in the file].
    #[arg(long)]
    pub admin: Option<SocketAddr>,
    /// Log lines: `json` (default), `text` or `off`.
    #[arg(long, value_enum, default_value_t = ProxyLog::Json)]
    pub log: ProxyLog,
    /// Worker threads (default: one per core).
    #[arg(long)]
    pub workers: Option<usize>,
}

/// Runs the proxy until SIGINT or SIGTERM.
pub fn run(args: ProxyArgs) -> anyhow::Result<()> {
    let mut file = match &args.config {
        Some(p) => ProxyFile::load(p)?,
        None => ProxyFile::default(),
    };
    if args.listen.is_some() {
        file.listen = args.listen;
    }
    if args.upstream.is_some() {
        file.upstream = args.upstream.clone();
    }
    if args.admin.is_some() {
        file.admin = args.admin;
    }
    if args.log == ProxyLog::Off {
        file.access_log = Some(false);
    }
    let config = file.into_config()?;
    let proxy = Proxy::new(config)?;

    let filter = Targets::new()
        .with_target("threadline_proxy", LevelFilter::INFO)
        .with_default(LevelFilter::WARN);
    let layer: Box<dyn Layer<Registry> + Send + Sync> = match args.log {
        ProxyLog::Json => threadline_tracing::json_layer()
            .with_writer(std::io::stdout)
            .with_filter(filter)
            .boxed(),
        ProxyLog::Text => threadline_tracing::layer()
            .with_ansi(false)
            .with_writer(std::io::stdout)
            .with_filter(filter)
            .boxed(),
        ProxyLog::Off => threadline_tracing::layer()
            .with_ansi(false)
            .with_writer(std::io::stderr)
            .with_filter(LevelFilter::WARN)
            .boxed(),
    };
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer))
        .context("installing the log subscriber")?;

    let mut rt = match args.workers {
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        Some(n) => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(n.max(1));
            b
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    let rt = rt.enable_all().build().context("starting the runtime")?;
    rt.block_on(async move {
        let running = proxy.start().await?;
        eprintln!(
            "threadline proxy: listening on {}{}{}",
            running.local_addr(),
            running
                .admin_addr()
                .map(|a| format!(", admin on {a}"))
                .unwrap_or_default(),
            running
                .egress_addr()
                .map(|a| format!(", egress on {a}"))
                .unwrap_or_default(),
        );
        running.serve_until(shutdown_signal()).await;
        eprintln!("threadline proxy: stopped");
        anyhow::Ok(())
    })
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
