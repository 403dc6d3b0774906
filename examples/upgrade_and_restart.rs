//! A plan upgrade mid-window, then a deploy: nobody's quota is lost or handed out twice.
//!
//! An organization on the Free plan (10 requests per hour) uses 8, is upgraded to Pro
//! (100 per hour) with `Policy::set_rate` while traffic keeps flowing, and keeps the 8 it
//! used. The process then shuts down: the policy's state is written to a file, and the
//! new release restores it, even though the new release dropped one scope and added
//! another.
//!
//! Run with `cargo run --example upgrade_and_restart --features serde`.

#[cfg(feature = "serde")]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    use ratewarden::snapshot::PolicySnapshot;
    use ratewarden::{Clock, FixedWindow, Gcra, Policy, Scope};

    struct Req {
        org: u64,
    }

    let (clock, time) = Clock::mock();
    let v1 = Policy::builder()
        .clock(clock.clone())
        .scope(Scope::keyed(
            "org_hourly",
            FixedWindow::new("10/hour".parse()?),
            |r: &Req| Some(r.org),
        ))
        .scope(Scope::keyed(
            "org_burst",
            Gcra::new("5/s".parse()?),
            |r: &Req| Some(r.org),
        ))
        .scope(Scope::unkeyed("global", Gcra::new("10000/s".parse()?)))
        .build();
    let acme = Req { org: 42 };

    assert!(v1.check(&acme, 5)?.is_allowed());
    time.increment(std::time::Duration::from_secs(2)); // the burst refills
    assert!(v1.check(&acme, 3)?.is_allowed());
    let hourly = |p: &Policy<Req>| -> Result<u64, Box<dyn std::error::Error>> {
        Ok(p.peek(&acme, 0)?
            .scope("org_hourly")
            .map_or(0, |s| s.decision.remaining()))
    };
    println!("Free plan, 8 used: {} left this hour", hourly(&v1)?);

    v1.set_rate("org_hourly", "100/hour".parse()?)?;
    println!(
        "upgraded to Pro mid-window: {} left this hour",
        hourly(&v1)?
    );
    assert_eq!(hourly(&v1)?, 92);

    // Shutdown: write the state.
    let path = std::env::temp_dir().join("ratewarden-upgrade-and-restart.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&v1.snapshot()?)?)?;
    println!("state written to {}", path.display());

    // The next release: no global scope any more, a daily scope added.
    let v2 = Policy::builder()
        .clock(clock)
        .scope(Scope::keyed(
            "org_hourly",
            FixedWindow::new("100/hour".parse()?),
            |r: &Req| Some(r.org),
        ))
        .scope(Scope::keyed(
            "org_burst",
            Gcra::new("5/s".parse()?),
            |r: &Req| Some(r.org),
        ))
        .scope(Scope::keyed(
            "org_daily",
            FixedWindow::new("1000/day".parse()?),
            |r: &Req| Some(r.org),
        ))
        .build();
    let saved: PolicySnapshot = serde_json::from_slice(&std::fs::read(&path)?)?;
    let report = v2.restore(&saved)?;
    println!("restored: {:?}", report.restored);
    for dropped in &report.dropped {
        println!("dropped:  {} ({:?})", dropped.name, dropped.reason);
    }
    println!("new:      {:?}", report.missing);
    println!("after the restart: {} left this hour", hourly(&v2)?);
    assert_eq!(hourly(&v2)?, 92);
    std::fs::remove_file(&path)?;
    Ok(())
}

#[cfg(not(feature = "serde"))]
fn main() {
    eprintln!("run with --features serde");
}
