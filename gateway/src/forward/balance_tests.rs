//! Tests of the balancer: turns, least-request, breakers, leases and request limits.

use super::*;

const URLS: [&str; 3] = ["http://a:1", "http://b:2", "http://c:3"];

fn balancer(n: usize, balance: Balance, failures: u32) -> Balancer {
    let urls: Vec<String> = (0..n).map(|i| format!("http://u{i}:80")).collect();
    Balancer::new(
        "svc",
        urls.iter().map(String::as_str),
        balance,
        BreakerConfig {
            consecutive_failures: failures,
            cooldown: Duration::from_secs(10),
        },
        1024,
    )
}

fn fail(b: &Balancer, index: usize, times: u32, now: Instant) {
    for _ in 0..times {
        let mut lease = b.admit(index, now).unwrap();
        lease.failed(now, &format!("u{index} refused the connection"));
    }
}

#[test]
fn round_robin_takes_turns_and_skips_open_breakers() {
    let b = Balancer::new(
        "svc",
        URLS,
        Balance::RoundRobin,
        BreakerConfig::default(),
        1024,
    );
    let now = Instant::now();
    let picked: Vec<_> = (0..6).map(|_| b.pick(now).unwrap().index()).collect();
    assert_eq!(picked, [0, 1, 2, 0, 1, 2]);
    fail(&b, 1, 5, now);
    let picked: Vec<_> = (0..4).map(|_| b.pick(now).unwrap().index()).collect();
    assert!(!picked.contains(&1), "{picked:?}");
    assert_eq!(b.status(now)[1].breaker, BreakerState::Open);
}

#[test]
fn successes_reset_the_failure_count() {
    let b = balancer(1, Balance::RoundRobin, 3);
    let now = Instant::now();
    fail(&b, 0, 2, now);
    b.pick(now).unwrap().succeeded();
    fail(&b, 0, 2, now);
    assert_eq!(b.status(now)[0].breaker, BreakerState::Closed);
    fail(&b, 0, 1, now);
    assert_eq!(b.status(now)[0].breaker, BreakerState::Open);
}

#[test]
fn half_open_lets_one_trial_through_and_its_verdict_decides() {
    let b = balancer(1, Balance::RoundRobin, 2);
    let t0 = Instant::now();
    fail(&b, 0, 2, t0);
    let err = b.pick(t0 + Duration::from_secs(4)).unwrap_err();
    assert_eq!(
        err,
        Unavailable::AllOpen {
            upstreams: 1,
            retry_in: Some(Duration::from_secs(6)),
            last_failure: Some("u0 refused the connection".to_owned()),
        }
    );
    assert_eq!(
        err.to_string(),
        "its upstream's circuit breaker is open after repeated failures (the last: u0 \
         refused the connection); the first is tried again in 6.0 s"
    );

    let t1 = t0 + Duration::from_secs(10);
    assert_eq!(b.status(t1)[0].breaker, BreakerState::HalfOpen);
    let mut trial = b.pick(t1).unwrap();
    assert!(trial.trial);
    let busy = b.pick(t1).unwrap_err();
    assert_eq!(
        busy.to_string(),
        "its upstream's circuit breaker is open after repeated failures (the last: u0 \
         refused the connection); trial requests are under way"
    );
    // The trial fails: open for another cooldown from the failure.
    trial.failed(t1, "trial failed");
    drop(trial);
    assert!(b.pick(t1 + Duration::from_secs(9)).is_err());

    let t2 = t1 + Duration::from_secs(10);
    let mut trial = b.pick(t2).unwrap();
    trial.succeeded();
    drop(trial);
    assert_eq!(b.status(t2)[0].breaker, BreakerState::Closed);
    let leases: Vec<_> = (0..3).map(|_| b.pick(t2).unwrap()).collect();
    assert_eq!(leases.len(), 3, "closed again: no limit on concurrency");
}

#[test]
fn an_abandoned_trial_frees_the_slot_and_stale_reports_are_ignored() {
    let b = balancer(1, Balance::RoundRobin, 1);
    let t0 = Instant::now();
    // Admitted while closed, reported after the breaker opened: ignored.
    let mut late = b.pick(t0).unwrap();
    fail(&b, 0, 1, t0);
    late.succeeded();
    assert_eq!(b.status(t0)[0].breaker, BreakerState::Open);

    let t1 = t0 + Duration::from_secs(10);
    let trial = b.pick(t1).unwrap();
    drop(trial);
    let mut again = b.pick(t1).unwrap();
    assert!(again.trial, "the slot came back");
    // Only the first report of a lease counts.
    again.succeeded();
    again.failed(t1, "again");
    assert_eq!(b.status(t1)[0].breaker, BreakerState::Closed);
}

