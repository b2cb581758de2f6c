//! The phone remote of `organ service --remote`: a small web page served by organ itself, live
//! over a WebSocket, that drives the same [`Service`](super::Service) as the terminal.
//!
//! Safe by default:
//! - it listens on 127.0.0.1 (this computer only) unless given an address (`lan`,
//!   `0.0.0.0:8080`, `192.168.1.20:8080`);
//! - a random PIN, shown at the laptop, is exchanged once for a session cookie (HttpOnly,
//!   SameSite=Strict); wrong PINs are rate-limited ([`auth`]);
//! - every request and the WebSocket upgrade check the cookie, the `Host` header (against DNS
//!   rebinding) and the `Origin` (against cross-site WebSocket hijacking);
//! - a view-only link shows the state without the PIN and cannot act;
//! - the page can only send the service's [`Action`]s: no file, no command, no MIDI of its own.
//!   A phone that drops or sleeps changes nothing on the organ.
//!
//! Threads: the server runs on a thread of its own with a single-threaded tokio runtime
//! ([`server`]); it hands [`Action`]s to the control thread through a channel and reads the
//! state the control thread [`Remote::publish`]es. Nothing here touches the engine.

pub mod auth;
#[cfg(feature = "remote")]
mod server;

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use super::app::Action;
use super::show::RemoteState;

/// The default port.
pub const PORT: u16 = 8080;

/// Where the remote listens (`--remote [ADDRESS]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listen {
    pub addr: SocketAddr,
}

/// Why the remote cannot run.
#[derive(Debug)]
pub enum RemoteError {
    /// `--remote` was given something that is not an address.
    BadAddress(String),
    /// The address cannot be listened on (in use, not this machine's).
    Bind { addr: SocketAddr, error: std::io::Error },
    /// This build has no remote (built without the `remote` feature).
    NotBuilt,
    /// The server thread or its runtime could not start.
    Start(std::io::Error),
}

impl fmt::Display for RemoteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RemoteError::BadAddress(s) => write!(
                f,
                "--remote {s}: not an address; use --remote (this computer only), --remote lan, --remote PORT or --remote IP:PORT (e.g. 0.0.0.0:{PORT})"
            ),
            RemoteError::Bind { addr, error } => write!(
                f,
                "--remote: cannot listen on {addr}: {error} (another port: --remote {}:{})",
                addr.ip(),
                addr.port().wrapping_add(1)
            ),
            RemoteError::NotBuilt => {
                f.write_str("--remote: this organ was built without the phone remote (cargo feature `remote`)")
            }
            RemoteError::Start(e) => write!(f, "--remote: cannot start the server: {e}"),
        }
    }
}

impl std::error::Error for RemoteError {}

impl Listen {
    /// `""`/`local` (127.0.0.1:8080), `lan` or `lan:PORT` (every interface), `PORT`
    /// (127.0.0.1), or `IP:PORT`.
    ///
    /// # Errors
    /// [`RemoteError::BadAddress`].
    pub fn parse(s: &str) -> Result<Listen, RemoteError> {
        let bad = || RemoteError::BadAddress(s.to_string());
        let port = |p: &str| p.parse::<u16>().map_err(|_| bad());
        let t = s.trim();
        let addr = match t {
            "" | "local" | "localhost" => SocketAddr::new(Ipv4Addr::LOCALHOST.into(), PORT),
            "lan" => SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), PORT),
            _ if t.starts_with("lan:") => SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), port(&t[4..])?),
            _ if t.chars().all(|c| c.is_ascii_digit()) => SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port(t)?),
            _ => t.parse::<SocketAddr>().map_err(|_| bad())?,
        };
        Ok(Listen { addr })
    }
}

