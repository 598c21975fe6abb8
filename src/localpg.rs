//! Local PostgreSQL clusters for `shardgate demo` and the integration tests: finding the server binaries,
//! initdb/start/stop under the right OS user, a once-per-machine template, databases and connections.

mod os;
mod template;

pub use os::{copy_tree, prepare_data_dir, process_exists, run_as, spawn_reaper};
pub use template::{template, TEMPLATE_DATABASE};

use crate::error::Error;
use os::ensure_traversable;
use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use template::TEMPLATE_MARKER;

type Result<T> = std::result::Result<T, Error>;

/// Settings passed as `-c name=value` to every cluster: loopback TCP only (no socket files to collide on),
/// and durability traded for speed, as these clusters hold nothing that must survive a crash.
pub const DEFAULT_SETTINGS: &[(&str, &str)] = &[
    ("listen_addresses", "127.0.0.1"),
    ("unix_socket_directories", ""),
    ("fsync", "off"),
    ("shared_buffers", "32MB"),
    ("max_connections", "200"),
    ("max_prepared_transactions", "100"),
];

/// Trust on loopback, as these clusters are local and throwaway; C locale so that sorting and messages
/// are the same on every machine.
const INITDB_ARGS: [&str; 8] = [
    "-A",
    "trust",
    "-U",
    "postgres",
    "-E",
    "UTF8",
    "--locale=C",
    "--no-sync",
];
const SERVER_BINARIES: [&str; 3] = ["initdb", "pg_ctl", "postgres"];
/// Files of a stopped data directory that belong to one run, not to the cluster.
const RUN_FILES: [&str; 4] = ["postmaster.pid", "postmaster.opts", "log", TEMPLATE_MARKER];

fn err(message: impl Into<String>) -> Error {
    Error::config(message)
}

fn has_server_binaries(dir: &Path) -> bool {
    SERVER_BINARIES.iter().all(|b| dir.join(b).is_file())
}

/// A directory holding `initdb`, `pg_ctl` and `postgres` together: `$PG_BINDIR`, then `PATH`, then
/// `pg_config --bindir`, then the newest `/usr/lib/postgresql/*/bin`.
pub fn find_bindir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("PG_BINDIR") {
        let dir = PathBuf::from(dir);
        return if has_server_binaries(&dir) {
            Ok(dir)
        } else {
            Err(err(format!(
                "PG_BINDIR={} does not contain initdb, pg_ctl and postgres",
                dir.display()
            )))
        };
    }
    let mut candidates: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        if out.status.success() {
            candidates.push(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
        }
    }
    let mut versioned: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let major = e.file_name().to_str()?.parse::<u32>().ok()?;
            Some((major, e.path().join("bin")))
        })
        .collect();
    versioned.sort();
    candidates.extend(versioned.into_iter().rev().map(|(_, dir)| dir));
    candidates
        .into_iter()
        .find(|dir| has_server_binaries(dir))
        .ok_or_else(|| {
            err("no PostgreSQL server binaries found (initdb, pg_ctl and postgres in one directory): \
                 looked at $PG_BINDIR, PATH, `pg_config --bindir` and /usr/lib/postgresql/*/bin; \
                 install the PostgreSQL server (e.g. apt-get install postgresql-15) or set PG_BINDIR")
        })
}

/// The server's major version, e.g. "15", from `postgres -V` (allowed even as root).
pub fn server_major_version(bindir: &Path) -> Result<String> {
    let out = Command::new(bindir.join("postgres"))
        .arg("-V")
        .output()
        .map_err(|e| err(format!("cannot run {}/postgres -V: {e}", bindir.display())))?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .nth(2)
        .and_then(|v| v.split(['.', ' ']).next())
        .map(str::to_owned)
        .ok_or_else(|| err(format!("unexpected `postgres -V` output: {text}")))
}

/// A port on 127.0.0.1 that was free a moment ago (callers retry if someone takes it meanwhile).
pub fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| err(format!("cannot bind a free port on 127.0.0.1: {e}")))?;
    Ok(listener
        .local_addr()
        .map_err(|e| err(e.to_string()))?
        .port())
}

/// One local PostgreSQL cluster: a data directory and the port its server listens on. A handle only:
/// dropping it leaves the server as it is (owners such as the test harness stop it themselves).
#[derive(Debug, Clone)]
pub struct Cluster {
    bindir: PathBuf,
    dir: PathBuf,
    port: u16,
    /// `-c name=value` settings for the server; starts as `DEFAULT_SETTINGS`, callers may add more.
    pub settings: Vec<(String, String)>,
}

