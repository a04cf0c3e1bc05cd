//! A throwaway PostgreSQL cluster for the tests (crate `pg-cluster`: Debian's `postgresql`
//! binaries, a fresh data directory, a free loopback port; as root run as `postgres`). Failures
//! panic: a test without its cluster cannot say anything.
use std::path::Path;

use pg_cluster::{Cluster, MissingBinaries};

pub struct PgServer {
    cluster: Cluster,
    pub port: u16,
}

/// The cluster, or a panic with its cause; missing binaries name the script that installs them.
fn started(cluster: anyhow::Result<Cluster>) -> PgServer {
    match cluster {
        Ok(cluster) => PgServer {
            port: cluster.port(),
            cluster,
        },
        Err(e) if e.is::<MissingBinaries>() => panic!(
            "PostgreSQL server binaries are missing under /usr/lib/postgresql/*/bin: run `bash scripts/test.sh`, which installs the postgresql package"
        ),
        Err(e) => panic!("{e:#}"),
    }
}

impl PgServer {
    pub fn start() -> PgServer {
        started(Cluster::start())
    }

    /// A cluster with TLS on: `cert` and `key` (PEM) become the server's certificate.
    pub fn start_with_tls(cert: &Path, key: &Path) -> PgServer {
        started(Cluster::builder().tls(cert, key).start())
    }

    /// The postmaster's pid and its children's (the backends, checkpointer, walwriter, …).
    // No test calls it since `freeze` moved into pg-cluster; kept for tests that signal the
    // server's processes themselves.
    #[allow(dead_code)]
    pub fn pids(&self) -> Vec<i32> {
        self.cluster.pids().unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// Freeze the cluster: SIGSTOP to the postmaster and every child, by their own pids, so
    /// connections stay open and nothing answers. Returns the pids for `thaw`.
    pub fn freeze(&self) -> Vec<i32> {
        self.cluster.freeze().unwrap_or_else(|e| panic!("{e:#}"))
    }

    pub fn thaw(&self, pids: &[i32]) {
        self.cluster.thaw(pids);
    }

    pub fn stop(&self) {
        self.cluster.stop().unwrap_or_else(|e| panic!("{e:#}"));
    }

    pub fn restart(&self) {
        self.cluster.restart().unwrap_or_else(|e| panic!("{e:#}"));
    }

    /// A fresh database on this server, as a `postgres://` URL.
    pub async fn database(&self, name: &str) -> String {
        self.cluster
            .create_database(name)
            .await
            .unwrap_or_else(|e| panic!("{e:#}"))
    }

    pub fn url(&self, db: &str) -> String {
        self.cluster.url(db)
    }
}
