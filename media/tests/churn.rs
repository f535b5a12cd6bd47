//! Churn: 200 joins and leaves leave no relay state, tasks or peer
//! connections behind.

mod support;

use std::sync::{Arc, Weak};
use std::time::Duration;

use webrtc::peer_connection::RTCPeerConnection;

use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_leaves_no_state_tasks_or_connections_behind() {
    let (
        Setup {
            relay,
            clients,
            api,
            _serial,
            ..
        },
        publ,
    ) = setup_with_publisher().await;

    const ROUNDS: usize = 20;
    const PER_ROUND: usize = 10;
    let mut rejoins = 0;
    let mut weak_clients: Vec<Weak<RTCPeerConnection>> = Vec::new();
    let mut baseline = None;
    for round in 0..=ROUNDS {
        let mut subs = Vec::new();
        for i in 0..PER_ROUND {
            let id = format!("s{round}-{i}");
            subs.push((id.clone(), subscriber(&api, &relay, &clients, &id).await));
        }
        for (id, s) in &mut subs {
            rejoins += first_packets_or_rejoin(&api, &relay, &clients, id, s).await;
        }
        assert_eq!(relay.subscription_count(), 2 * PER_ROUND);
        for (id, s) in subs {
            relay.leave(ROOM, &id).await.unwrap();
            clients.remove(&id);
            s.pc.close().await.unwrap();
            weak_clients.push(Arc::downgrade(&s.pc));
        }
        if round == 0 {
            // Round 0 warms up lazily started tasks; measure from here.
            wait_for("the relay to settle", || relay.subscription_count() == 0).await;
            tokio::time::sleep(Duration::from_secs(3)).await;
            baseline = Some(
                tokio::runtime::Handle::current()
                    .metrics()
                    .num_alive_tasks(),
            );
            weak_clients.clear();
        }
    }
    let baseline = baseline.unwrap();
    let metrics = tokio::runtime::Handle::current().metrics();
    wait_for("state, connections and tasks back to the baseline", || {
        relay.participant_count() == 1
            && relay.subscription_count() == 0
            && relay.live_peer_connections() == 1
            && weak_clients.iter().all(|w| w.strong_count() == 0)
            && metrics.num_alive_tasks() <= baseline + 5
    })
    .await;
    eprintln!(
        "churn: {} joins/leaves, {rejoins} rejoined after a failed connection, tasks {} (baseline {baseline})",
        ROUNDS * PER_ROUND,
        metrics.num_alive_tasks()
    );
    assert!(rejoins <= 3, "{rejoins} connections failed to connect");
    relay.leave(ROOM, "pub").await.unwrap();
    publ.pc.close().await.unwrap();
    assert_eq!(relay.participant_count(), 0);
}
