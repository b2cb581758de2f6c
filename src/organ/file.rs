//! The TOML schema of organ definitions and its checks. Every error carries the file, line and
//! column of the offending value.

use std::collections::HashSet;
use std::fmt;
use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::{MapAccess, Visitor};
use toml::Spanned;

use super::{
    ConfigError, Control, ControlKind, CouplerAction, DisconnectPolicy, Division, Expression, Location, Organ, Preset,
    RemoteAction, RemoteButton,
};
use crate::midi::{Channel, Message, Micros, ShortMsg, parse_hex};
use crate::text::{did_you_mean, line_col, normalize_name};

/// A TOML table kept in file order, with the span of each key.
pub(crate) struct Ordered<V>(pub Vec<(Spanned<String>, V)>);

impl<'de, V: Deserialize<'de>> Deserialize<'de> for Ordered<V> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V2<V>(PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for V2<V> {
            type Value = Ordered<V>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a table")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Ordered<V>, A::Error> {
                let mut v = Vec::new();
                while let Some((k, val)) = m.next_entry::<Spanned<String>, V>()? {
                    v.push((k, val));
                }
                Ok(Ordered(v))
            }
        }
        d.deserialize_map(V2(PhantomData))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OrganFile {
    name: Spanned<String>,
    output: Option<Spanned<String>>,
    on_disconnect: Option<Spanned<String>>,
    division: Option<Ordered<DivisionFile>>,
    #[serde(default)]
    stop: Vec<StopFile>,
    #[serde(default)]
    coupler: Vec<CouplerFile>,
    #[serde(default)]
    tremulant: Vec<TremulantFile>,
    preset: Option<Ordered<Vec<Spanned<String>>>>,
    cancel: Option<CancelFile>,
    timing: Option<TimingFile>,
    remote: Option<Spanned<RemoteFile>>,
}

/// `[remote]`: which console message means what to `organ service` (see [`super::RemoteAction`]).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RemoteFile {
    go: Option<Spanned<MsgFile>>,
    pause: Option<Spanned<MsgFile>>,
    stop: Option<Spanned<MsgFile>>,
    next: Option<Spanned<MsgFile>>,
    previous: Option<Spanned<MsgFile>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DivisionFile {
    code: Spanned<String>,
    channel: Spanned<i64>,
    compass: Option<Spanned<Vec<i64>>>,
    grandorgue: Option<String>,
    expression: Option<Spanned<ExpressionFile>>,
}

/// `expression = { cc = 11 }` or `{ cc = 11, channel = 16 }`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpressionFile {
    cc: i64,
    channel: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StopFile {
    name: Spanned<String>,
    division: Spanned<String>,
    on: Spanned<MsgFile>,
    off: Option<Spanned<MsgFile>>,
    grandorgue: Option<String>,
    /// How the built-in organ voice sounds it (see [`super::voice`]).
    voice: Option<super::voice::VoiceFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CouplerFile {
    name: Spanned<String>,
    from: Spanned<String>,
    to: Spanned<String>,
    on: Spanned<MsgFile>,
    off: Option<Spanned<MsgFile>>,
    /// `unison`, `octave`, `sub-octave` or `unison-off`; default: from the name.
    action: Option<Spanned<String>>,
    grandorgue: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TremulantFile {
    name: Spanned<String>,
    division: Option<Spanned<String>>,
    on: Spanned<MsgFile>,
    off: Option<Spanned<MsgFile>>,
    grandorgue: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CancelFile {
    message: Option<Spanned<MsgFile>>,
    at_end: Option<bool>,
    everything_in_at_start: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TimingFile {
    stop_lead_ms: Option<Spanned<i64>>,
    stop_pace_ms: Option<Spanned<i64>>,
}

/// One message as written: exactly one of `note`, `cc`, `program`, `nrpn`, `sysex`, `raw`.
#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub(crate) struct MsgFile {
    note: Option<i64>,
    velocity: Option<i64>,
    cc: Option<i64>,
    value: Option<i64>,
    program: Option<i64>,
    nrpn: Option<i64>,
    channel: Option<i64>,
    sysex: Option<String>,
    raw: Option<String>,
}

/// A checked message form, kept so that the off message can be inferred from the on.
#[derive(Debug, Clone)]
enum Form {
    Note { ch: Channel, key: u8 },
    Cc { ch: Channel, cc: u8, value: u8 },
    Nrpn { ch: Channel, param: u16, value: u16 },
    Program,
    Bytes,
}

pub(crate) struct Ctx<'a> {
    pub text: &'a str,
    pub file: &'a str,
}

impl Ctx<'_> {
    pub fn err(&self, span: std::ops::Range<usize>, message: impl Into<String>) -> ConfigError {
        let (line, column) = line_col(self.text, span.start);
        ConfigError::Invalid { at: Location { file: self.file.to_string(), line, column }, message: message.into() }
    }

    /// Converts a toml/serde error into one with file, line and column.
    pub fn toml_err(&self, e: &toml::de::Error) -> ConfigError {
        let mut msg = e.message().trim().replace('\n', " ");
        if msg == "duplicate key" {
            // The reader says no more: name the key (its span) and the fix.
            let key = e.span().and_then(|s| self.text.get(s.clone()).map(|k| (s, k.trim().trim_matches('"'))));
            if let Some((span, key)) = key.filter(|(_, k)| !k.is_empty() && !k.contains('\n')) {
                let header = self.text[..span.start].trim_end_matches([' ', '\t']).ends_with('[');
                msg = if header {
                    format!("[{key}] is given twice: write everything of it under one table header")
                } else {
                    format!("duplicate key `{key}`: it is already given in this table; remove one of them")
                };
            }
        }
        match e.span() {
            Some(span) => self.err(span, msg),
            None => {
                ConfigError::Invalid { at: Location { file: self.file.to_string(), line: 1, column: 1 }, message: msg }
            }
        }
    }
}

fn nrpn_messages(ch: Channel, param: u16, value: u16) -> Vec<Message> {
    let mut v = vec![
        Message::Short(ShortMsg::cc(ch, 99, (param >> 7) as u8)),
        Message::Short(ShortMsg::cc(ch, 98, (param & 0x7F) as u8)),
    ];
    if value > 127 {
        v.push(Message::Short(ShortMsg::cc(ch, 6, (value >> 7) as u8)));
        v.push(Message::Short(ShortMsg::cc(ch, 38, (value & 0x7F) as u8)));
    } else {
        v.push(Message::Short(ShortMsg::cc(ch, 6, value as u8)));
    }
    v
}

/// Which message of a control (or the cancel) is being read: an `off` in the note form is a
/// note-off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    On,
    Off,
    Cancel,
}

