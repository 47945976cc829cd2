//! Getting spooled messages to their next hop: scheduling and retries, routes (a tenant's own
//! server, a smart host, or MX), delivery pools, the SMTP client, expiry and NDRs.
//!
//! Delivery never loses a message: a message leaves the spool only when every recipient has a
//! final outcome and, where one is due, its NDR is itself durably spooled.

pub mod client;
pub mod dane;
pub mod dns;
pub mod mta_sts;
mod queue;
pub mod reach;
mod starttls;

pub use queue::{
    Delayed, DeliveryConfig, DestinationView, Events, Outgoing, PoolAddress, Queue, QueueAction,
    QueueActionError, QueueStats, QueuedMessage, Router, SHAPE_MINUTES, Selected, Selection, Shape,
    ShapeBy, ShapeRow, Signer,
};
