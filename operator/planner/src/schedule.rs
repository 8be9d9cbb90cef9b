//! Scheduling in time: when each placed system runs each phase.
//!
//! List scheduling over a topological order. Every node has `maxConcurrentMigrations` slots;
//! a system holds one slot from the start of Provisioning to the end of Verifying, and each
//! slot replicates at `migrationBandwidthMbps / maxConcurrentMigrations`. A wave with
//! `maxConcurrent` has that many wave slots, held the same way. A system starts at the
//! earliest instant when its dependencies are complete, its wave may start (`notBefore`,
//! every system of lower-order waves started), a node slot and a wave slot are free, and its
//! cutover — which follows replication immediately — lands inside the node ∩ wave windows.
//! The start is delayed just enough for that, so no slot idles while waiting for a window.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use crate::dependencies::Failure;
use crate::index::{Kind, NONE, Problem};
use crate::model::{Phase, Settings};
use crate::placement::Placement;
use crate::windows::WindowTable;

/// Planned times of one system, Unix seconds, kept small (there is one per system): the
/// phase intervals follow from these and the fixed phase lengths ([`Durations`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Times {
    /// Start of its first remaining phase.
    pub start: i64,
    /// End of Verifying.
    pub completion: i64,
    /// End of Replicating.
    replicated: i64,
    /// Start of CuttingOver.
    cut: i64,
    /// Which of Provisioning, Replicating, CuttingOver are still ahead (bits 0, 1, 2).
    ahead: u8,
}

const PROVISIONING: u8 = 1;
const REPLICATING: u8 = 2;
const CUTTING_OVER: u8 = 4;

impl Times {
    /// Provisioning interval, when still ahead.
    pub fn provisioning(&self, d: &Durations) -> Option<(i64, i64)> {
        (self.ahead & PROVISIONING != 0).then_some((self.start, self.start + d.provisioning))
    }

    /// Replicating interval, when still ahead.
    pub fn replicating(&self, d: &Durations) -> Option<(i64, i64)> {
        let from = if self.ahead & PROVISIONING != 0 { self.start + d.provisioning } else { self.start };
        (self.ahead & REPLICATING != 0).then_some((from, self.replicated))
    }

    /// CuttingOver interval, when still ahead.
    pub fn cutting_over(&self, d: &Durations) -> Option<(i64, i64)> {
        (self.ahead & CUTTING_OVER != 0).then_some((self.cut, self.cut + d.cutover))
    }

    /// Verifying interval (always ahead of a scheduled system).
    pub fn verifying(&self, d: &Durations) -> Option<(i64, i64)> {
        Some((self.completion - d.verification, self.completion))
    }
}

/// The schedule of every placed system, and the lower bound on its makespan.
#[derive(Debug)]
pub struct Schedule {
    /// Per system: its times, for New and InFlight systems that are placed.
    pub times: Vec<Option<Times>>,
    /// Lower bound on the last completion (Unix seconds).
    pub lower_bound: i64,
}

/// The fixed phase lengths, seconds.
#[derive(Debug, Clone, Copy)]
pub struct Durations {
    provisioning: i64,
    cutover: i64,
    verification: i64,
}

impl Durations {
    /// The lengths `settings` give.
    pub fn of(settings: &Settings) -> Durations {
        Durations {
            provisioning: i64::from(settings.provisioning_minutes) * 60,
            cutover: i64::from(settings.cutover_minutes) * 60,
            verification: i64::from(settings.verification_minutes) * 60,
        }
    }
}

/// Replication time in seconds of `bytes` over one of `slots` slots sharing `mbps`.
pub fn replication_seconds(bytes: u64, mbps: u64, slots: u32) -> i64 {
    if bytes == 0 || mbps == 0 {
        return 0;
    }
    let slots = u64::from(slots.max(1));
    match (bytes.checked_mul(8 * slots), mbps.checked_mul(1_000_000)) {
        (Some(bits), Some(rate)) => bits.div_ceil(rate).min(i64::MAX as u64) as i64,
        _ => {
            let bits = u128::from(bytes) * 8 * u128::from(slots);
            let rate = u128::from(mbps) * 1_000_000;
            bits.div_ceil(rate).min(i64::MAX as u128) as i64
        }
    }
}

