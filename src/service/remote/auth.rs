//! Who may use the remote: the PIN exchanged for a session token, the view-only token, the
//! rate limit on wrong PINs, and the `Host` and `Origin` checks. Pure (the clock is passed
//! in), so every rule is unit-tested; the server ([`super::server`]) applies it to every
//! request.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// What a session token allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Logged in with the PIN: may act.
    Control,
    /// Came through the view-only link: sees the state, cannot act.
    View,
}

/// Why a login was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginRefused {
    /// Wrong PIN; this many tries are left before a lock.
    Wrong { left: u32 },
    /// Too many wrong PINs: no login at all (even the right PIN) for this long.
    Locked(Duration),
}

/// Wrong PINs allowed in a row before a lock.
pub const TRIES: u32 = 5;
/// The first lock; each further one is twice as long, up to [`MAX_LOCK`].
pub const FIRST_LOCK: Duration = Duration::from_secs(30);
pub const MAX_LOCK: Duration = Duration::from_secs(15 * 60);
/// Sessions kept at most (the oldest is forgotten first).
pub const MAX_SESSIONS: usize = 64;

/// The name of the session cookie.
pub const COOKIE: &str = "organ_remote";

/// The remote's gatekeeper.
#[derive(Debug)]
pub struct Auth {
    pin: String,
    view_token: String,
    /// Allowed `Host` values (lowercase, with the port).
    hosts: Vec<String>,
    sessions: VecDeque<(String, Role)>,
    wrong: u32,
    locks: u32,
    locked_until: Option<Instant>,
}

/// Compares without stopping at the first difference (no timing hint about the PIN).
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

impl Auth {
    pub fn new(pin: &str, view_token: &str, hosts: Vec<String>) -> Auth {
        Auth {
            pin: pin.to_string(),
            view_token: view_token.to_string(),
            hosts: hosts.into_iter().map(|h| h.to_ascii_lowercase()).collect(),
            sessions: VecDeque::new(),
            wrong: 0,
            locks: 0,
            locked_until: None,
        }
    }

    /// True when `host` (the `Host` header) names this server.
    pub fn host_ok(&self, host: Option<&str>) -> bool {
        host.is_some_and(|h| self.hosts.iter().any(|x| x == &h.to_ascii_lowercase()))
    }

    /// True when `origin` is this server's (`http://` and an allowed host). A WebSocket must
    /// have one; a form post may come without (some browsers leave it out).
    pub fn origin_ok(&self, origin: Option<&str>, required: bool) -> bool {
        match origin {
            None => !required,
            Some(o) => o.strip_prefix("http://").is_some_and(|h| self.host_ok(Some(h))),
        }
    }

    /// Exchanges a PIN for a new session token.
    ///
    /// # Errors
    /// A wrong PIN, or a lock after too many.
    pub fn login(&mut self, pin: &str, new_token: String, now: Instant) -> Result<String, LoginRefused> {
        if let Some(until) = self.locked_until {
            if now < until {
                return Err(LoginRefused::Locked(until - now));
            }
            self.locked_until = None;
        }
        if !same(pin.trim(), &self.pin) {
            self.wrong += 1;
            if self.wrong >= TRIES {
                self.wrong = 0;
                let lock = FIRST_LOCK.saturating_mul(1 << self.locks.min(10)).min(MAX_LOCK);
                self.locks += 1;
                self.locked_until = Some(now + lock);
                return Err(LoginRefused::Locked(lock));
            }
            return Err(LoginRefused::Wrong { left: TRIES - self.wrong });
        }
        self.wrong = 0;
        Ok(self.add(new_token, Role::Control))
    }

    /// Exchanges the view-only link's token for a new view session token.
    pub fn view(&mut self, token: &str, new_token: String) -> Option<String> {
        same(token, &self.view_token).then(|| self.add(new_token, Role::View))
    }

