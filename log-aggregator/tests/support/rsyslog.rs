//! A real rsyslogd for the shipping tests (Debian's `rsyslog`,
//! `rsyslog-relp`, `rsyslog-gnutls`): started as an ordinary process on
//! 127.0.0.1 with a config the test writes, every message's MSG into one
//! file.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use testkit::{Running, eventually};

const RSYSLOGD: &str = "/usr/sbin/rsyslogd";
const MODULES: &str = "/usr/lib/x86_64-linux-gnu/rsyslog";

/// Fails, saying how to install them, unless rsyslogd and `module` are
/// there: as for the pod tests, a missing tool fails rather than skips.
pub fn need_rsyslog(module: &str) {
    assert!(
        Path::new(RSYSLOGD).exists() && Path::new(MODULES).join(format!("{module}.so")).exists(),
        "{RSYSLOGD} or its {module} module is missing: apt-get install rsyslog rsyslog-relp \
         (or cargo xtask test --install)"
    );
}

/// A port free now on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Lines in `path` so far (0 when it does not exist yet).
pub fn lines_in(path: &Path) -> usize {
    std::fs::read(path)
        .map(|bytes| bytes.iter().filter(|byte| **byte == b'\n').count())
        .unwrap_or(0)
}

/// An rsyslogd in the foreground, one input, every message's MSG into one file.
pub struct Rsyslog {
    dir: PathBuf,
    pub port: u16,
    pub output: PathBuf,
    child: Option<Child>,
}

impl Rsyslog {
    /// `input`: `imrelp` or `imtcp`.
    pub fn start(dir: &Path, input: &str) -> Self {
        Self::start_on(dir, input, free_port())
    }

    pub fn start_on(dir: &Path, input: &str, port: u16) -> Self {
        Self::start_with(dir, input, port, "")
    }

    /// `extra`: more rsyslog configuration (another template and action).
    pub fn start_with(dir: &Path, input: &str, port: u16, extra: &str) -> Self {
        let listen = format!(
            r#"module(load="{input}")
input(type="{input}" port="{port}" address="127.0.0.1")"#
        );
        Self::start_listening(dir, port, &listen, extra)
    }

    /// `listen`: the rsyslog configuration that loads the input module and
    /// listens on 127.0.0.1:`port` (a TLS driver, say).
    pub fn start_listening(dir: &Path, port: u16, listen: &str, extra: &str) -> Self {
        let dir = dir.join("rsyslog");
        std::fs::create_dir_all(dir.join("work")).unwrap();
        let mut server = Self {
            port,
            output: dir.join("received.log"),
            dir,
            child: None,
        };
        // A direct main queue: a message is in the output file (flushed at
        // the end of its transaction) before imrelp answers 200, so killing
        // rsyslog loses only what it never acknowledged.
        let config = format!(
            r#"global(workDirectory="{work}" maxMessageSize="64k")
main_queue(queue.type="Direct")
{listen}
template(name="t" type="string" string="%msg%\n")
action(type="omfile" file="{output}" template="t" flushOnTXEnd="on" asyncWriting="off")
{extra}
"#,
            work = server.dir.join("work").display(),
            output = server.output.display(),
        );
        std::fs::write(server.dir.join("rsyslog.conf"), config).unwrap();
        server.run();
        server
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Starts rsyslogd and waits until it listens.
    pub fn run(&mut self) {
        let child = Command::new(RSYSLOGD)
            .arg("-n")
            .arg("-f")
            .arg(self.dir.join("rsyslog.conf"))
            .arg("-i")
            .arg(self.dir.join("rsyslogd.pid"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting rsyslogd");
        self.child = Some(child);
        let address = self.address();
        eventually("rsyslogd listening", || {
            TcpStream::connect(&address).is_ok()
        });
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Waits until rsyslog's file holds `seq=count ` and at least `count` lines.
pub fn wait_for_all(server: &Rsyslog, count: u64, aggregator: &Running) {
    let needle = format!("seq={count} ");
    let started = Instant::now();
    loop {
        let text = std::fs::read_to_string(&server.output).unwrap_or_default();
        if text.contains(&needle) && lines_in(&server.output) as u64 >= count {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "not every line arrived: {} lines; aggregator stderr:\n{}",
            lines_in(&server.output),
            aggregator.stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