#[test]
fn leases_count_outstanding_requests_until_dropped() {
    let b = Balancer::new(
        "svc",
        URLS,
        Balance::RoundRobin,
        BreakerConfig::default(),
        1024,
    );
    let now = Instant::now();
    let first = b.pick(now).unwrap();
    let second = b.pick(now).unwrap();
    let counts =
        |b: &Balancer| -> Vec<usize> { b.status(now).iter().map(|s| s.outstanding).collect() };
    assert_eq!(counts(&b), [1, 1, 0]);
    drop(first);
    assert_eq!(counts(&b), [0, 1, 0]);
    drop(second);
    assert_eq!(counts(&b), [0, 0, 0]);
}

#[test]
fn least_request_prefers_idle_upstreams_and_breaks_ties_in_turn() {
    let b = Balancer::new(
        "svc",
        URLS,
        Balance::LeastRequest,
        BreakerConfig::default(),
        1024,
    );
    let now = Instant::now();
    // Three picks while all hold their leases: one each.
    let held: Vec<_> = (0..3).map(|_| b.pick(now).unwrap()).collect();
    let mut seen: Vec<_> = held.iter().map(Lease::index).collect();
    seen.sort_unstable();
    assert_eq!(seen, [0, 1, 2]);
    // 0 and 2 finish: upstream 1 stays busy and is not picked.
    let busy = held.into_iter().find(|l| l.index() == 1).unwrap();
    let picked: Vec<_> = (0..4).map(|_| b.pick(now).unwrap().index()).collect();
    assert!(!picked.contains(&1), "{picked:?}");
    assert!(picked.contains(&0) && picked.contains(&2), "{picked:?}");
    drop(busy);
}

#[test]
fn least_request_with_many_upstreams_uses_two_choices_and_avoids_the_busy_one() {
    let b = balancer(16, Balance::LeastRequest, 5);
    let now = Instant::now();
    // Upstream 0 is stuck with many requests; its breaker is fine.
    let stuck: Vec<_> = (0..50).map(|_| b.admit(0, now).unwrap()).collect();
    let mut hits = [0usize; 16];
    for _ in 0..3200 {
        hits[b.pick(now).unwrap().index()] += 1;
    }
    // Two choices pick 0 only when both samples are 0, which they never are.
    assert_eq!(hits[0], 0, "{hits:?}");
    for (i, h) in hits.iter().enumerate().skip(1) {
        assert!(*h > 100, "upstream {i} got {h}: {hits:?}");
    }
    drop(stuck);
    // Open breakers are never picked, even when idle.
    for i in 1..16 {
        fail(&b, i, 5, now);
    }
    for _ in 0..20 {
        assert_eq!(b.pick(now).unwrap().index(), 0);
    }
}

#[test]
fn all_open_says_when_the_first_one_half_opens() {
    let b = balancer(3, Balance::LeastRequest, 1);
    let t0 = Instant::now();
    fail(&b, 0, 1, t0);
    fail(&b, 1, 1, t0 + Duration::from_secs(2));
    fail(&b, 2, 1, t0 + Duration::from_secs(4));
    let err = b.pick(t0 + Duration::from_secs(5)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "the circuit breakers of all 3 of its upstreams are open after repeated failures \
         (the last: u2 refused the connection); the first is tried again in 5.0 s"
    );
    assert_eq!(
        b.pick(t0 + Duration::from_secs(10)).unwrap().index(),
        0,
        "the first to half-open"
    );
}

#[test]
fn a_disabled_breaker_never_opens_and_huge_cooldowns_do_not_overflow() {
    let b = balancer(1, Balance::RoundRobin, 0);
    let now = Instant::now();
    fail(&b, 0, 100, now);
    assert_eq!(b.status(now)[0].breaker, BreakerState::Closed);

    let forever = Balancer::new(
        "svc",
        ["http://a:1"],
        Balance::RoundRobin,
        BreakerConfig {
            consecutive_failures: 1,
            cooldown: Duration::MAX,
        },
        1024,
    );
    fail(&forever, 0, 1, now);
    assert!(forever.pick(now + Duration::from_secs(3600)).is_err());
    assert_eq!(
        Balancer::new(
            "svc",
            [],
            Balance::RoundRobin,
            BreakerConfig::default(),
            1024
        )
        .pick(now)
        .unwrap_err(),
        Unavailable::NoUpstreams
    );
}

fn limited(n: usize, balance: Balance, max_requests: u32) -> Balancer {
    let urls: Vec<String> = (0..n).map(|i| format!("http://u{i}:80")).collect();
    Balancer::new(
        "svc",
        urls.iter().map(String::as_str),
        balance,
        BreakerConfig::default(),
        max_requests,
    )
}

