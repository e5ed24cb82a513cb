//! Operator calls that change the cluster, applied by the core: first to the registry (so
//! they survive a master restart once the registry is durable), then to the allocator.

use crate::allocator::quota::Quota;
use crate::registry::{QuotaConfig, RegistryOp};

/// A role an operator names: a non-empty name without whitespace, not `*`.
fn check_role(role: &str) -> Result<(), String> {
    if role.is_empty() || role.chars().any(char::is_whitespace) || role == "*" {
        return Err(format!(
            "invalid role {role:?}: a role is a non-empty name without whitespace, not '*'"
        ));
    }
    Ok(())
}

/// The allocator's view of a quota config.
pub(super) fn allocator_quota(config: &QuotaConfig) -> Quota {
    Quota::new(&config.guarantees, config.limits.as_ref())
}

use super::Master;

impl Master {
    /// Sets role weights (UPDATE_WEIGHTS). All are checked before any is applied: a weight
    /// must be finite and > 0, a role a non-empty name without whitespace. Takes effect at
    /// the next allocation, which runs over every agent.
    pub fn update_weights(&mut self, weights: &[(String, f64)]) -> Result<(), String> {
        if weights.is_empty() {
            return Err("no weight given".into());
        }
        for (role, weight) in weights {
            check_role(role)?;
            if !weight.is_finite() || *weight <= 0.0 {
                return Err(format!(
                    "invalid weight {weight} for role '{role}': a weight must be a finite number > 0"
                ));
            }
        }
        for (role, weight) in weights {
            let op = RegistryOp::SetWeight {
                role: role.clone(),
                weight: *weight,
            };
            let what = op.describe();
            self.registry
                .apply(op)
                .map_err(|e| format!("the registry refused to {what}: {e}"))?;
            self.allocator
                .set_weight(role, *weight)
                .map_err(|e| e.to_string())?;
            tracing::info!(role, weight, "weight set");
        }
        self.allocate_all = true;
        Ok(())
    }

    /// Sets role quotas (UPDATE_QUOTA): guarantees and limits over scalar resources; a
    /// config with neither removes the role's quota. All are checked before any is
    /// applied. Takes effect at the next allocation, which runs over every agent.
    pub fn update_quota(&mut self, configs: &[(String, QuotaConfig)]) -> Result<(), String> {
        if configs.is_empty() {
            return Err("no quota config given".into());
        }
        for (role, config) in configs {
            check_role(role)?;
            allocator_quota(config)
                .check(role)
                .map_err(|e| e.to_string())?;
        }
        for (role, config) in configs {
            let op = RegistryOp::SetQuota {
                role: role.clone(),
                quota: config.clone(),
            };
            let what = op.describe();
            self.registry
                .apply(op)
                .map_err(|e| format!("the registry refused to {what}: {e}"))?;
            self.allocator
                .set_quota(role, allocator_quota(config))
                .map_err(|e| e.to_string())?;
            if config.is_empty() {
                self.quotas.remove(role);
            } else {
                self.quotas.insert(role.clone(), config.clone());
            }
            tracing::info!(role, guarantees = %config.guarantees, "quota set");
        }
        self.allocate_all = true;
        Ok(())
    }
}
