//! `cargo xtask bench client`: requests per second and latency of
//! `client --interval 1ns --count N` against nginx on loopback, next to what a
//! user would otherwise run, all in one run against one nginx:
//! - `curl` doing the same N requests in one process (a config file repeating
//!   the URL, transfers one after another, no `--parallel`), once reusing its
//!   connection (curl's default) and once with a new connection per request
//!   (`Connection: close`, what `client` and kubelet's prober do);
//! - the lab's shell loop, `curl -s URL > /dev/null && echo "$(date) - ..."`,
//!   without its `sleep`.
//!
//! Also the resident memory of `client` in loop mode, and peak RSS of each
//! contender (GNU `/usr/bin/time -f %M`, when installed).
//!
//! nginx is Debian's (`apt-get install -y nginx`), started here with a
//! temporary config on a free loopback port (`master_process off`, one
//! process, access log off, the 615-byte default page) and stopped after.
//! N comes from `CLIENT_BENCH_COUNT` (default 1000); the one-process
//! contenders run 3 times and the fastest run is shown. Figures, not a test.

use std::fmt::Write as _;
use std::io::Read as _;
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::stats::percentile;
use crate::util;

const DEFAULT_COUNT: usize = 1000;

/// Runs of each one-process contender; the fastest is kept, since other work
/// on a shared machine only ever slows a run down. The shell loop runs once
/// (it takes 100x longer, so the same noise matters 100x less).
const RUNS: usize = 3;

/// Roughly the size of nginx's own welcome page, which the lab's client fetches.
const PAGE_BYTES: usize = 615;

pub fn run(bin_dir: Option<&Path>) -> anyhow::Result<()> {
    let count = match std::env::var("CLIENT_BENCH_COUNT") {
        Ok(text) => text
            .parse()
            .with_context(|| format!("CLIENT_BENCH_COUNT={text:?} is not a number"))?,
        Err(_) => DEFAULT_COUNT,
    };
    let nginx = util::find_program("nginx", &["/usr/sbin", "/sbin"])
        .context("nginx is not installed: apt-get install -y nginx")?;
    let curl = util::find_program("curl", &[])
        .context("curl is needed for the comparison: apt-get install -y curl")?;
    let client = util::release_bin_dir(bin_dir, &["client"])?.join("client");
    let work = std::env::temp_dir().join(format!("bench-client-{}", std::process::id()));
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let outcome = (|| {
        let server = Nginx::start(&nginx, &work)?;
        let url = format!("http://127.0.0.1:{}/", server.port);
        eprintln!("bench client: {count} requests to {url} (nginx, loopback) per contender");
        let rows = measure(&client, &curl, &url, count, &work)?;
        let rss = client_loop_rss(&client, &url)?;
        drop(server);
        Ok::<_, anyhow::Error>((rows, rss))
    })();
    let _ = std::fs::remove_dir_all(&work);
    let (rows, rss) = outcome?;
    let size = std::fs::metadata(&client)
        .map(|meta| meta.len())
        .unwrap_or(0);
    println!("{}", render(count, &rows, &rss, size));
    Ok(())
}

/// One contender's figures.
struct Row {
    what: String,
    wall: Duration,
    /// Per-request latency percentiles in ms (p50, p99), when the tool reports them.
    p50_p99: Option<(f64, f64)>,
    peak_rss_kib: Option<u64>,
}