/// The addresses the server answers to (`Host` values, with the port), and the URL to show,
/// for a server bound to `bound`.
pub fn hosts_and_url(bound: SocketAddr) -> (Vec<String>, String) {
    let port = bound.port();
    let with_port = |ip: IpAddr| SocketAddr::new(ip, port).to_string();
    let mut hosts = Vec::new();
    let url_ip = if bound.ip().is_unspecified() {
        let ips = interface_addresses();
        hosts.extend(ips.iter().map(|&ip| with_port(ip)));
        hosts.push(with_port(Ipv4Addr::LOCALHOST.into()));
        hosts.push(format!("localhost:{port}"));
        if let Some(name) = host_name() {
            hosts.push(format!("{name}:{port}"));
            hosts.push(format!("{name}.local:{port}"));
        }
        ips.iter().copied().find(|ip| ip.is_ipv4() && !ip.is_loopback()).unwrap_or(Ipv4Addr::LOCALHOST.into())
    } else {
        hosts.push(with_port(bound.ip()));
        if bound.ip().is_loopback() {
            hosts.push(format!("localhost:{port}"));
        }
        bound.ip()
    };
    hosts.sort();
    hosts.dedup();
    (hosts, format!("http://{}/", with_port(url_ip)))
}

/// This machine's interface addresses (IPv4 and IPv6, loopback included).
#[cfg(unix)]
fn interface_addresses() -> Vec<IpAddr> {
    let mut out = Vec::new();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list we only read and then free once.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return out;
    }
    let mut p = head;
    while !p.is_null() {
        // SAFETY: `p` is a node of the list getifaddrs returned, not yet freed.
        let ifa = unsafe { &*p };
        if !ifa.ifa_addr.is_null() {
            // SAFETY: the family says which sockaddr type the address is.
            let family = i32::from(unsafe { (*ifa.ifa_addr).sa_family });
            if family == libc::AF_INET {
                let a = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
                out.push(IpAddr::V4(Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr))));
            } else if family == libc::AF_INET6 {
                let a = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in6) };
                let ip = std::net::Ipv6Addr::from(a.sin6_addr.s6_addr);
                // Link-local addresses need a zone in a URL: leave them out.
                if (ip.segments()[0] & 0xffc0) != 0xfe80 {
                    out.push(IpAddr::V6(ip));
                }
            }
        }
        p = ifa.ifa_next;
    }
    // SAFETY: freed once, after the last read.
    unsafe { libc::freeifaddrs(head) };
    out
}

#[cfg(not(unix))]
fn interface_addresses() -> Vec<IpAddr> {
    Vec::new()
}

/// This machine's host name, if it has a plain one.
fn host_name() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let name = name.trim();
    (!name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.'))
        .then(|| name.to_ascii_lowercase())
}

/// The URL as a QR code, in text: two rows of modules per line with half blocks, light
/// modules drawn (so that it reads on a dark terminal, and white-on-black in the view).
pub fn qr_text(url: &str) -> Vec<String> {
    #[cfg(feature = "remote")]
    {
        use qrcode::render::unicode::Dense1x2;
        match qrcode::QrCode::new(url.as_bytes()) {
            Ok(code) => code
                .render::<Dense1x2>()
                .dark_color(Dense1x2::Light)
                .light_color(Dense1x2::Dark)
                .quiet_zone(true)
                .build()
                .lines()
                .map(str::to_string)
                .collect(),
            Err(_) => Vec::new(),
        }
    }
    #[cfg(not(feature = "remote"))]
    {
        let _ = url;
        Vec::new()
    }
}