fn message(ctx: &Ctx, m: &Spanned<MsgFile>, role: Role) -> Result<(Form, Vec<Message>), ConfigError> {
    let span = m.span();
    let f = m.get_ref();
    let forms = [
        ("note", f.note.is_some()),
        ("cc", f.cc.is_some()),
        ("program", f.program.is_some()),
        ("nrpn", f.nrpn.is_some()),
        ("sysex", f.sysex.is_some()),
        ("raw", f.raw.is_some()),
    ];
    let given: Vec<&str> = forms.iter().filter(|x| x.1).map(|x| x.0).collect();
    let hint = "write one of {note, channel}, {cc, value, channel}, {program, channel}, {nrpn, value, channel}, {sysex = \"F0 .. F7\"} or {raw = \"B0 14 7F\"}";
    if given.len() != 1 {
        return Err(ctx.err(
            span,
            if given.is_empty() {
                format!("a message needs a form; {hint}")
            } else {
                format!("a message has one form, not {}; {hint}", given.join(" and "))
            },
        ));
    }
    let range = |what: &str, v: i64, lo: i64, hi: i64| -> Result<i64, ConfigError> {
        if (lo..=hi).contains(&v) {
            Ok(v)
        } else {
            Err(ctx.err(span.clone(), format!("{what} = {v} is out of range ({lo}-{hi})")))
        }
    };
    let channel = |allowed: bool| -> Result<Option<Channel>, ConfigError> {
        match (f.channel, allowed) {
            (None, true) => Err(ctx.err(span.clone(), format!("the {} message needs a channel (1-16)", given[0]))),
            (Some(c), true) => Ok(Some(Channel::from_user(c).ok_or_else(|| {
                ctx.err(span.clone(), format!("channel = {c} is out of range (MIDI channels are 1-16)"))
            })?)),
            (Some(_), false) => {
                Err(ctx.err(span.clone(), format!("a {} message carries its own bytes; remove `channel`", given[0])))
            }
            (None, false) => Ok(None),
        }
    };
    let unexpected = |key: &str, present: bool| -> Result<(), ConfigError> {
        if present {
            Err(ctx.err(span.clone(), format!("`{key}` does not belong in a {} message", given[0])))
        } else {
            Ok(())
        }
    };
    match given[0] {
        "note" => {
            unexpected("value", f.value.is_some())?;
            let ch = channel(true)?.expect("required");
            let key = range("note", f.note.expect("given"), 0, 127)? as u8;
            if role == Role::Off {
                // An off is a release: a note-off, whatever the on was.
                if f.velocity.is_some() {
                    return Err(ctx.err(
                        span,
                        "an `off` note is sent as a note-off, which has no velocity; remove `velocity` \
                         (or write the exact bytes with raw = \"…\")",
                    ));
                }
                return Ok((Form::Note { ch, key }, vec![Message::Short(ShortMsg::note_off(ch, key))]));
            }
            let velocity = range("velocity", f.velocity.unwrap_or(127), 1, 127)? as u8;
            Ok((Form::Note { ch, key }, vec![Message::Short(ShortMsg::note_on(ch, key, velocity))]))
        }
        "cc" => {
            unexpected("velocity", f.velocity.is_some())?;
            let ch = channel(true)?.expect("required");
            let cc = range("cc", f.cc.expect("given"), 0, 127)? as u8;
            let value = range("value", f.value.unwrap_or(127), 0, 127)? as u8;
            Ok((Form::Cc { ch, cc, value }, vec![Message::Short(ShortMsg::cc(ch, cc, value))]))
        }
        "program" => {
            unexpected("value", f.value.is_some())?;
            unexpected("velocity", f.velocity.is_some())?;
            let ch = channel(true)?.expect("required");
            let p = range("program", f.program.expect("given"), 0, 127)? as u8;
            Ok((Form::Program, vec![Message::Short(ShortMsg::program(ch, p))]))
        }
        "nrpn" => {
            unexpected("velocity", f.velocity.is_some())?;
            let ch = channel(true)?.expect("required");
            let param = range("nrpn", f.nrpn.expect("given"), 0, 16383)? as u16;
            let value = range("value", f.value.unwrap_or(127), 0, 16383)? as u16;
            Ok((Form::Nrpn { ch, param, value }, nrpn_messages(ch, param, value)))
        }
        form => {
            unexpected("value", f.value.is_some())?;
            unexpected("velocity", f.velocity.is_some())?;
            channel(false)?;
            let text = if form == "sysex" { f.sysex.as_deref() } else { f.raw.as_deref() }.expect("given");
            let bytes = parse_hex(text).map_err(|e| ctx.err(span.clone(), format!("{form}: {e}")))?;
            if form == "sysex" && (bytes.first() != Some(&0xF0) || bytes.last() != Some(&0xF7)) {
                return Err(ctx.err(span.clone(), "sysex must start with F0 and end with F7"));
            }
            let msgs = Message::parse_many(&bytes).map_err(|e| ctx.err(span.clone(), format!("{form}: {e}")))?;
            if form == "sysex" && msgs.len() != 1 {
                return Err(ctx.err(span.clone(), "sysex holds exactly one F0 … F7 message; use raw for several"));
            }
            Ok((Form::Bytes, msgs))
        }
    }
}

/// One message form written as a TOML inline table (`{ note = 36, channel = 16 }`), checked as
/// in an organ definition: its messages (read as an `off` when `as_off`: the note form is then a
/// note-off), and the off an organ definition infers from it (none for program changes, SysEx
/// and raw).
///
/// # Errors
/// As for a message in an organ definition.
pub(crate) fn parse_message_text(
    text: &str,
    as_off: bool,
) -> Result<(Vec<Message>, Option<Vec<Message>>), ConfigError> {
    #[derive(Deserialize)]
    struct One {
        m: Spanned<MsgFile>,
    }
    let doc = format!("m = {text}");
    let ctx = Ctx { text: &doc, file: "(message)" };
    let one: One = toml::from_str(&doc).map_err(|e| ctx.toml_err(&e))?;
    let (form, msgs) = message(&ctx, &one.m, if as_off { Role::Off } else { Role::On })?;
    let name = Spanned::new(0..0, String::new());
    Ok((msgs, off_messages(&ctx, "", &name, &form, None).ok()))
}

/// The off messages: as written, or inferred from the on form.
fn off_messages(
    ctx: &Ctx,
    what: &str,
    name: &Spanned<String>,
    on: &Form,
    off: Option<&Spanned<MsgFile>>,
) -> Result<Vec<Message>, ConfigError> {
    if let Some(off) = off {
        return Ok(message(ctx, off, Role::Off)?.1);
    }
    match *on {
        Form::Note { ch, key, .. } => Ok(vec![Message::Short(ShortMsg::note_off(ch, key))]),
        Form::Cc { ch, cc, value } if value != 0 => Ok(vec![Message::Short(ShortMsg::cc(ch, cc, 0))]),
        Form::Nrpn { ch, param, value } if value != 0 => Ok(nrpn_messages(ch, param, 0)),
        Form::Cc { .. } | Form::Nrpn { .. } => Err(ctx.err(
            name.span(),
            format!("{what} \"{}\": its on value is 0, so the off cannot be inferred; add `off = {{ … }}`", name.get_ref()),
        )),
        Form::Program | Form::Bytes => Err(ctx.err(
            name.span(),
            format!(
                "{what} \"{}\" needs an `off` message: it cannot be inferred from a program change, SysEx or raw message",
                name.get_ref()
            ),
        )),
    }
}