fn measure(
    client: &Path,
    curl: &Path,
    url: &str,
    count: usize,
    work: &Path,
) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    let count_text = count.to_string();

    // Warm-up: page cache, nginx's first accept, the binaries.
    util::output(Command::new(client).args(["--interval", "1ns", "--count", "20", url]))?;

    let mut command = Command::new(client);
    command.args([
        "--interval",
        "1ns",
        "--count",
        &count_text,
        "--name",
        "nginx",
        url,
    ]);
    let run = best_of(|| util::timed(&command, Stdio::null(), Stdio::null()))?;
    let summary = &run.stderr;
    if !summary.contains(&format!("{count} tries, {count} ok, 0 failed")) {
        bail!("client did not succeed on every try:\n{summary}");
    }
    rows.push(Row {
        what: format!("`client --interval 1ns --count {count}`"),
        wall: run.wall,
        p50_p99: client_percentiles(summary),
        peak_rss_kib: run.peak_rss_kib,
    });

    for (what, extra) in [
        ("`curl -K urls` (one process, keep-alive)", None),
        (
            "`curl -K urls -H 'Connection: close'` (one process, new connection each)",
            Some("Connection: close"),
        ),
    ] {
        let config = work.join("curl-urls.conf");
        let mut text = String::new();
        for _ in 0..count {
            let _ = writeln!(text, "url = \"{url}\"\noutput = \"/dev/null\"");
        }
        std::fs::write(&config, text).with_context(|| format!("writing {}", config.display()))?;
        let mut command = Command::new(curl);
        command
            .args(["-s", "-f", "-w", "%{time_total}\\n", "-K"])
            .arg(&config);
        if let Some(header) = extra {
            command.args(["-H", header]);
        }
        let run = best_of(|| util::timed(&command, Stdio::null(), Stdio::piped()))?;
        let mut latencies: Vec<f64> = run
            .stdout
            .lines()
            .filter_map(|line| line.trim().parse::<f64>().ok())
            .map(|seconds| seconds * 1000.0)
            .collect();
        if latencies.len() != count {
            bail!(
                "curl reported {} transfers, expected {count}",
                latencies.len()
            );
        }
        latencies.sort_by(f64::total_cmp);
        rows.push(Row {
            what: what.to_owned(),
            wall: run.wall,
            p50_p99: Some((
                percentile(&latencies, 0.5).unwrap_or(0.0),
                percentile(&latencies, 0.99).unwrap_or(0.0),
            )),
            peak_rss_kib: run.peak_rss_kib,
        });
    }

    let mut lab_loop = Command::new("sh");
    lab_loop
        .args(["-c", LAB_LOOP, "lab-loop", &count_text])
        .arg(curl)
        .arg(url);
    let run = util::timed(&lab_loop, Stdio::null(), Stdio::null())?;
    rows.push(Row {
        what: "the lab's `sh` loop: `curl -s URL > /dev/null && echo \"$(date) - ...\"`".to_owned(),
        wall: run.wall,
        p50_p99: None,
        peak_rss_kib: run.peak_rss_kib,
    });
    Ok(rows)
}

/// The lab's client loop without its `sleep`, `$1` times: the count, curl
/// and the URL are its arguments (`$1`, `$2`, `$3`), never spliced into the
/// script.
const LAB_LOOP: &str = r#"i=0; while [ "$i" -lt "$1" ]; do
  "$2" -s "$3" > /dev/null && echo "$(date) - Successfully connected to nginx"
  i=$((i+1))
done"#;

/// The fastest of [`RUNS`] runs of `measure`.
fn best_of(
    mut measure: impl FnMut() -> anyhow::Result<util::Timed>,
) -> anyhow::Result<util::Timed> {
    let mut best = measure()?;
    for _ in 1..RUNS {
        let next = measure()?;
        if next.wall < best.wall {
            best = next;
        }
    }
    Ok(best)
}

/// Resident memory of `client` in loop mode after a few hundred tries.
struct LoopRss {
    tries: usize,
    rss_kib: u64,
    hwm_kib: u64,
}

fn client_loop_rss(client: &Path, url: &str) -> anyhow::Result<LoopRss> {
    let mut child = Command::new(client)
        .args(["--interval", "10ms", "--name", "nginx", url])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting client in loop mode")?;
    // Loop mode for a fixed time: its memory after that long is the figure.
    std::thread::sleep(Duration::from_secs(3));
    let stats = util::proc_stats(child.id(), util::clock_ticks())
        .context("reading the client's memory from /proc")?;
    util::send_signal(child.id(), "TERM")?;
    let mut summary = String::new();
    child
        .stderr
        .take()
        .context("stderr not piped")?
        .read_to_string(&mut summary)
        .context("reading the client's summary")?;
    child.wait().context("waiting for client in loop mode")?;
    let tries = summary
        .lines()
        .find_map(|line| line.strip_suffix(" ok, 0 failed"))
        .and_then(|line| line.split_whitespace().next())
        .and_then(|tries| tries.parse().ok())
        .unwrap_or(0);
    Ok(LoopRss {
        tries,
        rss_kib: stats.rss_kib,
        hwm_kib: stats.peak_rss_kib,
    })
}

