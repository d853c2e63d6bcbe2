//! A worker's budget for the request bodies it is receiving: `[limits] body_memory` bytes of
//! memory and `[limits] body_disk` bytes of temporary files, shared by all its connections.
//!
//! A body reserves what has arrived of it, growing as more arrives: up to `body_buffer` of it
//! in memory, and, once it is larger than that, all of it on disk, where it goes. What a client
//! only announces (its `Content-Length`) reserves nothing: otherwise a few sockets that announce
//! large bodies and send a byte now and then would hold the whole budget, and every honest
//! upload would be refused, at the cost of no bandwidth to the attacker. A body that outgrows
//! what is left is refused (`503`, `Retry-After: 1`). The reservation is released when the
//! request goes to the application, which then owns the body, or when its connection ends:
//! the budget covers bodies being received, not requests being handled.

use std::cell::Cell;
use std::fmt;
use std::rc::Rc;

use crate::config::format_size;

/// Most writes to its temporary file one body makes in one turn of the event loop (of at least
/// 64 KiB each): a fast upload then yields to the other connections and to the heartbeat,
/// as a fast download does at its write budget.
pub(super) const SPILLS_PER_TURN: usize = 16;

/// What a body needs of the budget.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Need {
    pub(super) memory: u64,
    pub(super) disk: u64,
}

impl Need {
    /// What a body needs once `received` of its bytes are in: up to `body_buffer` in memory,
    /// and all of it on disk once it is larger than that.
    pub(super) fn of_body(received: u64, body_buffer: u64) -> Need {
        Need {
            memory: received.min(body_buffer),
            disk: if received > body_buffer { received } else { 0 },
        }
    }
}

/// One worker's budget; connections hold [`Reservation`]s against it.
#[derive(Debug)]
pub(super) struct BodyBudget {
    limit: Need,
    used: Cell<Need>,
    /// Bodies refused so far.
    refused: Cell<u64>,
}

/// A body the budget had no room for, with the numbers for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Refused {
    /// What the body needed in all.
    pub(super) need: Need,
    /// What the other bodies being received held.
    pub(super) used: Need,
    /// The budget.
    pub(super) limit: Need,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "it needs {} of memory and {} of disk; the bodies being received hold {} of \
             body_memory = {} and {} of body_disk = {}",
            format_size(self.need.memory),
            format_size(self.need.disk),
            format_size(self.used.memory),
            format_size(self.limit.memory),
            format_size(self.used.disk),
            format_size(self.limit.disk),
        )
    }
}

impl BodyBudget {
    /// A budget of `memory` and `disk` bytes.
    pub(super) fn new(memory: u64, disk: u64) -> Rc<BodyBudget> {
        Rc::new(BodyBudget {
            limit: Need { memory, disk },
            used: Cell::new(Need::default()),
            refused: Cell::new(0),
        })
    }

    /// How many bodies the budget has refused.
    pub(super) fn refused(&self) -> u64 {
        self.refused.get()
    }

    /// What the bodies being received hold now.
    #[cfg(test)]
    pub(super) fn used(&self) -> Need {
        self.used.get()
    }

    /// Grows `held` (a body's reservation, if it has one yet) to cover `need`; a reservation
    /// never shrinks. Refused, and `held` left as it was, when the budget has no room.
    pub(super) fn reserve(
        self: &Rc<Self>,
        held: &mut Option<Reservation>,
        need: Need,
    ) -> Result<(), Refused> {
        let had = held.as_ref().map_or(Need::default(), |r| r.held);
        let more = Need {
            memory: need.memory.saturating_sub(had.memory),
            disk: need.disk.saturating_sub(had.disk),
        };
        if more == Need::default() {
            return Ok(());
        }
        let used = self.used.get();
        let others = Need {
            memory: used.memory - had.memory,
            disk: used.disk - had.disk,
        };
        let fits = |used: u64, more: u64, limit: u64| used.saturating_add(more) <= limit;
        if !fits(used.memory, more.memory, self.limit.memory)
            || !fits(used.disk, more.disk, self.limit.disk)
        {
            self.refused.set(self.refused.get() + 1);
            return Err(Refused {
                need: Need {
                    memory: had.memory + more.memory,
                    disk: had.disk + more.disk,
                },
                used: others,
                limit: self.limit,
            });
        }
        self.used.set(Need {
            memory: used.memory + more.memory,
            disk: used.disk + more.disk,
        });
        let reservation = held.get_or_insert_with(|| Reservation {
            budget: Rc::clone(self),
            held: Need::default(),
        });
        reservation.held.memory += more.memory;
        reservation.held.disk += more.disk;
        Ok(())
    }
}

