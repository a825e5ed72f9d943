//! `user = "NAME[:GROUP]"`: the account worker processes run as (supervisord's `user=`,
//! GearmanManager's `user`). Names are looked up when the config is loaded, so that
//! `check-config`, a start and a reload refuse a user that does not exist, or one the host
//! cannot switch to (it is not root).

use nix::unistd::{Gid, Group, Uid, User};

/// Whom a job's processes run as.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct WorkerUser {
    /// As written: `www-data` or `www-data:www-data`.
    pub spec: String,
    pub uid: u32,
    pub gid: u32,
    /// Its home directory, for `HOME`.
    pub home: Option<std::path::PathBuf>,
    /// Its name, for `USER` and `LOGNAME`.
    pub name: String,
}

/// Parses and looks up `spec`; `at` names the key in errors.
pub fn resolve(at: &str, spec: &str) -> Result<WorkerUser, String> {
    let (user, group) = match spec.split_once(':') {
        Some((user, group)) => (user.trim(), Some(group.trim())),
        None => (spec.trim(), None),
    };
    if user.is_empty() || group == Some("") {
        return Err(format!(
            "{at}: user = {spec:?}: give a user, or USER:GROUP (names or numbers)"
        ));
    }
    let lookup = match user.parse::<u32>() {
        Ok(uid) => User::from_uid(Uid::from_raw(uid)),
        Err(_) => User::from_name(user),
    };
    let entry = match lookup {
        Ok(Some(entry)) => entry,
        Ok(None) => {
            return Err(format!(
                "{at}: user = {spec:?}: there is no user {user:?} here"
            ));
        }
        Err(e) => {
            return Err(format!(
                "{at}: user = {spec:?}: cannot look up {user:?}: {e}"
            ));
        }
    };
    let gid = match group {
        None => entry.gid,
        Some(group) => {
            let lookup = match group.parse::<u32>() {
                Ok(gid) => Group::from_gid(Gid::from_raw(gid)),
                Err(_) => Group::from_name(group),
            };
            match lookup {
                Ok(Some(g)) => g.gid,
                Ok(None) => {
                    return Err(format!(
                        "{at}: user = {spec:?}: there is no group {group:?} here"
                    ));
                }
                Err(e) => {
                    return Err(format!(
                        "{at}: user = {spec:?}: cannot look up group {group:?}: {e}"
                    ));
                }
            }
        }
    };
    let me = Uid::effective();
    if !me.is_root() && (entry.uid != me || gid != Gid::effective()) {
        return Err(format!(
            "{at}: user = {spec:?}: the host runs as uid {me}, not root, so it cannot start workers as another user"
        ));
    }
    Ok(WorkerUser {
        spec: spec.to_string(),
        uid: entry.uid.as_raw(),
        gid: gid.as_raw(),
        home: Some(entry.dir),
        name: entry.name,
    })
}