pub(super) fn parse(text: &str, source: &str) -> Result<Organ, ConfigError> {
    let ctx = Ctx { text, file: source };
    let f: OrganFile = toml::from_str(text).map_err(|e| ctx.toml_err(&e))?;
    let Some(division_table) = &f.division else {
        return Err(ctx.err(0..0, "no divisions: add at least one [division.<name>] with code and channel"));
    };
    let divisions = parse_divisions(&ctx, division_table)?;
    let mut controls = parse_controls(&ctx, &f, &divisions)?;
    let presets = parse_presets(&ctx, f.preset.as_ref(), &controls)?;
    let (cancel, cancel_at_end) = match &f.cancel {
        None => (None, true),
        Some(c) => {
            let cancel = c.message.as_ref().map(|m| message(&ctx, m, Role::Cancel).map(|x| x.1)).transpose()?;
            if let (Some(m), Some(msgs)) = (&c.message, &cancel) {
                check_not_a_key(&ctx, &divisions, m.span(), msgs)?;
            }
            (cancel, c.at_end.unwrap_or(true))
        }
    };
    let everything_in_at_start = f.cancel.as_ref().and_then(|c| c.everything_in_at_start).unwrap_or(false);
    distinct_messages(&ctx, &mut controls, (&f.stop, &f.coupler, &f.tremulant), cancel.as_deref())?;
    let ms = |v: &Option<Spanned<i64>>, what: &str| -> Result<Micros, ConfigError> {
        match v {
            None => Ok(Micros::ZERO),
            Some(s) if (0..=10_000).contains(s.get_ref()) => Ok(Micros::from_millis(*s.get_ref() as u64)),
            Some(s) => Err(ctx.err(s.span(), format!("{what} = {} is out of range (0-10000 ms)", s.get_ref()))),
        }
    };
    let (stop_lead, stop_pace) = match &f.timing {
        None => (Micros::ZERO, Micros::ZERO),
        Some(t) => (ms(&t.stop_lead_ms, "stop_lead_ms")?, ms(&t.stop_pace_ms, "stop_pace_ms")?),
    };
    let on_disconnect = match &f.on_disconnect {
        None => DisconnectPolicy::Pause,
        Some(s) => match s.get_ref().as_str() {
            "pause" => DisconnectPolicy::Pause,
            "continue" => DisconnectPolicy::Continue,
            other => {
                return Err(
                    ctx.err(s.span(), format!("on_disconnect = \"{other}\": expected \"pause\" or \"continue\""))
                );
            }
        },
    };
    if let Some(o) = &f.output {
        check_default_output(&ctx, o)?;
    }
    let remote = match &f.remote {
        None => Vec::new(),
        Some(r) => parse_remote(&ctx, r.get_ref(), &divisions, &controls, cancel.as_deref())?,
    };
    let output = f.output.map(|o| o.into_inner());
    let name = f.name.get_ref().trim().to_string();
    if name.is_empty() {
        return Err(ctx.err(f.name.span(), "name must not be empty"));
    }
    Ok(Organ {
        name,
        source: source.to_string(),
        divisions,
        controls,
        presets,
        cancel,
        everything_in_at_start,
        cancel_at_end,
        stop_lead,
        stop_pace,
        output,
        on_disconnect,
        remote,
    })
}

/// `[remote]`: each key's message as written (the note and cc forms also give the release the
/// console sends when the piston is let go). A remote message is only ever read from the
/// console, never sent; it may not be something the console sends for another reason — a key
/// of a division (a note played, or echoed back from what organ plays, must never drive the
/// service), a channel-mode message (organ's own CC 123 echoed back), a division's expression
/// pedal, a stop's or coupler's message, the General Cancel, a stop bitmap, another remote key.
fn parse_remote(
    ctx: &Ctx,
    r: &RemoteFile,
    divisions: &[Division],
    controls: &[Control],
    cancel: Option<&[Message]>,
) -> Result<Vec<RemoteButton>, ConfigError> {
    let written = [(RemoteAction::Go, &r.go), (RemoteAction::Pause, &r.pause), (RemoteAction::Stop, &r.stop)];
    let written = written.into_iter().chain([(RemoteAction::Next, &r.next), (RemoteAction::Previous, &r.previous)]);
    let mut buttons: Vec<RemoteButton> = Vec::new();
    for (action, m) in written {
        let Some(m) = m else { continue };
        let key = action.key();
        let (form, press) = message(ctx, m, Role::On)?;
        let name = Spanned::new(m.span(), String::new());
        let release = off_messages(ctx, "", &name, &form, None).ok();
        let fail = |why: String| Err(ctx.err(m.span(), format!("[remote] {key}: {why}")));
        for msg in press.iter().chain(release.iter().flatten()) {
            let Message::Short(s) = msg else { continue };
            let b = s.as_bytes();
            if let Some((ch, k)) = s.as_note_on().or_else(|| s.as_note_off())
                && let Some(d) = divisions.iter().find(|d| d.channel == ch && (d.compass.0..=d.compass.1).contains(&k))
            {
                return fail(format!(
                    "{} is key {k} of the {} division (channel {}, compass {}-{}): playing that key, or the console \
                     echoing what organ plays, would drive the service; use a channel or note the keys do not use",
                    crate::midi::HexBytes(b),
                    d.name,
                    ch.user(),
                    d.compass.0,
                    d.compass.1
                ));
            }
            if b.len() == 3 && b[0] & 0xF0 == 0xB0 {
                if b[1] >= 120 {
                    return fail(format!(
                        "cc = {} is a channel-mode message (120-127; organ itself sends 123, all notes off, when it \
                         stops), which the console may echo back; use another controller",
                        b[1]
                    ));
                }
                if let Some(d) = divisions
                    .iter()
                    .find(|d| d.expression.is_some_and(|e| e.cc == b[1] && e.channel.wire() == b[0] & 0x0F))
                {
                    return fail(format!(
                        "cc = {} on channel {} is the {} division's expression pedal; use another controller",
                        b[1],
                        (b[0] & 0x0F) + 1,
                        d.name
                    ));
                }
            }
        }
        let form = console_form(&press);
        for c in controls {
            let same = console_form(&c.on) == form || console_form(&c.off) == form;
            if same {
                return fail(format!(
                    "it is \"{}\"'s message: drawing or putting in that control (or organ doing so) would drive \
                     the service; give the piston its own message",
                    c.name
                ));
            }
            if let ([Message::Sysex(ours)], [on]) = (press.as_slice(), c.on.as_slice())
                && let (Some(a), Some(b)) =
                    (super::decode::RolandDataSet::parse(ours), super::decode::RolandDataSet::parse(on.as_bytes()))
                && a.device == b.device
            {
                return fail(format!(
                    "a Roland data set on device {:02X}, which is read as the stop bitmap of \"{}\"; use another message",
                    a.device, c.name
                ));
            }
        }
        if cancel.is_some_and(|c| console_form(c) == form) {
            return fail(
                "it is the General Cancel's message ([cancel] message); give the piston its own message".into(),
            );
        }
        if let Some(other) = buttons.iter().find(|b| console_form(&b.press) == form) {
            return fail(format!("the same message as [remote] {}; give each its own message", other.action.key()));
        }
        buttons.push(RemoteButton { action, press, release });
    }
    Ok(buttons)
}

