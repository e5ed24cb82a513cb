//! After a failover with quotas set, allocation waits until most agents the registry
//! admitted have re-registered, as Mesos does (80 %): a new leader that allocated at once
//! would hand the first agents back to whoever asks first and could not meet the quota
//! guarantees once the rest return. Agents that do not come back within `agent_timeout`
//! leave the registry (`sweep`), which ends the wait. Agents the registry has as
//! unreachable are not waited for.

use super::Master;

/// The share of admitted agents that must be back before allocation resumes, in percent.
const BACK_PERCENT: usize = 80;

impl Master {
    /// Whether allocation waits for recovering agents now.
    pub(super) fn allocation_held(&self) -> bool {
        let expected = self.recovery_expected;
        if self.quotas.is_empty() || expected == 0 || self.recovered_agents.is_empty() {
            return false;
        }
        let waiting = self.recovered_agents.len() - self.recovered_unreachable.len();
        let back = expected.saturating_sub(waiting);
        back * 100 < expected * BACK_PERCENT
    }
}
