//! Every threshold of SPEC sections 3 and 4, with its default, in one place. Operators override
//! them in `[limits]` and per tenant; a released subject runs at half of them while on probation.

use serde::{Deserialize, Serialize};

/// What happens when a user passes an outbound-policy limit (SPEC section 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum OutboundAction {
    /// Refuse the user's mail with 5.1.8 until the end of the UTC day.
    BlockUntilTomorrow,
    /// Refuse until an admin releases the user.
    BlockUntilReleased,
    /// Let mail through and raise an alert.
    AlertOnly,
}

impl OutboundAction {
    pub fn parse(s: &str) -> Option<OutboundAction> {
        match s.replace('-', "_").as_str() {
            "block_until_tomorrow" => Some(OutboundAction::BlockUntilTomorrow),
            "block_until_released" => Some(OutboundAction::BlockUntilReleased),
            "alert_only" => Some(OutboundAction::AlertOnly),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Limits {
    /// Messages per 24 h a tenant may send from unregistered sender domains.
    pub unregistered_allowance_per_day: u64,
    /// Suspicious messages per 24 h from unregistered domains that restrict the tenant's
    /// unregistered-domain mail.
    pub unregistered_suspicious_per_day: u64,
    /// Suspicious outbound messages per 24 h (and share of all outbound) for the tenant threshold.
    pub tenant_suspicious_per_day: u64,
    pub tenant_suspicious_ratio: f64,
    pub connector_suspicious_per_day: u64,
    pub connector_suspicious_ratio: f64,
    /// A connector younger than 24 h that sends this many times its tenant's usual hourly
    /// volume within an hour is restricted.
    pub new_connector_volume_factor: u64,
    /// The "usual hourly volume" never counts as less than this, so a tenant's first messages
    /// through a first connector do not look like a flood.
    pub new_connector_baseline_floor: u64,
    pub user_suspicious_per_day: u64,
    pub user_recipients_per_day: u64,
    pub user_messages_per_minute: u64,
    pub recipients_per_message: usize,
    pub max_message_size: usize,
    /// Outbound policy (off unless set): external recipients per hour, internal per hour,
    /// all recipients per UTC day.
    pub outbound_external_per_hour: Option<u64>,
    pub outbound_internal_per_hour: Option<u64>,
    pub outbound_per_day: Option<u64>,
    pub outbound_action: OutboundAction,
    /// Share of a trigger at which an early warning is raised.
    pub early_warning_ratio: f64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            unregistered_allowance_per_day: 1000,
            unregistered_suspicious_per_day: 50,
            tenant_suspicious_per_day: 500,
            tenant_suspicious_ratio: 0.10,
            connector_suspicious_per_day: 200,
            connector_suspicious_ratio: 0.30,
            new_connector_volume_factor: 5,
            new_connector_baseline_floor: 20,
            user_suspicious_per_day: 20,
            user_recipients_per_day: 10_000,
            user_messages_per_minute: 30,
            recipients_per_message: 500,
            max_message_size: 35 * 1024 * 1024,
            outbound_external_per_hour: None,
            outbound_internal_per_hour: None,
            outbound_per_day: None,
            outbound_action: OutboundAction::BlockUntilTomorrow,
            early_warning_ratio: 0.8,
        }
    }
}

/// Halves a count limit for a subject on probation (never below 1).
pub(crate) fn on_probation(v: u64, probation: bool) -> u64 {
    if probation { (v / 2).max(1) } else { v }
}
