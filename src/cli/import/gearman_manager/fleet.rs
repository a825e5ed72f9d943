//! The processes GearmanManager would start for a set of functions, and the geardriver pools
//! that come closest: pure arithmetic, tested beside itself.
//!
//! GearmanManager (`load_workers`, `bootstrap`) starts `count` processes that register every
//! function except the `dedicated_only` ones, then, per function, as many processes of its
//! own as it takes to reach the function's count:
//!
//! - `dedicated_only`: `dedicated_count` processes of its own, and no other serves it;
//! - else the function's count is `max(min_count, ded_count)` where `min_count` is
//!   `max(count, 1)` (or `max(its count, count)` when its section gives one) and `ded_count`
//!   is `count + dedicated_count` (its own section's, else the global one's) when one is
//!   given, else `min_count`; it gets that minus `count` processes of its own.
//!
//! geardriver serves a job from one pool only, so a function cannot both share the
//! `count` processes and have its own. A function with no processes of its own is a member
//! of the group of all jobs (`min_processes = count`); one with processes of its own leaves
//! the group and keeps them as its `min_processes`, with `max_processes` raised by `count`:
//! the processes that would have shared its jobs become room to scale into while its queue
//! backs up. At rest the host runs as many processes as GearmanManager did (fewer when no
//! function is left to the shared ones, which then are not started at all).

use super::settings::{FunctionSettings, Settings};
use std::collections::BTreeMap;

/// GearmanManager's `max_run_time` and `worker_restart_splay` defaults.
pub const DEFAULT_LIFETIME: u64 = 3600;
pub const DEFAULT_SPLAY: u64 = 600;
/// GearmanManager's `graceful_shutdown_wait_time` default.
pub const DEFAULT_SHUTDOWN_WAIT: u64 = 60;

/// Where one function's processes come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    /// Served by the processes that do every job (the group), with none of its own.
    pub shared: bool,
    /// Processes GearmanManager starts for it alone.
    pub own: u64,
    /// The pool's limits here: the group's for a shared function.
    pub min: u64,
    pub max: u64,
    pub dedicated_only: bool,
}

/// How `function` (its section, if any) is placed, given the global `count` and
/// `dedicated_count`.
pub fn placement(
    count: u64,
    dedicated_count: u64,
    function: Option<&FunctionSettings>,
) -> Result<Placement, String> {
    let f = function.cloned().unwrap_or_default();
    if f.dedicated_only {
        if f.dedicated_count == 0 {
            return Err(
                "dedicated_only needs a dedicated_count of 1 or more (GearmanManager exits with \
                 \"Invalid configuration for dedicated_count\")"
                    .into(),
            );
        }
        return Ok(Placement {
            shared: false,
            own: f.dedicated_count,
            min: f.dedicated_count,
            max: f.dedicated_count,
            dedicated_only: true,
        });
    }
    let min_count = match f.count {
        0 => count.max(1),
        own => own.max(count),
    };
    let ded_count = match (f.dedicated_count, dedicated_count) {
        (0, 0) => min_count,
        (0, global) => count + global,
        (own, _) => count + own,
    };
    let total = min_count.max(ded_count);
    let own = total - count;
    Ok(match own {
        0 => Placement {
            shared: true,
            own: 0,
            min: count,
            max: count,
            dedicated_only: false,
        },
        _ => Placement {
            shared: false,
            own,
            min: own,
            max: total,
            dedicated_only: false,
        },
    })
}

/// The whole fleet: the group (if any function is left to it), each function's place, and
/// the totals to compare.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fleet {
    /// The group of every shared function, if there is one.
    pub group: Option<String>,
    /// How a function without a section of its own is placed: what the worker directories
    /// give every job, the sections overriding it.
    pub default: Placement,
    pub functions: BTreeMap<String, Placement>,
    /// Processes GearmanManager starts.
    pub gearman_manager: u64,
    /// Processes here at rest, and at most.
    pub min_total: u64,
    pub max_total: u64,
}

/// Places every function in `names` (the ones found in the worker directories).
pub fn plan(settings: &Settings, names: &[String]) -> Result<Fleet, (String, String)> {
    let place =
        |f: Option<&FunctionSettings>| placement(settings.count, settings.dedicated_count, f);
    let default = place(None).map_err(|e| (String::new(), e))?;
    let mut functions = BTreeMap::new();
    for name in names {
        let p = place(settings.functions.get(name)).map_err(|e| (name.clone(), e))?;
        functions.insert(name.clone(), p);
    }
    let any_shared = functions.values().any(|p| p.shared);
    // Kept for the functions added later even when none is left to it now.
    let group = default.shared.then(|| group_name(names));
    let own: u64 = functions.values().map(|p| p.own).sum();
    let headroom: u64 = functions
        .values()
        .filter(|p| !p.shared)
        .map(|p| p.max - p.min)
        .sum();
    let shared = if any_shared { settings.count } else { 0 };
    Ok(Fleet {
        group,
        default,
        gearman_manager: settings.count + own,
        min_total: shared + own,
        max_total: shared + own + headroom,
        functions,
    })
}

/// `all`, unless a function has that name (a group may not be named after a job outside it).
fn group_name(names: &[String]) -> String {
    ["all", "all-functions", "gearman-manager-all"]
        .into_iter()
        .find(|g| !names.iter().any(|n| n == g))
        .unwrap_or("gearman-manager-all")
        .to_string()
}