/// Schedules every placed New and InFlight system. `order` is a topological order of New
/// systems (dependencies first).
pub fn schedule(
    p: &Problem<'_>,
    placement: &Placement,
    windows: &WindowTable,
    failure: &[Option<Failure>],
    order: &[u32],
) -> Schedule {
    let n = p.systems.len();
    let now = p.settings.now;
    let d = Durations::of(p.settings);
    let node_of = &placement.node_of;
    let slots_of = |node: u32| p.nodes[node as usize].max_concurrent_migrations.max(1);
    let replication = |s: usize, node: u32| {
        let nd = p.nodes[node as usize];
        replication_seconds(p.facts[s].data_volume, nd.migration_bandwidth_mbps, slots_of(node))
    };
    // No more systems than there are can run at once: a node's slots beyond that would stay
    // free, so they are not allocated (a hand-written `maxConcurrentMigrations: 4294967295`
    // would otherwise ask for 32 GiB).
    let mut node_slots: Vec<Vec<i64>> =
        (0..p.nodes.len() as u32).map(|node| vec![now; (slots_of(node) as usize).min(n.max(1))]).collect();
    let mut wave_slots: Vec<Option<BTreeMap<i64, u32>>> =
        p.waves.iter().map(|w| w.max_concurrent.map(|m| BTreeMap::from([(now, m)]))).collect();
    let mut times: Vec<Option<Times>> = vec![None; n];
    let mut node_work = vec![0i64; p.nodes.len()];
    // Per system: the end of the longest chain of durations ending with it (for the bound), and
    // the latest completion of its booked dependencies.
    let mut chain_end = vec![now; n];
    let mut ready_at = vec![now; n];
    let mut lower_bound = now;

    // In-flight systems keep running from now, whatever the queue says.
    for s in 0..n {
        let node = node_of[s];
        if p.kind[s] != Kind::InFlight || failure[s].is_some() || node == NONE {
            continue;
        }
        let wave = p.wave_of[s];
        let t = in_flight_times(p.systems[s].phase, now, replication(s, node), &d, |at| {
            windows.next_cutover(node, wave, at)
        });
        take_slot(&mut node_slots[node as usize], now, t.completion);
        if wave != NONE
            && let Some(slots) = &mut wave_slots[wave as usize]
        {
            take_wave_slot(slots, now, t.completion, true);
        }
        node_work[node as usize] += t.completion - now;
        chain_end[s] = t.completion;
        lower_bound = lower_bound.max(t.completion);
        for &c in p.dependents.row(s) {
            ready_at[c as usize] = ready_at[c as usize].max(t.completion);
        }
        times[s] = Some(t);
    }

    // The New systems to schedule, dependencies first.
    let placed: Vec<u32> =
        order.iter().copied().filter(|s| node_of[*s as usize] != NONE && failure[*s as usize].is_none()).collect();
    let mut live = vec![false; n];
    let mut duration = vec![0i64; n];
    let fixed = d.provisioning + d.cutover + d.verification;
    for &s in &placed {
        let su = s as usize;
        live[su] = true;
        duration[su] = fixed + replication(su, node_of[su]);
    }

    // Keys: the rank of the wave order (a system without a wave takes the lowest order among
    // the waves that depend on it, or comes last), then priority, then the longest chain of
    // work it heads — except for a system nothing waits on in a wave order that a higher one
    // follows: those go last, shortest first, so that the long ones run across the barrier
    // instead of delaying it.
    let mut orders: Vec<i32> = p.waves.iter().map(|w| w.order).collect();
    orders.sort_unstable();
    orders.dedup();
    let wave_rank: Vec<u32> = p.waves.iter().map(|w| orders.partition_point(|o| *o < w.order) as u32).collect();
    let last_rank = orders.len() as u32;
    let mut key = vec![last_rank; n];
    let mut tail = vec![0i64; n];
    let mut entry = vec![0u128; n];
    for &s in placed.iter().rev() {
        let su = s as usize;
        let mut below = last_rank;
        let mut longest = 0;
        let mut waited_on = false;
        for &c in p.dependents.row(su) {
            let cu = c as usize;
            if live[cu] {
                below = below.min(key[cu]);
                longest = longest.max(tail[cu]);
                waited_on = true;
            }
        }
        let wave = p.wave_of[su];
        let rank = if wave == NONE { below } else { wave_rank[wave as usize] };
        key[su] = rank;
        tail[su] = duration[su] + longest;
        let leaf = !waited_on && rank + 1 < last_rank;
        let within = if leaf { duration[su] } else { TAIL_MAX - tail[su].clamp(0, TAIL_MAX) };
        // Systems whose cutover any time will do go after the window-constrained ones.
        let free = !windows.constrained(node_of[su], wave);
        let priority = u128::from(u32::MAX - p.facts[su].priority);
        entry[su] = u128::from(rank.min(0xFFFF)) << 112
            | u128::from(free) << 111
            | priority << 79
            | u128::from(leaf) << 78
            | (within.clamp(0, TAIL_MAX) as u128) << 32
            | u128::from(s);
    }

    // The longest chain of durations ending at each system (the chain part of the bound);
    // systems not scheduled end at `now`, which no chain starts before.
    let mut pending = vec![0u32; n];
    let mut released: Vec<Vec<u32>> = vec![Vec::new(); last_rank as usize + 1];
    for &s in &placed {
        let su = s as usize;
        let mut chain = now;
        let wave = p.wave_of[su];
        if wave != NONE {
            chain = chain.max(p.waves[wave as usize].not_before.unwrap_or(now));
        }
        let mut waiting = 0;
        for &dep in p.deps.row(su) {
            chain = chain.max(chain_end[dep as usize]);
            waiting += u32::from(live[dep as usize]);
        }
        chain_end[su] = chain + duration[su];
        lower_bound = lower_bound.max(chain_end[su]);
        pending[su] = waiting;
        if waiting == 0 {
            released[key[su] as usize].push(s);
        }
    }

    let nodes = p.nodes.len();
    let mut run = Dispatch {
        p,
        node_of,
        windows,
        d: &d,
        now,
        duration: &duration,
        key: &key,
        entry: &entry,
        live: &live,
        node_slots,
        wave_slots,
        times,
        node_work,
        pending,
        ready_at,
        released,
        ready: (0..nodes).map(|_| BinaryHeap::new()).collect(),
        future: (0..nodes).map(|_| Future::default()).collect(),
        wake: vec![i64::MAX; nodes],
        events: BinaryHeap::new(),
        rank: 0,
        barrier: now,
        waved_max_start: now,
    };
    // One wave order after the other: a rank starts once every system of the lower ranks has
    // started, so its barrier is known; within a rank, time runs forward.
    for rank in 0..=last_rank {
        run.rank = rank;
        run.barrier = run.waved_max_start;
        let released = std::mem::take(&mut run.released[rank as usize]);
        run.admit_all(released);
        while let Some(Reverse(e)) = run.events.pop() {
            let (t, node) = unpack(e);
            if run.wake[node as usize] == t {
                run.wake_up(node as usize, t);
            }
        }
    }
    let Dispatch { times, node_work, .. } = run;
    for (node, work) in node_work.iter().enumerate() {
        let per_slot = ceil_div(*work, i64::from(slots_of(node as u32)));
        lower_bound = lower_bound.max(now + per_slot);
    }
    Schedule { times, lower_bound }
}

