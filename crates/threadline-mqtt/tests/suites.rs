//! The shared broker suites (threadline_testkit::suites) against the local Mosquitto
//! (127.0.0.1:1883, MQTT 5, QoS 1, acknowledged by hand after handling). Each prints a
//! loud SKIP and returns when Mosquitto is unreachable, unless
//! THREADLINE_REQUIRE_SERVICES=1.

mod support;

use support::Mosquitto;
use threadline_testkit::suites;

#[tokio::test]
async fn mosquitto_suite_round_trip_trust_malformed() {
    let Some(mut b) = Mosquitto::new("mosquitto_suite_round_trip_trust_malformed").await else {
        return;
    };
    suites::round_trip(&mut b).await;
    suites::trust(&mut b).await;
    suites::malformed_and_oversized(&mut b).await;
    b.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_suite_thousand_concurrent() {
    let Some(mut b) = Mosquitto::new("mosquitto_suite_thousand_concurrent").await else {
        return;
    };
    suites::concurrent(&mut b, 1000).await;
    b.finish().await;
}
