//! The remote's HTTP and WebSocket server (axum on a single-threaded tokio runtime, on a thread
//! of its own). Every request passes [`guard`] (the `Host` check and the security headers);
//! every page, script and the WebSocket also need the session cookie, and the WebSocket an
//! `Origin` of this server. The page is static (embedded in the binary); the state comes over
//! the WebSocket as JSON, and what a phone sends back is parsed into an [`Action`] or refused.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade, rejection::WebSocketUpgradeRejection};
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use tokio::sync::{oneshot, watch};

use super::auth::{Auth, LoginRefused, Role, set_cookie};
use super::{RemoteError, hosts_and_url, random_hex};
use crate::service::app::Action;
use crate::service::show::RemoteState;

const INDEX: &str = include_str!("page/index.html");
const LOGIN: &str = include_str!("page/login.html");
const SCRIPT: &str = include_str!("page/app.js");
const STYLE: &str = include_str!("page/style.css");
const LOGIN_STYLE: &str = include_str!("page/login.css");

/// WebSockets open at once, at most.
const MAX_SOCKETS: usize = 32;
/// Sent at least this often, so that a phone can tell a dead link from a quiet one.
const HEARTBEAT: Duration = Duration::from_secs(2);

struct Shared {
    auth: Mutex<Auth>,
    actions: crossbeam_channel::Sender<Action>,
    state: watch::Receiver<Arc<str>>,
    sockets: AtomicUsize,
}

type S = Arc<Shared>;

/// The server thread, stopped and joined on drop.
pub(super) struct Running {
    pub url: String,
    pub addr: SocketAddr,
    state: watch::Sender<Arc<str>>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Running {
    pub fn start(
        addr: SocketAddr,
        pin: &str,
        view_token: &str,
        actions: crossbeam_channel::Sender<Action>,
    ) -> Result<Running, RemoteError> {
        let listener = std::net::TcpListener::bind(addr).map_err(|error| RemoteError::Bind { addr, error })?;
        listener.set_nonblocking(true).map_err(RemoteError::Start)?;
        let bound = listener.local_addr().map_err(RemoteError::Start)?;
        let (hosts, url) = hosts_and_url(bound);
        let (state_tx, state_rx) = watch::channel(Arc::<str>::from("{}"));
        let shared = Arc::new(Shared {
            auth: Mutex::new(Auth::new(pin, view_token, hosts)),
            actions,
            state: state_rx,
            sockets: AtomicUsize::new(0),
        });
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(RemoteError::Start)?;
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("organ-remote".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else { return };
                    tokio::select! {
                        _ = axum::serve(listener, router(shared)) => {}
                        _ = stopped => {}
                    }
                });
                // Open WebSockets end with the runtime.
                runtime.shutdown_timeout(Duration::from_millis(200));
            })
            .map_err(RemoteError::Start)?;
        Ok(Running { url, addr: bound, state: state_tx, stop: Some(stop), thread: Some(thread) })
    }

    pub fn publish(&self, state: &RemoteState) {
        let Ok(json) = serde_json::to_string(state) else { return };
        self.state.send_if_modified(|current| {
            if **current == *json {
                return false;
            }
            *current = Arc::from(json);
            true
        });
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn router(shared: S) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/app.js", get(script))
        .route("/style.css", get(style))
        .route("/login", get(login_page).post(login))
        // The login page's own look: public, as the login page is.
        .route("/login.css", get(|| async { ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], LOGIN_STYLE) }))
        .route("/view/{token}", get(view))
        .route("/ws", get(socket))
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found") })
        .layer(middleware::from_fn_with_state(shared.clone(), guard))
        .with_state(shared)
}

fn header(h: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

fn role(s: &S, h: &HeaderMap) -> Option<Role> {
    s.auth.lock().ok()?.role(header(h, header::COOKIE))
}

/// Every request: the `Host` must name this server (a page on another site that resolves its
/// own name to this address — DNS rebinding — is refused); every answer gets the headers that
/// keep the page to itself.
async fn guard(State(s): State<S>, req: Request, next: Next) -> Response {
    let host_ok = s.auth.lock().is_ok_and(|a| a.host_ok(header(req.headers(), header::HOST)));
    let mut r = if host_ok { next.run(req).await } else { (StatusCode::FORBIDDEN, "wrong Host").into_response() };
    let h = r.headers_mut();
    let set = |h: &mut HeaderMap, k: header::HeaderName, v: &'static str| {
        h.insert(k, HeaderValue::from_static(v));
    };
    set(h, header::CONTENT_SECURITY_POLICY, "default-src 'self'; frame-ancestors 'none'; form-action 'self'");
    set(h, header::X_FRAME_OPTIONS, "DENY");
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    // Not no-referrer: with it a browser posts the login form with `Origin: null`.
    set(h, header::REFERRER_POLICY, "same-origin");
    set(h, header::CACHE_CONTROL, "no-store");
    r
}

