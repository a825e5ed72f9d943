//! `auth SECRET`: needed first when the console has a secret (it must when it listens
//! beyond loopback); until then every other command gets `ERR auth_required`.

use crate::console::command::{CommandDef, Reply};

pub const DEF: CommandDef = CommandDef {
    name: "auth",
    usage: "auth SECRET",
    summary: "authenticate (needed first when a secret is configured)",
};

/// Checks `given` against the configured secret; `true` in the result means authenticated.
pub fn run(secret: Option<&str>, given: Option<&str>) -> (Reply, bool) {
    match secret {
        None => (Reply::ok(), true),
        Some(secret)
            if constant_time_eq(secret.as_bytes(), given.unwrap_or_default().as_bytes()) =>
        {
            (Reply::ok(), true)
        }
        Some(_) => (Reply::error("auth_failed", "wrong secret"), false),
    }
}

/// Whether `given` is the secret (the HTTP endpoint's bearer token too), in a time that
/// does not depend on where they first differ.
pub fn same_secret(given: &str, secret: &str) -> bool {
    constant_time_eq(secret.as_bytes(), given.as_bytes())
}

/// Equality whose time does not depend on where the inputs first differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        diff |= usize::from(a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0));
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_secret_must_match_exactly() {
        assert_eq!(run(Some("s3cret"), Some("s3cret")), (Reply::ok(), true));
        assert!(!run(Some("s3cret"), Some("s3cre")).1);
        assert!(!run(Some("s3cret"), Some("s3cretX")).1);
        assert!(!run(Some("s3cret"), None).1);
        assert!(run(None, None).1);
    }
}
