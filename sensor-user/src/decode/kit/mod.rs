//! What every decoder shares: the login and query records it makes ([`Login`], [`Exchange`]),
//! and the text helpers for bytes a client or server chose.

pub(crate) mod errnames;
mod error;
pub mod iam;
mod login;
mod query;
mod text;

pub use error::{ErrorReply, redact_message};
pub use login::Login;
pub use query::Exchange;
pub use text::{lossy, printable, text};
