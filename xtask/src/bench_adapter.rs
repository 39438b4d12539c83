//! `cargo xtask bench adapter`: how fast the adapter converts each input
//! format to JSON, against the tool a user would otherwise pick, measured
//! in the same run (figures, not a test; it never fails on speed).
//!
//! For each format, a file of [`LINES`] realistic generated lines (fixed
//! seed, so runs compare) is piped through the release binary with
//! `/usr/bin/time`, best of [`RUNS`]: lines/s and MB/s per core, that is per
//! CPU second (user + system; the machine is shared, so wall time mostly
//! measures the neighbours), wall-clock lines/s, and peak RSS. The
//! baselines run on the same file: `jq -c .` for json -> json (and jq
//! adding a field for the `json+add` row, where the adapter cannot pass
//! objects through unchanged), a Python
//! `re` + `json.dumps` script for regex and combined (what people write when
//! there is no adapter). A baseline whose tool is missing is skipped with a
//! note (`apt-get install -y jq time`).

use std::fmt::Write as _;
use std::fs::File;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail};

use crate::util::{self, find_program, release_bin_dir, target_dir};

/// Lines per generated file.
const LINES: usize = 1_000_000;
/// Runs per adapter measurement; the fastest counts (noise only slows down).
const RUNS: usize = 3;

/// The regex the `regex` row and the Python baselines use (combined log).
const COMBINED_PATTERN: &str = r#"^(?P<host>\S+) (?P<identity>\S+) (?P<user>\S+) \[(?P<timestamp>[^\]]+)\] "(?P<method>\S+) (?P<path>\S+) (?P<protocol>[^"]+)" (?P<status>\d+) (?P<size>\d+|-) "(?P<referrer>[^"]*)" "(?P<agent>[^"]*)"$"#;

/// A Python baseline: the regex, named groups to a JSON object per line,
/// unmatched lines kept like the adapter does.
const PYTHON_BASELINE: &str = r#"
import json, re, sys
pattern = re.compile(sys.argv[1])
out = sys.stdout
for line in sys.stdin:
    line = line.rstrip("\n")
    m = pattern.match(line)
    if m:
        out.write(json.dumps({k: v for k, v in m.groupdict().items() if v is not None}) + "\n")
    else:
        out.write(json.dumps({"message": line, "parse_error": "no match"}) + "\n")
"#;

/// A small deterministic generator (xorshift64*), so files are identical across runs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

