//! Cluster configuration: `--check-config`, and NATS credentials.

use super::*;

/// `--check-config` refuses what a cluster node cannot run, naming the
/// field, and takes the example configs. Needs no NATS (nothing connects).
#[test]
fn check_config_refuses_bad_cluster_configs() {
    let dir = Scratch::new("check-config");
    let check = |name: &str, toml: &str| {
        let path = dir.0.join(name);
        std::fs::write(&path, toml).unwrap();
        Command::new(BIN)
            .args(["--config", path.to_str().unwrap(), "--check-config"])
            .output()
            .unwrap()
    };
    let refused = |name: &str, toml: &str, field: &str| {
        let out = check(name, toml);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {err}");
        assert!(
            err.contains(&format!("{field}: ")),
            "{name} names {field}: {err}"
        );
    };
    refused(
        "edge-feeds.toml",
        "[cluster]\nrole = \"edge\"\n\n[[feeds]]\nkind = \"sim\"\nname = \"s\"\n",
        "feeds",
    );
    for (i, prefix) in ["a.*", "a..b", "$JS", "a b", "x.>"].iter().enumerate() {
        for role in ["edge", "ingest"] {
            refused(
                &format!("prefix-{role}-{i}.toml"),
                &format!("[cluster]\nrole = \"{role}\"\nsubject_prefix = \"{prefix}\"\n"),
                "cluster.subject_prefix",
            );
        }
    }
    refused(
        "stale.toml",
        "[cluster]\nrole = \"edge\"\nstatus_interval_ms = 500\nstale_after_ms = 600\n",
        "cluster.stale_after_ms",
    );
    // An edge without feeds, and the examples, pass.
    for toml in [
        "[cluster]\nrole = \"edge\"\nsubject_prefix = \"md.eu-1\"\n".to_string(),
        std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("feeds/cluster-edge.toml"),
        )
        .unwrap(),
        std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("feeds/cluster-ingest.toml"),
        )
        .unwrap(),
    ] {
        let out = check("good.toml", &toml);
        assert!(
            out.status.success(),
            "{toml}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("configuration OK"));
    }
}

/// NATS with user/password auth: nodes configured with the credentials
/// connect and serve; the edge's connection is authorized as that user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs nats-server: run scripts/test"]
async fn nodes_authenticate_to_nats() {
    let dir = Scratch::new("auth");
    let nats = NatsServer::start_with(&dir.0, &["--user", "tg", "--pass", "s3cret"]).await;
    let creds = "user = \"tg\"\npassword = \"s3cret\"\n";
    let ingest_cfg = ingest_toml(&nats, "t10", &["AAPL"]).replacen(
        "[cluster]\n",
        &format!("[cluster]\n{creds}"),
        1,
    );
    assert!(ingest_cfg.contains("password"), "{ingest_cfg}");
    let ingest = Node::start(&dir.0, "ingest", &ingest_cfg).await;
    let edge = Node::start(
        &dir.0,
        "edge-t10",
        &edge_toml(&nats, "t10", 50, &format!("node = \"edge-t10\"\n{creds}")),
    )
    .await;
    wait_learned(edge.addr, None, &["AAPL"]).await;
    wait_feed_state(edge.addr, None, "live").await;
    let (mut c, _) = Client::connect_welcomed(edge.addr).await;
    c.subscribe(1, &["AAPL"]).await;
    let mut p = Pusher::new(ingest.addr);
    let want = p.push(&["AAPL"]).await;
    assert_eq!(read_quotes(&mut c, &want).await, want);
    // The server lists the edge's connection as the authorized user.
    let (_, body) = nats_get(nats.monitor, "/connz?auth=1").await.unwrap();
    let v: Value = serde_json::from_str(&body).unwrap();
    let edge_conn = v["connections"]
        .as_array()
        .and_then(|l| l.iter().find(|c| c["name"] == "edge-t10"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(edge_conn["authorized_user"], "tg", "{body}");
}
