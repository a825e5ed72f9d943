//! How many processes a pool should start or stop: a pure function of what the pool has,
//! what its processes are doing and what waits in the job servers' queues.
//!
//! The rules, from Gearman::Driver's observer and Apache's spare servers:
//! - never fewer than `min`, never more than `max`;
//! - while jobs wait and every process is busy, start as many as wait (up to `max`);
//! - keep `min_spare` idle processes beyond the busy ones (within `max`);
//! - while nothing waits, stop processes idle for `max_idle_time`, oldest idle first, down to
//!   `min` (and the spares), never a busy one;
//! - above `max` (it was lowered), stop the surplus: idle processes first, then busy ones,
//!   which finish their job before they exit.

use std::time::Duration;

/// One live process as the decision sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessView {
    pub pid: u32,
    pub activity: Activity,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activity {
    /// Started, not serving yet.
    Starting,
    /// Holding a job (with `concurrency`: as many jobs as it runs at once).
    Busy,
    /// With `concurrency`: holding some jobs, with room for more. Neither busy (it takes
    /// waiting jobs itself) nor idle (never stopped for idleness).
    Partly,
    /// Waiting for a job, for this long.
    Idle(Duration),
}

/// A pool's state at one moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolView {
    pub min: u32,
    pub max: u32,
    pub min_spare: u32,
    /// Idle processes past this many are stopped at once.
    pub max_spare: Option<u32>,
    pub max_idle_time: Duration,
    /// Processes that are not already stopping.
    pub processes: Vec<ProcessView>,
    /// Jobs waiting in the job servers' queues for this pool's functions; `None` when the
    /// queues are not being watched (autoscaling off) or could not be read.
    pub waiting: Option<u64>,
    /// Jobs each process runs at once: a backlog of N needs N / concurrency processes.
    pub concurrency: u32,
}

/// What to do, and why (for the log).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub start: u32,
    /// Pids to stop gracefully.
    pub stop: Vec<u32>,
    pub why: Why,
}

/// The rule that decided a [`Plan`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Why {
    #[default]
    Nothing,
    AboveMax,
    BelowMin,
    Backlog,
    MinSpare,
    MaxSpare,
    Idle,
}

impl std::fmt::Display for Why {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Why::Nothing => "nothing to do",
            Why::AboveMax => "more processes than max_processes",
            Why::BelowMin => "fewer processes than min_processes",
            Why::Backlog => "jobs wait and every process is busy",
            Why::MinSpare => "fewer idle processes than min_spare",
            Why::MaxSpare => "more idle processes than max_spare",
            Why::Idle => "idle for max_idle_time while nothing waits",
        })
    }
}