const PATHS: &[&str] = &[
    "/",
    "/index.html",
    "/api/v1/items",
    "/api/v1/items/42?expand=owner",
    "/static/app.3f2a9c.js",
    "/healthz",
    "/login",
    "/api/v1/orders?page=3&sort=desc",
];
const AGENTS: &[&str] = &[
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36",
    "curl/8.5.0",
    "kube-probe/1.32",
    "Go-http-client/1.1",
];
const MESSAGES: &[&str] = &[
    "request served",
    "cache miss for key user:1234",
    "connection reset by peer",
    "retrying upstream in 250ms",
    "Application log entry",
];
const MONTHS: &[&str] = &[
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

fn ip(rng: &mut Rng) -> String {
    if rng.below(10) == 0 {
        format!("2001:db8::{:x}", rng.below(65536))
    } else {
        format!(
            "10.{}.{}.{}",
            rng.below(256),
            rng.below(256),
            rng.below(256)
        )
    }
}

fn clock(rng: &mut Rng) -> String {
    format!(
        "{:02}:{:02}:{:02}",
        rng.below(24),
        rng.below(60),
        rng.below(60)
    )
}

/// One line of `format`.
fn line(format: &str, rng: &mut Rng) -> String {
    let status = ["200", "200", "200", "304", "404", "500"][rng.below(6) as usize];
    let size = rng.below(50_000);
    let month = rng.below(12) as usize;
    let day = rng.below(28) + 1;
    match format {
        "combined" | "regex" => format!(
            "{} - - [{day:02}/{}/2026:{} +0100] \"GET {} HTTP/1.1\" {status} {size} \"https://example.com/\" \"{}\"",
            ip(rng),
            MONTHS[month],
            clock(rng),
            rng.pick(PATHS),
            rng.pick(AGENTS)
        ),
        "common" => format!(
            "{} - frank [{day:02}/{}/2026:{} -0700] \"POST {} HTTP/1.0\" {status} {size}",
            ip(rng),
            MONTHS[month],
            clock(rng),
            rng.pick(PATHS)
        ),
        "rfc3164" => format!(
            "<{}>{} {day:>2} {} web-{} nginx[{}]: {} path={}",
            rng.below(192),
            MONTHS[month],
            clock(rng),
            rng.below(10),
            rng.below(40_000),
            rng.pick(MESSAGES),
            rng.pick(PATHS)
        ),
        "rfc5424" => format!(
            "<{}>1 2026-{:02}-{day:02}T{}.{:03}+01:00 web-{} app {} ID{} [meta@32473 path=\"{}\" status=\"{status}\"] {}",
            rng.below(192),
            month + 1,
            clock(rng),
            rng.below(1000),
            rng.below(10),
            rng.below(40_000),
            rng.below(100),
            rng.pick(PATHS),
            rng.pick(MESSAGES)
        ),
        "logfmt" => format!(
            "time=2026-{:02}-{day:02}T{}.{:03}Z level=info logger=http msg=\"{}\" method=GET path={} status={status} duration_ms={} remote={}",
            month + 1,
            clock(rng),
            rng.below(1000),
            rng.pick(MESSAGES),
            rng.pick(PATHS),
            rng.below(2000),
            ip(rng)
        ),
        "json" => format!(
            "{{\"time\":\"2026-{:02}-{day:02}T{}.{:03}Z\",\"level\":\"info\",\"logger\":\"http\",\"msg\":\"{}\",\"method\":\"GET\",\"path\":\"{}\",\"status\":{status},\"duration_ms\":{}.{},\"remote\":\"{}\"}}",
            month + 1,
            clock(rng),
            rng.below(1000),
            rng.pick(MESSAGES),
            rng.pick(PATHS),
            rng.below(2000),
            rng.below(10),
            ip(rng)
        ),
        "klog" => format!(
            "I{:02}{day:02} {}.{:06} {:>7} controller.go:{}] \"{}\" pod=\"default/web-{}\"",
            month + 1,
            clock(rng),
            rng.below(1_000_000),
            rng.below(100_000),
            rng.below(900) + 1,
            rng.pick(MESSAGES),
            rng.below(10)
        ),
        _ => format!(
            "Wed Nov {day:>2} {} UTC 2026 - {}",
            clock(rng),
            rng.pick(MESSAGES)
        ),
    }
}

fn generate(format: &str, path: &Path) -> anyhow::Result<u64> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut text = String::with_capacity(LINES * 160);
    for _ in 0..LINES {
        text.push_str(&line(format, &mut rng));
        text.push('\n');
    }
    std::fs::write(path, &text).with_context(|| format!("writing {}", path.display()))?;
    Ok(text.len() as u64)
}

/// What GNU time saw of one run.
#[derive(Clone, Copy, Debug)]
struct Measure {
    wall: f64,
    cpu: f64,
    rss_kib: u64,
}

/// Runs `program args < input > output` under GNU time.
fn measure(program: &Path, args: &[&str], input: &Path, output: &Path) -> anyhow::Result<Measure> {
    let mut command = Command::new(program);
    command.args(args);
    let stdin = File::open(input).with_context(|| format!("opening {}", input.display()))?;
    let stdout = File::create(output).with_context(|| format!("creating {}", output.display()))?;
    let run = util::timed(&command, stdin.into(), stdout.into())?;
    Ok(Measure {
        wall: run.wall.as_secs_f64(),
        cpu: run.cpu_seconds.context("GNU time reported no CPU time")?,
        rss_kib: run.peak_rss_kib.unwrap_or(0),
    })
}

fn best(
    program: &Path,
    args: &[&str],
    input: &Path,
    output: &Path,
    runs: usize,
) -> anyhow::Result<Measure> {
    let mut fastest: Option<Measure> = None;
    for _ in 0..runs {
        let this = measure(program, args, input, output)?;
        if fastest.is_none_or(|best| this.cpu < best.cpu) {
            fastest = Some(this);
        }
    }
    fastest.context("no run")
}

