//! Formatting a full header set for one and for three scopes. The sink here stores into
//! memory it already owns, so what is timed is the formatting alone; a `Vec` or
//! `HeaderMap` sink adds only the allocations of the names and values it keeps
//! (`tests/allocations.rs` counts them).

use std::hint::black_box;
use std::time::{Duration, UNIX_EPOCH};

use criterion::{criterion_group, criterion_main, Criterion};
use ratewarden::headers::{HeaderFormat, HeaderSink, Outcome, Report, Reset, Snapshot};

struct Fixed {
    text: Vec<u8>,
}

impl HeaderSink for Fixed {
    fn append(&mut self, name: &str, value: &str) {
        self.text.extend_from_slice(name.as_bytes());
        self.text.extend_from_slice(value.as_bytes());
    }
}

fn bench(c: &mut Criterion) {
    let s = |name, limit, remaining, window| Snapshot {
        name,
        limit,
        remaining,
        window: Duration::from_secs(window),
        reset_after: Duration::from_millis(12_345),
        quota_unit: None,
        partition_key: None,
    };
    let all = [
        s("burst", 8, 3, 10),
        s("minute", 30, 12, 60),
        s("day", 1000, 900, 86_400),
    ];
    let now = UNIX_EPOCH + Duration::from_secs(1_737_475_200);
    let mut sink = Fixed {
        text: Vec::with_capacity(4096),
    };
    let mut group = c.benchmark_group("headers");
    for (label, format) in [
        (
            "x_ratelimit_iso",
            HeaderFormat::x_ratelimit().reset(Reset::Iso8601),
        ),
        ("ietf_all", HeaderFormat::ietf(Report::All)),
    ] {
        for n in [1usize, 3] {
            let outcome = Outcome {
                scopes: &all[..n],
                denied: true,
                retry_after: Some(Duration::from_millis(2_500)),
                now,
            };
            group.bench_function(format!("{label}/{n}_scopes"), |b| {
                b.iter(|| {
                    sink.text.clear();
                    format.write(black_box(&outcome), &mut sink).unwrap();
                    black_box(sink.text.len())
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
