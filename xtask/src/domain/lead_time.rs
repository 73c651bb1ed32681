//! Lead time, from the demo's own steps: the time from a commit to a preview
//! answering, and from a merge to a recorded gate, each split into the
//! phases a learner waits for. The demo records them as it runs
//! (`lead-time.json` in its workdir); `bench pipeline` runs the demo cold
//! and warm and prints both.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// The demo's lead time, in its workdir, for `bench pipeline`.
pub const LEAD_TIME_FILE: &str = "lead-time.json";

/// The journeys timed, in the order they are printed.
pub const JOURNEYS: [&str; 2] = ["commit → preview answering", "merge → recorded gate"];

/// Where the time goes, in pipeline order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// The pull request's checks (the service's unit tests and API suite).
    Checks,
    /// Compiling the static binary and assembling the image.
    Build,
    /// Pushing and signing the image.
    Push,
    /// The GitOps commit: `preview deploy`, `promote`.
    Promote,
    /// Until the new image answers (Argo CD's sync and the rollout; in the
    /// demo, the container or process starting).
    SyncWait,
    /// The smoke or preprod tests (the latter record the gate).
    Tests,
}

impl Phase {
    pub const ALL: [Phase; 6] = [
        Phase::Checks,
        Phase::Build,
        Phase::Push,
        Phase::Promote,
        Phase::SyncWait,
        Phase::Tests,
    ];

    fn name(self) -> &'static str {
        match self {
            Phase::Checks => "checks",
            Phase::Build => "build",
            Phase::Push => "push",
            Phase::Promote => "promote",
            Phase::SyncWait => "sync-wait",
            Phase::Tests => "tests",
        }
    }
}

/// Seconds per phase, per journey.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeadTime {
    pub journeys: BTreeMap<String, BTreeMap<Phase, f64>>,
}

/// What the demo records into while a journey runs.
#[derive(Debug, Default)]
pub struct Ledger {
    current: RefCell<Option<&'static str>>,
    times: RefCell<LeadTime>,
}

impl Ledger {
    /// Steps timed from now on count for `journey` (None: for none).
    pub fn journey(&self, journey: Option<&'static str>) {
        *self.current.borrow_mut() = journey;
    }

    /// Adds `took` to `phase` of the current journey, if one runs.
    pub fn add(&self, phase: Phase, took: Duration) {
        if let Some(journey) = *self.current.borrow() {
            *self
                .times
                .borrow_mut()
                .journeys
                .entry(journey.to_owned())
                .or_default()
                .entry(phase)
                .or_default() += took.as_secs_f64();
        }
    }

    /// Runs `step`, adding its time to `phase`.
    pub fn time<T>(&self, phase: Phase, step: impl FnOnce() -> Result<T>) -> Result<T> {
        let started = std::time::Instant::now();
        let result = step();
        self.add(phase, started.elapsed());
        result
    }

    pub fn lead_time(&self) -> LeadTime {
        self.times.borrow().clone()
    }
}

impl LeadTime {
    pub fn write(&self, path: &Path) -> Result<()> {
        std::fs::write(path, serde_json::to_string_pretty(self)?)
            .with_context(|| format!("writing {}", path.display()))
    }

    pub fn read(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_str(&text)
            .with_context(|| format!("{} is not a lead time", path.display()))
    }

    /// One row per journey: each phase's seconds and the total.
    pub fn table(&self, title: &str) -> String {
        let mut out = format!("{title:<30}");
        for phase in Phase::ALL {
            out.push_str(&format!(" {:>9}", phase.name()));
        }
        out.push_str(&format!(" {:>9}\n", "total"));
        for journey in JOURNEYS {
            let Some(phases) = self.journeys.get(journey) else {
                continue;
            };
            out.push_str(&format!("{journey:<30}"));
            for phase in Phase::ALL {
                match phases.get(&phase) {
                    Some(seconds) => out.push_str(&format!(" {:>8.1}s", seconds)),
                    None => out.push_str(&format!(" {:>9}", "-")),
                }
            }
            let total: f64 = phases.values().sum();
            out.push_str(&format!(" {total:>8.1}s\n"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ledger_counts_only_inside_a_journey_and_prints_each_phase() {
        let ledger = Ledger::default();
        ledger.add(Phase::Build, Duration::from_secs(100));
        ledger.journey(Some(JOURNEYS[0]));
        ledger.add(Phase::Build, Duration::from_millis(1500));
        ledger.add(Phase::Build, Duration::from_millis(500));
        ledger.add(Phase::Tests, Duration::from_secs(3));
        ledger.journey(Some(JOURNEYS[1]));
        let value = ledger
            .time(Phase::Promote, || Ok::<_, anyhow::Error>(7))
            .unwrap();
        assert_eq!(value, 7);
        ledger.add(Phase::SyncWait, Duration::from_secs(1));
        ledger.journey(None);
        ledger.add(Phase::Push, Duration::from_secs(50));

        let lead = ledger.lead_time();
        assert_eq!(lead.journeys[JOURNEYS[0]][&Phase::Build], 2.0);
        assert!(!lead.journeys[JOURNEYS[1]].contains_key(&Phase::Push));
        let table = lead.table("warm");
        let first = table.lines().nth(1).unwrap();
        assert!(first.starts_with("commit → preview answering"), "{table}");
        assert!(
            first.contains("      2.0s") && first.ends_with("      5.0s"),
            "{table}"
        );
        assert!(
            table.lines().next().unwrap().contains("sync-wait"),
            "{table}"
        );

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lead-time.json");
        lead.write(&path).unwrap();
        assert_eq!(LeadTime::read(&path).unwrap(), lead);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("\"sync-wait\""), "{text}");
    }
}
