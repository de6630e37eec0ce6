//! API tokens for publishing services: `tdg_<id>_<secret>`, stored hashed.
//! (Placeholder interface; implemented with the token store.)

use std::net::IpAddr;

use super::{Caller, Pattern, Roles, Via};
use crate::error::{Error, Result};
use crate::store::Store;

/// Every API token starts with this.
pub const PREFIX: &str = "tdg_";

/// What a valid API token grants.
#[derive(Debug, Clone)]
pub struct Grant {
    pub id: String,
    pub name: String,
    pub roles: Roles,
    pub streams: Option<Vec<Pattern>>,
}

impl Grant {
    pub fn caller(self, ip: IpAddr) -> Caller {
        Caller {
            subject: Some(self.name),
            roles: self.roles,
            subscribe: self.streams.clone(),
            publish: self.streams,
            via: Via::ApiToken { id: self.id },
            ip,
        }
    }
}

/// Checks an API token against the store.
pub fn verify(_store: &Store, _token: &str) -> Result<Grant> {
    Err(Error::Unauthorized("unknown API token".into()))
}