fn redirect(to: &'static str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, to)]).into_response()
}

fn html(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response()
}

async fn index(State(s): State<S>, h: HeaderMap) -> Response {
    match role(&s, &h) {
        Some(_) => html(StatusCode::OK, INDEX.to_string()),
        None => redirect("/login"),
    }
}

async fn script(State(s): State<S>, h: HeaderMap) -> Response {
    match role(&s, &h) {
        Some(_) => ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], SCRIPT).into_response(),
        None => (StatusCode::FORBIDDEN, "log in first").into_response(),
    }
}

async fn style(State(s): State<S>, h: HeaderMap) -> Response {
    match role(&s, &h) {
        Some(_) => ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE).into_response(),
        None => (StatusCode::FORBIDDEN, "log in first").into_response(),
    }
}

fn login_with(message: &str) -> String {
    LOGIN.replace("<!--MESSAGE-->", message)
}

async fn login_page(State(s): State<S>, h: HeaderMap) -> Response {
    match role(&s, &h) {
        Some(Role::Control) => redirect("/"),
        _ => html(StatusCode::OK, login_with("")),
    }
}

/// The PIN from a form body (`pin=123456`).
fn pin_of(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    text.split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == "pin")
        .map(|(_, v)| v.chars().filter(char::is_ascii_digit).take(12).collect())
        .unwrap_or_default()
}

async fn login(State(s): State<S>, h: HeaderMap, body: Bytes) -> Response {
    let Ok(mut auth) = s.auth.lock() else { return StatusCode::INTERNAL_SERVER_ERROR.into_response() };
    if !auth.origin_ok(header(&h, header::ORIGIN), false) {
        return (StatusCode::FORBIDDEN, "wrong Origin").into_response();
    }
    match auth.login(&pin_of(&body), random_hex(32), Instant::now()) {
        Ok(token) => {
            (StatusCode::SEE_OTHER, [(header::LOCATION, "/".to_string()), (header::SET_COOKIE, set_cookie(&token))])
                .into_response()
        }
        Err(LoginRefused::Wrong { left }) => html(
            StatusCode::FORBIDDEN,
            login_with(&format!("<p class=\"error\" id=\"error\">Wrong PIN ({left} tries left).</p>")),
        ),
        Err(LoginRefused::Locked(d)) => html(
            StatusCode::TOO_MANY_REQUESTS,
            login_with(&format!(
                "<p class=\"error\" id=\"error\">Too many wrong PINs: wait {} s.</p>",
                d.as_secs().max(1)
            )),
        ),
    }
}

async fn view(State(s): State<S>, Path(token): Path<String>) -> Response {
    let Ok(mut auth) = s.auth.lock() else { return StatusCode::INTERNAL_SERVER_ERROR.into_response() };
    match auth.view(&token, random_hex(32)) {
        Some(t) => (StatusCode::SEE_OTHER, [(header::LOCATION, "/".to_string()), (header::SET_COOKIE, set_cookie(&t))])
            .into_response(),
        None => (StatusCode::NOT_FOUND, "not found").into_response(),
    }
}

async fn socket(
    State(s): State<S>,
    h: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let Some(role) = role(&s, &h) else { return (StatusCode::FORBIDDEN, "log in first").into_response() };
    // A page on another site may open a WebSocket here with the phone's cookie; its Origin
    // gives it away.
    let origin_ok = s.auth.lock().is_ok_and(|a| a.origin_ok(header(&h, header::ORIGIN), true));
    if !origin_ok {
        return (StatusCode::FORBIDDEN, "wrong Origin").into_response();
    }
    let upgrade = match upgrade {
        Ok(u) => u,
        Err(e) => return e.into_response(),
    };
    if s.sockets.fetch_add(1, Ordering::SeqCst) >= MAX_SOCKETS {
        s.sockets.fetch_sub(1, Ordering::SeqCst);
        return (StatusCode::SERVICE_UNAVAILABLE, "too many phones").into_response();
    }
    upgrade.max_message_size(4096).on_upgrade(move |ws| async move {
        talk(ws, &s, role).await;
        s.sockets.fetch_sub(1, Ordering::SeqCst);
    })
}

