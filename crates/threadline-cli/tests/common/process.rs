//! Processes a test starts and ends itself: the `threadline demo` binary and broker
//! servers of its own (NATS, Redis, RabbitMQ) on free loopback ports with data in a
//! temporary directory. Each is killed when its handle is dropped, by its own process
//! id or process group, never by name.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A free TCP port on 127.0.0.1 (bound and released: another process could take it
/// meanwhile, which makes the start fail loudly, never silently).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Whether something accepts connections on 127.0.0.1:`port`.
pub fn port_open(port: u16) -> bool {
    TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(300),
    )
    .is_ok()
}

/// Waits (at most `within`) until `port` accepts connections.
pub fn wait_port(port: u16, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if port_open(port) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// A directory removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    /// A new empty directory under the system's temporary directory.
    pub fn new(label: &str) -> TempDir {
        let p = std::env::temp_dir().join(threadline_testkit::unique(label, '-'));
        std::fs::create_dir_all(&p).expect("a temporary directory");
        TempDir(p)
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child started in a process group of its own; the whole group is killed with
/// SIGKILL when dropped (a broker's start script and its VM alike).
pub struct Group(Option<Child>);

impl Group {
    /// Starts `cmd` as the leader of a new process group.
    pub fn spawn(cmd: &mut Command) -> std::io::Result<Group> {
        cmd.process_group(0).spawn().map(|c| Group(Some(c)))
    }

    /// SIGKILL to the group, then reaps the leader.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", c.id())])
                .stderr(Stdio::null())
                .status();
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Which broker a test runs itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `nats-server -js` with a file store.
    Nats,
    /// `redis-server` with an append-only file synced on every write.
    Redis,
    /// A RabbitMQ node of its own (name, ports and data directory of its own).
    Rabbit,
}

const NATS_SERVER: &str = "/usr/sbin/nats-server";
const REDIS_SERVER: &str = "/usr/bin/redis-server";
const RABBITMQ_SERVER: &str = "/usr/lib/rabbitmq/bin/rabbitmq-server";

/// A broker server the test started, on a port of its own, that it can kill and start
/// again with the same data.
pub struct OwnBroker {
    /// Which broker.
    pub kind: Kind,
    /// Its client port on 127.0.0.1.
    pub port: u16,
    dist_port: u16,
    dir: TempDir,
    proc: Option<Group>,
}

impl OwnBroker {
    /// The program the broker needs, for the skip message.
    pub fn program(kind: Kind) -> &'static str {
        match kind {
            Kind::Nats => NATS_SERVER,
            Kind::Redis => REDIS_SERVER,
            Kind::Rabbit => RABBITMQ_SERVER,
        }
    }

    /// Starts a broker of `kind`; `Err` says why it could not (the test then skips
    /// or fails as the service rule says).
    pub fn start(kind: Kind) -> Result<OwnBroker, String> {
        let program = Self::program(kind);
        if !Path::new(program).exists() {
            return Err(format!("{program} is not installed"));
        }
        let mut b = OwnBroker {
            kind,
            port: free_port(),
            dist_port: free_port(),
            dir: TempDir::new("tl-broker"),
            proc: None,
        };
        b.launch()?;
        Ok(b)
    }

    /// The URL the demo is given.
    pub fn url(&self) -> String {
        match self.kind {
            Kind::Nats => format!("nats://127.0.0.1:{}", self.port),
            Kind::Redis => format!("redis://127.0.0.1:{}", self.port),
            Kind::Rabbit => format!("amqp://guest:guest@127.0.0.1:{}", self.port),
        }
    }

    fn launch(&mut self) -> Result<(), String> {
        let dir = self.dir.path();
        let log = std::fs::File::create(dir.join("server.log")).map_err(|e| e.to_string())?;
        let err = log.try_clone().map_err(|e| e.to_string())?;
        let mut cmd = match self.kind {
            Kind::Nats => {
                let mut c = Command::new(NATS_SERVER);
                c.args(["-a", "127.0.0.1", "-p", &self.port.to_string(), "-js"])
                    .arg("-sd")
                    .arg(dir.join("js"));
                c
            }
            Kind::Redis => {
                let mut c = Command::new(REDIS_SERVER);
                c.args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
                    .args(["--appendonly", "yes", "--appendfsync", "always"])
                    .args(["--save", "", "--daemonize", "no"])
                    .arg("--dir")
                    .arg(dir);
                c
            }
            Kind::Rabbit => {
                let conf = dir.join("rabbitmq.conf");
                std::fs::write(
                    &conf,
                    format!(
                        "listeners.tcp.local = 127.0.0.1:{}\nloopback_users = none\n",
                        self.port
                    ),
                )
                .map_err(|e| e.to_string())?;
                std::fs::write(dir.join("env.conf"), "").map_err(|e| e.to_string())?;
                std::fs::write(dir.join("plugins"), "[].\n").map_err(|e| e.to_string())?;
                let mut c = Command::new(RABBITMQ_SERVER);
                c.env("HOME", dir)
                    .env(
                        "RABBITMQ_NODENAME",
                        format!("tltest{}@localhost", self.port),
                    )
                    .env("RABBITMQ_NODE_PORT", self.port.to_string())
                    .env("RABBITMQ_DIST_PORT", self.dist_port.to_string())
                    .env("RABBITMQ_MNESIA_BASE", dir.join("mnesia"))
                    .env("RABBITMQ_LOG_BASE", dir.join("log"))
                    .env("RABBITMQ_CONFIG_FILE", &conf)
                    .env("RABBITMQ_CONF_ENV_FILE", dir.join("env.conf"))
                    .env("RABBITMQ_ENABLED_PLUGINS_FILE", dir.join("plugins"))
                    .env("ERL_EPMD_ADDRESS", "127.0.0.1")
                    .env(
                        "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS",
                        "-kernel inet_dist_use_interface {127,0,0,1}",
                    );
                c
            }
        };
        cmd.stdin(Stdio::null()).stdout(log).stderr(err);
        self.proc = Some(Group::spawn(&mut cmd).map_err(|e| format!("{e}"))?);
        let within = match self.kind {
            Kind::Rabbit => Duration::from_secs(60),
            _ => Duration::from_secs(15),
        };
        if !wait_port(self.port, within) {
            let log = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
            self.kill();
            return Err(format!(
                "did not listen within {}s: {}",
                within.as_secs(),
                log.lines().rev().take(5).collect::<Vec<_>>().join(" | ")
            ));
        }
        Ok(())
    }

    /// SIGKILL (no clean shutdown): the broker goes away under load.
    pub fn kill(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill();
        }
        // Wait until the port is really closed.
        let deadline = Instant::now() + Duration::from_secs(10);
        while port_open(self.port) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts it again on the same port with the same data.
    pub fn restart(&mut self) -> Result<(), String> {
        self.launch()
    }
}

impl Drop for OwnBroker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Log lines worth keeping from a demo under load (the rest is read and dropped).
fn keep(line: &str) -> bool {
    [
        "handed to the carrier",
        "delivered again",
        "shipping queue",
        "threadline demo:",
        "\"level\":\"ERROR\"",
    ]
    .iter()
    .any(|n| line.contains(n))
}

/// The `threadline demo` binary run by a test, with JSON logs read by a thread.
pub struct DemoProcess {
    child: Option<Child>,
    lines: Arc<Mutex<Vec<String>>>,
    reader: Option<std::thread::JoinHandle<()>>,
    /// The store's base URL.
    pub store: String,
}

impl DemoProcess {
    /// Starts the demo on free ports with `args` added; waits (bounded) for its URLs.
    pub fn start(args: &[&str]) -> DemoProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_threadline"))
            .args([
                "demo",
                "--store-addr",
                "127.0.0.1:0",
                "--warehouse-addr",
                "127.0.0.1:0",
                "--log-format",
                "json",
            ])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the threadline binary starts");
        let stdout = child.stdout.take().expect("stdout");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let kept = lines.clone();
        let reader = std::thread::spawn(move || {
            let mut url_sent = false;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if !url_sent && line.contains("order form") {
                    url_sent = true;
                    let _ = tx.send(line.clone());
                }
                if keep(&line) {
                    kept.lock().unwrap().push(line);
                }
            }
        });
        let mut demo = DemoProcess {
            child: Some(child),
            lines,
            reader: Some(reader),
            store: String::new(),
        };
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("the demo never printed its URLs ({args:?})"));
        let start = line.find("http://").expect("a URL");
        demo.store = line[start..]
            .trim()
            .trim_end_matches("/orders/new")
            .to_owned();
        demo
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// The kept log lines so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// `(VmRSS, VmHWM)` in KiB, from `/proc`.
    pub fn memory_kib(&self) -> (u64, u64) {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    /// SIGINT (Ctrl-C), then the exit status and every kept line (bounded).
    pub fn interrupt(mut self) -> (ExitStatus, Vec<String>) {
        let pid = self.pid();
        let ok = Command::new("kill")
            .args(["-INT", &pid.to_string()])
            .status()
            .expect("kill runs")
            .success();
        assert!(ok, "SIGINT delivered");
        let deadline = Instant::now() + Duration::from_secs(120);
        let status = loop {
            let child = self.child.as_mut().expect("running");
            if let Some(s) = child.try_wait().expect("try_wait") {
                break s;
            }
            assert!(
                Instant::now() < deadline,
                "the demo did not stop after SIGINT"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        self.child = None;
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        let lines = std::mem::take(&mut *self.lines.lock().unwrap());
        (status, lines)
    }
}

impl Drop for DemoProcess {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
