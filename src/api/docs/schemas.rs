//! Documentation-only schemas: the shapes of the answers that handlers build
//! with `json!`, so the OpenAPI document can describe them, one file a
//! group of tags. Nothing constructs these types; `tests/openapi.rs` and the
//! schemathesis run check that the handlers really answer in these shapes.
//! Answers serialised from a real type (a retention pass's report, a user,
//! an API token) derive `ToSchema` on that type instead and are re-exported
//! here, so they cannot drift from what is sent.
//!
//! Fields that are always present but may be `null` are `required` and
//! nullable; fields sometimes left out are plain `Option`s.

#![allow(dead_code)]

mod accounts;
mod events;
mod operations;
mod seed;
mod streams;

pub use accounts::*;
pub use events::*;
pub use operations::*;
pub use seed::*;
pub use streams::*;