/// One phone: the state whenever it changes (and a heartbeat), its commands as actions.
async fn talk(mut ws: WebSocket, s: &S, role: Role) {
    let mut state = s.state.clone();
    let name = if role == Role::Control { "control" } else { "view" };
    let hello = format!("{{\"type\":\"hello\",\"role\":\"{name}\"}}");
    if ws.send(Message::Text(hello.into())).await.is_err() {
        return;
    }
    let mut beat = tokio::time::interval(HEARTBEAT);
    loop {
        let out = tokio::select! {
            _ = beat.tick() => {
                let current = state.borrow_and_update().clone();
                format!("{{\"type\":\"state\",\"state\":{current}}}")
            }
            changed = state.changed() => {
                if changed.is_err() {
                    return;
                }
                let current = state.borrow_and_update().clone();
                format!("{{\"type\":\"state\",\"state\":{current}}}")
            }
            msg = ws.recv() => match msg {
                Some(Ok(Message::Text(t))) => command(s, role, t.as_str()),
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                Some(Ok(_)) => continue,
            },
        };
        if ws.send(Message::Text(out.into())).await.is_err() {
            return;
        }
    }
}

/// What a phone may ask.
#[derive(Debug, Deserialize, PartialEq)]
#[serde(tag = "cmd", rename_all = "snake_case")]
enum Cmd {
    Go,
    Continue,
    Start { item: usize, verse: Option<u16> },
    Select { item: usize },
    SelectBy { by: i32 },
    PauseAfterVerse { on: Option<bool> },
    Tempo { steps: i32 },
    Stop,
    Panic,
}

#[derive(Debug, Deserialize)]
struct Envelope {
    #[serde(default)]
    id: u64,
    #[serde(flatten)]
    cmd: Cmd,
}

fn action(c: Cmd) -> Action {
    match c {
        Cmd::Go => Action::Go,
        Cmd::Continue => Action::Continue,
        Cmd::Start { item, verse } => Action::Start { item, verse },
        Cmd::Select { item } => Action::Select(item),
        Cmd::SelectBy { by } => Action::SelectBy(by.clamp(-1, 1)),
        Cmd::PauseAfterVerse { on } => Action::PauseAfterVerse(on),
        Cmd::Tempo { steps } => Action::Tempo(steps.clamp(-4, 4)),
        Cmd::Stop => Action::Stop,
        Cmd::Panic => Action::Panic,
    }
}

/// A phone's command: the answer to send back.
fn command(s: &S, role: Role, text: &str) -> String {
    let refused = |id: u64, why: &str| format!("{{\"type\":\"refused\",\"id\":{id},\"why\":\"{why}\"}}");
    let Ok(e) = serde_json::from_str::<Envelope>(text) else { return refused(0, "not a command") };
    if role != Role::Control {
        return refused(e.id, "this link is view only");
    }
    if s.actions.send(action(e.cmd)).is_err() {
        return refused(e.id, "the service has ended");
    }
    format!("{{\"type\":\"ok\",\"id\":{}}}", e.id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse_into_actions_and_nothing_else() {
        let parse = |t: &str| serde_json::from_str::<Envelope>(t).map(|e| (e.id, action(e.cmd)));
        assert_eq!(parse(r#"{"cmd":"go","id":3}"#).unwrap(), (3, Action::Go));
        assert_eq!(parse(r#"{"cmd":"tempo","steps":99}"#).unwrap().1, Action::Tempo(4));
        assert_eq!(
            parse(r#"{"cmd":"start","item":1,"verse":2}"#).unwrap().1,
            Action::Start { item: 1, verse: Some(2) }
        );
        assert_eq!(parse(r#"{"cmd":"pause_after_verse"}"#).unwrap().1, Action::PauseAfterVerse(None));
        assert!(parse(r#"{"cmd":"shell","line":"rm -rf /"}"#).is_err());
        assert!(parse(r#"{"cmd":"start"}"#).is_err());
        assert_eq!(pin_of(b"pin=1234&x=1"), "1234");
        assert_eq!(pin_of(b"x=9&pin=12a34"), "1234");
        assert_eq!(pin_of(b"nopin"), "");
    }
}
