//! Talking to `organ service --remote` as a phone (or an attacker) would, and driving a real
//! Chromium: a raw HTTP/1.1 client (every header is the test's choice: a foreign `Host`, a
//! forged `Origin`), a small WebSocket client (RFC 6455, text frames), a WebDriver client for
//! chromedriver, and `organ service --remote` started without a terminal with its address and
//! PIN read from what it prints. Also used by benches/remote_latency.rs.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

// --- HTTP ---------------------------------------------------------------------------------------

/// An HTTP answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// Sends `method path` with exactly these headers (no Host unless given) and a body; reads the
/// whole answer (the connection is closed after it).
pub fn http(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Answer {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    read_answer(&mut s)
}

/// Reads one answer: the head, then as many bytes as its Content-Length says (some servers
/// keep the connection open whatever the request said), or to the end.
fn read_answer(s: &mut TcpStream) -> Answer {
    let mut raw = Vec::new();
    let mut b = [0u8; 4096];
    loop {
        if let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
            let length = head
                .lines()
                .filter_map(|l| l.split_once(':'))
                .find(|(k, _)| k.trim() == "content-length")
                .and_then(|(_, v)| v.trim().parse::<usize>().ok());
            if let Some(n) = length
                && raw.len() >= split + 4 + n
            {
                raw.truncate(split + 4 + n);
                break;
            }
        }
        match s.read(&mut b) {
            Ok(0) | Err(_) => break,
            Ok(n) => raw.extend_from_slice(&b[..n]),
        }
    }
    parse_answer(&raw)
}

fn parse_answer(raw: &[u8]) -> Answer {
    let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Answer { status: 0, headers: Vec::new(), body: String::from_utf8_lossy(raw).into_owned() };
    };
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines.next().and_then(|l| l.split_whitespace().nth(1)).and_then(|c| c.parse().ok()).unwrap_or(0);
    let headers: Vec<(String, String)> =
        lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_string(), v.trim().to_string())).collect();
    let mut body = raw[split + 4..].to_vec();
    if headers.iter().any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked")) {
        body = dechunk(&body);
    }
    Answer { status, headers, body: String::from_utf8_lossy(&body).into_owned() }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(i) = b.windows(2).position(|w| w == b"\r\n") {
        let n = usize::from_str_radix(String::from_utf8_lossy(&b[..i]).trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.extend_from_slice(&b[i + 2..(i + 2 + n).min(b.len())]);
        b = &b[(i + 4 + n).min(b.len())..];
    }
    out
}

/// Logs in with `pin`; the session cookie (`name=value`) on success, else the answer.
pub fn login(addr: SocketAddr, host: &str, pin: &str) -> Result<String, Answer> {
    let a = http(
        addr,
        "POST",
        "/login",
        &[("Host", host), ("Content-Type", "application/x-www-form-urlencoded")],
        &format!("pin={pin}"),
    );
    match a.header("set-cookie") {
        Some(c) if a.status == 303 => Ok(c.split(';').next().unwrap_or_default().to_string()),
        _ => Err(a),
    }
}

// --- WebSocket ----------------------------------------------------------------------------------

/// A WebSocket client connection.
pub struct Ws {
    s: TcpStream,
    buf: Vec<u8>,
}

/// Opens a WebSocket at `/ws` with these headers (Host, Origin, Cookie as the test wants);
/// the refusal's answer when the server does not switch protocols.
pub fn ws_connect(addr: SocketAddr, headers: &[(&str, &str)]) -> Result<Ws, Answer> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_nodelay(true).unwrap();
    let mut req = "GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n".to_string();
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    let mut b = [0u8; 1];
    while !raw.ends_with(b"\r\n\r\n") {
        match s.read(&mut b) {
            Ok(1) => raw.push(b[0]),
            _ => break,
        }
    }
    if raw.starts_with(b"HTTP/1.1 101") {
        return Ok(Ws { s, buf: Vec::new() });
    }
    let _ = s.read_to_end(&mut raw);
    Err(parse_answer(&raw))
}

