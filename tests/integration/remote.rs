//! `organ service --remote` for real: the binary serves its phone page without a terminal; the
//! tests talk to it as a phone and as an attacker would (raw HTTP and WebSocket, every header
//! chosen), from another network namespace, and through a real headless Chromium driven by
//! WebDriver (chromedriver). What reached the organ is read back from the `file:` record.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::service::{assert_released, read_sent};
use crate::support::web::{self, Browser, RemoteOrgan, http, is_state, ws_connect};
use crate::support::{repo_dir, scratch};

const T: Duration = Duration::from_secs(20);

/// An order of service with one fast hymn (300 %: a verse lasts a few seconds) and a second
/// item.
fn fast_order(dir: &Path) -> PathBuf {
    let order = dir.join("remote-service.toml");
    std::fs::write(
        &order,
        format!(
            r#"title = "Remote test"
organ = "st-marys"
[[item]]
title = "Fast hymn"
score = "{root}/scores/hymn-cwm-rhondda.mid"
verses = 2
play_over = "13-14"
gap = "1 beat"
tempo = "300%"
note = "Wait for the procession."
[[item]]
title = "Second hymn"
score = "{root}/scores/hymn-tallis-ordinal.mid"
verses = 1
"#,
            root = repo_dir().display()
        ),
    )
    .unwrap();
    order
}

fn sunday() -> PathBuf {
    repo_dir().join("scores/services/sunday.toml")
}

/// The number of CC 123 (all notes off) messages in a record.
fn all_notes_off(sent: &[(u64, Vec<u8>)]) -> usize {
    sent.iter().filter(|(_, b)| b.len() == 3 && b[0] & 0xF0 == 0xB0 && b[1] == 123).count()
}

