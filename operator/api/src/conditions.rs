//! Status conditions, shaped like `metav1.Condition`.
//!
//! [`set_condition`] replaces a condition of the same type but keeps its
//! `lastTransitionTime` when the status did not change, so a reconcile that finds
//! nothing new does not make every condition look freshly changed.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Reason of a condition that is False only because NATS could not be reached: a
/// passing state the operator reports and other components ride out.
pub const REASON_NATS_UNAVAILABLE: &str = "NatsUnavailable";

/// Reason of a condition that is False only because a Kubernetes API call of the
/// operator failed (a timeout, a 5xx, a Secret it could not read just then): like
/// [`REASON_NATS_UNAVAILABLE`], the operator's own trouble, not the object's.
pub const REASON_KUBERNETES_ERROR: &str = "KubernetesError";

/// Whether a condition holds.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub enum ConditionStatus {
    /// The condition holds.
    True,
    /// The condition does not hold.
    False,
    /// Not known yet, e.g. before the first reconcile finished.
    Unknown,
}

impl ConditionStatus {
    /// `True` when `ok` holds, `False` otherwise.
    #[must_use]
    pub fn from_bool(ok: bool) -> Self {
        if ok { Self::True } else { Self::False }
    }

    /// The string Kubernetes tools show for this status.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::True => "True",
            Self::False => "False",
            Self::Unknown => "Unknown",
        }
    }
}

/// One aspect of an object's state: `Ready` plus the sub-conditions that explain it.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Type of the condition, e.g. `Ready` or `StreamReady`.
    #[serde(rename = "type")]
    pub type_: String,
    /// Status of the condition: True, False or Unknown.
    pub status: ConditionStatus,
    /// One-word, CamelCase reason for the last transition, e.g. `NatsUnavailable`.
    pub reason: String,
    /// Human-readable explanation; says what to do when something is wrong.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// When the status last changed (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
    /// The `.metadata.generation` this condition was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

impl Condition {
    /// A condition with the given type, status, reason and message and no timestamps.
    #[must_use]
    pub fn new(
        type_: &str,
        status: ConditionStatus,
        reason: &str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            type_: type_.to_owned(),
            status,
            reason: reason.to_owned(),
            message: message.into(),
            last_transition_time: None,
            observed_generation: None,
        }
    }

    /// Whether this condition's status is `True`.
    #[must_use]
    pub fn is_true(&self) -> bool {
        self.status == ConditionStatus::True
    }
}

/// Finds a condition by type.
#[must_use]
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Whether the data plane (ingress, dispatcher) should serve an object with these
/// conditions: `Ready` is True, or False only because of the operator's own trouble
/// with NATS or the Kubernetes API (the data plane has its own connections and finds
/// out itself, and keeps the last status the operator wrote in full); otherwise the
/// reason it is not served (`NotReconciled` before the operator wrote a status). One
/// rule for every component, so a hiccup seen by the operator alone does not stop
/// ingress and delivery.
///
/// # Errors
/// The `Ready` reason when the object must not be served.
pub fn served(conditions: &[Condition]) -> Result<(), String> {
    match find(conditions, "Ready") {
        Some(c)
            if c.is_true()
                || c.reason == REASON_NATS_UNAVAILABLE
                || c.reason == REASON_KUBERNETES_ERROR =>
        {
            Ok(())
        }
        Some(c) => Err(c.reason.clone()),
        None => Err("NotReconciled".into()),
    }
}

/// Merges `desired` conditions into `previous`: the result has the desired conditions,
/// in their order, each stamped with `now` and `generation` — except that a condition
/// whose status did not change keeps its previous `lastTransitionTime`.
#[must_use]
pub fn merge(
    previous: &[Condition],
    desired: Vec<Condition>,
    now: &str,
    generation: Option<i64>,
) -> Vec<Condition> {
    desired
        .into_iter()
        .map(|mut c| {
            let kept = find(previous, &c.type_)
                .filter(|old| old.status == c.status)
                .and_then(|old| old.last_transition_time.clone());
            c.last_transition_time = Some(kept.unwrap_or_else(|| now.to_owned()));
            c.observed_generation = generation;
            c
        })
        .collect()
}

/// Sets one condition inside a list, with the same transition-time rule as [`merge`].
pub fn set_condition(conditions: &mut Vec<Condition>, mut condition: Condition, now: &str) {
    if let Some(old) = conditions.iter_mut().find(|c| c.type_ == condition.type_) {
        condition.last_transition_time = if old.status == condition.status {
            old.last_transition_time.clone()
        } else {
            Some(now.to_owned())
        };
        *old = condition;
    } else {
        condition.last_transition_time = Some(now.to_owned());
        conditions.push(condition);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ready(status: ConditionStatus, reason: &str) -> Condition {
        Condition::new("Ready", status, reason, "")
    }

    #[test]
    fn the_data_plane_serves_ready_objects_and_rides_out_the_operators_own_trouble() {
        let served_with = |status, reason| served(&[ready(status, reason)]);
        assert_eq!(served_with(ConditionStatus::True, "Ready"), Ok(()));
        for operators_own in [REASON_NATS_UNAVAILABLE, REASON_KUBERNETES_ERROR] {
            assert_eq!(served_with(ConditionStatus::False, operators_own), Ok(()));
        }
        assert_eq!(
            served_with(ConditionStatus::False, "BearerTokenUnavailable"),
            Err("BearerTokenUnavailable".into())
        );
        assert_eq!(
            served_with(ConditionStatus::False, "StreamRejected"),
            Err("StreamRejected".into())
        );
        assert_eq!(served(&[]), Err("NotReconciled".into()));
    }

    #[test]
    fn merge_keeps_transition_time_when_status_is_unchanged() {
        let previous = merge(&[], vec![ready(ConditionStatus::True, "A")], "t1", Some(1));
        let again = merge(
            &previous,
            vec![ready(ConditionStatus::True, "B")],
            "t2",
            Some(2),
        );
        assert_eq!(again[0].last_transition_time.as_deref(), Some("t1"));
        assert_eq!(again[0].reason, "B");
        assert_eq!(again[0].observed_generation, Some(2));
    }

    #[test]
    fn merge_stamps_now_when_status_changes() {
        let previous = merge(&[], vec![ready(ConditionStatus::True, "A")], "t1", None);
        let flipped = merge(
            &previous,
            vec![ready(ConditionStatus::False, "A")],
            "t2",
            None,
        );
        assert_eq!(flipped[0].last_transition_time.as_deref(), Some("t2"));
    }

    #[test]
    fn set_condition_appends_then_replaces() {
        let mut list = Vec::new();
        set_condition(&mut list, ready(ConditionStatus::False, "X"), "t1");
        set_condition(&mut list, ready(ConditionStatus::False, "Y"), "t2");
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].reason, "Y");
        assert_eq!(list[0].last_transition_time.as_deref(), Some("t1"));
        set_condition(&mut list, ready(ConditionStatus::True, "Z"), "t3");
        assert_eq!(list[0].last_transition_time.as_deref(), Some("t3"));
    }
}
