//! Hostile traffic and hostile input: key spraying, clock faults, and parser fuzzing.
//!
//! The fuzz properties run 256 cases by default; set `RATEWARDEN_FUZZ_CASES` (e.g. to
//! 1000000) for a long run: `RATEWARDEN_FUZZ_CASES=1000000 cargo test --release --test hardening fuzz`.

use std::net::IpAddr;
use std::time::Duration;

use proptest::prelude::*;
use ratewarden::{
    CheckError, Clock, FixedWindow, Gcra, IpNet, KeyedLimiter, Rate, SlidingLog, SlidingWindow,
    TrustedProxies, UnkeyedLimiter,
};

fn fuzz_cases() -> u32 {
    std::env::var("RATEWARDEN_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

#[test]
fn sprayed_keys_stay_under_the_cap_and_do_not_reset_legitimate_keys() {
    let (clock, mock) = Clock::mock();
    let limiter: KeyedLimiter<u64, SlidingLog> =
        KeyedLimiter::builder(SlidingLog::new("5/min".parse().unwrap()))
            .clock(clock)
            .max_keys(20_000)
            .build();
    // legitimate clients used up their budget
    for key in 0..100u64 {
        for _ in 0..5 {
            limiter.check(&key, 1).unwrap();
        }
    }
    let mut refused = 0u64;
    for key in 1_000_000..1_500_000u64 {
        match limiter.check(&key, 1) {
            Ok(d) => assert!(d.is_allowed()),
            Err(CheckError::KeyCapReached { max_keys }) => {
                assert_eq!(max_keys, 20_000);
                refused += 1;
            }
            Err(e) => panic!("{e}"),
        }
        if key % 100_000 == 0 {
            mock.increment(Duration::from_secs(1));
        }
    }
    assert!(limiter.len() <= 20_000, "{}", limiter.len());
    assert_eq!(refused, 500_000 - (20_000 - 100));
    for key in 0..100u64 {
        assert!(
            limiter.check(&key, 1).unwrap().is_denied(),
            "key {key} was reset"
        );
    }
}

#[test]
fn clock_standing_still_or_jumping_years_never_overadmits() {
    let (clock, mock) = Clock::mock();
    let rate: Rate = "10/s".parse().unwrap();
    type Check = Box<dyn Fn(u64) -> bool>;
    let algs: [(&str, Check); 4] = [
        ("fixed", {
            let l = UnkeyedLimiter::with_clock(FixedWindow::new(rate), clock.clone());
            Box::new(move |c| l.check(c).unwrap().is_allowed())
        }),
        ("log", {
            let l = UnkeyedLimiter::with_clock(SlidingLog::new(rate), clock.clone());
            Box::new(move |c| l.check(c).unwrap().is_allowed())
        }),
        ("counter", {
            let l = UnkeyedLimiter::with_clock(SlidingWindow::new(rate), clock.clone());
            Box::new(move |c| l.check(c).unwrap().is_allowed())
        }),
        ("gcra", {
            let l = UnkeyedLimiter::with_clock(Gcra::new(rate), clock.clone());
            Box::new(move |c| l.check(c).unwrap().is_allowed())
        }),
    ];
    for (name, check) in &algs {
        // standing still: exactly the limit
        assert_eq!((0..1_000).filter(|_| check(1)).count(), 10, "{name}");
        // a jump of 30 years: one fresh window's worth, not more
        mock.increment(Duration::from_secs(30 * 365 * 86_400));
        assert_eq!((0..1_000).filter(|_| check(1)).count(), 10, "{name}");
        // backwards by a year: no time passes
        mock.decrement(Duration::from_secs(365 * 86_400));
        assert_eq!((0..1_000).filter(|_| check(1)).count(), 0, "{name}");
        mock.increment(Duration::from_secs(365 * 86_400 + 10));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: fuzz_cases(), ..ProptestConfig::default() })]

    #[test]
    fn fuzz_rate_strings(input in ".{0,24}|[0-9_,]{0,22}/[0-9]{0,21}[a-zµ]{0,8}") {
        if let Ok(rate) = input.parse::<Rate>() {
            let shown = rate.to_string();
            prop_assert_eq!(shown.parse::<Rate>(), Ok(rate));
            prop_assert!(rate.count() >= 1 && rate.window() > Duration::ZERO);
        }
    }

    #[test]
    fn fuzz_networks_and_proxy_lists(input in ".{0,40}|[0-9a-f:./, ]{0,60}") {
        let _ = input.parse::<IpNet>();
        let _ = input.parse::<TrustedProxies>();
    }

    #[test]
    fn fuzz_forwarding_headers(
        header in ".{0,60}|[0-9a-f:.,;=\"\\[\\] forFOR]{0,80}",
        peer in any::<[u8; 4]>(),
    ) {
        let proxies: TrustedProxies = "0.0.0.0/0, ::/0".parse().unwrap();
        let peer = IpAddr::from(peer);
        // every address that can be read out of the header, however it is written
        let mut candidates: Vec<IpAddr> = Vec::new();
        for token in header.split(|c: char| ",;= \"[]".contains(c)) {
            let ipv4_port = token.rsplit_once(':').and_then(|(h, _)| h.parse::<std::net::Ipv4Addr>().ok());
            candidates.extend(token.parse::<IpAddr>().ok().into_iter().chain(ipv4_port.map(IpAddr::V4)));
        }
        let unmapped: Vec<IpAddr> = candidates
            .iter()
            .map(|ip| match ip {
                IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(*ip, IpAddr::V4),
                v4 => *v4,
            })
            .collect();
        for (xff, fwd) in [(Some(header.as_str()), None), (None, Some(header.as_str()))] {
            let client = proxies.client_addr(peer, xff, fwd);
            prop_assert!(client == peer || unmapped.contains(&client), "{} from {:?}", client, header);
        }
    }
}