/// `[division.<name>]`: one letter code, a channel of its own, the compass.
fn parse_divisions(ctx: &Ctx, table: &Ordered<DivisionFile>) -> Result<Vec<Division>, ConfigError> {
    let mut divisions: Vec<Division> = Vec::new();
    for (key, d) in &table.0 {
        let code_str = d.code.get_ref().trim();
        let mut chars = code_str.chars();
        let code = match (chars.next(), chars.next()) {
            (Some(c), None) if c.is_ascii_alphabetic() => c.to_ascii_uppercase(),
            _ => {
                return Err(
                    ctx.err(d.code.span(), format!("code = \"{code_str}\": a division code is one letter, e.g. \"S\""))
                );
            }
        };
        if let Some(other) = divisions.iter().find(|o| o.code == code) {
            return Err(ctx.err(d.code.span(), format!("code \"{code}\" is already used by division {}", other.name)));
        }
        let channel = Channel::from_user(*d.channel.get_ref()).ok_or_else(|| {
            ctx.err(
                d.channel.span(),
                format!("channel = {} is out of range (MIDI channels are 1-16)", d.channel.get_ref()),
            )
        })?;
        if let Some(other) = divisions.iter().find(|o| o.channel == channel) {
            return Err(ctx.err(
                d.channel.span(),
                format!(
                    "channel {} is already used by division {}; each division needs its own channel",
                    channel.user(),
                    other.name
                ),
            ));
        }
        let compass = match &d.compass {
            None => (36, 96),
            Some(c) => match c.get_ref().as_slice() {
                &[lo, hi] if (0..=127).contains(&lo) && (0..=127).contains(&hi) && hi - lo >= 11 => {
                    (lo as u8, hi as u8)
                }
                _ => {
                    return Err(ctx.err(
                        c.span(),
                        "compass = [lowest, highest]: two MIDI keys 0-127, at least an octave apart (e.g. [36, 96])",
                    ));
                }
            },
        };
        let expression = d.expression.as_ref().map(|e| expression(ctx, e, channel)).transpose()?;
        divisions.push(Division {
            name: key.get_ref().clone(),
            code,
            channel,
            compass,
            grandorgue: d.grandorgue.clone(),
            expression,
        });
    }
    Ok(divisions)
}

/// `[[stop]]`, `[[coupler]]`, `[[tremulant]]`: names unique, divisions known, messages checked
/// and their `off` inferred where it can be.
fn parse_controls(ctx: &Ctx, f: &OrganFile, divisions: &[Division]) -> Result<Vec<Control>, ConfigError> {
    let division_index = |s: &Spanned<String>| -> Result<usize, ConfigError> {
        let n = normalize_name(s.get_ref());
        divisions.iter().position(|d| normalize_name(&d.name) == n).ok_or_else(|| {
            let names: Vec<&str> = divisions.iter().map(|d| d.name.as_str()).collect();
            let hint = did_you_mean(s.get_ref(), names.iter().copied());
            ctx.err(
                s.span(),
                format!(
                    "unknown division \"{}\"{}",
                    s.get_ref(),
                    if hint.is_empty() { format!("; the divisions are {}", names.join(", ")) } else { hint }
                ),
            )
        })
    };

    let mut controls: Vec<Control> = Vec::new();
    let mut names: HashSet<String> = HashSet::new();
    let mut add = |ctx: &Ctx, name: &Spanned<String>, control: Control| -> Result<(), ConfigError> {
        if name.get_ref().trim().is_empty() {
            return Err(ctx.err(name.span(), "empty name"));
        }
        if !names.insert(normalize_name(name.get_ref())) {
            return Err(ctx.err(
                name.span(),
                format!("\"{}\" is defined twice (names are compared ignoring case and spacing)", name.get_ref()),
            ));
        }
        controls.push(control);
        Ok(())
    };

    for s in &f.stop {
        let division = division_index(&s.division)?;
        let (form, on) = message(ctx, &s.on, Role::On)?;
        check_not_a_key(ctx, divisions, s.on.span(), &on)?;
        let off = off_messages(ctx, "stop", &s.name, &form, s.off.as_ref())?;
        check_not_a_key(ctx, divisions, s.off.as_ref().map_or(s.on.span(), |o| o.span()), &off)?;
        let voice = s.voice.as_ref().map(|v| super::voice::check(ctx, v)).transpose()?;
        add(
            ctx,
            &s.name,
            Control {
                name: s.name.get_ref().trim().to_string(),
                kind: ControlKind::Stop,
                division: Some(division),
                on,
                off,
                toggle: false,
                action: None,
                grandorgue: s.grandorgue.clone(),
                voice,
            },
        )?;
    }
    for c in &f.coupler {
        let from = division_index(&c.from)?;
        let to = division_index(&c.to)?;
        let (form, on) = message(ctx, &c.on, Role::On)?;
        check_not_a_key(ctx, divisions, c.on.span(), &on)?;
        let off = off_messages(ctx, "coupler", &c.name, &form, c.off.as_ref())?;
        check_not_a_key(ctx, divisions, c.off.as_ref().map_or(c.on.span(), |o| o.span()), &off)?;
        let action = coupler_action(ctx, c, from == to)?;
        add(
            ctx,
            &c.name,
            Control {
                name: c.name.get_ref().trim().to_string(),
                kind: ControlKind::Coupler { from, to },
                division: Some(to),
                on,
                off,
                toggle: false,
                action: Some(action),
                grandorgue: c.grandorgue.clone(),
                voice: None,
            },
        )?;
    }
    for t in &f.tremulant {
        let division = t.division.as_ref().map(&division_index).transpose()?;
        let (form, on) = message(ctx, &t.on, Role::On)?;
        check_not_a_key(ctx, divisions, t.on.span(), &on)?;
        let off = off_messages(ctx, "tremulant", &t.name, &form, t.off.as_ref())?;
        check_not_a_key(ctx, divisions, t.off.as_ref().map_or(t.on.span(), |o| o.span()), &off)?;
        add(
            ctx,
            &t.name,
            Control {
                name: t.name.get_ref().trim().to_string(),
                kind: ControlKind::Tremulant,
                division,
                on,
                off,
                toggle: false,
                action: None,
                grandorgue: t.grandorgue.clone(),
                voice: None,
            },
        )?;
    }

    Ok(controls)
}