impl Ws {
    /// Sends a text frame (masked, as a client must).
    pub fn send(&mut self, text: &str) {
        let p = text.as_bytes();
        let mut f = vec![0x81u8];
        match p.len() {
            n if n < 126 => f.push(0x80 | n as u8),
            n => {
                f.push(0x80 | 126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
        }
        let mask = [0x37u8, 0xfa, 0x21, 0x3d];
        f.extend_from_slice(&mask);
        f.extend(p.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.s.write_all(&f).unwrap();
    }

    /// The next text message (pings and other frames are skipped); `None` when closed or on
    /// timeout.
    pub fn recv(&mut self, timeout: Duration) -> Option<String> {
        let end = Instant::now() + timeout;
        loop {
            if let Some((op, payload, used)) = frame(&self.buf) {
                self.buf.drain(..used);
                match op {
                    1 => return Some(String::from_utf8_lossy(&payload).into_owned()),
                    8 => return None,
                    _ => continue,
                }
            }
            let left = end.checked_duration_since(Instant::now())?;
            self.s.set_read_timeout(Some(left.max(Duration::from_millis(1)))).ok()?;
            let mut b = [0u8; 4096];
            match self.s.read(&mut b) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&b[..n]),
            }
        }
    }

    /// Reads messages until one satisfies `ok` (returned), or fails after `timeout`.
    pub fn wait_for(
        &mut self,
        what: &str,
        timeout: Duration,
        ok: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let end = Instant::now() + timeout;
        let mut last = String::new();
        while Instant::now() < end {
            let Some(m) = self.recv(end - Instant::now()) else { break };
            let v: serde_json::Value = serde_json::from_str(&m).expect("JSON from the server");
            if ok(&v) {
                return v;
            }
            last = m;
        }
        panic!("timed out waiting for {what}; the last message was {last}");
    }
}

/// One unmasked server frame at the start of `b`: opcode, payload, bytes used.
fn frame(b: &[u8]) -> Option<(u8, Vec<u8>, usize)> {
    if b.len() < 2 {
        return None;
    }
    let op = b[0] & 0x0f;
    let (len, at) = match b[1] & 0x7f {
        126 if b.len() >= 4 => (usize::from(u16::from_be_bytes([b[2], b[3]])), 4),
        127 if b.len() >= 10 => (u64::from_be_bytes(b[2..10].try_into().ok()?) as usize, 10),
        126 | 127 => return None,
        n => (usize::from(n), 2),
    };
    (b.len() >= at + len).then(|| (op, b[at..at + len].to_vec(), at + len))
}

// --- organ service --remote without a terminal ------------------------------------------------

/// `organ service ORDER --remote ADDRESS --to file:OUT`, no terminal: its address and PIN.
pub struct RemoteOrgan {
    pub child: Child,
    pub url: String,
    pub addr: SocketAddr,
    /// The `Host` the server answers to ("127.0.0.1:PORT").
    pub host: String,
    pub pin: String,
    pub view_url: String,
    pub printed: String,
}

impl RemoteOrgan {
    pub fn start(order: &Path, remote: &str, out: &Path) -> RemoteOrgan {
        let mut child = super::organ_command(&[
            "service",
            &order.display().to_string(),
            "--remote",
            remote,
            "--to",
            &format!("file:{}", out.display()),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("organ service starts");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut printed = String::new();
        let (mut url, mut pin, mut view_url) = (String::new(), String::new(), String::new());
        for line in lines.by_ref() {
            let line = line.expect("organ prints its address");
            printed.push_str(&line);
            printed.push('\n');
            if let Some(u) = line.split(" listens on ").nth(1) {
                url = u.trim().to_string();
            } else if let Some(p) = line.trim().strip_prefix("PIN: ") {
                pin = p.to_string();
            } else if let Some(v) = line.trim().strip_prefix("view only (no PIN): ") {
                view_url = v.to_string();
            } else if line.starts_with("organ: no terminal") {
                break;
            }
        }
        // Keep reading (and dropping) what it prints, so that it never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        assert!(!url.is_empty() && pin.len() == 6, "organ printed:\n{printed}");
        let host = url.trim_start_matches("http://").trim_end_matches('/').to_string();
        let addr = host.parse().expect("a numeric address");
        RemoteOrgan { child, url, addr, host, pin, view_url, printed }
    }

    /// Logs in; the cookie.
    pub fn login(&self) -> String {
        login(self.addr, &self.host, &self.pin).expect("the right PIN logs in")
    }

    /// A WebSocket as the page opens it: this server's Host and Origin, and the cookie.
    pub fn socket(&self, cookie: &str) -> Ws {
        let origin = format!("http://{}", self.host);
        ws_connect(self.addr, &[("Host", &self.host), ("Origin", &origin), ("Cookie", cookie)])
            .unwrap_or_else(|a| panic!("the WebSocket was refused: {a:?}"))
    }

    /// SIGTERM, and its exit status (it releases every key and writes the file first).
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        // SAFETY: a plain kill(2) of our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let end = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(Instant::now() < end, "organ service did not end after SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RemoteOrgan {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The state in a `{"type":"state"}` message.
pub fn is_state(v: &serde_json::Value) -> Option<&serde_json::Value> {
    (v["type"] == "state").then(|| &v["state"])
}

// --- WebDriver (chromedriver) ---------------------------------------------------------------------

/// Chromium and chromedriver, when installed; else why not.
pub fn browser() -> Result<(String, String), String> {
    let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].into_iter().find(|p| Path::new(p).exists());
    let driver = ["/usr/bin/chromedriver"].into_iter().find(|p| Path::new(p).exists());
    match (chromium, driver) {
        (Some(c), Some(d)) => Ok((c.into(), d.into())),
        _ => {
            Err("Chromium or chromedriver is not installed (Debian: chromium chromium-driver; .ci/setup installs them)"
                .into())
        }
    }
}

/// A chromedriver process and one browser session in it; both ended on drop.
pub struct Browser {
    driver: Child,
    port: u16,
    session: String,
}

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

impl Browser {
    /// Headless Chromium with a phone's viewport (`width`×`height` CSS pixels).
    pub fn start(chromium: &str, chromedriver: &str, profile: &Path, width: u32, height: u32) -> Browser {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let mut b = Browser { driver, port, session: String::new() };
        let end = Instant::now() + Duration::from_secs(20);
        while b.call("GET", "/status", None).map(|v| v["value"]["ready"] != true).unwrap_or(true) {
            assert!(Instant::now() < end, "chromedriver did not get ready");
            std::thread::sleep(Duration::from_millis(100));
        }
        let caps = serde_json::json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                         "--disable-background-networking", "--disable-component-update", "--disable-sync",
                         "--disable-dev-shm-usage", format!("--user-data-dir={}", profile.display())],
                "mobileEmulation": {"deviceMetrics": {"width": width, "height": height, "pixelRatio": 2, "touch": false}}
            }
        }}});
        let v = b.call("POST", "/session", Some(caps)).expect("a browser session");
        b.session = v["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {v}")).to_string();
        b
    }

    fn call(&self, method: &str, path: &str, body: Option<serde_json::Value>) -> Result<serde_json::Value, String> {
        let addr: SocketAddr = ([127, 0, 0, 1], self.port).into();
        let host = format!("127.0.0.1:{}", self.port);
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
        let a = read_answer(&mut s);
        serde_json::from_str(&a.body).map_err(|e| format!("{e}: {}", a.body))
    }

    fn session_call(&self, method: &str, path: &str, body: Option<serde_json::Value>) -> serde_json::Value {
        let v = self.call(method, &format!("/session/{}{path}", self.session), body).expect("chromedriver answers");
        if v["value"].get("error").is_some() {
            panic!("WebDriver {method} {path}: {}", v["value"]);
        }
        v["value"].clone()
    }

    pub fn goto(&self, url: &str) {
        self.session_call("POST", "/url", Some(serde_json::json!({ "url": url })));
    }

    pub fn url(&self) -> String {
        self.session_call("GET", "/url", None).as_str().unwrap_or_default().to_string()
    }

    /// The element matching a CSS selector (fails the test when there is none).
    pub fn find(&self, css: &str) -> String {
        let v = self.session_call("POST", "/element", Some(serde_json::json!({"using": "css selector", "value": css})));
        v[ELEMENT].as_str().unwrap_or_else(|| panic!("no element {css}: {v}")).to_string()
    }

    pub fn click(&self, css: &str) {
        let e = self.find(css);
        self.session_call("POST", &format!("/element/{e}/click"), Some(serde_json::json!({})));
    }

    pub fn type_into(&self, css: &str, text: &str) {
        let e = self.find(css);
        self.session_call("POST", &format!("/element/{e}/value"), Some(serde_json::json!({ "text": text })));
    }

    pub fn text(&self, css: &str) -> String {
        let e = self.find(css);
        self.session_call("GET", &format!("/element/{e}/text"), None).as_str().unwrap_or_default().to_string()
    }

    /// Runs JavaScript in the page; its return value.
    pub fn script(&self, js: &str) -> serde_json::Value {
        self.session_call("POST", "/execute/sync", Some(serde_json::json!({"script": js, "args": []})))
    }

    /// Presses the mouse on the element, holds it `hold`, and lets go.
    pub fn hold(&self, css: &str, hold: Duration) {
        let e = self.find(css);
        let actions = serde_json::json!({"actions": [{
            "type": "pointer", "id": "finger", "parameters": {"pointerType": "mouse"},
            "actions": [
                {"type": "pointerMove", "duration": 0, "origin": {ELEMENT: e}, "x": 0, "y": 0},
                {"type": "pointerDown", "button": 0},
                {"type": "pause", "duration": hold.as_millis() as u64},
                {"type": "pointerUp", "button": 0}
            ]
        }]});
        self.session_call("POST", "/actions", Some(actions));
    }

    /// The text of `css`, or `None` while there is no such element (a page still loading).
    pub fn try_text(&self, css: &str) -> Option<String> {
        let path = format!("/session/{}/element", self.session);
        let v = self.call("POST", &path, Some(serde_json::json!({"using": "css selector", "value": css}))).ok()?;
        let e = v["value"][ELEMENT].as_str()?.to_string();
        let v = self.call("GET", &format!("/session/{}/element/{e}/text", self.session), None).ok()?;
        v["value"].as_str().map(str::to_string)
    }

    /// Waits until `css` exists and its text satisfies `ok`; the text.
    pub fn wait_text(&self, css: &str, what: &str, timeout: Duration, ok: impl Fn(&str) -> bool) -> String {
        let end = Instant::now() + timeout;
        loop {
            let t = self.try_text(css).unwrap_or_else(|| "(no such element)".into());
            if ok(&t) {
                return t;
            }
            assert!(Instant::now() < end, "timed out waiting for {what}: {css} says {t:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A PNG of the viewport.
    pub fn screenshot(&self) -> Vec<u8> {
        let v = self.session_call("GET", "/screenshot", None);
        base64(v.as_str().expect("base64 PNG"))
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.call("DELETE", &format!("/session/{}", self.session), None);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Decodes standard base64.
fn base64(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let digits: Vec<u8> = s.bytes().filter_map(val).collect();
    let mut out = Vec::with_capacity(digits.len() * 3 / 4);
    for c in digits.chunks(4) {
        let n = c.iter().enumerate().fold(0u32, |n, (i, &d)| n | (u32::from(d) << (18 - 6 * i)));
        out.push((n >> 16) as u8);
        if c.len() > 2 {
            out.push((n >> 8) as u8);
        }
        if c.len() > 3 {
            out.push(n as u8);
        }
    }
    out
}