    fn add(&mut self, token: String, role: Role) -> String {
        if self.sessions.len() >= MAX_SESSIONS {
            self.sessions.pop_front();
        }
        self.sessions.push_back((token.clone(), role));
        token
    }

    /// The role of the session named in a `Cookie` header, if any.
    pub fn role(&self, cookie_header: Option<&str>) -> Option<Role> {
        let value = cookie_header?
            .split(';')
            .filter_map(|c| c.trim().split_once('='))
            .find(|(k, _)| *k == COOKIE)
            .map(|(_, v)| v)?;
        self.sessions.iter().find(|(t, _)| same(t, value)).map(|(_, r)| *r)
    }
}

/// The `Set-Cookie` value for a session token.
pub fn set_cookie(token: &str) -> String {
    format!("{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> Auth {
        Auth::new("123456", "viewtoken", vec!["127.0.0.1:8080".into(), "localhost:8080".into()])
    }

    #[test]
    fn the_pin_gives_a_session_and_the_view_link_a_view_session() {
        let mut a = auth();
        let now = Instant::now();
        assert_eq!(a.role(None), None);
        let t = a.login("123456", "tok1".into(), now).unwrap();
        assert_eq!(a.role(Some(&format!("x=1; {COOKIE}={t}"))), Some(Role::Control));
        assert_eq!(a.role(Some(&format!("{COOKIE}=tok2"))), None);
        let v = a.view("viewtoken", "tok2".into()).unwrap();
        assert_eq!(a.role(Some(&format!("{COOKIE}={v}"))), Some(Role::View));
        assert!(a.view("viewtokem", "tok3".into()).is_none());
        assert_eq!(set_cookie("abc"), "organ_remote=abc; Path=/; HttpOnly; SameSite=Strict");
    }

    #[test]
    fn wrong_pins_lock_the_login_for_longer_each_time() {
        let mut a = auth();
        let t0 = Instant::now();
        for left in (1..TRIES).rev() {
            assert_eq!(a.login("000000", "x".into(), t0), Err(LoginRefused::Wrong { left }));
        }
        assert_eq!(a.login("000000", "x".into(), t0), Err(LoginRefused::Locked(FIRST_LOCK)));
        // Locked: even the right PIN is refused.
        assert!(matches!(a.login("123456", "x".into(), t0 + Duration::from_secs(10)), Err(LoginRefused::Locked(_))));
        let t1 = t0 + FIRST_LOCK;
        for _ in 0..TRIES {
            let _ = a.login("999999", "x".into(), t1);
        }
        assert!(matches!(a.login("123456", "x".into(), t1 + FIRST_LOCK), Err(LoginRefused::Locked(_))), "doubled");
        assert!(a.login("123456", "x".into(), t1 + FIRST_LOCK * 2).is_ok());
    }

    #[test]
    fn host_and_origin_must_name_this_server() {
        let a = auth();
        assert!(a.host_ok(Some("127.0.0.1:8080")) && a.host_ok(Some("LOCALHOST:8080")));
        assert!(!a.host_ok(Some("evil.example:8080")) && !a.host_ok(None) && !a.host_ok(Some("127.0.0.1")));
        assert!(a.origin_ok(Some("http://127.0.0.1:8080"), true));
        assert!(!a.origin_ok(Some("http://evil.example"), true));
        assert!(!a.origin_ok(Some("https://127.0.0.1:8080"), true));
        assert!(!a.origin_ok(None, true) && a.origin_ok(None, false));
        assert!(!a.origin_ok(Some("null"), false));
    }

    #[test]
    fn old_sessions_are_forgotten_first() {
        let mut a = auth();
        for i in 0..=MAX_SESSIONS {
            a.login("123456", format!("t{i}"), Instant::now()).unwrap();
        }
        assert_eq!(a.role(Some(&format!("{COOKIE}=t0"))), None);
        assert_eq!(a.role(Some(&format!("{COOKIE}=t{MAX_SESSIONS}"))), Some(Role::Control));
    }
}
