//! What the single-node and the cluster Redis tests share: the request type (a user in
//! an organization) and which of the two a scope is keyed by.

#![allow(dead_code)]

#[derive(Clone, Debug)]
pub struct Req {
    pub user: String,
    pub org: String,
}

pub fn req(user: &str, org: &str) -> Req {
    Req {
        user: user.into(),
        org: org.into(),
    }
}

#[derive(Clone, Copy, Debug)]
pub enum Key {
    User,
    Org,
}

impl Key {
    pub fn of(self, r: &Req) -> Option<String> {
        Some(match self {
            Key::User => r.user.clone(),
            Key::Org => r.org.clone(),
        })
    }
}