pub fn run(bin_dir: Option<&Path>) -> anyhow::Result<()> {
    if !Path::new(util::GNU_TIME).is_file() {
        bail!(
            "{} is missing (it measures CPU and RSS): apt-get install -y time",
            util::GNU_TIME
        );
    }
    let binary = release_bin_dir(bin_dir, &["adapter"])?.join("adapter");
    let dir = target_dir().join("bench-adapter");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let jq = find_program("jq", &[]);
    let python = find_program("python3", &[]);
    let script = dir.join("baseline.py");
    std::fs::write(&script, PYTHON_BASELINE)?;

    let mut table = String::new();
    let _ = writeln!(
        table,
        "| --from | MB | lines/s per core | MB/s per core | lines/s wall | CPU s | max RSS | baseline | baseline lines/s per core | ratio |"
    );
    let _ = writeln!(table, "|---|---:|---:|---:|---:|---:|---:|---|---:|---:|");
    for row in [
        "json", "json+add", "logfmt", "combined", "common", "rfc3164", "rfc5424", "klog", "writer",
        "regex",
    ] {
        let format = row.trim_end_matches("+add");
        let input = dir.join(format!("{format}.log"));
        let bytes = if input.is_file() && row != format {
            std::fs::metadata(&input)?.len()
        } else {
            generate(format, &input)?
        };
        let output = dir.join(format!("{format}.out"));
        let mut args = vec!["--from", format, "--log-level", "warn"];
        if format == "regex" {
            args.extend(["--pattern", COMBINED_PATTERN]);
        }
        if row != format {
            // An edit turns off the json -> json pass-through: the full path.
            args.extend(["--add", "pod=web-0"]);
        }
        let ours = best(&binary, &args, &input, &output, RUNS)?;
        let unparsed = std::fs::read_to_string(&output)?
            .matches("\"parse_error\"")
            .count();
        if unparsed > 0 {
            eprintln!("warning: {unparsed} generated {format} lines did not parse");
        }
        let baseline = match row {
            "json" => jq
                .as_ref()
                .map(|jq| ("jq -c .", jq.clone(), vec!["-c", "."])),
            "json+add" => jq.as_ref().map(|jq| {
                (
                    "jq -c '. + {pod: \"web-0\"}'",
                    jq.clone(),
                    vec!["-c", ". + {pod: \"web-0\"}"],
                )
            }),
            "combined" | "regex" => python.as_ref().map(|python| {
                (
                    "python3 re",
                    python.clone(),
                    vec![script.to_str().unwrap_or_default(), COMBINED_PATTERN],
                )
            }),
            _ => None,
        };
        let (name, theirs) = match baseline {
            Some((name, program, args)) => {
                let theirs = best(&program, &args, &input, &dir.join("baseline.out"), 1)?;
                (name, Some(theirs))
            }
            None => ("-", None),
        };
        let per_core = |measure: &Measure| LINES as f64 / measure.cpu.max(0.01);
        let _ = writeln!(
            table,
            "| {row} | {:.0} | {:.0} | {:.0} | {:.0} | {:.2} | {:.1} MiB | {name} | {} | {} |",
            bytes as f64 / 1e6,
            per_core(&ours),
            bytes as f64 / 1e6 / ours.cpu.max(0.01),
            LINES as f64 / ours.wall.max(1e-6),
            ours.cpu,
            ours.rss_kib as f64 / 1024.0,
            theirs.map_or("-".into(), |theirs| format!("{:.0}", per_core(&theirs))),
            theirs.map_or("-".into(), |theirs| format!(
                "{:.1}x",
                theirs.cpu / ours.cpu.max(0.01)
            )),
        );
        eprintln!("{row}: done");
    }
    if jq.is_none() {
        eprintln!("note: jq not found, json baseline skipped (apt-get install -y jq)");
    }
    if python.is_none() {
        eprintln!("note: python3 not found, regex baselines skipped");
    }
    println!(
        "adapter, {LINES} lines per format -> JSON on stdout (to a file), best of {RUNS} by CPU time; per core = per CPU second (user + system); ratio = baseline CPU time / adapter CPU time\n"
    );
    print!("{table}");
    Ok(())
}
