//! A scope's algorithm parameters, read into an [`AlgSpec`] once its `algorithm` is
//! known: the rate, with GCRA's burst or a fixed window's anchor, or a calendar quota's
//! period, limit, anchor and anchor attribute.

use super::read::{rate, text, whole, Report, Table};
use super::scope::AlgSpec;
use super::Problem;
use crate::{
    Anchor, CalendarQuota, CycleAnchor, FixedWindow, Gcra, Period, SlidingLog, SlidingWindow,
};

pub(super) fn rate_based(report: &mut Report, t: &Table<'_>, algorithm: &str) -> Option<AlgSpec> {
    let rate = t
        .required(report, "rate")
        .and_then(|v| rate(report, &t.path("rate"), v));
    match algorithm {
        "fixed_window" => {
            let anchor = match t.get("anchor") {
                None => Some(Anchor::Clock),
                Some(v) => match text(report, &t.path("anchor"), v)? {
                    "clock" => Some(Anchor::Clock),
                    "first_request" => Some(Anchor::FirstRequest),
                    other => {
                        report.add(
                            &t.path("anchor"),
                            Problem::UnknownValue {
                                value: other.to_owned(),
                                expected: "clock, first_request",
                            },
                        );
                        None
                    }
                },
            };
            Some(AlgSpec::FixedWindow(
                FixedWindow::new(rate?).anchored(anchor?),
            ))
        }
        "sliding_window" => Some(AlgSpec::SlidingWindow(SlidingWindow::new(rate?))),
        "sliding_log" => Some(AlgSpec::SlidingLog(SlidingLog::new(rate?))),
        _ => {
            let burst = t.get("burst").map(|v| whole(report, &t.path("burst"), v));
            let gcra = Gcra::new(rate?);
            match burst {
                None => Some(AlgSpec::Gcra(gcra)),
                Some(burst) => match gcra.with_burst(burst?) {
                    Ok(g) => Some(AlgSpec::Gcra(g)),
                    Err(e) => {
                        report.add(&t.path("burst"), e);
                        None
                    }
                },
            }
        }
    }
}

pub(super) fn calendar(report: &mut Report, t: &Table<'_>) -> Option<AlgSpec> {
    let period =
        t.required(report, "period")
            .and_then(|v| match text(report, &t.path("period"), v)? {
                "day" => Some(Period::Day),
                "month" => Some(Period::Month),
                other => {
                    report.add(
                        &t.path("period"),
                        Problem::UnknownValue {
                            value: other.to_owned(),
                            expected: "day, month",
                        },
                    );
                    None
                }
            });
    let limit = t
        .required(report, "limit")
        .and_then(|v| whole(report, &t.path("limit"), v));
    let anchor = match t.get("anchor") {
        None => Some(CycleAnchor::MIDNIGHT),
        Some(v) => text(report, &t.path("anchor"), v).and_then(|s| {
            s.parse::<CycleAnchor>()
                .map_err(|e| report.add(&t.path("anchor"), e))
                .ok()
        }),
    };
    let attribute = match t.get("anchor_attribute") {
        None => Some(None),
        Some(v) => text(report, &t.path("anchor_attribute"), v).map(|s| Some(s.to_owned())),
    };
    let quota = match CalendarQuota::new(limit?, period?) {
        Ok(q) => q,
        Err(e) => {
            report.add(&t.path("limit"), e);
            return None;
        }
    };
    Some(AlgSpec::Calendar(quota.anchored(anchor?), attribute?))
}