/// Largest chain or duration the dispatch order tells apart (seconds, 46 bits).
const TAIL_MAX: i64 = (1 << 46) - 1;

/// Idle time a slot may be left with before a system is deferred (seconds).
const DEFER_IDLE: i64 = 30 * 60;

/// The mutable state of the dispatch: an event-driven list schedule. Each node has a queue of
/// systems that are ready (by dispatch order) and one of systems that will be ready at a known
/// time; a node wakes up when a slot frees or a system becomes ready, and fills its free slots
/// from the ready queue.
struct Dispatch<'x, 'a> {
    p: &'x Problem<'a>,
    node_of: &'x [u32],
    windows: &'x WindowTable,
    d: &'x Durations,
    now: i64,
    duration: &'x [i64],
    /// Per system: the rank of its wave order.
    key: &'x [u32],
    /// Per system: its dispatch order packed into one integer, smallest first: wave order rank
    /// (16 bits), window-constrained first (1 bit), priority descending (32 bits), a leaf before
    /// a barrier last (1 bit), its duration ascending or else the longest chain of work it heads
    /// descending (46 bits, seconds), and the system index (32 bits).
    entry: &'x [u128],
    live: &'x [bool],
    node_slots: Vec<Vec<i64>>,
    wave_slots: Vec<Option<BTreeMap<i64, u32>>>,
    times: Vec<Option<Times>>,
    node_work: Vec<i64>,
    /// Per system: dependencies not yet booked.
    pending: Vec<u32>,
    /// Per system: the latest completion of its booked dependencies.
    ready_at: Vec<i64>,
    /// Per rank: systems whose dependencies are booked, waiting for their rank to start.
    released: Vec<Vec<u32>>,
    /// Per node: systems ready now, by dispatch order.
    ready: Vec<BinaryHeap<Reverse<u128>>>,
    /// Per node: systems that become ready at a known time (time, system).
    future: Vec<Future>,
    /// Per node: the time of its next wake-up (`i64::MAX` when none).
    wake: Vec<i64>,
    /// Wake-ups (time, node); those that do not match `wake` are stale.
    events: BinaryHeap<Reverse<u128>>,
    rank: u32,
    barrier: i64,
    waved_max_start: i64,
}