/// What one body being received holds of its worker's budget; given back when dropped.
#[derive(Debug)]
pub(super) struct Reservation {
    budget: Rc<BodyBudget>,
    held: Need,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let used = self.budget.used.get();
        self.budget.used.set(Need {
            memory: used.memory - self.held.memory,
            disk: used.disk - self.held.disk,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const fn need(memory: u64, disk: u64) -> Need {
        Need { memory, disk }
    }

    #[test]
    fn a_body_needs_memory_up_to_body_buffer_and_disk_past_it() {
        // (received, body_buffer) -> need: what arrived, never what was announced.
        let table = [
            ((0, 1000), need(0, 0)),
            ((100, 1000), need(100, 0)),
            ((1000, 1000), need(1000, 0)),
            ((1001, 1000), need(1000, 1001)),
            ((5000, 1000), need(1000, 5000)),
            // Every body to a file.
            ((10, 0), need(0, 10)),
        ];
        for ((received, buffer), want) in table {
            assert_eq!(Need::of_body(received, buffer), want, "{received} {buffer}");
        }
    }

    #[test]
    fn reservations_fit_the_budget_and_are_given_back_when_dropped() {
        let budget = BodyBudget::new(100, 1000);
        let mut a = None;
        let mut b = None;
        budget.reserve(&mut a, need(60, 600)).unwrap();
        let refused = budget.reserve(&mut b, need(50, 0)).unwrap_err();
        assert_eq!(refused.need, need(50, 0));
        assert_eq!(refused.used, need(60, 600));
        assert!(b.is_none(), "a refused body holds nothing");
        assert_eq!(budget.refused(), 1);
        let refused = budget.reserve(&mut b, need(40, 401)).unwrap_err();
        assert!(
            refused.to_string().contains("body_disk = 1000"),
            "{refused}"
        );
        budget.reserve(&mut b, need(40, 400)).unwrap();
        assert_eq!(budget.used(), need(100, 1000));
        drop(a.take());
        assert_eq!(budget.used(), need(40, 400));
        drop(b.take());
        assert_eq!(budget.used(), need(0, 0));
    }

    #[test]
    fn a_reservation_grows_and_never_shrinks() {
        let budget = BodyBudget::new(100, 1000);
        let mut held = None;
        budget.reserve(&mut held, need(30, 0)).unwrap();
        budget.reserve(&mut held, need(100, 200)).unwrap();
        budget.reserve(&mut held, need(50, 100)).unwrap();
        assert_eq!(budget.used(), need(100, 200));
        let refused = budget.reserve(&mut held, need(100, 1001)).unwrap_err();
        assert_eq!(refused.need, need(100, 1001));
        assert_eq!(
            refused.used,
            need(0, 0),
            "its own part is not counted as others'"
        );
        assert_eq!(budget.used(), need(100, 200), "a refusal changes nothing");
        drop(held);
        assert_eq!(budget.used(), need(0, 0));
    }

    #[test]
    fn an_empty_need_takes_nothing() {
        let budget = BodyBudget::new(0, 0);
        let mut held = None;
        budget.reserve(&mut held, need(0, 0)).unwrap();
        assert!(held.is_none());
    }
}
