//! Rules from a TOML file: loaded, reloaded on change, a broken file keeps the last
//! good table and says why; a call in flight keeps the rule it was given.

use std::path::PathBuf;
use std::time::Duration;

use threadline::RoutingKey;
use threadline_route::{FileRules, RequestHead, Router, RuleErrorKind, Status};

const WAIT: Duration = Duration::from_secs(10);

fn temp_file(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(threadline_testkit::unique("threadline-route", '-'));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// Waits (bounded) until the router's status satisfies `f`.
async fn until(router: &Router, what: &str, f: impl Fn(&Status) -> bool) -> Status {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let s = router.status();
        if f(&s) {
            return s;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what}: {s}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn upstream_of(router: &Router, service: &str, key: &str) -> Option<String> {
    router
        .route(
            service,
            None,
            &RoutingKey::new(key).unwrap(),
            &RequestHead::none(),
        )
        .map(|r| r.upstream().to_string())
}

fn rule(id: &str, service: &str, key: &str, port: u16) -> String {
    format!(
        "[[rule]]\nid = \"{id}\"\nservice = \"{service}\"\nkey = \"{key}\"\nupstream = \"http://127.0.0.1:{port}\"\n"
    )
}

#[tokio::test]
async fn reloads_on_change_and_keeps_the_last_good_table() {
    let path = temp_file("routes.toml");
    std::fs::write(&path, rule("a", "warehouse", "alice", 9001)).unwrap();
    let router = Router::new();
    router.add_source(FileRules::new(&path).interval(Duration::from_millis(20)));
    until(&router, "first load", |s| s.sources[0].updates == 1).await;
    assert_eq!(
        upstream_of(&router, "warehouse", "alice").as_deref(),
        Some("http://127.0.0.1:9001")
    );
    let in_flight = router
        .route(
            "warehouse",
            None,
            &RoutingKey::new("alice").unwrap(),
            &RequestHead::none(),
        )
        .unwrap();
    let old_table = router.table();

    // A change: alice moves, bob arrives.
    let text = format!(
        "{}{}",
        rule("a", "warehouse", "alice", 9002),
        rule("b", "warehouse", "bob", 9003)
    );
    std::fs::write(&path, text).unwrap();
    until(&router, "reload", |s| s.sources[0].updates == 2).await;
    assert_eq!(
        upstream_of(&router, "warehouse", "alice").as_deref(),
        Some("http://127.0.0.1:9002")
    );
    assert_eq!(
        upstream_of(&router, "warehouse", "bob").as_deref(),
        Some("http://127.0.0.1:9003")
    );
    // What a call in flight holds is untouched by the swap.
    assert_eq!(in_flight.upstream().to_string(), "http://127.0.0.1:9001");
    assert_eq!(old_table.len(), 1);

    // Broken files: the last good table stays, the status says why.
    for (broken, kind) in [
        ("[[rule]]\nid = \"a\"\nservice = ", RuleErrorKind::Syntax),
        (
            "[[rule]]\nid = \"a\"\nservice = \"w\"\nkey = \"bad key\"\nupstream = \"http://x\"\n",
            RuleErrorKind::InvalidRule,
        ),
        (
            "[[rule]]\nid = \"a\"\nservice = \"w\"\nkey = \"k\"\nupstream = \"not a url\"\n",
            RuleErrorKind::InvalidRule,
        ),
        (
            "[[rule]]\nid = \"a\"\nservice = \"w\"\nkey = \"k\"\nupstream = \"http://x\"\npath_regex = \"(\"\n",
            RuleErrorKind::InvalidRule,
        ),
        (
            "[[rule]]\nid = \"a\"\nservice = \"w\"\nkey = \"k\"\nupstream = \"http://x\"\nsmoke = 1\n",
            RuleErrorKind::Syntax,
        ),
    ] {
        // A distinct length each time: the change is seen whatever the clock's grain.
        let padded = format!("{broken}\n# {}\n", "x".repeat(fastpad(broken)));
        std::fs::write(&path, padded).unwrap();
        let s = until(&router, "error reported", |s| {
            s.sources[0]
                .last_error
                .as_ref()
                .is_some_and(|(_, e)| e.kind() == kind)
        })
        .await;
        assert!(s.to_string().contains("last good rules kept"), "{s}");
        assert_eq!(s.rules, 2);
        assert_eq!(
            upstream_of(&router, "warehouse", "alice").as_deref(),
            Some("http://127.0.0.1:9002")
        );
        // Reset the error so that the next case waits for its own.
        std::fs::write(
            &path,
            format!(
                "{}{}",
                rule("a", "warehouse", "alice", 9002),
                rule("b", "warehouse", "bob", 9003)
            ),
        )
        .unwrap();
        until(&router, "good again", |s| s.sources[0].last_error.is_none()).await;
    }

    // An id used twice cannot make a table: refused whole.
    std::fs::write(
        &path,
        format!("{}{}", rule("a", "x", "k", 1), rule("a", "y", "k", 2)),
    )
    .unwrap();
    let s = until(&router, "duplicate ids", |s| s.has_errors()).await;
    assert_eq!(s.rules, 2);
    // A missing file: the same.
    std::fs::remove_file(&path).unwrap();
    let s = until(&router, "missing file", |s| {
        s.sources[0]
            .last_error
            .as_ref()
            .is_some_and(|(_, e)| e.kind() == RuleErrorKind::Source)
    })
    .await;
    assert_eq!(s.rules, 2);
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

fn fastpad(s: &str) -> usize {
    s.len() % 7 + 1
}

#[test]
fn parses_every_field() {
    let text = r#"
        [[rule]]
        id = "full"
        service = "orders:8443"
        keys = ["alice", "bob"]
        upstream = "http://10.0.0.7:8080"
        path_regex = "^/v[12]/"
        method = "post"
        headers = { x-feature = "^beta" }
        fallback = true
        expires_at = 4102444800
    "#;
    let rules = FileRules::parse(text, None).unwrap();
    let r = &rules[0];
    assert_eq!(r.service(), "orders");
    assert_eq!(r.port(), Some(8443));
    assert_eq!(r.keys().len(), 2);
    assert!(r.allows_fallback());
    assert!(r.has_conditions());
    assert!(r.expires().is_some());
    // ttl_secs needs a write time.
    let e = FileRules::parse(
        "[[rule]]\nid=\"t\"\nservice=\"s\"\nkey=\"k\"\nupstream=\"http://x\"\nttl_secs=5\n",
        None,
    )
    .unwrap_err();
    assert_eq!(e.kind(), RuleErrorKind::InvalidRule);
    // Two path conditions at once.
    let e = FileRules::parse("[[rule]]\nid=\"t\"\nservice=\"s\"\nkey=\"k\"\nupstream=\"http://x\"\npath=\"/a\"\npath_prefix=\"/b\"\n", None).unwrap_err();
    assert_eq!(e.kind(), RuleErrorKind::InvalidRule);
}

/// A reader never sees half of an update: two rules changed together are read
/// together, from whichever table is in force.
#[test]
fn tables_are_swapped_whole() {
    use threadline_route::{Rule, Upstream};
    let router = Router::new();
    let set = |port: u16| {
        let up = Upstream::parse(&format!("http://127.0.0.1:{port}")).unwrap();
        vec![
            Rule::new("a", "warehouse", ["alice"], up.clone()).unwrap(),
            Rule::new("b", "warehouse", ["bob"], up).unwrap(),
        ]
    };
    router.set_rules("code", set(1)).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (router, stop) = (router.clone(), stop.clone());
        std::thread::spawn(move || {
            let (alice, bob) = (
                RoutingKey::new("alice").unwrap(),
                RoutingKey::new("bob").unwrap(),
            );
            let mut reads = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) || reads < 1000 {
                let t = router.table();
                let a = t
                    .route("warehouse", None, &alice, &RequestHead::none())
                    .unwrap();
                let b = t
                    .route("warehouse", None, &bob, &RequestHead::none())
                    .unwrap();
                assert_eq!(a.upstream(), b.upstream());
                reads += 1;
            }
            reads
        })
    };
    for i in 0..2000u16 {
        router.set_rules("code", set(2 + i % 2)).unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(reader.join().unwrap() >= 1000);
}
