//! Tests of the test harness itself: real clusters start, answer, stop and restart on demand, and leave
//! nothing behind, neither after Drop nor after the test process is SIGKILLed.

mod support;

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::Shards;

/// Set in the child process of `killed_test_process_leaves_no_server`.
const CHILD_ENV: &str = "SHARDGATE_HARNESS_CHILD";

fn accepts(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).is_ok()
}

fn alive(pid: i32) -> bool {
    shardgate::localpg::process_exists(pid)
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_clusters_answer_stop_restart_and_clean_up() {
    let started = Instant::now();
    let shards = Shards::start(3).await;
    eprintln!("Shards::start(3) took {:?}", started.elapsed());

    assert_eq!(shards.len(), 3);
    let urls = shards.urls();
    let ports: Vec<u16> = (0..3).map(|i| shards.cluster(i).port()).collect();
    for (i, url) in urls.iter().enumerate() {
        assert_eq!(
            url,
            &format!("postgres://postgres@127.0.0.1:{}/app", ports[i])
        );
        let row = shards
            .client(i)
            .await
            .query_one(
                "SELECT current_database()::text, current_setting('port')::int",
                &[],
            )
            .await
            .unwrap();
        assert_eq!(row.get::<_, String>(0), "app");
        assert_eq!(row.get::<_, i32>(1), i32::from(ports[i]));
    }
    assert!(ports[0] != ports[1] && ports[1] != ports[2] && ports[0] != ports[2]);
    assert!(shards
        .shards_toml()
        .contains(&format!("name = \"s2\"\nurl = \"{}\"", urls[2])));

    let survivor = shards.client(1).await;
    shards.stop_shard(1);
    assert!(!shards.cluster(1).is_running());
    assert!(tokio_postgres::connect(&urls[1], tokio_postgres::NoTls)
        .await
        .is_err());
    assert!(
        survivor.simple_query("SELECT 1").await.is_err(),
        "sessions end with the server"
    );
    shards
        .client(0)
        .await
        .simple_query("SELECT 1")
        .await
        .unwrap();

    shards.start_shard(1);
    let back = shards
        .client(1)
        .await
        .query_one("SELECT 42", &[])
        .await
        .unwrap();
    assert_eq!(back.get::<_, i32>(0), 42);

    let pids: Vec<i32> = (0..3).map(|i| shards.cluster(i).pid().unwrap()).collect();
    let base = shards.cluster(0).dir().parent().unwrap().to_owned();
    drop(shards);
    for (pid, port) in pids.iter().zip(&ports) {
        assert!(!alive(*pid), "postmaster {pid} survived Drop");
        assert!(!accepts(*port), "port {port} still accepts after Drop");
    }
    assert!(!base.exists(), "{} survived Drop", base.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn databases_share_one_cluster() {
    let shards = Shards::databases(3).await;
    let port = shards.cluster(0).port();
    for i in 0..3 {
        assert_eq!(
            shards.url(i),
            format!("postgres://postgres@127.0.0.1:{port}/shard_{i}")
        );
        let client = shards.client(i).await;
        client
            .batch_execute("CREATE TABLE t (id int)")
            .await
            .unwrap();
        let row = client
            .query_one("SELECT current_database()::text", &[])
            .await
            .unwrap();
        assert_eq!(row.get::<_, String>(0), format!("shard_{i}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extra_settings_and_db_name_apply() {
    let options = support::Options {
        db_name: "other".into(),
        settings: vec![("application_name".into(), "it's set".into())],
    };
    let shards = Shards::start_with(1, options).await;
    assert!(shards.url(0).ends_with("/other"));
    let row = shards
        .client(0)
        .await
        .query_one("SHOW application_name", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "it's set");
}

/// The half of `killed_test_process_leaves_no_server` that runs in the child: holds a cluster until killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_holds_a_cluster_until_killed() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    let shards = Shards::start(1).await;
    let cluster = shards.cluster(0);
    println!(
        "READY {} {} {}",
        cluster.pid().unwrap(),
        cluster.port(),
        cluster.dir().display()
    );
    tokio::time::sleep(Duration::from_secs(120)).await;
}

#[test]
fn killed_test_process_leaves_no_server() {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_holds_a_cluster_until_killed",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, "1")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let ready = stdout
        .lines()
        .map(Result::unwrap)
        // libtest's "test name ... " precedes it on the same line.
        .find_map(|line| line.split_once("READY ").map(|(_, rest)| rest.to_owned()))
        .expect("the child never reported its cluster");
    let fields: Vec<&str> = ready.split_whitespace().collect();
    let (pid, port, dir): (i32, u16, PathBuf) = (
        fields[0].parse().unwrap(),
        fields[1].parse().unwrap(),
        fields[2].into(),
    );
    assert!(alive(pid) && accepts(port));

    child.kill().unwrap(); // SIGKILL: no Drop, no atexit, only the reaper can clean up
    child.wait().unwrap();
    wait_until(
        "the orphaned postmaster exits",
        Duration::from_secs(15),
        || !alive(pid),
    );
    assert!(!accepts(port));
    wait_until(
        "the orphaned cluster's files are removed",
        Duration::from_secs(15),
        || !dir.exists(),
    );
}

/// The `shardgate demo` path: initdb into a fresh directory, reuse it on the next run, and say why a
/// start failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_init_reuse_and_start_failures() {
    use shardgate::localpg::{free_port, Cluster};
    use std::os::unix::fs::PermissionsExt;

    let scratch = tempfile::tempdir_in(support::scratch_root()).unwrap();
    // A private parent, as a home directory is: the server's user must still reach its data.
    std::fs::set_permissions(scratch.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let dir = scratch.path().join("demo/s0");
    let squatter = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = squatter.local_addr().unwrap().port();

    let mut cluster = Cluster::init(&dir, taken).unwrap();
    assert!(dir.join("PG_VERSION").exists());
    let failure = cluster.start().unwrap_err().to_string();
    assert!(failure.contains("Address already in use"), "{failure}");
    assert!(failure.contains("--- log ---"), "{failure}");
    assert!(!cluster.is_running());

    cluster.start_on_free_port(3).unwrap();
    assert_ne!(cluster.port(), taken);
    cluster.create_database("app").await.unwrap();
    let client = cluster.connect("app").await.unwrap();
    client
        .batch_execute("CREATE TABLE kept (v int); INSERT INTO kept VALUES (7)")
        .await
        .unwrap();
    cluster.stop().unwrap();
    assert!(!cluster.is_running());

    let again = Cluster::init(&dir, free_port().unwrap()).unwrap();
    again.start().unwrap();
    again.start().unwrap(); // already running on its port: adopted, not an error
    let row = (again.connect("app").await.unwrap())
        .query_one("SELECT v FROM kept", &[])
        .await
        .unwrap();
    assert_eq!(
        row.get::<_, i32>(0),
        7,
        "the second init must reuse the data directory"
    );
    again.stop_immediate();
    assert!(!again.is_running());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_shard_drops_connections_and_recovers_its_data() {
    let shards = Shards::start(2).await;
    let c = shards.client(1).await;
    c.batch_execute("CREATE TABLE t (v int); INSERT INTO t VALUES (5)")
        .await
        .unwrap();
    let pid = shards.cluster(1).pid().unwrap();

    shards.kill_shard(1);
    assert!(!alive(pid) && !shards.cluster(1).is_running());
    let err = c.simple_query("SELECT 1").await.unwrap_err();
    assert!(
        err.as_db_error().is_none(),
        "no server message after a kill: {err}"
    );
    assert!(
        tokio_postgres::connect(&shards.url(1), tokio_postgres::NoTls)
            .await
            .is_err()
    );
    shards
        .client(0)
        .await
        .simple_query("SELECT 1")
        .await
        .unwrap();

    shards.start_shard(1);
    let row = shards
        .client(1)
        .await
        .query_one("SELECT v FROM t", &[])
        .await
        .unwrap();
    assert_eq!(
        row.get::<_, i32>(0),
        5,
        "crash recovery keeps committed rows"
    );
}
