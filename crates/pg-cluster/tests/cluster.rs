//! A real cluster from the installed server binaries (as root, run as `postgres`).
use pg_cluster::Cluster;

#[tokio::test]
async fn a_started_cluster_keeps_default_durability_and_survives_a_freeze_and_a_restart() {
    let cluster = Cluster::start().unwrap_or_else(|e| panic!("{e:#}"));
    let url = cluster.create_database("probe").await.unwrap();
    assert_eq!(
        url,
        format!("postgres://postgres@127.0.0.1:{}/probe", cluster.port())
    );
    let client = cluster.connect("probe").await.unwrap();
    for setting in ["fsync", "synchronous_commit"] {
        let row = client
            .query_one(&format!("SHOW {setting}"), &[])
            .await
            .unwrap();
        assert_eq!(row.get::<_, String>(0), "on", "{setting}");
    }
    drop(client);

    let pids = cluster.freeze().unwrap();
    // The postmaster and at least its checkpointer.
    assert!(pids.len() >= 2, "{pids:?}");
    cluster.thaw(&pids);
    let commits = "SELECT xact_commit FROM pg_stat_database WHERE datname = 'probe'";
    assert!(cluster.query_i64("probe", commits).await.unwrap() >= 0);

    cluster.stop().unwrap();
    assert!(cluster.pids().unwrap().is_empty());
    cluster.restart().unwrap();
    assert_eq!(
        cluster.query_i64("probe", "SELECT 41 + 1").await.unwrap(),
        42
    );
}