#[test]
fn an_upstream_at_its_request_limit_is_skipped() {
    for balance in [Balance::RoundRobin, Balance::LeastRequest] {
        let b = limited(2, balance, 2);
        let now = Instant::now();
        let held: Vec<_> = (0..4).map(|_| b.pick(now).unwrap()).collect();
        let mut per_upstream = [0; 2];
        for lease in &held {
            per_upstream[lease.index()] += 1;
        }
        assert_eq!(
            per_upstream,
            [2, 2],
            "{balance:?}: the limit fills both evenly"
        );
        let full = b.pick(now).unwrap_err();
        assert_eq!(
            full,
            Unavailable::AtLimit {
                full: 2,
                total: 2,
                limit: 2
            }
        );
        assert_eq!(
            full.to_string(),
            "all 2 of its upstreams are at their limit of 2 requests in flight \
             (max_requests); retry later, or raise max_requests if the upstreams can take \
             more"
        );
        // One finishes: its upstream takes the next request, and only that one.
        let freed = held.iter().position(|l| l.index() == 1).unwrap();
        let mut held = held;
        drop(held.remove(freed));
        assert_eq!(b.pick(now).map(|l| l.index()).ok(), Some(1), "{balance:?}");
    }
}

#[test]
fn a_full_upstream_keeps_its_half_open_trial_and_full_beats_open_in_the_reason() {
    let b = limited(2, Balance::RoundRobin, 1);
    let t0 = Instant::now();
    // Upstream 0's breaker opens; upstream 1 is up but full.
    fail(&b, 0, 5, t0);
    let busy = b.admit(1, t0).unwrap();
    let err = b.pick(t0).unwrap_err();
    assert_eq!(
        err.to_string(),
        "each of its upstreams whose circuit breaker lets requests through (1 of 2) is at \
         its limit of 1 requests in flight (max_requests); retry later, or raise \
         max_requests if the upstreams can take more"
    );
    drop(busy);
    // Once both are down, it is an outage again.
    fail(&b, 1, 5, t0);
    assert!(matches!(b.pick(t0), Err(Unavailable::AllOpen { .. })));

    // Half-open and full: the trial slot is not used up by a refused pick.
    let single = limited(1, Balance::RoundRobin, 1);
    fail(&single, 0, 5, t0);
    let t1 = t0 + Duration::from_secs(10);
    let trial = single.pick(t1).unwrap();
    assert!(trial.trial);
    assert!(single.pick(t1).is_err());
    drop(trial);
    assert!(single.pick(t1).unwrap().trial, "the trial slot came back");
}

#[test]
fn concurrent_picks_never_exceed_the_limit() {
    let b = Arc::new(limited(3, Balance::LeastRequest, 5));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let b = Arc::clone(&b);
            std::thread::spawn(move || {
                let now = Instant::now();
                let mut held = Vec::new();
                for _ in 0..1000 {
                    if let Ok(lease) = b.pick(now) {
                        held.push(lease);
                    }
                    for s in b.status(now) {
                        assert!(s.outstanding <= 5, "{}", s.outstanding);
                    }
                    if held.len() > 2 {
                        held.clear();
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert!(b.status(Instant::now()).iter().all(|s| s.outstanding == 0));
}

#[test]
fn an_open_breaker_names_the_most_recent_failure_bounded() {
    let b = balancer(2, Balance::RoundRobin, 1);
    let t0 = Instant::now();
    fail(&b, 1, 1, t0);
    let mut lease = b.admit(0, t0 + Duration::from_secs(1)).unwrap();
    // A multi-byte character straddles the bound: the cause is cut before it.
    let long = format!("{}é{}", "x".repeat(MAX_CAUSE - 1), "y".repeat(100));
    lease.failed(t0 + Duration::from_secs(1), &long);
    let Err(Unavailable::AllOpen { last_failure, .. }) = b.pick(t0 + Duration::from_secs(2)) else {
        panic!("both breakers should be open");
    };
    assert_eq!(last_failure, Some("x".repeat(MAX_CAUSE - 1)));

    // A request that already had its verdict does not overwrite the cause.
    let b = balancer(1, Balance::RoundRobin, 1);
    let mut lease = b.admit(0, t0).unwrap();
    lease.failed(t0, "first");
    lease.failed(t0, "second");
    let Err(Unavailable::AllOpen { last_failure, .. }) = b.pick(t0) else {
        panic!("the breaker should be open");
    };
    assert_eq!(last_failure.as_deref(), Some("first"));
}
