//! The console's `max_connections` slots, and who gives one up when they run out.
//!
//! A connection is *unproven* until it does something useful: with a secret, `auth` with it;
//! without one, any command the console knows. `serve` closes an unproven connection after
//! `auth_timeout`. And when every slot is taken, a newcomer takes the place of an unproven
//! connection rather than being refused: the oldest one of the address that holds the most
//! of them, so that one address opening sockets in a loop closes its own. Only when proven
//! sessions hold every slot is a newcomer refused. Idle sockets, from one address or many,
//! with a secret or without, can therefore never keep the operator's `ctl` out.
//!
//! The lock exists because the accept loop admits while the connections' tasks prove
//! themselves and go; it is held for a scan of at most `max_connections` entries, never
//! across an `.await`.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;

/// Every slot, held or free.
pub struct Slots {
    max: usize,
    held: Mutex<Held>,
}

#[derive(Default)]
struct Held {
    /// By arrival: a smaller id is an older connection.
    by_id: BTreeMap<u64, Holder>,
    next_id: u64,
}

struct Holder {
    peer: SocketAddr,
    proven: bool,
    /// Cancelled when a newcomer takes its slot.
    evicted: CancellationToken,
}

/// A connection's slot; given back when dropped.
pub struct Place {
    id: u64,
    slots: Arc<Slots>,
    evicted: CancellationToken,
}

/// A newcomer let in, and whom it displaced (already told to go), if anyone.
pub struct Admitted {
    pub place: Place,
    pub displaced: Option<SocketAddr>,
}

/// Every slot is held by a proven session.
#[derive(Debug, PartialEq, Eq)]
pub struct Full {
    pub max: usize,
}

impl Slots {
    pub fn new(max: usize) -> Arc<Slots> {
        Arc::new(Slots {
            max,
            held: Mutex::new(Held::default()),
        })
    }

    /// A slot for a connection from `peer`: a free one, else an unproven connection's.
    pub fn admit(self: &Arc<Self>, peer: SocketAddr) -> Result<Admitted, Full> {
        let mut held = self.lock();
        let displaced = if held.by_id.len() < self.max {
            None
        } else {
            let id = held.victim().ok_or(Full { max: self.max })?;
            let victim = held.by_id.remove(&id).expect("the victim is held");
            victim.evicted.cancel();
            Some(victim.peer)
        };
        let id = held.next_id;
        held.next_id += 1;
        let evicted = CancellationToken::new();
        held.by_id.insert(
            id,
            Holder {
                peer,
                proven: false,
                evicted: evicted.clone(),
            },
        );
        Ok(Admitted {
            place: Place {
                id,
                slots: self.clone(),
                evicted,
            },
            displaced,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Held {
    /// The unproven connection to close for a newcomer: the oldest of the address holding
    /// the most unproven connections.
    fn victim(&self) -> Option<u64> {
        let unproven = || self.by_id.iter().filter(|(_, h)| !h.proven);
        let mut per_address: HashMap<std::net::IpAddr, usize> = HashMap::new();
        for (_, h) in unproven() {
            *per_address.entry(h.peer.ip()).or_default() += 1;
        }
        let most = per_address.values().copied().max()?;
        unproven()
            .find(|(_, h)| per_address[&h.peer.ip()] == most)
            .map(|(&id, _)| id)
    }
}

impl Place {
    /// It did something useful: it keeps its slot until it goes or idles out.
    pub fn prove(&self) {
        if let Some(h) = self.slots.lock().by_id.get_mut(&self.id) {
            h.proven = true;
        }
    }

    /// Cancelled when a newcomer took this slot.
    pub fn evicted(&self) -> &CancellationToken {
        &self.evicted
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        // An evicted place was handed on already.
        self.slots.lock().by_id.remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(ip: [u8; 4], port: u16) -> SocketAddr {
        SocketAddr::from((ip, port))
    }

    #[test]
    fn free_slots_first_then_the_oldest_unproven() {
        let slots = Slots::new(3);
        let a = slots.admit(from([127, 0, 0, 1], 1)).unwrap();
        let b = slots.admit(from([127, 0, 0, 1], 2)).unwrap();
        let c = slots.admit(from([127, 0, 0, 1], 3)).unwrap();
        assert!([&a, &b, &c].iter().all(|x| x.displaced.is_none()));
        a.place.prove();
        let d = slots.admit(from([127, 0, 0, 1], 4)).unwrap();
        assert_eq!(
            d.displaced,
            Some(from([127, 0, 0, 1], 2)),
            "b: the oldest unproven"
        );
        assert!(b.place.evicted().is_cancelled());
        assert!(!c.place.evicted().is_cancelled());
        // The evicted place going gives nothing back: its slot is d's.
        drop(b);
        let e = slots.admit(from([127, 0, 0, 1], 5)).unwrap();
        assert_eq!(e.displaced, Some(from([127, 0, 0, 1], 3)));
        // A slot given back is free again.
        drop(d);
        assert!(
            slots
                .admit(from([127, 0, 0, 1], 6))
                .unwrap()
                .displaced
                .is_none()
        );
    }

    #[test]
    fn proven_sessions_are_never_displaced() {
        let slots = Slots::new(2);
        let a = slots.admit(from([10, 0, 0, 1], 1)).unwrap();
        let b = slots.admit(from([10, 0, 0, 2], 1)).unwrap();
        a.place.prove();
        b.place.prove();
        assert_eq!(
            slots.admit(from([10, 0, 0, 3], 1)).err(),
            Some(Full { max: 2 })
        );
        drop(a);
        assert!(slots.admit(from([10, 0, 0, 3], 1)).is_ok());
    }

    #[test]
    fn the_address_holding_the_most_gives_up_its_oldest() {
        let slots = Slots::new(4);
        let operator = slots.admit(from([10, 0, 0, 9], 1)).unwrap();
        let flood: Vec<Admitted> = (0..3)
            .map(|port| slots.admit(from([10, 0, 0, 1], port)).unwrap())
            .collect();
        // The operator's connection is the oldest, but the flood's address holds the most.
        let next = slots.admit(from([10, 0, 0, 1], 7)).unwrap();
        assert_eq!(next.displaced, Some(from([10, 0, 0, 1], 0)));
        assert!(!operator.place.evicted().is_cancelled());
        let next = slots.admit(from([10, 0, 0, 1], 8)).unwrap();
        assert_eq!(next.displaced, Some(from([10, 0, 0, 1], 1)));
        assert!(!operator.place.evicted().is_cancelled());
        drop(flood);
    }
}
