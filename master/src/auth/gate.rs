//! The gate in front of one framework connection: it answers AUTHENTICATE, and lets a
//! SUBSCRIBE through to the core only when its principal is proven (where the master
//! requires it) and may register in every role the framework asks for. The principal that
//! passed is written into the FrameworkInfo, as Mesos records the authenticated principal.
//! RESERVE and UNRESERVE operations of an ACCEPT are authorized against that principal
//! (`reserve_resources` on each role, `unreserve_resources`); one refused is dropped from
//! the ACCEPT and the refusal logged, as Mesos drops an unauthorized operation (a LAUNCH
//! that needed it then fails its checks in the core).

use std::sync::Arc;

use fleet_proto::messages::scheduler::{Call, Operation};

use super::{Action, Refusal, Security};

/// What to do with one call.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Hand this call to the core.
    Pass(Call),
    /// The gate took the call (AUTHENTICATE that succeeded); nothing to send on.
    Answered,
    /// End the connection with this reason.
    Refuse(Refusal),
}

/// The authentication state of one framework connection.
#[derive(Debug)]
pub struct FrameworkGate {
    security: Arc<Security>,
    /// The principal AUTHENTICATE proved (or, without a credentials file, claimed).
    principal: Option<String>,
    /// The principal of the framework once its SUBSCRIBE passed.
    subscribed: Option<String>,
}

impl FrameworkGate {
    pub fn new(security: Arc<Security>) -> FrameworkGate {
        FrameworkGate {
            security,
            principal: None,
            subscribed: None,
        }
    }

    pub fn check(&mut self, call: Call) -> Verdict {
        match call {
            Call::Authenticate { principal, secret } => {
                match self.security.authenticate(&principal, &secret.0) {
                    Ok(()) => {
                        self.principal = Some(principal);
                        Verdict::Answered
                    }
                    Err(refusal) => Verdict::Refuse(refusal),
                }
            }
            Call::Subscribe {
                mut framework,
                suppressed_roles,
            } => {
                if self.security.requires_authentication() && self.principal.is_none() {
                    return Verdict::Refuse(Refusal::Missing {
                        principal: framework.principal,
                    });
                }
                if let (Some(authenticated), Some(claimed)) =
                    (&self.principal, &framework.principal)
                    && authenticated != claimed
                {
                    return Verdict::Refuse(Refusal::PrincipalMismatch {
                        claimed: claimed.clone(),
                        authenticated: authenticated.clone(),
                    });
                }
                if self.principal.is_some() {
                    framework.principal = self.principal.clone();
                }
                for role in framework.effective_roles() {
                    let action = Action::RegisterFramework { role };
                    if let Err(refusal) = self
                        .security
                        .authorize(framework.principal.as_deref(), action)
                    {
                        return Verdict::Refuse(refusal);
                    }
                }
                self.subscribed = framework.principal.clone();
                Verdict::Pass(Call::Subscribe {
                    framework,
                    suppressed_roles,
                })
            }
            Call::Accept {
                offer_ids,
                operations,
                filters,
            } => Verdict::Pass(Call::Accept {
                offer_ids,
                operations: operations.into_iter().filter(|op| self.may(op)).collect(),
                filters,
            }),
            other => Verdict::Pass(other),
        }
    }
}

