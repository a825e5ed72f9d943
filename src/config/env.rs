//! Environment overrides of job entries, `GEARDRIVER_JOB__<JOB>__<KEY>`: the config crate
//! reads `GEARDRIVER__SECTION__KEY` for the sections but cannot address array entries.

use super::RawConfig;

/// The prefix of a job entry's environment overrides: `GEARDRIVER_JOB__RESIZE__MAX_PROCESSES=8`
/// sets `max_processes` of the job named `resize` (matched exactly, else ignoring case).
pub const JOB_ENV_PREFIX: &str = "GEARDRIVER_JOB__";

/// Applies `GEARDRIVER_JOB__<NAME>__<KEY>` overrides to the job entries (the config crate
/// cannot address array entries). Every such variable must name a job and a key it knows.
pub(super) fn override_jobs(
    raw: &mut RawConfig,
    vars: impl Iterator<Item = (String, String)>,
) -> Result<(), String> {
    let jobs = raw.jobs.get_or_insert_with(Vec::new);
    let mut vars: Vec<(String, String)> = vars
        .filter(|(name, _)| name.starts_with(JOB_ENV_PREFIX))
        .collect();
    vars.sort();
    for (var, value) in vars {
        let rest = &var[JOB_ENV_PREFIX.len()..];
        let Some((job, key)) = rest.rsplit_once("__") else {
            return Err(format!(
                "{var}: give the job and the key, as {JOB_ENV_PREFIX}<JOB>__<KEY>"
            ));
        };
        let names: Vec<Option<&str>> = jobs.iter().map(|j| j.name.as_deref()).collect();
        let index = names
            .iter()
            .position(|n| *n == Some(job))
            .or_else(|| {
                let folded: Vec<usize> = (0..names.len())
                    .filter(|&i| names[i].is_some_and(|n| n.eq_ignore_ascii_case(job)))
                    .collect();
                (folded.len() == 1).then(|| folded[0])
            })
            .ok_or_else(|| format!("{var}: no job is named {job:?}"))?;
        let entry = &mut jobs[index];
        let key = key.to_ascii_lowercase();
        let bad = |what: &str| format!("{var} = {value:?} is not {what}");
        let count = || {
            value
                .trim()
                .parse::<u32>()
                .map_err(|_| bad("a whole number"))
        };
        let secs = || {
            value
                .trim()
                .parse::<f64>()
                .map_err(|_| bad("a number of seconds"))
        };
        match key.as_str() {
            "min_processes" => entry.min_processes = Some(count()?),
            "max_processes" => entry.max_processes = Some(count()?),
            "min_spare" => entry.min_spare = Some(count()?),
            "max_spare" => entry.max_spare = Some(count()?),
            "concurrency" => entry.concurrency = Some(count()?),
            "max_jobs" => {
                entry.max_jobs = Some(value.trim().parse().map_err(|_| bad("a whole number"))?)
            }
            "max_idle_time" => entry.max_idle_time = Some(secs()?),
            "max_lifetime" => entry.max_lifetime = Some(secs()?),
            "max_memory" => entry.max_memory = Some(super::RawSize::Text(value.clone())),
            "timeout" => entry.timeout = Some(secs()?),
            "prefetch" | "watch" => {
                let on = match value.trim() {
                    "true" | "1" => true,
                    "false" | "0" => false,
                    _ => return Err(bad("true or false")),
                };
                match key.as_str() {
                    "prefetch" => entry.prefetch = Some(on),
                    _ => entry.watch = Some(on),
                }
            }
            "user" => entry.user = Some(value.trim().to_string()),
            "decode" => entry.decode = Some(value.clone()),
            "encode" => entry.encode = Some(value.clone()),
            _ => {
                return Err(format!(
                    "{var}: {key} cannot be set from the environment (these can: min_processes, \
                     max_processes, min_spare, max_spare, concurrency, max_jobs, max_idle_time, max_lifetime, max_memory, timeout, \
                     prefetch, watch, user, decode, encode)"
                ));
            }
        }
    }
    Ok(())
}