impl Dispatch<'_, '_> {
    /// The time `s`, whose dependencies are all booked, becomes ready.
    fn ready_time(&self, s: u32) -> i64 {
        let su = s as usize;
        let mut ready = self.ready_at[su];
        let wave = self.p.wave_of[su];
        if wave != NONE {
            let not_before = self.p.waves[wave as usize].not_before.unwrap_or(self.now);
            ready = ready.max(self.barrier).max(not_before);
        }
        ready
    }

    /// Queues `s`, whose dependencies are all booked, for the time it becomes ready.
    fn admit(&mut self, s: u32) {
        let ready = self.ready_time(s);
        let node = self.node_of[s as usize] as usize;
        self.future[node].heap.push(Reverse(pack(ready, s)));
        self.schedule_wake(node, ready);
    }

    /// Queues the systems released before their rank started, sorted at once.
    fn admit_all(&mut self, released: Vec<u32>) {
        let mut by_node: Vec<Vec<(i64, u32)>> = vec![Vec::new(); self.future.len()];
        for s in released {
            by_node[self.node_of[s as usize] as usize].push((self.ready_time(s), s));
        }
        for (node, mut items) in by_node.into_iter().enumerate() {
            if items.is_empty() {
                continue;
            }
            // Latest first: the earliest is popped off the end.
            items.sort_unstable_by(|a, b| b.cmp(a));
            let first = items[items.len() - 1].0;
            self.future[node].sorted = items;
            self.schedule_wake(node, first);
        }
    }

    fn schedule_wake(&mut self, node: usize, t: i64) {
        if t < self.wake[node] {
            self.wake[node] = t;
            self.events.push(Reverse(pack(t, node as u32)));
        }
    }

    /// Fills the free slots of `node` at time `t` from its ready queue.
    fn wake_up(&mut self, node: usize, t: i64) {
        self.wake[node] = i64::MAX;
        while let Some(s) = self.future[node].pop_by(t) {
            self.ready[node].push(Reverse(self.entry[s as usize]));
        }
        while self.node_slots[node][0] <= t {
            let Some(Reverse(e)) = self.ready[node].pop() else {
                break;
            };
            let s = e as u32;
            let (start, cut, idle) = self.plan_start(s, t);
            if idle > DEFER_IDLE {
                // Its cutover window (or a wave slot) is far: let others use the slot meanwhile,
                // and take it when it can start without idling a slot for long.
                let at = (start - DEFER_IDLE).max(t + 1);
                self.future[node].heap.push(Reverse(pack(at, s)));
                continue;
            }
            self.commit(s, start, cut);
        }
        let mut next = self.future[node].next();
        if !self.ready[node].is_empty() {
            next = next.min(self.node_slots[node][0]);
        }
        if next != i64::MAX {
            self.schedule_wake(node, next);
        }
    }