impl FrameworkGate {
    /// Whether the framework may do `operation`; a refusal is logged.
    fn may(&self, operation: &Operation) -> bool {
        let actions: Vec<Action> = match operation {
            Operation::Launch { .. } => return true,
            Operation::Reserve { resources } => resources
                .reservation_roles()
                .into_iter()
                .map(|role| Action::ReserveResources {
                    role: Some(role.to_owned()),
                })
                .collect(),
            Operation::Unreserve { .. } => vec![Action::UnreserveResources {
                reserver_principal: self.subscribed.clone(),
            }],
        };
        for action in actions {
            if let Err(refusal) = self.security.authorize(self.subscribed.as_deref(), action) {
                tracing::warn!(
                    principal = %refusal.principal(),
                    "framework operation dropped: {}",
                    refusal.detail()
                );
                return false;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use fleet_proto::messages::scheduler::{FrameworkInfo, Secret};

    use super::*;
    use crate::auth::{Acls, Credentials};

    fn security(credentials: bool) -> Arc<Security> {
        let credentials = credentials.then(|| {
            Credentials::parse(r#"{"credentials": [{"principal": "web", "secret": "w"}]}"#).unwrap()
        });
        let acls = Acls::parse(
            r#"{"register_frameworks": [
                 {"principals": {"values": ["web"]}, "roles": {"values": ["web"]}},
                 {"principals": {"type": "ANY"}, "roles": {"values": ["*"]}},
                 {"principals": {"type": "ANY"}, "roles": {"type": "NONE"}}]}"#,
        )
        .unwrap();
        Arc::new(Security::new(credentials, Some(acls)))
    }

    fn authenticate(secret: &str) -> Call {
        Call::Authenticate {
            principal: "web".into(),
            secret: Secret(secret.into()),
        }
    }

    fn subscribe(principal: Option<&str>, roles: &[&str]) -> Call {
        Call::Subscribe {
            framework: FrameworkInfo {
                name: "f".into(),
                principal: principal.map(str::to_owned),
                roles: roles.iter().map(|r| (*r).to_owned()).collect(),
                ..FrameworkInfo::default()
            },
            suppressed_roles: Vec::new(),
        }
    }

    #[test]
    fn a_proven_principal_subscribes_in_its_roles_and_is_recorded() {
        let mut gate = FrameworkGate::new(security(true));
        assert_eq!(gate.check(authenticate("w")), Verdict::Answered);
        let Verdict::Pass(Call::Subscribe { framework, .. }) =
            gate.check(subscribe(None, &["web"]))
        else {
            panic!("refused");
        };
        assert_eq!(framework.principal.as_deref(), Some("web"));
        // Other calls go through untouched.
        assert_eq!(gate.check(Call::Teardown), Verdict::Pass(Call::Teardown));
    }

    #[test]
    fn a_wrong_secret_a_missing_one_and_a_forbidden_role_are_refused() {
        let mut gate = FrameworkGate::new(security(true));
        let Verdict::Refuse(refusal) = gate.check(authenticate("x")) else {
            panic!("accepted");
        };
        assert_eq!(
            refusal.to_string(),
            "authentication failed for principal 'web'"
        );
        let mut gate = FrameworkGate::new(security(true));
        let Verdict::Refuse(refusal) = gate.check(subscribe(Some("web"), &["web"])) else {
            panic!("accepted");
        };
        assert!(refusal.to_string().contains("authentication required"));
        assert_eq!(refusal.principal(), "web");
        let mut gate = FrameworkGate::new(security(true));
        gate.check(authenticate("w"));
        let Verdict::Refuse(refusal) = gate.check(subscribe(None, &["web", "batch"])) else {
            panic!("accepted");
        };
        assert_eq!(
            refusal.to_string(),
            "principal 'web' may not register in role 'batch'"
        );
        let Verdict::Refuse(refusal) = gate.check(subscribe(Some("ops"), &["web"])) else {
            panic!("accepted");
        };
        assert!(
            matches!(refusal, Refusal::PrincipalMismatch { .. }),
            "{refusal}"
        );
    }

    #[test]
    fn a_reserve_for_a_role_the_principal_may_not_reserve_is_dropped_from_the_accept() {
        let acls = Acls::parse(
            r#"{"reserve_resources": [
                 {"principals": {"values": ["web"]}, "roles": {"values": ["web"]}},
                 {"principals": {"type": "ANY"}, "roles": {"type": "NONE"}}]}"#,
        )
        .unwrap();
        let mut gate = FrameworkGate::new(Arc::new(Security::new(None, Some(acls))));
        assert!(matches!(
            gate.check(subscribe(Some("web"), &["web", "db"])),
            Verdict::Pass(_)
        ));
        let reserve = |text: &str| Operation::Reserve {
            resources: fleet_proto::resources::Resources::parse(text).unwrap(),
        };
        let launch = Operation::Launch { tasks: Vec::new() };
        let Verdict::Pass(Call::Accept { operations, .. }) = gate.check(Call::Accept {
            offer_ids: Vec::new(),
            operations: vec![
                reserve("cpus(web):1"),
                reserve("cpus(db):1"),
                launch.clone(),
            ],
            filters: None,
        }) else {
            panic!("ACCEPT not passed");
        };
        assert_eq!(operations, vec![reserve("cpus(web):1"), launch]);
    }

    #[test]
    fn without_credentials_the_principal_given_is_authorized() {
        let mut gate = FrameworkGate::new(security(false));
        assert!(matches!(
            gate.check(subscribe(Some("web"), &["web"])),
            Verdict::Pass(_)
        ));
        // Anonymous: only the ANY rules speak for it.
        assert!(matches!(gate.check(subscribe(None, &[])), Verdict::Pass(_)));
        let Verdict::Refuse(refusal) = gate.check(subscribe(None, &["web"])) else {
            panic!("accepted");
        };
        assert_eq!(
            refusal.to_string(),
            "anonymous callers may not register in role 'web'"
        );
        // Nothing configured: everything passes.
        let mut open = FrameworkGate::new(Arc::new(Security::default()));
        assert!(matches!(
            open.check(subscribe(None, &["web"])),
            Verdict::Pass(_)
        ));
    }
}
