//! A throwaway PostgreSQL cluster from Debian's server binaries (the `postgresql` package puts
//! them in `/usr/lib/postgresql/<major>/bin`): a fresh data directory in a temporary directory,
//! a free loopback port, PostgreSQL's default durability (`fsync` and `synchronous_commit` stay
//! on: the figures measured on it are those of a durable store), stopped and removed when
//! dropped. `initdb`, `pg_ctl` and `postgres` refuse to run as root, so as root they run as the
//! `postgres` user (`runuser -u postgres --`).
use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

mod process;

pub use process::child_pids;

/// The error when no `/usr/lib/postgresql/*/bin` holds an `initdb`; callers may look for it
/// with `anyhow::Error::is` to give their own hint.
#[derive(Debug)]
pub struct MissingBinaries;

impl fmt::Display for MissingBinaries {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PostgreSQL server binaries are missing under /usr/lib/postgresql/*/bin: install the postgresql package")
    }
}

impl std::error::Error for MissingBinaries {}

/// The newest `/usr/lib/postgresql/<major>/bin` that holds an `initdb`.
pub fn bin_dir() -> Result<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter_map(|e| {
                    // Compare majors as numbers: "9.6" < "10" < "15".
                    let major = e
                        .file_name()
                        .to_string_lossy()
                        .split('.')
                        .next()?
                        .parse()
                        .ok()?;
                    Some((major, e.path().join("bin")))
                })
                .collect()
        })
        .unwrap_or_default();
    found.retain(|(_, p)| p.join("initdb").is_file());
    found.sort();
    found
        .pop()
        .map(|(_, p)| p)
        .ok_or_else(|| MissingBinaries.into())
}

fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

/// Run a PostgreSQL tool from `bin`, as `postgres` when we are root; an error holds its output.
fn run(bin: &Path, tool: &str, args: &[&str]) -> Result<()> {
    let program = bin.join(tool);
    let out = if is_root() {
        Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(&program)
            .args(args)
            .output()
    } else {
        Command::new(&program).args(args).output()
    }
    .with_context(|| format!("cannot run {}", program.display()))?;
    anyhow::ensure!(
        out.status.success(),
        "{tool} {args:?} failed: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

fn path_str(p: &Path) -> Result<&str> {
    p.to_str()
        .with_context(|| format!("{} is not UTF-8", p.display()))
}

/// A free loopback port (the OS picks it; a race with another process binding it is possible
/// but `pg_ctl start` then fails with a clear log line).
fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")
        .context("cannot bind a loopback port")?
        .local_addr()?
        .port())
}

/// As root the cluster's files belong to `postgres`, which must be able to reach them: every
/// directory above ours must be searchable by others (tempfile makes its directories 0700).
fn check_searchable(dir: &Path) -> Result<()> {
    for ancestor in dir.ancestors().skip(1) {
        let mode = std::fs::metadata(ancestor)
            .with_context(|| format!("cannot stat {}", ancestor.display()))?
            .permissions()
            .mode();
        anyhow::ensure!(
            mode & 0o001 != 0,
            "{} (mode {:o}) is not searchable by the postgres user, which runs the cluster: choose a directory others may traverse",
            ancestor.display(),
            mode & 0o7777
        );
    }
    Ok(())
}

/// How to start a cluster: where, and with TLS or not.
#[derive(Default)]
pub struct Builder {
    parent: Option<PathBuf>,
    tls: Option<(PathBuf, PathBuf)>,
}

impl Builder {
    /// Create the cluster's temporary directory in `dir` (default: the system's temp directory),
    /// e.g. to measure on a given disk.
    pub fn parent(mut self, dir: &Path) -> Builder {
        self.parent = Some(dir.to_path_buf());
        self
    }

    /// Turn TLS on: `cert` and `key` (PEM) become the server's certificate (`ssl = on`).
    pub fn tls(mut self, cert: &Path, key: &Path) -> Builder {
        self.tls = Some((cert.to_path_buf(), key.to_path_buf()));
        self
    }

    /// `initdb`, configure, `pg_ctl start`; the cluster answers when this returns.
    pub fn start(self) -> Result<Cluster> {
        let bin = bin_dir()?;
        let mut tmp = tempfile::Builder::new();
        tmp.prefix("pg-cluster-");
        let dir = match &self.parent {
            Some(p) => tmp.tempdir_in(p),
            None => tmp.tempdir(),
        }
        .context("cannot create the cluster's directory")?;
        if is_root() {
            check_searchable(dir.path())?;
        }
        // The postgres user must be able to create its data directory and socket here.
        std::fs::set_permissions(dir.path(), PermissionsExt::from_mode(0o777))?;
        let data = dir.path().join("data");
        // `--no-sync` only skips initdb's own flush of the files it wrote (a throwaway cluster
        // need not survive a crash of the machine); the server's fsync stays on.
        run(
            &bin,
            "initdb",
            &[
                "-D",
                path_str(&data)?,
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
            ],
        )?;
        if let Some((cert, key)) = &self.tls {
            configure_tls(&data, cert, key)?;
        }
        let cluster = Cluster {
            dir,
            bin,
            port: free_port()?,
        };
        cluster.pg_ctl_start()?;
        Ok(cluster)
    }
}

/// Copy the certificate and key into the data directory, owned by `postgres` and private to it
/// (PostgreSQL refuses a key others can read), and turn `ssl` on.
fn configure_tls(data: &Path, cert: &Path, key: &Path) -> Result<()> {
    for (from, to) in [(cert, "server.crt"), (key, "server.key")] {
        let dest = data.join(to);
        std::fs::copy(from, &dest)
            .with_context(|| format!("cannot copy {} into the cluster", from.display()))?;
        std::fs::set_permissions(&dest, PermissionsExt::from_mode(0o600))?;
        if is_root() {
            let pg =
                nix::unistd::User::from_name("postgres")?.context("there is no postgres user")?;
            std::os::unix::fs::chown(&dest, Some(pg.uid.as_raw()), Some(pg.gid.as_raw()))?;
        }
    }
    let conf = data.join("postgresql.conf");
    let mut text = std::fs::read_to_string(&conf)?;
    text.push_str("\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n");
    std::fs::write(&conf, text)?;
    Ok(())
}

/// A running cluster; stopped (`-m immediate`) and its directory removed when dropped.
pub struct Cluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
}

impl Cluster {
    /// A cluster in the system's temp directory, without TLS.
    pub fn start() -> Result<Cluster> {
        Builder::default().start()
    }

    pub fn builder() -> Builder {
        Builder::default()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The cluster's temporary directory: the data directory, the socket and the server log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The directory of the server binaries in use (`pg_test_fsync`, `psql`, … are there too).
    pub fn bin_dir(&self) -> &Path {
        &self.bin
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    fn pg_ctl_start(&self) -> Result<()> {
        let data = self.data_dir();
        let log = self.log_path();
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=200",
            self.port,
            self.dir.path().display()
        );
        let started = run(
            &self.bin,
            "pg_ctl",
            &[
                "-D",
                path_str(&data)?,
                "-l",
                path_str(&log)?,
                "-o",
                &opts,
                "-w",
                "start",
            ],
        );
        started.with_context(|| {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(20).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            format!(
                "PostgreSQL did not start; its log ends:\n{}",
                tail.join("\n")
            )
        })
    }

    /// `pg_ctl stop -m immediate`: every server process exits at once, as in a crash (the next
    /// start replays the WAL).
    pub fn stop(&self) -> Result<()> {
        let data = self.data_dir();
        run(
            &self.bin,
            "pg_ctl",
            &["-D", path_str(&data)?, "-m", "immediate", "-w", "stop"],
        )
    }

    /// Start again after `stop`, on the same port and data directory.
    pub fn restart(&self) -> Result<()> {
        self.pg_ctl_start()
    }

    /// The postmaster's pid and its children's (the backends, checkpointer, walwriter, …);
    /// empty when the server is not running.
    pub fn pids(&self) -> Result<Vec<i32>> {
        let pidfile = self.data_dir().join("postmaster.pid");
        // postmaster.pid's first line is the postmaster's pid (PostgreSQL docs, "Database File
        // Layout"); the file is gone once it has stopped.
        let Some(master) = std::fs::read_to_string(pidfile)
            .ok()
            .and_then(|t| t.lines().next().and_then(|l| l.trim().parse::<i32>().ok()))
        else {
            return Ok(Vec::new());
        };
        let mut pids = vec![master];
        pids.extend(child_pids(master)?);
        Ok(pids)
    }

    /// Freeze the cluster: SIGSTOP to the postmaster and every child, by their own pids, so
    /// connections stay open and nothing answers. Returns the pids for `thaw`.
    pub fn freeze(&self) -> Result<Vec<i32>> {
        let pids = self.pids()?;
        for pid in &pids {
            kill(Pid::from_raw(*pid), Signal::SIGSTOP)
                .with_context(|| format!("cannot stop PostgreSQL process {pid}"))?;
        }
        Ok(pids)
    }

    /// SIGCONT to `pids`; a pid that has exited meanwhile is no error.
    pub fn thaw(&self, pids: &[i32]) {
        for pid in pids {
            let _ = kill(Pid::from_raw(*pid), Signal::SIGCONT);
        }
    }

    /// `postgres://postgres@127.0.0.1:PORT/DB`.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// A client to database `db`, its connection driven by a tokio task that ends with it.
    pub async fn connect(&self, db: &str) -> Result<tokio_postgres::Client> {
        connect(&self.url(db)).await
    }

    /// A fresh database `name` on this cluster; its URL.
    pub async fn create_database(&self, name: &str) -> Result<String> {
        let client = self.connect("postgres").await?;
        client
            .batch_execute(&format!("CREATE DATABASE {}", quote_identifier(name)))
            .await
            .with_context(|| format!("cannot create database {name}"))?;
        Ok(self.url(name))
    }

    /// Run `sql` in `db`; the first column of its one row, as an integer (e.g. a counter of
    /// `pg_stat_database`).
    pub async fn query_i64(&self, db: &str, sql: &str) -> Result<i64> {
        query_i64(&self.connect(db).await?, sql).await
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // A caller that failed while the cluster was frozen must not leave it stopped: a
        // stopped postmaster ignores `pg_ctl stop` until it is continued.
        if let Ok(pids) = self.pids() {
            self.thaw(&pids);
        }
        let _ = self.stop();
    }
}

/// Connect with `url` (a `postgres://` URL, without TLS), the connection driven by a tokio
/// task that ends when the client is dropped.
pub async fn connect(url: &str) -> Result<tokio_postgres::Client> {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .context("cannot connect to PostgreSQL")?;
    tokio::spawn(conn);
    Ok(client)
}

/// The first column of `sql`'s one row, as an integer (`int8`, or `int4`/`int2` widened).
pub async fn query_i64(client: &tokio_postgres::Client, sql: &str) -> Result<i64> {
    let row = client
        .query_one(sql, &[])
        .await
        .with_context(|| format!("query failed: {sql}"))?;
    let value = row
        .try_get::<_, i64>(0)
        .or_else(|_| row.try_get::<_, i32>(0).map(i64::from))
        .or_else(|_| row.try_get::<_, i16>(0).map(i64::from))
        .with_context(|| format!("not an integer: {sql}"))?;
    Ok(value)
}

/// `name` as a PostgreSQL identifier in double quotes (PostgreSQL docs, "Identifiers and Key
/// Words": a double quote inside is written twice).
pub fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::quote_identifier;

    #[test]
    fn an_identifier_with_a_double_quote_is_quoted_with_it_doubled() {
        assert_eq!(quote_identifier("bench"), "\"bench\"");
        assert_eq!(quote_identifier("a\"b"), "\"a\"\"b\"");
    }
}
