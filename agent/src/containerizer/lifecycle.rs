//! What a container's termination means for its task: a pure function, so every case is
//! tested without a process.

use crate::containerizer::Termination;

/// The end state of a container's task (Mesos: TASK_FINISHED, TASK_FAILED, TASK_KILLED).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Exited with status 0 (TASK_FINISHED).
    Finished,
    /// Exited non-zero or died of a signal nobody asked for (TASK_FAILED).
    Failed {
        exit_code: Option<i32>,
        signal: Option<i32>,
    },
    /// The memory limit was hit and the OOM killer struck (TASK_FAILED with
    /// REASON_CONTAINER_LIMITATION_MEMORY).
    MemoryLimit,
    /// Ended after a kill was requested (TASK_KILLED).
    Killed,
}

/// The outcome of `termination`; `kill_requested` is whether the agent was asked to kill it.
/// An OOM kill wins over a requested kill: the limit was hit before the kill took effect,
/// or caused it.
pub fn outcome(termination: &Termination, kill_requested: bool) -> Outcome {
    if termination.oom_killed {
        return Outcome::MemoryLimit;
    }
    if kill_requested {
        return Outcome::Killed;
    }
    match (termination.exit_code, termination.signal) {
        (Some(0), None) => Outcome::Finished,
        (exit_code, signal) => Outcome::Failed { exit_code, signal },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exited(code: i32) -> Termination {
        Termination {
            exit_code: Some(code),
            ..Termination::default()
        }
    }

    #[test]
    fn exit_zero_finishes() {
        assert_eq!(outcome(&exited(0), false), Outcome::Finished);
    }

    #[test]
    fn non_zero_exit_fails_with_the_code() {
        assert_eq!(
            outcome(&exited(3), false),
            Outcome::Failed {
                exit_code: Some(3),
                signal: None
            }
        );
    }

    #[test]
    fn an_unrequested_signal_fails() {
        let t = Termination {
            signal: Some(9),
            ..Termination::default()
        };
        assert_eq!(
            outcome(&t, false),
            Outcome::Failed {
                exit_code: None,
                signal: Some(9)
            }
        );
    }

    #[test]
    fn oom_is_a_memory_limitation_even_when_killed() {
        let t = Termination {
            signal: Some(9),
            oom_killed: true,
            ..Termination::default()
        };
        assert_eq!(outcome(&t, false), Outcome::MemoryLimit);
        assert_eq!(outcome(&t, true), Outcome::MemoryLimit);
    }

    #[test]
    fn a_requested_kill_is_killed_whatever_the_status() {
        assert_eq!(outcome(&exited(0), true), Outcome::Killed);
        assert_eq!(outcome(&exited(143), true), Outcome::Killed);
        let t = Termination {
            signal: Some(15),
            ..Termination::default()
        };
        assert_eq!(outcome(&t, true), Outcome::Killed);
    }
}