/// `[preset]`: named lists of controls.
fn parse_presets(
    ctx: &Ctx,
    table: Option<&Ordered<Vec<Spanned<String>>>>,
    controls: &[Control],
) -> Result<Vec<Preset>, ConfigError> {
    let find = |s: &Spanned<String>| -> Result<usize, ConfigError> {
        let n = normalize_name(s.get_ref());
        controls.iter().position(|c| normalize_name(&c.name) == n).ok_or_else(|| {
            ctx.err(
                s.span(),
                format!(
                    "unknown stop, coupler or tremulant \"{}\"{}",
                    s.get_ref(),
                    did_you_mean(s.get_ref(), controls.iter().map(|c| c.name.as_str()))
                ),
            )
        })
    };
    let mut presets: Vec<Preset> = Vec::new();
    for (name, list) in table.map(|p| p.0.as_slice()).unwrap_or_default() {
        if presets.iter().any(|p| normalize_name(&p.name) == normalize_name(name.get_ref())) {
            return Err(ctx.err(name.span(), format!("preset \"{}\" is defined twice", name.get_ref())));
        }
        let mut ids = Vec::new();
        for s in list {
            let id = find(s)?;
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        presets.push(Preset { name: name.get_ref().clone(), controls: ids });
    }
    Ok(presets)
}

/// What a coupler does: its `action`, else what its name says. A unison-off acts on its own
/// division, so it needs `from` = `to`.
fn coupler_action(ctx: &Ctx, c: &CouplerFile, same_division: bool) -> Result<CouplerAction, ConfigError> {
    let action = match &c.action {
        None => CouplerAction::from_name(c.name.get_ref()),
        Some(a) => CouplerAction::parse(a.get_ref()).ok_or_else(|| {
            ctx.err(
                a.span(),
                format!("action = \"{}\": write \"unison\", \"octave\", \"sub-octave\" or \"unison-off\"", a.get_ref()),
            )
        })?,
    };
    if action == CouplerAction::UnisonOff && !same_division {
        let at = c.action.as_ref().map_or(c.name.span(), |a| a.span());
        return Err(ctx.err(
            at,
            format!(
                "coupler \"{}\" is a unison off, which acts on its own division: give it the same `from` and `to` \
                 (or `action = \"unison\"` if it is not one)",
                c.name.get_ref()
            ),
        ));
    }
    Ok(action)
}

/// A message sequence in the form the console tells apart: a note-on of velocity 0 is a
/// note-off, and a note-off's velocity does not matter. A note-on's velocity does matter: a
/// console whose stop messages are note-ons that differ only in velocity (127 draws, 1 puts in)
/// reads the velocity, as GrandOrgue's `Note` binding with low and high values does.
fn exact_form(msgs: &[Message]) -> Vec<Vec<u8>> {
    msgs.iter()
        .map(|m| match m.as_bytes() {
            [s, k, 0] if s & 0xF0 == 0x90 => vec![0x80 | (s & 0x0F), *k, 0],
            [s, k, _] if s & 0xF0 == 0x80 => vec![*s, *k, 0],
            b => b.to_vec(),
        })
        .collect()
}

/// A message sequence as two controls could be confused on the console: a note-on's velocity
/// does not count (a console may read any note-on of a key as that key's), and a note-on of
/// velocity 0 is a note-off.
fn console_form(msgs: &[Message]) -> Vec<Vec<u8>> {
    msgs.iter()
        .map(|m| match m.as_bytes() {
            [s, k, v] if s & 0xF0 == 0x90 && *v > 0 => vec![*s, *k, 1],
            [s, k, _] if s & 0xF0 == 0x90 || s & 0xF0 == 0x80 => vec![0x80 | (s & 0x0F), *k, 0],
            b => b.to_vec(),
        })
        .collect()
}

/// Marks the toggles (the very same message draws and puts in) and refuses two controls that share a
/// message (drawing one would move the other on the console; a toggle would flip it) or a
/// control that sends the General Cancel. Two state controls may share their `off` (some
/// consoles put a group of stops in with one message). The error is at the later message.
fn distinct_messages(
    ctx: &Ctx,
    controls: &mut [Control],
    (stops, couplers, tremulants): (&[StopFile], &[CouplerFile], &[TremulantFile]),
    cancel: Option<&[Message]>,
) -> Result<(), ConfigError> {
    // Where each control's on and off are written: the controls are the stops, couplers and
    // tremulants in file order.
    let spans = stops.iter().map(|s| (&s.on, s.off.as_ref()));
    let spans = spans.chain(couplers.iter().map(|c| (&c.on, c.off.as_ref())));
    let spans: Vec<_> = spans.chain(tremulants.iter().map(|t| (&t.on, t.off.as_ref()))).collect();
    // A toggle sends the very same message to draw and to put in; one whose on and off differ
    // (in a note-on's velocity too) tells the console which it is.
    for c in controls.iter_mut() {
        c.toggle = exact_form(&c.on) == exact_form(&c.off);
    }
    // (form, control, is an off of a state control)
    let mut seen: std::collections::HashMap<Vec<Vec<u8>>, (usize, bool)> = std::collections::HashMap::new();
    let what = |c: &Control| match c.kind {
        ControlKind::Stop => "stop",
        ControlKind::Coupler { .. } => "coupler",
        ControlKind::Tremulant => "tremulant",
    };
    for (i, c) in controls.iter().enumerate() {
        let (on_span, off_span) = spans[i];
        let messages: &[(&[Message], bool, std::ops::Range<usize>)] =
            &[(&c.on, false, on_span.span()), (&c.off, !c.toggle, off_span.map_or(on_span.span(), |o| o.span()))];
        for (msgs, state_off, span) in messages.iter().take(if c.toggle { 1 } else { 2 }) {
            let form = console_form(msgs);
            if let Some(cancel) = cancel
                && console_form(cancel) == form
            {
                return Err(ctx.err(
                    span.clone(),
                    format!(
                        "{} \"{}\" sends the General Cancel's message ([cancel] message); give it its own message",
                        what(c),
                        c.name
                    ),
                ));
            }
            match seen.get(&form) {
                Some(&(j, other_off)) if j != i && !(other_off && *state_off) => {
                    let other = &controls[j];
                    return Err(ctx.err(
                        span.clone(),
                        format!(
                            "{} \"{}\" sends the same message as {} \"{}\": on the console one would move the other; \
                             give each its own message",
                            what(c),
                            c.name,
                            what(other),
                            other.name
                        ),
                    ));
                }
                Some(_) => {}
                None => {
                    seen.insert(form, (i, *state_off));
                }
            }
        }
    }
    Ok(())
}

/// A division's expression controller. Controllers that GrandOrgue and MIDI give another meaning
/// are refused: bank select (0, 32), data entry and parameter numbers (6, 38, 98-101) and the
/// channel-mode messages (120-127, e.g. 123 all notes off).
fn expression(ctx: &Ctx, e: &Spanned<ExpressionFile>, division_channel: Channel) -> Result<Expression, ConfigError> {
    let f = e.get_ref();
    let cc = match f.cc {
        0 | 32 | 6 | 38 | 98..=101 => {
            return Err(ctx.err(
                e.span(),
                format!(
                    "expression cc = {}: that controller selects banks or parameters; use e.g. cc = 11 (Expression)",
                    f.cc
                ),
            ));
        }
        cc @ 1..=119 => cc as u8,
        cc => return Err(ctx.err(e.span(), format!("expression cc = {cc} is out of range (1-119; 11 is Expression)"))),
    };
    let channel = match f.channel {
        None => division_channel,
        Some(c) => Channel::from_user(c)
            .ok_or_else(|| ctx.err(e.span(), format!("channel = {c} is out of range (MIDI channels are 1-16)")))?,
    };
    Ok(Expression { cc, channel })
}

/// A default output named in a file (an organ definition, an order of service) may not be a
/// `file:` record: a file someone else wrote must not choose which file on this computer `organ`
/// replaces. A record is asked for on the command line (`--to file:PATH`) only.
pub(crate) fn check_default_output(ctx: &Ctx, spec: &Spanned<String>) -> Result<(), ConfigError> {
    let kind = spec.get_ref().trim().split(':').next().unwrap_or_default();
    if kind.trim().eq_ignore_ascii_case("file") {
        return Err(ctx.err(
            spec.span(),
            format!(
                "output = \"{}\": a file record is only made when asked for on the command line (--to file:PATH), \
                 so that no organ definition or order of service can choose a file to overwrite; remove it",
                spec.get_ref()
            ),
        ));
    }
    Ok(())
}

/// No message the organ definition sends (a control's on or off, the cancel; in any form,
/// `raw` included) may be a note-on or note-off on a division's channel within its compass: it
/// would strike (or cut) a key of that division, and a stop, a cancel or `organ panic` must never
/// sound a note.
fn check_not_a_key(
    ctx: &Ctx,
    divisions: &[Division],
    span: std::ops::Range<usize>,
    msgs: &[Message],
) -> Result<(), ConfigError> {
    for m in msgs {
        let Message::Short(s) = m else { continue };
        let Some((ch, key)) = s.as_note_on().or_else(|| s.as_note_off()) else { continue };
        if let Some(d) = divisions.iter().find(|d| d.channel == ch && (d.compass.0..=d.compass.1).contains(&key)) {
            let what = if s.as_note_on().is_some() { "a note-on" } else { "a note-off" };
            return Err(ctx.err(
                span,
                format!(
                    "{} is {what} for key {key} on channel {}, a key of the {} division (compass {}-{}): a stop or \
                     cancel message must not play or release the keys; use a channel or note the keys do not use",
                    crate::midi::HexBytes(s.as_bytes()),
                    ch.user(),
                    d.name,
                    d.compass.0,
                    d.compass.1
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::*;

    const MIN: &str = r#"
name = "Test"
[division.swell]
code = "S"
channel = 1
[division.great]
code = "G"
channel = 2
[division.pedal]
code = "P"
channel = 3
compass = [36, 67]
[[stop]]
name = "Sw Open Diapason 8"
division = "swell"
on = { note = 36, channel = 16 }
[[stop]]
name = "Gt Principal 4"
division = "great"
on = { cc = 20, value = 127, channel = 16 }
[[coupler]]
name = "Sw to Ped"
from = "swell"
to = "pedal"
on = { program = 5, channel = 16 }
off = { program = 6, channel = 16 }
[preset]
mf = ["Sw Open Diapason 8", "Gt Principal 4", "Sw to Ped"]
[cancel]
message = { sysex = "F0 00 4A 4F 48 41 53 7F F7" }
[timing]
stop_lead_ms = 0
stop_pace_ms = 0
"#;

    fn err(text: &str) -> String {
        Organ::from_toml(text, "t.toml").unwrap_err().to_string()
    }

    #[test]
    fn the_issue_example_loads() {
        let o = Organ::from_toml(MIN, "t.toml").unwrap();
        assert_eq!(o.divisions.len(), 3);
        assert_eq!(o.divisions[2].compass, (36, 67));
        assert_eq!(o.divisions[1].compass, (36, 96));
        assert_eq!(o.divisions[0].code, 'S');
        let sw = &o.controls[o.control("sw  open DIAPASON 8").unwrap()];
        assert_eq!(sw.on[0].as_bytes(), &[0x9F, 36, 127]);
        assert_eq!(sw.off[0].as_bytes(), &[0x8F, 36, 0]);
        let gt = &o.controls[1];
        assert_eq!(gt.off[0].as_bytes(), &[0xBF, 20, 0]);
        assert_eq!(o.controls[2].kind, ControlKind::Coupler { from: 0, to: 2 });
        assert_eq!(o.preset("MF").unwrap().controls, vec![0, 1, 2]);
        assert_eq!(o.cancel_messages()[0].as_bytes(), &[0xF0, 0x00, 0x4A, 0x4F, 0x48, 0x41, 0x53, 0x7F, 0xF7]);
    }

    #[test]
    fn channel_out_of_range_names_line_and_column() {
        let e = err(&MIN.replace("code = \"G\"\nchannel = 2", "code = \"G\"\nchannel = 17"));
        assert!(e.starts_with("t.toml:8:11: channel = 17 is out of range"), "{e}");
        let e = err(&MIN.replace("on = { note = 36, channel = 16 }", "on = { note = 36, channel = 0 }"));
        assert!(e.contains("channel = 0 is out of range"), "{e}");
    }

    #[test]
    fn data_byte_over_127() {
        let e = err(&MIN.replace("cc = 20, value = 127", "cc = 20, value = 128"));
        assert!(e.contains("value = 128 is out of range (0-127)"), "{e}");
        let e = err(&MIN.replace("F0 00 4A 4F 48 41 53 7F F7", "F0 00 80 F7"));
        assert!(e.contains("above 7F"), "{e}");
    }

    #[test]
    fn unknown_stop_in_preset_suggests() {
        let e = err(&MIN.replace("mf = [\"Sw Open Diapason 8\"", "mf = [\"Sw Open Diapson 8\""));
        assert!(
            e.contains(
                "unknown stop, coupler or tremulant \"Sw Open Diapson 8\"; did you mean \"Sw Open Diapason 8\"?"
            ),
            "{e}"
        );
        assert!(e.starts_with("t.toml:28:7:"), "{e}");
    }

    #[test]
    fn program_change_needs_off() {
        let e = err(&MIN.replace("off = { program = 6, channel = 16 }\n", ""));
        assert!(e.contains("needs an `off` message"), "{e}");
    }

    #[test]
    fn broken_toml_and_unknown_keys() {
        let e = err("name = \"x\"\n[division.swell\ncode = \"S\"");
        assert!(e.starts_with("t.toml:2:"), "{e}");
        let e = err(&MIN.replace("code = \"S\"\nchannel = 1", "code = \"S\"\nchanel = 1"));
        assert!(e.contains("unknown field `chanel`"), "{e}");
    }

    #[test]
    fn duplicates_and_collisions() {
        let e = err(&MIN.replace("name = \"Gt Principal 4\"", "name = \"SW OPEN diapason  8\""));
        assert!(e.contains("defined twice"), "{e}");
        let e = err(&MIN.replace("code = \"G\"\nchannel = 2", "code = \"G\"\nchannel = 1"));
        assert!(e.contains("already used by division swell"), "{e}");
        let e = err(&MIN.replace("on = { note = 36, channel = 16 }", "on = { note = 40, channel = 1 }"));
        assert!(e.contains("90 28 7F is a note-on for key 40 on channel 1, a key of the swell division"), "{e}");
    }

    /// The TOML reader says only "duplicate key": the error names the key and what to do.
    #[test]
    fn a_duplicate_key_is_named_with_the_fix() {
        let e = err(&MIN.replace("stop_pace_ms = 0", "stop_pace_ms = 0\nstop_lead_ms = 5"));
        assert!(e.contains("duplicate key `stop_lead_ms`") && e.contains("remove one"), "{e}");
        let e = err(&MIN.replace("[timing]\n", "[timing]\n[timing]\n"));
        assert!(e.contains("[timing]") && e.contains("twice") && e.contains("one table"), "{e}");
        let e = err(&MIN.replace("[preset]\n", "[preset]\n\"mf\" = []\n"));
        assert!(e.contains("duplicate key `mf`"), "{e}");
    }

    /// Every form, in every place the organ sends from, is checked for keys of a division.
    #[test]
    fn no_message_may_strike_a_key() {
        let on = "on = { note = 36, channel = 16 }";
        let cases = [
            (on.replace("note = 36, channel = 16", "note = 60, channel = 2"), "t.toml:16:6:", "91 3C 7F"),
            (on.replace("{ note = 36, channel = 16 }", "{ raw = \"90 3C 7F\" }"), "t.toml:16:6:", "90 3C 7F"),
            // A key among other messages; the running form "9F 24 7F 90 3C 01".
            (on.replace("{ note = 36, channel = 16 }", "{ raw = \"9F 24 7F 91 30 01\" }"), "t.toml:16:6:", "91 30 01"),
            (format!("{on}\noff = {{ raw = \"90 40 7F\" }}"), "t.toml:17:7:", "90 40 7F"),
            // An off in the note form is a note-off: on a key it would still cut the key.
            (format!("{on}\noff = {{ note = 50, channel = 3 }}"), "t.toml:17:7:", "82 32 00"),
            (format!("{on}\noff = {{ raw = \"92 32 00\" }}"), "t.toml:17:7:", "92 32 00"),
        ];
        for (replacement, at, bytes) in cases {
            let e = err(&MIN.replacen(on, &replacement, 1));
            assert!(e.starts_with(at) && e.contains(&format!("{bytes} is a note-")), "{replacement}: {e}");
        }
        let cancel = "message = { sysex = \"F0 00 4A 4F 48 41 53 7F F7\" }";
        for form in ["{ note = 40, channel = 1 }", "{ raw = \"F0 7F F7 90 28 01\" }"] {
            let e = err(&MIN.replace(cancel, &format!("message = {form}")));
            assert!(e.starts_with("t.toml:30:11:") && e.contains("key 40 on channel 1"), "{form}: {e}");
        }
        // Outside the compass, or on another channel, a note is a stop message like any other.
        let ok = MIN.replacen(on, "on = { raw = \"91 10 7F\" }\noff = { note = 16, channel = 2 }", 1);
        let o = Organ::from_toml(&ok, "t.toml").unwrap();
        assert_eq!(o.controls[0].off[0].as_bytes(), &[0x81, 16, 0], "an off in the note form is a note-off");
        let e = err(&MIN.replacen(on, &format!("{on}\noff = {{ note = 36, channel = 16, velocity = 5 }}"), 1));
        assert!(e.contains("an `off` note is sent as a note-off"), "{e}");
    }

    #[test]
    fn a_default_output_may_not_be_a_file() {
        let e = err(&MIN.replace("name = \"Test\"", "name = \"Test\"\noutput = \" FILE:/home/me/.bashrc\""));
        assert!(e.starts_with("t.toml:3:10: output = \" FILE:/home/me/.bashrc\": a file record is only made"), "{e}");
        let o = Organ::from_toml(&MIN.replace("name = \"Test\"", "name = \"Test\"\noutput = \"port:WIDI\""), "t.toml");
        assert_eq!(o.unwrap().output.as_deref(), Some("port:WIDI"));
    }

    #[test]
    fn toggles_and_shared_messages() {
        let toggles = MIN
            .replace(
                "on = { note = 36, channel = 16 }",
                "on = { program = 1, channel = 12 }\noff = { program = 1, channel = 12 }",
            )
            .replace("[cancel]\nmessage = { sysex = \"F0 00 4A 4F 48 41 53 7F F7\" }", "[cancel]");
        let o = Organ::from_toml(&toggles, "t.toml").unwrap();
        assert!(o.controls[0].toggle && !o.controls[1].toggle && !o.controls[2].toggle);
        assert!(!o.start_is_known(), "a toggle and no General Cancel");
        // Without a General Cancel, the safe cancel leaves the toggle alone.
        let cancel: Vec<Vec<u8>> = o.cancel_messages().iter().map(|m| m.as_bytes().to_vec()).collect();
        assert_eq!(cancel, [vec![0xBF, 20, 0], vec![0xCF, 6]]);
        let vouched = toggles.replace("[cancel]", "[cancel]\neverything_in_at_start = true");
        assert!(Organ::from_toml(&vouched, "t.toml").unwrap().start_is_known());

        // The same message for two controls, wherever it is written.
        let e = err(&MIN
            .replace("on = { cc = 20, value = 127, channel = 16 }", "on = { note = 36, channel = 16, velocity = 90 }"));
        assert!(
            e.starts_with("t.toml:20:6: stop \"Gt Principal 4\" sends the same message as stop \"Sw Open Diapason 8\""),
            "{e}"
        );
        let e =
            err(&MIN.replace("off = { program = 6, channel = 16 }", "off = { cc = 20, value = 127, channel = 16 }"));
        assert!(e.contains("coupler \"Sw to Ped\" sends the same message as stop \"Gt Principal 4\""), "{e}");
        let e = err(&toggles.replace("on = { program = 5, channel = 16 }", "on = { program = 1, channel = 12 }"));
        assert!(e.contains("coupler \"Sw to Ped\" sends the same message as stop \"Sw Open Diapason 8\""), "{e}");
        let e =
            err(&MIN.replace("on = { program = 5, channel = 16 }", "on = { sysex = \"F0 00 4A 4F 48 41 53 7F F7\" }"));
        assert!(e.contains("sends the General Cancel's message"), "{e}");
        // Two state controls may share their off.
        let shared_off =
            MIN.replace("off = { program = 6, channel = 16 }", "off = { cc = 20, value = 0, channel = 16 }");
        assert!(Organ::from_toml(&shared_off, "t.toml").is_ok());
    }

    #[test]
    fn note_ons_that_differ_only_in_velocity_are_an_on_and_an_off_not_a_toggle() {
        // Some consoles send a stop's note-on at velocity 127 when drawn and at 1 when put in:
        // the console reads the velocity, so it is a state control (GrandOrgue's `Note`, low 1
        // high 127), and no General Cancel is needed to know where it stands.
        let velocity = MIN
            .replace(
                "on = { note = 36, channel = 16 }",
                "on = { note = 36, channel = 16 }\noff = { raw = \"9F 24 01\" }",
            )
            .replace("[cancel]\nmessage = { sysex = \"F0 00 4A 4F 48 41 53 7F F7\" }", "[cancel]");
        let o = Organ::from_toml(&velocity, "t.toml").unwrap();
        assert!(!o.controls[0].toggle);
        assert!(o.start_is_known(), "no toggle: the offs put everything in");
        let cancel: Vec<Vec<u8>> = o.cancel_messages().iter().map(|m| m.as_bytes().to_vec()).collect();
        assert_eq!(cancel[0], vec![0x9F, 36, 1], "its off is part of the cancel");
        // The very same note-on both times is a toggle, written as a note or in bytes.
        let toggle = velocity.replace("off = { raw = \"9F 24 01\" }", "off = { raw = \"9F 24 7F\" }");
        assert!(Organ::from_toml(&toggle, "t.toml").unwrap().controls[0].toggle);
        // Another control on the same key at another velocity may still be confused with it.
        let e = err(&velocity
            .replace("on = { cc = 20, value = 127, channel = 16 }", "on = { note = 36, channel = 16, velocity = 64 }"));
        assert!(e.contains("sends the same message as stop \"Sw Open Diapason 8\""), "{e}");
    }

    #[test]
    fn what_a_coupler_does() {
        use crate::organ::CouplerAction as A;
        for (name, action) in [
            ("Sw to Gt", A::Unison),
            ("Sw Octave", A::Octave),
            ("Swell Super", A::Octave),
            ("Sw to Gt 4", A::Octave),
            ("Sw Sub Octave", A::SubOctave),
            ("Sw Suboctave to Gt", A::SubOctave),
            ("Sw Unison Off", A::UnisonOff),
            ("Great Unison off", A::UnisonOff),
        ] {
            assert_eq!(A::from_name(name), action, "{name}");
        }
        let o = Organ::from_toml(MIN, "t.toml").unwrap();
        assert_eq!(o.controls[2].action, Some(A::Unison));
        let octave = MIN.replace("to = \"pedal\"\n", "to = \"pedal\"\naction = \"octave\"\n");
        assert_eq!(Organ::from_toml(&octave, "t.toml").unwrap().controls[2].action, Some(A::Octave));
        let e = err(&MIN.replace("to = \"pedal\"\n", "to = \"pedal\"\naction = \"4 foot\"\n"));
        assert!(e.starts_with("t.toml:25:10: action = \"4 foot\": write \"unison\""), "{e}");
        let e = err(&MIN.replace("name = \"Sw to Ped\"", "name = \"Sw Unison Off\""));
        assert!(e.contains("is a unison off, which acts on its own division"), "{e}");
    }

    #[test]
    fn expression_controller() {
        let o = Organ::from_toml(
            &MIN.replace("code = \"S\"\nchannel = 1", "code = \"S\"\nchannel = 1\nexpression = { cc = 11 }"),
            "t.toml",
        )
        .unwrap();
        assert_eq!(o.divisions[0].expression, Some(Expression { cc: 11, channel: Channel::from_user(1).unwrap() }));
        assert_eq!(o.divisions[1].expression, None);
        let o = Organ::from_toml(
            &MIN.replace(
                "code = \"S\"\nchannel = 1",
                "code = \"S\"\nchannel = 1\nexpression = { cc = 7, channel = 16 }",
            ),
            "t.toml",
        )
        .unwrap();
        assert_eq!(o.divisions[0].expression.unwrap().channel.user(), 16);
        let e = err(&MIN.replace("code = \"S\"\nchannel = 1", "code = \"S\"\nchannel = 1\nexpression = { cc = 123 }"));
        assert!(e.starts_with("t.toml:6:14: expression cc = 123 is out of range"), "{e}");
        let e = err(&MIN.replace("code = \"S\"\nchannel = 1", "code = \"S\"\nchannel = 1\nexpression = { cc = 99 }"));
        assert!(e.contains("selects banks or parameters"), "{e}");
    }

    #[test]
    fn remote_pistons_and_their_errors() {
        use crate::organ::RemoteAction as R;
        let with = |remote: &str| format!("{MIN}[remote]\n{remote}\n");
        let o = Organ::from_toml(
            &with("go = { note = 10, channel = 15 }\nstop = { program = 9, channel = 15 }\nnext = { cc = 64, channel = 14 }"),
            "t.toml",
        )
        .unwrap();
        let go = o.remote_button(R::Go).unwrap();
        assert_eq!(go.press[0].as_bytes(), &[0x9E, 10, 127]);
        assert_eq!(go.release.as_ref().unwrap()[0].as_bytes(), &[0x8E, 10, 0], "a note's release is inferred");
        assert_eq!(o.remote_button(R::Stop).unwrap().release, None, "a program change has none");
        assert_eq!(o.remote_button(R::Next).unwrap().release.as_ref().unwrap()[0].as_bytes(), &[0xBD, 64, 0]);
        assert!(o.remote_button(R::Pause).is_none());
        assert!(Organ::from_toml(MIN, "t.toml").unwrap().remote.is_empty());

        // Line 35 is the first line under [remote].
        let cases = [
            // A key of a division: playing it (or the console echoing organ) would drive the service.
            ("go = { note = 60, channel = 2 }", "t.toml:35:6: [remote] go: 91 3C 7F is key 60 of the great division"),
            ("pause = { raw = \"F0 7D F7 80 28 00\" }", "t.toml:35:9: [remote] pause: 80 28 00 is key 40 of the swell"),
            (
                "stop = { cc = 123, value = 0, channel = 1 }",
                "t.toml:35:8: [remote] stop: cc = 123 is a channel-mode message",
            ),
            ("go = { note = 36, channel = 16 }", "t.toml:35:6: [remote] go: it is \"Sw Open Diapason 8\"'s message"),
            ("go = { program = 6, channel = 16 }", "[remote] go: it is \"Sw to Ped\"'s message"),
            ("go = { sysex = \"F0 00 4A 4F 48 41 53 7F F7\" }", "[remote] go: it is the General Cancel's message"),
            (
                "go = { note = 10, channel = 15 }\nnext = { note = 10, channel = 15, velocity = 1 }",
                "t.toml:36:8: [remote] next: the same message as [remote] go",
            ),
            ("go = { note = 10 }", "t.toml:35:6: the note message needs a channel (1-16)"),
            ("goo = { note = 10, channel = 15 }", "t.toml:35:1: unknown field `goo`, expected one of `go`, `pause`"),
        ];
        for (remote, want) in cases {
            let e = err(&with(remote));
            assert!(e.contains(want), "{remote}:\n{e}\nwanted: {want}");
        }
        let expr = with("pause = { cc = 11, value = 127, channel = 1 }")
            .replace("code = \"S\"\nchannel = 1", "code = \"S\"\nchannel = 1\nexpression = { cc = 11 }");
        assert!(err(&expr).contains("[remote] pause: cc = 11 on channel 1 is the swell division's expression pedal"));
        // Notes outside every compass, or on another channel, are fine.
        assert!(Organ::from_toml(&with("go = { note = 10, channel = 1 }"), "t.toml").is_ok());
    }

    #[test]
    fn message_forms() {
        let o = Organ::from_toml(
            &MIN.replace("on = { cc = 20, value = 127, channel = 16 }", "on = { nrpn = 300, value = 1, channel = 16 }"),
            "t.toml",
        )
        .unwrap();
        let b: Vec<Vec<u8>> = o.controls[1].on.iter().map(|m| m.as_bytes().to_vec()).collect();
        assert_eq!(b, vec![vec![0xBF, 99, 2], vec![0xBF, 98, 44], vec![0xBF, 6, 1]]);
        assert_eq!(o.controls[1].off[2].as_bytes(), &[0xBF, 6, 0]);
        let e = err(&MIN.replace("on = { note = 36, channel = 16 }", "on = { note = 36, cc = 3, channel = 16 }"));
        assert!(e.contains("one form, not note and cc"), "{e}");
        let e = err(&MIN.replace("on = { note = 36, channel = 16 }", "on = { raw = \"B0 14\" }"));
        assert!(e.contains("needs 2 data byte"), "{e}");
    }
}