/// geardriver's `max_lifetime` for GearmanManager's lifetime `l` and splay `s`.
///
/// GearmanManager gives each process `l` plus a random 0..=`s` seconds; geardriver gives
/// `max_lifetime` plus a random tenth of it. When `s` is at least a tenth of `l`, the
/// answer has the same average, `(l + s/2) / 1.05`, and its whole range lies within
/// GearmanManager's (rounded down, so it never passes `l + s`); under a tenth, `l` itself,
/// which keeps the least lifetime and overshoots the most by under a tenth.
pub fn lifetime(l: u64, s: u64) -> u64 {
    if s.saturating_mul(10) >= l {
        (2 * l + s) * 10 / 21
    } else {
        l
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(count: u64, dedicated_count: u64, dedicated_only: bool) -> FunctionSettings {
        FunctionSettings {
            count,
            dedicated_count,
            dedicated_only,
            ..Default::default()
        }
    }

    fn own_min_max(p: Placement) -> (bool, u64, u64, u64) {
        (p.shared, p.own, p.min, p.max)
    }

    #[test]
    fn without_count_each_function_has_one_process_of_its_own() {
        assert_eq!(
            own_min_max(placement(0, 0, None).unwrap()),
            (false, 1, 1, 1)
        );
        assert_eq!(
            own_min_max(placement(0, 3, None).unwrap()),
            (false, 3, 3, 3)
        );
        assert_eq!(
            own_min_max(placement(0, 0, Some(&f(4, 0, false))).unwrap()),
            (false, 4, 4, 4)
        );
    }

    #[test]
    fn with_count_a_function_shares_unless_it_needs_more() {
        // count = 10 alone: every function only in the shared processes.
        assert_eq!(
            own_min_max(placement(10, 0, None).unwrap()),
            (true, 0, 10, 10)
        );
        // Its count at or under the shared ones: nothing of its own.
        assert_eq!(
            own_min_max(placement(10, 0, Some(&f(3, 0, false))).unwrap()),
            (true, 0, 10, 10)
        );
        // [fetch_url] count = 15 of config-advanced.ini: 5 of its own, up to 15.
        assert_eq!(
            own_min_max(placement(10, 0, Some(&f(15, 0, false))).unwrap()),
            (false, 5, 5, 15)
        );
        // A dedicated_count adds to count (global, or its own, which wins).
        assert_eq!(
            own_min_max(placement(10, 1, None).unwrap()),
            (false, 1, 1, 11)
        );
        assert_eq!(
            own_min_max(placement(10, 1, Some(&f(0, 3, false))).unwrap()),
            (false, 3, 3, 13)
        );
        // count and dedicated_count in one section: the larger total.
        assert_eq!(
            own_min_max(placement(10, 0, Some(&f(20, 3, false))).unwrap()),
            (false, 10, 10, 20)
        );
    }

    #[test]
    fn dedicated_only_is_its_own_pool_of_exactly_its_count() {
        let p = placement(10, 1, Some(&f(0, 5, true))).unwrap();
        assert_eq!(own_min_max(p), (false, 5, 5, 5));
        assert!(p.dedicated_only);
        assert!(placement(10, 1, Some(&f(7, 0, true))).is_err());
    }

    fn settings(
        count: u64,
        dedicated_count: u64,
        functions: &[(&str, FunctionSettings)],
    ) -> Settings {
        Settings {
            count,
            dedicated_count,
            functions: functions
                .iter()
                .map(|(n, f)| (n.to_string(), f.clone()))
                .collect(),
            ..Default::default()
        }
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn config_advanced_ini() {
        // GearmanManager's etc/config-advanced.ini, with four function files.
        let s = settings(
            10,
            1,
            &[
                ("Sum", f(0, 5, true)),
                ("fetch_url", f(15, 0, false)),
                ("reverse_string", f(3, 0, false)),
            ],
        );
        let fleet = plan(&s, &names(&["Avg", "Sum", "fetch_url", "reverse_string"])).unwrap();
        // Its comment counts 21 for three files; Avg adds its one.
        assert_eq!(fleet.gearman_manager, 10 + 1 + 5 + 5 + 1);
        // The global dedicated_count gives every function one of its own: none is left to
        // the shared processes, so there is no group.
        assert_eq!(fleet.group, None);
        assert_eq!(fleet.min_total, 1 + 5 + 5 + 1);
        assert_eq!(fleet.max_total, 11 + 5 + 15 + 11);
    }

    #[test]
    fn a_group_of_all_when_functions_share() {
        let s = settings(4, 0, &[("big", f(6, 0, false)), ("only", f(0, 2, true))]);
        let fleet = plan(&s, &names(&["a", "b", "big", "only"])).unwrap();
        assert_eq!(fleet.group.as_deref(), Some("all"));
        assert_eq!(fleet.gearman_manager, 4 + 2 + 2);
        assert_eq!((fleet.min_total, fleet.max_total), (8, 12));
        assert!(fleet.functions["a"].shared && !fleet.functions["big"].shared);
        // A function called "all" does not clash with the group.
        let fleet = plan(&settings(2, 0, &[]), &names(&["all"])).unwrap();
        assert_eq!(fleet.group.as_deref(), Some("all-functions"));
    }

    #[test]
    fn dedicated_only_without_a_count_names_the_function() {
        let s = settings(0, 0, &[("x", f(0, 0, true))]);
        assert_eq!(plan(&s, &names(&["x"])).unwrap_err().0, "x");
    }

    #[test]
    fn lifetime_keeps_gearman_managers_range() {
        // The defaults: 3600 + 0..600 becomes 3714 + 0..371.
        assert_eq!(lifetime(3600, 600), 3714);
        for (l, s) in [
            (3600, 600),
            (60, 600),
            (100, 10),
            (1, 1),
            (7, 5),
            (86_400, 8640),
        ] {
            let m = lifetime(l, s);
            assert!(m >= l && m * 11 <= (l + s) * 10, "{l} {s} -> {m}");
        }
        // A splay under a tenth: the lifetime itself.
        assert_eq!(lifetime(3600, 60), 3600);
    }
}
