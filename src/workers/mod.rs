//! Background work: the outbox (registrations and acknowledgements, retried from the store).
pub mod outbox;
