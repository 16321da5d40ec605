//! Deliberately reintroduced defects, for the simulator's mutation check.
//!
//! The deterministic simulator (tests/it/simulation.rs) must catch the defects it was built
//! against: with the `mutations` feature (enabled only for the test build, through the crate's
//! dev-dependency on itself), a test switches one of them on for its own thread and checks that
//! the simulator reports a broken invariant. Without the feature, [`active`] is a constant
//! `false` and the checks compile away.

/// A defect the simulator must find.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mutation {
    /// Defect 1: `ack accepted` before the result is durable, and `done` as soon as every
    /// interval is accepted.
    DoneBeforeDurable,
    /// Defect 2: a re-sent result uses up the session's own assignment of the interval, so the
    /// worker's fresh copy of the same interval is struck as `not_assigned`.
    ResendConsumesHold,
    /// Defect 3: `--retry-for` counts from the worker's start and the backoff never resets.
    RetryFromStart,
    /// Defect 4: a re-sent result skips the assignment check (it steals intervals other sessions
    /// hold, and may point far past the handed-out ids).
    ResendUnchecked,
}

#[cfg(feature = "mutations")]
thread_local! {
    static ACTIVE: std::cell::Cell<Option<Mutation>> = const { std::cell::Cell::new(None) };
}

/// Whether `m` is switched on for this thread.
#[inline]
pub fn active(m: Mutation) -> bool {
    #[cfg(feature = "mutations")]
    {
        ACTIVE.with(|a| a.get() == Some(m))
    }
    #[cfg(not(feature = "mutations"))]
    {
        let _ = m;
        false
    }
}

/// Runs `f` with `m` switched on for this thread.
#[cfg(feature = "mutations")]
pub fn with<R>(m: Mutation, f: impl FnOnce() -> R) -> R {
    let before = ACTIVE.with(|a| a.replace(Some(m)));
    let out = f();
    ACTIVE.with(|a| a.set(before));
    out
}