impl Cluster {
    /// A cluster over an existing data directory; nothing runs yet.
    pub fn new(bindir: &Path, dir: &Path, port: u16) -> Result<Cluster> {
        let dir = std::path::absolute(dir)
            .map_err(|e| err(format!("bad path {}: {e}", dir.display())))?;
        let settings = DEFAULT_SETTINGS
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()));
        Ok(Cluster {
            bindir: bindir.to_owned(),
            dir,
            port,
            settings: settings.collect(),
        })
    }

    /// initdb's `dir` unless it already holds a cluster (so the demo reuses its data).
    pub fn init(dir: &Path, port: u16) -> Result<Cluster> {
        Cluster::init_in(&find_bindir()?, dir, port)
    }

    /// As `init`, with the server binaries in `bindir`.
    pub fn init_in(bindir: &Path, dir: &Path, port: u16) -> Result<Cluster> {
        Cluster::initdb(bindir, dir, port, &[])
    }

    fn initdb(bindir: &Path, dir: &Path, port: u16, extra_args: &[&str]) -> Result<Cluster> {
        let cluster = Cluster::new(bindir, dir, port)?;
        if cluster.dir.join("PG_VERSION").exists() {
            return Ok(cluster);
        }
        prepare_data_dir(&cluster.dir)?;
        let out = cluster
            .command("initdb")?
            .args(INITDB_ARGS)
            .args(extra_args)
            .arg("-D")
            .arg(&cluster.dir)
            .output()
            .map_err(|e| err(format!("cannot run initdb: {e}")))?;
        if !out.status.success() {
            return Err(err(format!(
                "initdb -D {} failed: {}",
                cluster.dir.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(cluster)
    }

    /// A new cluster in `dir` (which must not hold one) copied from the data directory `template`.
    pub fn from_template(bindir: &Path, template: &Path, dir: &Path, port: u16) -> Result<Cluster> {
        let cluster = Cluster::new(bindir, dir, port)?;
        copy_tree(template, &cluster.dir, run_as()?, &RUN_FILES)?;
        fs::set_permissions(&cluster.dir, fs::Permissions::from_mode(0o700))
            .map_err(|e| err(format!("cannot chmod {}: {e}", cluster.dir.display())))?;
        ensure_traversable(&cluster.dir)?;
        Ok(cluster)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Takes effect at the next `start`.
    pub fn set_port(&mut self, port: u16) {
        self.port = port;
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("log")
    }

    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// A PostgreSQL program from our bindir, run as the PostgreSQL user, in C locale so that its messages
    /// (which we search for "Address already in use") are never translated.
    fn command(&self, program: &str) -> Result<Command> {
        let mut cmd = Command::new(self.bindir.join(program));
        cmd.current_dir("/")
            .env("LC_ALL", "C")
            .env_remove("PGDATA")
            .stdin(Stdio::null());
        if let Some((uid, gid)) = run_as()? {
            cmd.uid(uid).gid(gid);
        }
        Ok(cmd)
    }

    /// Runs SQL in single-user mode (the server must be stopped): no port, no connection, no waiting.
    fn single_user_sql(&self, sql: &str) -> Result<()> {
        let mut child = (self.command("postgres")?)
            .arg("--single")
            .arg("-D")
            .arg(&self.dir)
            .args(["-c", "fsync=off", "postgres"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| err(format!("cannot run postgres --single: {e}")))?;
        let written = child
            .stdin
            .take()
            .map(|mut stdin| stdin.write_all(sql.as_bytes()));
        let out = child
            .wait_with_output()
            .map_err(|e| err(format!("postgres --single: {e}")))?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() || stderr.contains("ERROR:") || !matches!(written, Some(Ok(()))) {
            return Err(err(format!(
                "`{sql}` in single-user mode failed: {}",
                stderr.trim()
            )));
        }
        Ok(())
    }

    fn pg_ctl(&self, args: &[&str]) -> Result<std::process::Output> {
        self.command("pg_ctl")?
            .arg("-D")
            .arg(&self.dir)
            .args(args)
            .output()
            .map_err(|e| err(format!("cannot run pg_ctl: {e}")))
    }

    /// The postmaster's pid, if its pid file names a live process.
    pub fn pid(&self) -> Option<i32> {
        let text = fs::read_to_string(self.dir.join("postmaster.pid")).ok()?;
        let pid: i32 = text.lines().next()?.trim().parse().ok()?;
        process_exists(pid).then_some(pid)
    }

    pub fn is_running(&self) -> bool {
        self.pid().is_some()
    }

    /// Starts the server and waits until it accepts connections; on failure the error carries the log.
    /// A server left running on this directory (say, by a killed `shardgate demo`) is adopted when it
    /// listens on our port.
    pub fn start(&self) -> Result<()> {
        if self.is_running() {
            let running_port = fs::read_to_string(self.dir.join("postmaster.pid"))
                .ok()
                .and_then(|pid_file| pid_file.lines().nth(3)?.trim().parse::<u16>().ok());
            if running_port == Some(self.port) {
                return Ok(());
            }
            return Err(err(format!(
                "a server already runs on {} (port {running_port:?}, not {}); stop it first",
                self.dir.display(),
                self.port
            )));
        }
        // The pid file of a dead server: the server itself would refuse to start while its pid names a
        // zombie that no init has reaped yet, which a killed server's postmaster can be for seconds.
        let _ = fs::remove_file(self.dir.join("postmaster.pid"));
        let log_start = fs::metadata(self.log_path()).map_or(0, |m| m.len());
        let mut options = format!("-p {}", self.port);
        for (name, value) in &self.settings {
            // pg_ctl hands -o to /bin/sh; single quotes keep every value literal.
            options += &format!(" -c '{name}={}'", value.replace('\'', r"'\''"));
        }
        let log = self.log_path().to_string_lossy().into_owned();
        let out = self.pg_ctl(&["-w", "-t", "60", "-l", &log, "-o", &options, "start"])?;
        if out.status.success() {
            return Ok(());
        }
        // pg_ctl gives up after its timeout while the server may still come up: don't leave it behind.
        self.stop_immediate();
        Err(err(format!(
            "PostgreSQL on port {} ({}) did not start: {}\n--- log ---\n{}",
            self.port,
            self.dir.display(),
            String::from_utf8_lossy(&out.stderr).trim(),
            self.log_tail(log_start, 30)
        )))
    }

    /// `start`, moving to another free port when the chosen one was taken meanwhile.
    pub fn start_on_free_port(&mut self, attempts: usize) -> Result<()> {
        for _ in 1..attempts {
            match self.start() {
                Err(Error::Config { message }) if message.contains("Address already in use") => {
                    self.port = free_port()?;
                }
                other => return other,
            }
        }
        self.start()
    }

    /// The last `lines` lines written to the log since byte `from`.
    pub fn log_tail(&self, from: u64, lines: usize) -> String {
        let mut text = String::new();
        if let Ok(mut file) = fs::File::open(self.log_path()) {
            let _ = file.seek(SeekFrom::Start(from));
            let _ = file.read_to_string(&mut text);
        }
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Stops the server (fast mode: sessions are cut, a checkpoint is written), else in immediate mode.
    pub fn stop(&self) -> Result<()> {
        if !self.is_running() {
            return Ok(());
        }
        let fast = self.pg_ctl(&["-w", "-t", "30", "-m", "fast", "stop"])?;
        if fast.status.success() || !self.is_running() {
            return Ok(());
        }
        let immediate = self.pg_ctl(&["-w", "-t", "30", "-m", "immediate", "stop"])?;
        if immediate.status.success() || !self.is_running() {
            return Ok(());
        }
        Err(err(format!(
            "cannot stop PostgreSQL in {}: {}",
            self.dir.display(),
            String::from_utf8_lossy(&immediate.stderr).trim()
        )))
    }

    /// Immediate shutdown by signal, without spawning pg_ctl: for Drop impls and cleanup paths. Waits up to
    /// ten seconds for the postmaster to go, then kills it outright.
    pub fn stop_immediate(&self) {
        let Some(pid) = self.pid() else { return };
        // SAFETY: plain signals to the postmaster named in our own pid file.
        unsafe { libc::kill(pid, libc::SIGQUIT) };
        // The pid file goes before the process does, so watch the process itself.
        let deadline = Instant::now() + Duration::from_secs(10);
        while process_exists(pid) {
            if Instant::now() > deadline {
                // SAFETY: as above.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                return;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Kills the server and all its processes with SIGKILL, as a crash or a pulled cable would: clients
    /// get no goodbye message, only a dead connection. The next `start` runs crash recovery.
    pub fn kill(&self) {
        let Some(pid) = self.pid() else { return };
        // Every child of the postmaster is a session leader of its own, so no process group holds them
        // all: freeze the postmaster so it cannot fork, then kill its children, then it.
        // SAFETY (all three): signals to the postmaster named in our pid file and to its children.
        unsafe { libc::kill(pid, libc::SIGSTOP) };
        for child in os::children_of(pid) {
            unsafe { libc::kill(child, libc::SIGKILL) };
        }
        unsafe { libc::kill(pid, libc::SIGKILL) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while process_exists(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// A client connection as `postgres`; its connection task is spawned on the current tokio runtime.
    pub async fn connect(&self, db: &str) -> Result<tokio_postgres::Client> {
        let url = self.url(db);
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .map_err(|e| err(format!("cannot connect to {url}: {e}")))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(client)
    }

    /// Creates database `name` unless it exists.
    pub async fn create_database(&self, name: &str) -> Result<()> {
        let client = self.connect("postgres").await?;
        let exists = client
            .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
            .await
            .map_err(|e| err(format!("cannot list databases on port {}: {e}", self.port)))?;
        if exists.is_none() {
            let sql = format!("CREATE DATABASE \"{}\"", name.replace('"', "\"\""));
            client.batch_execute(&sql).await.map_err(|e| {
                err(format!(
                    "cannot create database {name} on port {}: {e}",
                    self.port
                ))
            })?;
        }
        Ok(())
    }
}
