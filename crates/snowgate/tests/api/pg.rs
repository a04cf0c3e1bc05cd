//! A throwaway PostgreSQL cluster for the tests: Debian's `postgresql` binaries, a fresh data
//! directory, a free loopback port. `initdb` and `pg_ctl` refuse to run as root, so as root
//! they run as the `postgres` user.
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::durability::free_port;

pub struct PgServer {
    dir: tempfile::TempDir,
    bin: PathBuf,
    pub port: u16,
}

fn pg_bin() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path().join("bin"))
                .collect()
        })
        .unwrap_or_default();
    found.retain(|p| p.join("initdb").exists());
    found.sort();
    found.pop().unwrap_or_else(|| {
        panic!("PostgreSQL server binaries are missing under /usr/lib/postgresql/*/bin: run `bash scripts/test.sh`, which installs the postgresql package")
    })
}

fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

/// Run a PostgreSQL tool, as `postgres` when we are root.
fn run(bin: &Path, tool: &str, args: &[&str]) {
    let program = bin.join(tool);
    let out = if is_root() {
        Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(&program)
            .args(args)
            .output()
    } else {
        Command::new(&program).args(args).output()
    };
    let out = out.unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
    assert!(
        out.status.success(),
        "{tool} {args:?} failed: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl PgServer {
    pub fn start() -> PgServer {
        PgServer::start_configured(|_| {})
    }

    /// A cluster with TLS on: `cert` and `key` (PEM) become the server's certificate.
    pub fn start_with_tls(cert: &Path, key: &Path) -> PgServer {
        PgServer::start_configured(|data| {
            for (from, to) in [(cert, "server.crt"), (key, "server.key")] {
                let dest = data.join(to);
                std::fs::copy(from, &dest).unwrap();
                std::fs::set_permissions(
                    &dest,
                    std::os::unix::fs::PermissionsExt::from_mode(0o600),
                )
                .unwrap();
                if is_root() {
                    let pg = nix::unistd::User::from_name("postgres").unwrap().unwrap();
                    std::os::unix::fs::chown(&dest, Some(pg.uid.as_raw()), Some(pg.gid.as_raw()))
                        .unwrap();
                }
            }
            let conf = data.join("postgresql.conf");
            let mut text = std::fs::read_to_string(&conf).unwrap();
            text.push_str(
                "\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n",
            );
            std::fs::write(&conf, text).unwrap();
        })
    }

    /// The postmaster's pid and its children's (the backends, checkpointer, walwriter, …).
    pub fn pids(&self) -> Vec<i32> {
        let pidfile = self.dir.path().join("data").join("postmaster.pid");
        let Some(master) = std::fs::read_to_string(pidfile)
            .ok()
            .and_then(|t| t.lines().next().and_then(|l| l.trim().parse::<i32>().ok()))
        else {
            return Vec::new();
        };
        let mut pids = vec![master];
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            // `pid (comm) state ppid …`: comm may hold spaces, so read after the last `)`.
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<i32>().ok());
            if ppid == Some(master) {
                pids.push(pid);
            }
        }
        pids
    }

    /// Freeze the cluster: SIGSTOP to the postmaster and every child, by their own pids, so
    /// connections stay open and nothing answers. Returns the pids for `thaw`.
    pub fn freeze(&self) -> Vec<i32> {
        let pids = self.pids();
        for pid in &pids {
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(*pid),
                nix::sys::signal::Signal::SIGSTOP,
            )
            .unwrap();
        }
        pids
    }

    pub fn thaw(&self, pids: &[i32]) {
        for pid in pids {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(*pid),
                nix::sys::signal::Signal::SIGCONT,
            );
        }
    }

    fn start_configured(configure: impl FnOnce(&Path)) -> PgServer {
        let bin = pg_bin();
        let dir = tempfile::tempdir().unwrap();
        // The postgres user must be able to create its data directory and socket here.
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o777),
        )
        .unwrap();
        let data = dir.path().join("data");
        run(
            &bin,
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
            ],
        );
        configure(&data);
        let server = PgServer {
            dir,
            bin,
            port: free_port(),
        };
        server.pg_ctl_start();
        server
    }

    fn pg_ctl_start(&self) {
        let data = self.dir.path().join("data");
        let log = self.dir.path().join("postgres.log");
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=200",
            self.port,
            self.dir.path().display()
        );
        run(
            &self.bin,
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-l",
                log.to_str().unwrap(),
                "-o",
                &opts,
                "-w",
                "start",
            ],
        );
    }

    pub fn stop(&self) {
        let data = self.dir.path().join("data");
        run(
            &self.bin,
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        );
    }

    pub fn restart(&self) {
        self.pg_ctl_start();
    }

    /// A fresh database on this server, as a `postgres://` URL.
    pub async fn database(&self, name: &str) -> String {
        let (client, conn) = tokio_postgres::connect(
            &format!(
                "host=127.0.0.1 port={} user=postgres dbname=postgres",
                self.port
            ),
            tokio_postgres::NoTls,
        )
        .await
        .expect("connect to the test cluster");
        let driver = tokio::spawn(conn);
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        drop(client);
        let _ = driver.await;
        self.url(name)
    }

    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        // A test that failed while the cluster was frozen must not leave it stopped.
        self.thaw(&self.pids());
        let data = self.dir.path().join("data");
        let program = self.bin.join("pg_ctl");
        let args = [
            "-D",
            data.to_str().unwrap(),
            "-m",
            "immediate",
            "-w",
            "stop",
        ];
        let _ = if is_root() {
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(&program)
                .args(args)
                .output()
        } else {
            Command::new(&program).args(args).output()
        };
    }
}
