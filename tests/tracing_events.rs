//! The `tracing` feature's events. Alone in its own test binary: `tracing` caches, per
//! call site and process-wide, whether anyone listens, and other tests running the same
//! call site at the same time without a subscriber would race with this one.

#![cfg(feature = "tracing")]

use ratewarden::Clock;

#[path = "common/policy_fixture.rs"]
mod fixture;

use fixture::{policy, traffic};

#[cfg(feature = "tracing")]
#[test]
fn tracing_emits_one_debug_event_per_denial_and_nothing_on_allow() {
    use std::sync::{Arc, Mutex};
    use tracing::field::{Field, Visit};
    use tracing::span::{Attributes, Id, Record};
    use tracing::{Event, Level, Metadata, Subscriber};

    type Recorded = (Level, Vec<(String, String)>);

    /// Records each event's level and fields.
    #[derive(Clone, Default)]
    struct Recorder(Arc<Mutex<Vec<Recorded>>>);

    struct Fields(Vec<(String, String)>);
    impl Visit for Fields {
        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            self.0.push((field.name().to_owned(), format!("{value:?}")));
        }
    }

    impl Subscriber for Recorder {
        fn enabled(&self, _: &Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, _: &Attributes<'_>) -> Id {
            Id::from_u64(1)
        }
        fn record(&self, _: &Id, _: &Record<'_>) {}
        fn record_follows_from(&self, _: &Id, _: &Id) {}
        fn event(&self, event: &Event<'_>) {
            let mut fields = Fields(Vec::new());
            event.record(&mut fields);
            self.0
                .lock()
                .unwrap()
                .push((*event.metadata().level(), fields.0));
        }
        fn enter(&self, _: &Id) {}
        fn exit(&self, _: &Id) {}
    }

    let recorder = Recorder::default();
    let (clock, _mock) = Clock::mock();
    let policy = policy(clock);
    tracing::subscriber::with_default(recorder.clone(), || traffic(&policy));
    let events = recorder.0.lock().unwrap();
    // 2 enforcing denials + 7 shadow would-deny, nothing for the 12 allowed checks
    assert_eq!(events.len(), 2 + 7);
    assert!(events.iter().all(|(level, _)| *level == Level::DEBUG));
    let field = |e: &Recorded, name: &str| {
        e.1.iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let shadow = events
        .iter()
        .filter(|e| field(e, "shadow") == "true")
        .count();
    assert_eq!(shadow, 7);
    let writes = events
        .iter()
        .find(|e| field(e, "scope").contains("writes"))
        .unwrap();
    assert_eq!(field(writes, "shadow"), "false");
    assert_eq!(field(writes, "policy"), "\"api\"");
    assert!(field(writes, "retry_after_ms").parse::<u64>().unwrap() > 0);
    // no field carries a key
    assert!(events.iter().all(|e| e.1.iter().all(|(n, _)| n != "key")));
}