    /// Earliest start of `s` given its ready time: (start, cutover start, idle time it would
    /// leave on the best-fitting slot).
    fn plan_start(&self, s: u32, ready: i64) -> (i64, i64, i64) {
        let su = s as usize;
        let node = self.node_of[su];
        let wave = self.p.wave_of[su];
        let slots = &self.node_slots[node as usize];
        let mut earliest = ready.max(slots[0]);
        if wave != NONE
            && let Some(pool) = &self.wave_slots[wave as usize]
        {
            earliest = earliest.max(pool.keys().next().copied().unwrap_or(self.now));
        }
        let ahead = self.duration[su] - self.d.cutover - self.d.verification;
        let cut = self.windows.next_cutover(node, wave, earliest + ahead);
        let start = cut - ahead;
        let fit = slots.partition_point(|f| *f <= start).saturating_sub(1);
        (start, cut, start - slots[fit].max(ready))
    }

    /// Books `s` from `start` with its cutover at `cut`, and releases its dependents.
    fn commit(&mut self, s: u32, start: i64, cut: i64) {
        let su = s as usize;
        let node = self.node_of[su];
        let wave = self.p.wave_of[su];
        let d = self.d;
        let completion = cut + d.cutover + d.verification;
        take_slot(&mut self.node_slots[node as usize], start, completion);
        if wave != NONE {
            if let Some(pool) = &mut self.wave_slots[wave as usize] {
                take_wave_slot(pool, start, completion, false);
            }
            self.waved_max_start = self.waved_max_start.max(start);
        }
        self.node_work[node as usize] += self.duration[su];
        self.times[su] =
            Some(Times { start, completion, replicated: cut, cut, ahead: PROVISIONING | REPLICATING | CUTTING_OVER });
        for &c in self.p.dependents.row(su) {
            let cu = c as usize;
            if self.live[cu] {
                self.ready_at[cu] = self.ready_at[cu].max(completion);
                self.pending[cu] -= 1;
                if self.pending[cu] == 0 {
                    if self.key[cu] <= self.rank {
                        self.admit(c);
                    } else {
                        self.released[self.key[cu] as usize].push(c);
                    }
                }
            }
        }
    }
}

/// `a / b` rounded up, for `a ≥ 0`, `b > 0`.
pub fn ceil_div(a: i64, b: i64) -> i64 {
    (a + b - 1) / b
}

/// Takes the node slot freed latest at or before `start` (best fit); it is busy until `until`.
fn take_slot(slots: &mut [i64], start: i64, until: i64) {
    let j = slots.partition_point(|f| *f <= start).saturating_sub(1);
    // slots[j] ≤ start ≤ until: move the slot right to its new place in one rotation.
    let k = slots.partition_point(|f| *f <= until).max(j + 1);
    slots[j..k].rotate_left(1);
    slots[k - 1] = until;
}

/// Same for a wave's slots, kept as a multiset of free times. `force` takes the earliest
/// slot even when none is free by `start` (in-flight systems are already running).
fn take_wave_slot(pool: &mut BTreeMap<i64, u32>, start: i64, until: i64, force: bool) {
    let free = pool.range(..=start).next_back().map(|(t, _)| *t);
    let taken = match free {
        Some(t) => Some(t),
        None if force => pool.keys().next().copied(),
        None => None,
    };
    if let Some(t) = taken {
        let count = pool.get_mut(&t).map(|c| {
            *c -= 1;
            *c
        });
        if count == Some(0) {
            pool.remove(&t);
        }
        *pool.entry(until.max(t)).or_insert(0) += 1;
    }
}