/// `n` random bytes from the operating system, as lowercase hex.
#[cfg(feature = "remote")]
pub(crate) fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    // The OS generator does not fail on the platforms organ runs on; should it, the time and
    // the process id still make the token unguessable enough to be refused here.
    if getrandom::fill(&mut b).is_err() {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        for (i, x) in b.iter_mut().enumerate() {
            *x = (t >> ((i % 16) * 8)) as u8 ^ (std::process::id() as u8);
        }
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A random six-digit PIN.
#[cfg(feature = "remote")]
pub(crate) fn random_pin() -> String {
    let mut b = [0u8; 8];
    let _ = getrandom::fill(&mut b);
    format!("{:06}", u64::from_le_bytes(b) % 1_000_000)
}

/// A running remote: its address, PIN and view-only link; the actions phones send; the state
/// they see. Dropping it stops the server.
pub struct Remote {
    /// The page's address, as shown to people.
    pub url: String,
    /// A link that shows the state without the PIN and cannot act.
    pub view_url: String,
    pub pin: String,
    actions: crossbeam_channel::Receiver<Action>,
    #[cfg(feature = "remote")]
    server: server::Running,
}

impl Remote {
    /// Starts the server.
    ///
    /// # Errors
    /// The address cannot be listened on; this build has no remote.
    pub fn start(listen: &Listen) -> Result<Remote, RemoteError> {
        #[cfg(feature = "remote")]
        {
            let (tx, actions) = crossbeam_channel::unbounded();
            let pin = random_pin();
            let view_token = random_hex(16);
            let server = server::Running::start(listen.addr, &pin, &view_token, tx)?;
            let url = server.url.clone();
            Ok(Remote { view_url: format!("{url}view/{view_token}"), url, pin, actions, server })
        }
        #[cfg(not(feature = "remote"))]
        {
            let _ = listen;
            Err(RemoteError::NotBuilt)
        }
    }

    /// What phones asked, in order.
    pub fn actions(&self) -> &crossbeam_channel::Receiver<Action> {
        &self.actions
    }

    /// Shows `state` to every phone (sent only when it changed).
    pub fn publish(&self, state: &RemoteState) {
        #[cfg(feature = "remote")]
        self.server.publish(state);
        #[cfg(not(feature = "remote"))]
        let _ = state;
    }

    /// The page's address as a QR code (text lines).
    pub fn qr_lines(&self) -> Vec<String> {
        qr_text(&self.url)
    }

    /// Where it listens.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        #[cfg(feature = "remote")]
        return Some(self.server.addr);
        #[cfg(not(feature = "remote"))]
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_default_to_this_computer_only() {
        assert_eq!(Listen::parse("").unwrap().addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(Listen::parse("9000").unwrap().addr, "127.0.0.1:9000".parse().unwrap());
        assert_eq!(Listen::parse("lan").unwrap().addr, "0.0.0.0:8080".parse().unwrap());
        assert_eq!(Listen::parse("lan:81").unwrap().addr, "0.0.0.0:81".parse().unwrap());
        assert_eq!(Listen::parse("192.168.1.20:8080").unwrap().addr, "192.168.1.20:8080".parse().unwrap());
        let e = Listen::parse("church.local").unwrap_err().to_string();
        assert!(e.contains("--remote church.local: not an address") && e.contains("--remote lan"), "{e}");
        assert!(Listen::parse("lan:99999").is_err());
    }

    #[test]
    fn a_loopback_server_answers_to_loopback_names_only() {
        let (hosts, url) = hosts_and_url("127.0.0.1:8080".parse().unwrap());
        assert_eq!(hosts, vec!["127.0.0.1:8080".to_string(), "localhost:8080".to_string()]);
        assert_eq!(url, "http://127.0.0.1:8080/");
        let (hosts, url) = hosts_and_url("0.0.0.0:8080".parse().unwrap());
        assert!(hosts.contains(&"127.0.0.1:8080".to_string()), "{hosts:?}");
        assert!(url.starts_with("http://") && url.ends_with(":8080/"), "{url}");
        assert!(!hosts.iter().any(|h| h.starts_with("evil")));
    }

    #[cfg(feature = "remote")]
    #[test]
    fn the_qr_code_is_square_text_and_pins_are_six_digits() {
        let lines = qr_text("http://192.168.100.200:8080/");
        assert!(lines.len() > 10, "{lines:?}");
        let width = lines[0].chars().count();
        assert!(lines.iter().all(|l| l.chars().count() == width));
        assert_eq!(lines.len(), width.div_ceil(2), "two module rows per line");
        let pin = random_pin();
        assert!(pin.len() == 6 && pin.chars().all(|c| c.is_ascii_digit()));
        assert_ne!(random_hex(16), random_hex(16));
    }
}