pub fn plan(view: &PoolView) -> Plan {
    let current = view.processes.len() as u32;
    let busy = view
        .processes
        .iter()
        .filter(|p| p.activity == Activity::Busy)
        .count() as u32;
    let idle: Vec<(u32, Duration)> = {
        let mut idle: Vec<(u32, Duration)> = view
            .processes
            .iter()
            .filter_map(|p| match p.activity {
                Activity::Idle(for_how_long) => Some((p.pid, for_how_long)),
                _ => None,
            })
            .collect();
        // Longest idle first.
        idle.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        idle
    };

    if current > view.max {
        let surplus = (current - view.max) as usize;
        let mut stop: Vec<u32> = idle.iter().map(|(pid, _)| *pid).take(surplus).collect();
        let by = |activity| {
            view.processes
                .iter()
                .filter(move |p| p.activity == activity)
        };
        let others = by(Activity::Starting)
            .chain(by(Activity::Partly))
            .chain(by(Activity::Busy));
        for p in others {
            if stop.len() == surplus {
                break;
            }
            stop.push(p.pid);
        }
        return Plan {
            start: 0,
            stop,
            why: Why::AboveMax,
        };
    }

    let room = view.max - current;
    let mut want = view.min.saturating_sub(current);
    let mut why = Why::BelowMin;
    if let Some(waiting) = view.waiting {
        let backlog =
            u32::try_from(waiting.div_ceil(u64::from(view.concurrency.max(1)))).unwrap_or(u32::MAX);
        if waiting > 0 && busy >= current && backlog > want {
            (want, why) = (backlog, Why::Backlog);
        }
    }
    let idle_now = idle.len() as u32;
    if idle_now < view.min_spare {
        // Processes still starting will be spare soon: count them.
        let starting = view
            .processes
            .iter()
            .filter(|p| p.activity == Activity::Starting)
            .count() as u32;
        let spares = view.min_spare.saturating_sub(idle_now + starting);
        if spares > want {
            (want, why) = (spares, Why::MinSpare);
        }
    }
    let start = want.min(room);
    if start > 0 {
        return Plan {
            start,
            stop: Vec::new(),
            why,
        };
    }

    // An idle process takes any job that waits for it, so idle ones are spare whenever no
    // queue report says jobs wait.
    if let Some(max_spare) = view.max_spare {
        let surplus = (idle_now.saturating_sub(max_spare)) as usize;
        let removable = current.saturating_sub(view.min) as usize;
        if surplus > 0 && view.waiting.is_none_or(|w| w == 0) {
            let stop: Vec<u32> = idle
                .iter()
                .map(|(pid, _)| *pid)
                .take(surplus.min(removable))
                .collect();
            if !stop.is_empty() {
                return Plan {
                    start: 0,
                    stop,
                    why: Why::MaxSpare,
                };
            }
        }
    }
    if view.waiting == Some(0) {
        let floor = view.min.max(busy + view.min_spare);
        let removable = current.saturating_sub(floor) as usize;
        let stop: Vec<u32> = idle
            .iter()
            .filter(|(_, for_how_long)| *for_how_long >= view.max_idle_time)
            .map(|(pid, _)| *pid)
            .take(removable)
            .collect();
        if !stop.is_empty() {
            return Plan {
                start: 0,
                stop,
                why: Why::Idle,
            };
        }
    }
    Plan::default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn busy(pid: u32) -> ProcessView {
        ProcessView {
            pid,
            activity: Activity::Busy,
        }
    }
    fn idle(pid: u32, secs: u64) -> ProcessView {
        ProcessView {
            pid,
            activity: Activity::Idle(S * secs as u32),
        }
    }
    fn starting(pid: u32) -> ProcessView {
        ProcessView {
            pid,
            activity: Activity::Starting,
        }
    }

    fn view(
        min: u32,
        max: u32,
        spare: u32,
        processes: Vec<ProcessView>,
        waiting: Option<u64>,
    ) -> PoolView {
        PoolView {
            min,
            max,
            min_spare: spare,
            max_spare: None,
            max_idle_time: S * 30,
            processes,
            waiting,
            concurrency: 1,
        }
    }

    fn partly(pid: u32) -> ProcessView {
        ProcessView {
            pid,
            activity: Activity::Partly,
        }
    }

    #[test]
    fn idle_processes_past_max_spare_are_stopped_at_once() {
        let with = |max_spare, processes, waiting| PoolView {
            max_spare: Some(max_spare),
            ..view(1, 10, 0, processes, waiting)
        };
        // Four idle for a second (far from max_idle_time): the two idle longest go.
        let four = vec![busy(1), idle(2, 1), idle(3, 2), idle(4, 3), idle(5, 1)];
        let plan = plan(&with(2, four.clone(), Some(0)));
        assert_eq!((plan.stop, plan.why), (vec![4, 3], Why::MaxSpare));
        // Queues not watched: idle ones are spare all the same.
        assert_eq!(plan_stop(&with(2, four.clone(), None)), vec![4, 3]);
        // Jobs wait: the idle ones are about to take them.
        assert_eq!(plan_stop(&with(2, four, Some(3))), Vec::<u32>::new());
        // Never below min.
        let idle_only = PoolView {
            min: 2,
            ..with(0, vec![idle(1, 1), idle(2, 2), idle(3, 3)], Some(0))
        };
        assert_eq!(plan_stop(&idle_only), vec![3]);
    }

    fn plan_stop(view: &PoolView) -> Vec<u32> {
        plan(view).stop
    }

    #[test]
    fn with_concurrency_slots_are_counted_not_processes() {
        let with = |concurrency, processes, waiting| PoolView {
            concurrency,
            ..view(1, 10, 0, processes, Some(waiting))
        };
        // 60 jobs wait, each process runs 25 at once and is full: 3 more, not 60.
        assert_eq!(plan(&with(25, vec![busy(1)], 60)).start, 3);
        assert_eq!(plan(&with(25, vec![busy(1)], 1)).start, 1);
        // One with room takes waiting jobs itself.
        assert_eq!(plan(&with(25, vec![partly(1)], 60)).start, 0);
        // A process with jobs in hand is never stopped for idleness...
        let quiet = with(25, vec![partly(1), idle(2, 60)], 0);
        assert_eq!(plan(&quiet).stop, vec![2]);
        // ...and above max it goes after the idle and starting ones.
        let lowered = PoolView {
            max: 1,
            min: 0,
            ..with(25, vec![busy(1), partly(2), starting(3)], 0)
        };
        assert_eq!(plan(&lowered).stop, vec![3, 2]);
    }

    fn start(n: u32) -> Plan {
        Plan {
            start: n,
            stop: vec![],
            why: Why::Nothing,
        }
    }
    fn stop(pids: &[u32]) -> Plan {
        Plan {
            start: 0,
            stop: pids.to_vec(),
            why: Why::Nothing,
        }
    }

    #[test]
    fn the_rules_table() {
        let cases: Vec<(&str, PoolView, Plan)> = vec![
            (
                "empty pool is filled to min",
                view(2, 4, 0, vec![], None),
                start(2),
            ),
            (
                "min 0 and nothing waits: nothing",
                view(0, 4, 0, vec![], Some(0)),
                Plan::default(),
            ),
            (
                "min 0, a job waits: start one",
                view(0, 4, 0, vec![], Some(1)),
                start(1),
            ),
            (
                "all busy, 10 wait: up to max",
                view(1, 4, 0, vec![busy(1)], Some(10)),
                start(3),
            ),
            (
                "all busy, 2 wait: start 2",
                view(1, 8, 0, vec![busy(1)], Some(2)),
                start(2),
            ),
            (
                "one idle: waiting jobs go to it, start none",
                view(1, 4, 0, vec![busy(1), idle(2, 0)], Some(5)),
                Plan::default(),
            ),
            (
                "a process still starting: wait for it",
                view(1, 4, 0, vec![busy(1), starting(2)], Some(5)),
                Plan::default(),
            ),
            (
                "at max: nothing more",
                view(1, 2, 0, vec![busy(1), busy(2)], Some(9)),
                Plan::default(),
            ),
            (
                "queue unknown: only min matters",
                view(1, 4, 0, vec![busy(1)], None),
                Plan::default(),
            ),
            (
                "idle past max_idle_time, nothing waits: stop down to min, longest idle first",
                view(1, 4, 0, vec![idle(1, 31), idle(2, 40), idle(3, 5)], Some(0)),
                stop(&[2, 1]),
            ),
            (
                "never a busy one",
                view(0, 4, 0, vec![busy(1), busy(2)], Some(0)),
                Plan::default(),
            ),
            (
                "idle but not long enough",
                view(1, 4, 0, vec![idle(1, 29), idle(2, 29)], Some(0)),
                Plan::default(),
            ),
            (
                "jobs waiting: no scale-down",
                view(1, 4, 0, vec![idle(1, 99), idle(2, 99)], Some(1)),
                Plan::default(),
            ),
            (
                "queue unknown: no scale-down",
                view(1, 4, 0, vec![idle(1, 99), idle(2, 99)], None),
                Plan::default(),
            ),
            (
                "min_spare keeps idle ones beyond the busy",
                view(1, 6, 2, vec![busy(1), busy(2)], None),
                start(2),
            ),
            (
                "min_spare counts starting processes",
                view(1, 6, 2, vec![busy(1), starting(2)], None),
                start(1),
            ),
            (
                "min_spare within max",
                view(1, 3, 2, vec![busy(1), busy(2)], None),
                start(1),
            ),
            (
                "min_spare spares survive idleness",
                view(
                    1,
                    6,
                    2,
                    vec![busy(1), idle(2, 99), idle(3, 99), idle(4, 99)],
                    Some(0),
                ),
                stop(&[2]),
            ),
            (
                "max lowered: idle first, then busy",
                view(0, 1, 0, vec![busy(1), idle(2, 1), busy(3)], Some(0)),
                stop(&[2, 1]),
            ),
            (
                "max lowered to 0: everything stops",
                view(0, 0, 0, vec![busy(1), starting(2)], Some(3)),
                stop(&[2, 1]),
            ),
            (
                "max raised while busy and waiting",
                view(2, 5, 0, vec![busy(1), busy(2)], Some(1)),
                start(1),
            ),
        ];
        for (name, view, expected) in cases {
            let decided = plan(&view);
            assert_eq!(
                (decided.start, decided.stop),
                (expected.start, expected.stop),
                "{name}"
            );
        }
    }

    #[test]
    fn each_decision_says_which_rule_made_it() {
        let cases = [
            (view(2, 4, 0, vec![], None), Why::BelowMin),
            (view(0, 4, 0, vec![busy(1)], Some(3)), Why::Backlog),
            (view(0, 4, 1, vec![busy(1)], Some(0)), Why::MinSpare),
            (view(0, 4, 0, vec![idle(1, 31)], Some(0)), Why::Idle),
            (
                view(0, 1, 0, vec![idle(1, 1), idle(2, 1)], None),
                Why::AboveMax,
            ),
            (view(1, 4, 0, vec![idle(1, 1)], Some(0)), Why::Nothing),
        ];
        for (view, why) in cases {
            assert_eq!(plan(&view).why, why, "{view:?}");
        }
    }
}