fn render(count: usize, rows: &[Row], rss: &LoopRss, client_size: u64) -> String {
    let mut out = String::new();
    let base = rows[0].wall.as_secs_f64();
    let _ = writeln!(
        out,
        "\n### client against nginx on loopback, {count} sequential requests each (best of {RUNS}, shell loop once)\n"
    );
    let _ = writeln!(
        out,
        "| contender | wall s | requests/s | p50 ms | p99 ms | peak RSS | its wall / client's |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|");
    for row in rows {
        let wall = row.wall.as_secs_f64();
        let (p50, p99) = row.p50_p99.map_or_else(
            || {
                let mean = wall * 1000.0 / count as f64;
                (format!("{mean:.3} (mean)"), "n/a".to_owned())
            },
            |(p50, p99)| (format!("{p50:.3}"), format!("{p99:.3}")),
        );
        let rss = row.peak_rss_kib.map_or_else(
            || "n/a".to_owned(),
            |kib| format!("{:.1} MiB", kib as f64 / 1024.0),
        );
        let ratio = if std::ptr::eq(row, &rows[0]) {
            "1.00x".to_owned()
        } else {
            format!("{:.2}x", wall / base)
        };
        let _ = writeln!(
            out,
            "| {} | {wall:.2} | {:.0} | {p50} | {p99} | {rss} | {ratio} |",
            row.what,
            count as f64 / wall
        );
    }
    let _ = writeln!(
        out,
        "\n`client` in loop mode (`--interval 10ms`, {} tries in 3 s): VmRSS {:.1} MiB, VmHWM {:.1} MiB; \
         release binary {:.2} MiB (stripped).",
        rss.tries,
        rss.rss_kib as f64 / 1024.0,
        rss.hwm_kib as f64 / 1024.0,
        client_size as f64 / (1024.0 * 1024.0)
    );
    let _ = writeln!(
        out,
        "Latency: client's from its summary (successful tries, resolve to end of body); \
         curl's from `-w %{{time_total}}`; the shell loop's is wall time per iteration \
         (curl and date processes included)."
    );
    out
}

fn client_percentiles(summary: &str) -> Option<(f64, f64)> {
    let line = summary
        .lines()
        .find(|line| line.starts_with("latency ms (ok tries): "))?;
    let words: Vec<&str> = line.split_whitespace().collect();
    let value = |name: &str| -> Option<f64> {
        let at = words.iter().position(|word| *word == name)?;
        words.get(at + 1)?.parse().ok()
    };
    Some((value("p50")?, value("p99")?))
}

/// Our own nginx instance: one process, a temp prefix, a free loopback port.
struct Nginx {
    child: Child,
    port: u16,
}

impl Nginx {
    fn start(binary: &Path, work: &Path) -> anyhow::Result<Self> {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .context("finding a free port")?
            .port();
        let root = work.join("www");
        std::fs::create_dir_all(&root)?;
        let mut page = String::from("<!DOCTYPE html><html><body><h1>Welcome to nginx!</h1>");
        while page.len() < PAGE_BYTES - "</body></html>\n".len() {
            page.push(' ');
        }
        page.push_str("</body></html>\n");
        std::fs::write(root.join("index.html"), page)?;
        let dir = work.display();
        let config = format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\npid {dir}/nginx.pid;\n\
             error_log {dir}/error.log warn;\n\
             events {{ worker_connections 1024; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {dir}/body;\n  proxy_temp_path {dir}/proxy;\n\
             \x20 fastcgi_temp_path {dir}/fastcgi;\n  uwsgi_temp_path {dir}/uwsgi;\n  scgi_temp_path {dir}/scgi;\n\
             \x20 server {{\n    listen 127.0.0.1:{port};\n    root {dir}/www;\n    index index.html;\n  }}\n}}\n"
        );
        let config_path = work.join("nginx.conf");
        std::fs::write(&config_path, config)?;
        let child = Command::new(binary)
            .arg("-p")
            .arg(work)
            .arg("-c")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let mut nginx = Self { child, port };
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = nginx.child.try_wait()? {
                bail!(
                    "nginx exited with {status}; see {}",
                    work.join("error.log").display()
                );
            }
            if started.elapsed() > Duration::from_secs(10) {
                bail!("nginx did not listen on 127.0.0.1:{port} within 10 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(nginx)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        util::stop(&mut self.child);
    }
}