#[test]
fn without_the_pin_cookie_host_or_origin_everything_is_refused_and_the_music_goes_on() {
    let dir = scratch("remote-security");
    let out = dir.join("sent.mid");
    let mut organ = RemoteOrgan::start(&sunday(), "127.0.0.1:0", &out);
    assert!(organ.url.starts_with("http://127.0.0.1:"), "this computer only by default: {}", organ.url);
    assert!(organ.printed.contains("█"), "a QR code is printed:\n{}", organ.printed);
    let (addr, host) = (organ.addr, organ.host.clone());
    let origin = format!("http://{host}");

    // The rightful phone logs in and starts the first hymn.
    let cookie = organ.login();
    let mut phone = organ.socket(&cookie);
    phone.send(r#"{"cmd":"go"}"#);
    let s = phone.wait_for("the hymn to play", T, |v| {
        is_state(v).is_some_and(|s| s["state"] == "playing" && s["bar"].as_u64() > Some(0))
    });
    let bar_before = s["state"]["bar"].as_u64().unwrap();
    // A second phone sees the same state, then drops (sleeps, leaves the Wi-Fi): nothing changes.
    let mut second = organ.socket(&organ.login());
    second.wait_for("the same state", T, |v| is_state(v).is_some_and(|s| s["state"] == "playing" && s["playing"] == 0));
    drop(second);

    // No cookie: no page, no script, no WebSocket.
    let a = http(addr, "GET", "/", &[("Host", &host)], "");
    assert_eq!((a.status, a.header("location")), (303, Some("/login")), "{a:?}");
    assert_eq!(http(addr, "GET", "/app.js", &[("Host", &host)], "").status, 403);
    let e = ws_connect(addr, &[("Host", &host), ("Origin", &origin)]).err().expect("refused without a cookie");
    assert_eq!(e.status, 403, "{e:?}");
    let e = ws_connect(addr, &[("Host", &host), ("Origin", &origin), ("Cookie", "organ_remote=0123456789abcdef")])
        .err()
        .expect("refused with a made-up cookie");
    assert_eq!(e.status, 403);

    // A foreign Origin or none on the WebSocket (cross-site WebSocket hijacking), with the cookie.
    for bad in ["http://evil.example", "null", "https://127.0.0.1"] {
        let e = ws_connect(addr, &[("Host", &host), ("Origin", bad), ("Cookie", &cookie)]).err();
        assert_eq!(e.map(|a| a.status), Some(403), "Origin {bad}");
    }
    let e = ws_connect(addr, &[("Host", &host), ("Cookie", &cookie)]).err();
    assert_eq!(e.map(|a| a.status), Some(403), "no Origin");
    // A login posted from another site (its Origin) is refused, right PIN or not.
    let a = http(
        addr,
        "POST",
        "/login",
        &[("Host", &host), ("Origin", "http://evil.example")],
        &format!("pin={}", organ.pin),
    );
    assert_eq!(a.status, 403);

    // A foreign Host (DNS rebinding: evil.example resolving to this address), with the cookie.
    let evil = format!("evil.example:{}", addr.port());
    let a = http(addr, "GET", "/", &[("Host", &evil), ("Cookie", &cookie)], "");
    assert_eq!((a.status, a.body.as_str()), (403, "wrong Host"));
    let e = ws_connect(addr, &[("Host", &evil), ("Origin", &format!("http://{evil}")), ("Cookie", &cookie)]).err();
    assert_eq!(e.map(|a| a.status), Some(403), "foreign Host on the WebSocket");
    assert_eq!(http(addr, "GET", "/login", &[], "").status, 403, "no Host at all");

    // The view-only link sees the state and cannot act.
    let path = organ.view_url.trim_start_matches(&organ.url[..organ.url.len() - 1]).to_string();
    let a = http(addr, "GET", &path, &[("Host", &host)], "");
    let view_cookie = a.header("set-cookie").expect("a view cookie").split(';').next().unwrap().to_string();
    let mut viewer = organ.socket(&view_cookie);
    viewer.wait_for("the view role", T, |v| v["type"] == "hello" && v["role"] == "view");
    viewer.send(r#"{"cmd":"stop"}"#);
    viewer.wait_for("the refusal", T, |v| v["type"] == "refused" && v["why"] == "this link is view only");
    viewer.send(r#"{"cmd":"panic"}"#);
    viewer.wait_for("the refusal", T, |v| v["type"] == "refused");
    assert_eq!(http(addr, "GET", "/view/00000000000000000000000000000000", &[("Host", &host)], "").status, 404);
    // A phone's command that is no command.
    phone.send(r#"{"cmd":"shell","line":"cat /etc/passwd"}"#);
    phone.wait_for("the refusal", T, |v| v["type"] == "refused" && v["why"] == "not a command");

    // Wrong PINs: refused, then locked (even the right PIN), and the phone already in stays in.
    let wrong = if organ.pin == "000000" { "111111" } else { "000000" };
    let a = web::login(addr, &host, wrong).expect_err("a wrong PIN is refused");
    assert_eq!(a.status, 403);
    assert!(a.body.contains("Wrong PIN (4 tries left)"), "{}", a.body);
    for _ in 0..3 {
        assert_eq!(web::login(addr, &host, wrong).err().map(|a| a.status), Some(403));
    }
    let a = web::login(addr, &host, wrong).expect_err("locked");
    assert_eq!(a.status, 429);
    assert!(a.body.contains("Too many wrong PINs: wait 30 s"), "{}", a.body);
    let a = web::login(addr, &host, &organ.pin).expect_err("even the right PIN waits");
    assert_eq!(a.status, 429);

    // The performance went on untouched: still playing, further on, stopped only by its phone.
    let s = phone.wait_for("the hymn to go on", T, |v| {
        is_state(v).is_some_and(|s| s["state"] == "playing" && s["bar"].as_u64() > Some(bar_before))
    });
    assert_eq!(s["state"]["playing"], 0);
    phone.send(r#"{"cmd":"stop"}"#);
    phone.wait_for("the stop", T, |v| is_state(v).is_some_and(|s| s["state"] == "idle"));
    let status = organ.terminate();
    assert_eq!(status.code(), Some(128 + 15), "SIGTERM ends the service");
    let sent = read_sent(&out);
    let (_, ons) = assert_released(&sent);
    assert!(ons > 20, "it played ({ons} note-ons)");
    let divisions = organ::organ::Organ::find("st-marys").unwrap().divisions.len();
    assert_eq!(all_notes_off(&sent), divisions, "one release: the rightful phone's stop");
}

/// A network namespace joined to this one by a veth pair: "another machine" on a private link.
struct Netns {
    name: String,
    host_if: String,
    host_ip: String,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let o = Command::new("ip").args(args).output().map_err(|e| format!("ip: {e}"))?;
    if o.status.success() {
        Ok(())
    } else {
        Err(format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&o.stderr).trim()))
    }
}

impl Netns {
    fn new() -> Result<Netns, String> {
        let id = std::process::id() % 100_000;
        let net = std::process::id() % 200 + 20;
        let n = Netns {
            name: format!("organ-rt-{id}"),
            host_if: format!("orgrt{id}h"),
            host_ip: format!("10.213.{net}.1"),
        };
        let peer = format!("orgrt{id}n");
        let peer_ip = format!("10.213.{net}.2/30");
        ip(&["netns", "add", &n.name])?;
        ip(&["link", "add", &n.host_if, "type", "veth", "peer", "name", &peer])?;
        ip(&["link", "set", &peer, "netns", &n.name])?;
        ip(&["addr", "add", &format!("{}/30", n.host_ip), "dev", &n.host_if])?;
        ip(&["link", "set", &n.host_if, "up"])?;
        ip(&["netns", "exec", &n.name, "ip", "addr", "add", &peer_ip, "dev", &peer])?;
        ip(&["netns", "exec", &n.name, "ip", "link", "set", &peer, "up"])?;
        ip(&["netns", "exec", &n.name, "ip", "link", "set", "lo", "up"])?;
        Ok(n)
    }

    /// From inside the namespace: connect to this machine's side of the link at `port` and ask
    /// for the login page; what came back (or the error).
    fn get_login(&self, port: u16) -> (bool, String) {
        let script = format!(
            "exec 3<>/dev/tcp/{ip}/{port} || exit 7; printf 'GET /login HTTP/1.1\\r\\nHost: {ip}:{port}\\r\\nConnection: close\\r\\n\\r\\n' >&3; timeout 5 cat <&3",
            ip = self.host_ip
        );
        let o = Command::new("ip")
            .args(["netns", "exec", &self.name, "timeout", "10", "bash", "-c", &script])
            .output()
            .expect("ip netns exec runs");
        (o.status.success(), format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.name]);
        let _ = ip(&["link", "del", &self.host_if]);
    }
}

#[test]
fn a_request_from_another_machine_cannot_reach_a_remote_on_this_computer_only() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        println!("SKIPPED: the other-machine test makes a network namespace, which needs root");
        return;
    }
    let ns = match Netns::new() {
        Ok(n) => n,
        Err(e) => {
            println!(
                "SKIPPED: cannot make a network namespace with a veth pair here: {e} (iproute2 and CAP_NET_ADMIN needed)"
            );
            return;
        }
    };
    let dir = scratch("remote-netns");
    // Bound to this computer only (the default): the other machine is refused at connect.
    let local = RemoteOrgan::start(&sunday(), "127.0.0.1:0", &dir.join("local.mid"));
    let cookie = local.login();
    let mut phone = local.socket(&cookie);
    phone.send(r#"{"cmd":"go"}"#);
    phone.wait_for("the hymn to play", T, |v| is_state(v).is_some_and(|s| s["state"] == "playing"));
    let (ok, said) = ns.get_login(local.addr.port());
    assert!(!ok && !said.contains("HTTP/1.1"), "reached a 127.0.0.1 remote from outside: {said}");
    assert!(said.contains("refused"), "{said}");
    phone.wait_for("the hymn to go on", T, |v| {
        is_state(v).is_some_and(|s| s["state"] == "playing" && s["bar"].as_u64() > Some(2))
    });
    // The same request reaches a remote that was asked to listen on every network (so the
    // refusal above is the binding's doing, not a broken link).
    let lan = RemoteOrgan::start(&sunday(), "0.0.0.0:0", &dir.join("lan.mid"));
    let (ok, said) = ns.get_login(lan.addr.port());
    assert!(ok && said.starts_with("HTTP/1.1 200"), "{said}");
    assert!(said.contains("The PIN shown on the laptop"), "{said}");
}

/// The browser, or why the test cannot run; CI requires it (ORGAN_REQUIRE_BROWSER=1).
fn browser_or_skip() -> Option<(String, String)> {
    match web::browser() {
        Ok(b) => Some(b),
        Err(why) if std::env::var_os("ORGAN_REQUIRE_BROWSER").is_some() => panic!("{why}"),
        Err(why) => {
            println!("SKIPPED: the browser test needs Chromium: {why}");
            None
        }
    }
}

#[test]
fn a_phone_in_chromium_logs_in_plays_pauses_changes_tempo_stops_and_panics() {
    let Some((chromium, driver)) = browser_or_skip() else { return };
    let dir = scratch("remote-browser");
    let out = dir.join("sent.mid");
    let mut organ = RemoteOrgan::start(&fast_order(&dir), "127.0.0.1:0", &out);
    let b = Browser::start(&chromium, &driver, &dir.join("profile"), 390, 844);

    // The page sends a stranger to the PIN; a wrong PIN says so; the right one lets in.
    b.goto(&organ.url);
    assert!(b.url().ends_with("/login"), "{}", b.url());
    b.type_into("#pin", "12");
    b.click("#login");
    b.wait_text("#error", "the wrong PIN", T, |t| t.starts_with("Wrong PIN (4 tries left)"));
    b.type_into("#pin", &organ.pin);
    b.click("#login");
    b.wait_text("#go", "the start button", T, |t| t == "Start 1. Fast hymn");
    b.wait_text("#link", "the live link", T, |t| t == "live");
    assert_eq!(b.script("return document.cookie"), "", "the session cookie is HttpOnly");

    // Start: the play-over, then verse 1, the bar moving on.
    b.click("#go");
    b.wait_text("#section", "verse 1", T, |t| t == "verse 1 of 2");
    let bar = |b: &Browser| b.text("#bar").parse::<u32>().unwrap_or(0);
    let first = bar(&b);
    let end = Instant::now() + T;
    while bar(&b) <= first {
        assert!(Instant::now() < end, "the bar did not move on from {first}");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Pause at the end of the verse: it waits there until Continue.
    b.click("#pause");
    b.wait_text("#pause", "the pause armed", T, |t| t.starts_with("Will pause"));
    b.wait_text("#state", "the verse end", T, |t| t.starts_with("PAUSED AT THE END OF THE VERSE"));
    assert_eq!(b.text("#go"), "Continue");
    std::thread::sleep(Duration::from_millis(1200));
    assert!(b.text("#state").starts_with("PAUSED AT THE END"), "still waiting");
    b.click("#go");
    b.wait_text("#section", "verse 2", T, |t| t == "verse 2 of 2");

    // Tempo: two steps up from 300 %.
    b.click("#tempo-up");
    b.click("#tempo-up");
    b.wait_text("#tempo", "the tempo", T, |t| t == "330");
    if let Some(path) = std::env::var_os("ORGAN_SCREENSHOT") {
        std::fs::write(path, b.screenshot()).unwrap();
    }
    let png = b.screenshot();
    assert!(png.starts_with(b"\x89PNG"), "a screenshot of the phone page");
    std::fs::write(dir.join("phone.png"), &png).unwrap();

    // Stop: a tap does nothing, a one-second hold stops.
    b.click("#stop");
    std::thread::sleep(Duration::from_millis(400));
    assert!(b.text("#state").starts_with("PLAYING"), "a tap does not stop: {}", b.text("#state"));
    b.hold("#stop", Duration::from_millis(1500));
    b.wait_text("#state", "the stop", T, |t| t == "READY");
    assert!(b.text("#items").contains("◐"), "the item is marked as played in part");
    // Panic: everything off, whatever plays.
    b.click("#panic");
    b.wait_text("#message", "the panic", T, |t| t.starts_with("PANIC"));
    drop(b);

    let status = organ.terminate();
    assert_eq!(status.code(), Some(143));
    let sent = read_sent(&out);
    let organ_def = organ::organ::Organ::find("st-marys").unwrap();
    let divisions = organ_def.divisions.len();
    let cancel = organ_def.cancel_messages().len();
    // The performance up to its stop: every key released, then CC 123 and the cancel.
    let first_cc =
        sent.iter().position(|(_, b)| b.len() == 3 && b[0] & 0xF0 == 0xB0 && b[1] == 123).expect("a release");
    let performance = &sent[..first_cc + divisions + cancel];
    let (_, ons) = assert_released(performance);
    assert!(ons > 50, "{ons} note-ons");
    // It waited at the end of verse 1 for over a second, silent.
    let longest_gap = performance.windows(2).map(|w| w[1].0 - w[0].0).max().unwrap();
    assert!(longest_gap >= 1_100_000, "the verse-end wait ({longest_gap} µs)");
    // Then the panic: a note-off for every key of every division, CC 123, the cancel.
    let panic = &sent[performance.len()..];
    assert_eq!(panic.len(), divisions * 128 + divisions + cancel, "the panic and nothing else after the stop");
    let keys: Vec<u8> = organ_def.divisions.iter().map(|d| d.channel.wire()).collect();
    let offs = panic.iter().filter(|(_, b)| b[0] & 0xF0 == 0x80 && keys.contains(&(b[0] & 0x0F))).count();
    assert_eq!(offs, divisions * 128);
}