fn in_flight_times(
    phase: Phase,
    now: i64,
    replication: i64,
    d: &Durations,
    next_cutover: impl Fn(i64) -> i64,
) -> Times {
    let mut t = Times { start: now, ..Times::default() };
    let mut at = now;
    if matches!(phase, Phase::Provisioning | Phase::Failed | Phase::RolledBack) {
        t.ahead |= PROVISIONING;
        at += d.provisioning;
    }
    if matches!(phase, Phase::Provisioning | Phase::Failed | Phase::RolledBack | Phase::Replicating) {
        t.ahead |= REPLICATING;
        at += replication;
        t.replicated = at;
    }
    if phase != Phase::Verifying {
        // A cutover already under way is not moved into a window.
        let cut = if phase == Phase::CuttingOver { at } else { next_cutover(at) };
        t.ahead |= CUTTING_OVER;
        t.cut = cut;
        at = cut + d.cutover;
    }
    t.completion = at + d.verification;
    t
}

/// Systems of one node waiting for the time they become ready: those queued when their rank
/// started, sorted once, and those queued since, in a heap.
#[derive(Default)]
struct Future {
    /// Latest first.
    sorted: Vec<(i64, u32)>,
    heap: BinaryHeap<Reverse<u128>>,
}

impl Future {
    /// The earliest time a queued system becomes ready, `i64::MAX` when none.
    fn next(&self) -> i64 {
        let a = self.sorted.last().map_or(i64::MAX, |x| x.0);
        let b = self.heap.peek().map_or(i64::MAX, |Reverse(x)| unpack(*x).0);
        a.min(b)
    }

    /// Takes one system that is ready by `t`.
    fn pop_by(&mut self, t: i64) -> Option<u32> {
        if let Some(&(at, s)) = self.sorted.last()
            && at <= t
        {
            self.sorted.pop();
            return Some(s);
        }
        match self.heap.peek() {
            Some(Reverse(x)) if unpack(*x).0 <= t => self.heap.pop().map(|Reverse(x)| unpack(x).1),
            _ => None,
        }
    }
}

/// (time, index) as one integer ordered like the pair.
fn pack(t: i64, i: u32) -> u128 {
    u128::from((t as u64) ^ (1 << 63)) << 32 | u128::from(i)
}

fn unpack(x: u128) -> (i64, u32) {
    (((x >> 32) as u64 ^ (1 << 63)) as i64, x as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_flight_systems_keep_only_the_phases_ahead_of_them() {
        let d = Durations { provisioning: 1800, cutover: 3600, verification: 1800 };
        let (now, rep) = (1_000_000, 500);
        // The next cutover window opens 100 s after replication ends.
        let times = |phase| in_flight_times(phase, now, rep, &d, |at| at + 100);
        let phases = |t: Times| (t.provisioning(&d), t.replicating(&d), t.cutting_over(&d), t.verifying(&d));

        let t = times(Phase::Provisioning);
        let cut = now + 1800 + rep + 100;
        assert_eq!(
            phases(t),
            (
                Some((now, now + 1800)),
                Some((now + 1800, now + 1800 + rep)),
                Some((cut, cut + 3600)),
                Some((cut + 3600, cut + 5400))
            )
        );
        assert_eq!((t.start, t.completion), (now, cut + 5400));
        assert_eq!(phases(times(Phase::Failed)), phases(t));

        let cut = now + rep + 100;
        assert_eq!(
            phases(times(Phase::Replicating)),
            (None, Some((now, now + rep)), Some((cut, cut + 3600)), Some((cut + 3600, cut + 5400)))
        );
        let cut = now + 100;
        assert_eq!(
            phases(times(Phase::AwaitingCutover)),
            (None, None, Some((cut, cut + 3600)), Some((cut + 3600, cut + 5400)))
        );
        // A cutover under way is not moved into a window.
        assert_eq!(
            phases(times(Phase::CuttingOver)),
            (None, None, Some((now, now + 3600)), Some((now + 3600, now + 5400)))
        );
        let t = times(Phase::Verifying);
        assert_eq!(phases(t), (None, None, None, Some((now, now + 1800))));
        assert_eq!(t.completion, now + 1800);
    }
}
