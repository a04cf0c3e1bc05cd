//! The gate, its states and the validated values it is made of.
pub mod change;
pub mod fields;
pub mod freeze;
pub mod gate;
pub mod names;
pub mod passthrough;
pub mod request;
pub mod timers;

pub use gate::{ChangeRequest, Gate, GateState, TransitionError};
pub use names::CallbackToken;
pub use request::{FieldError, GateSpec};
