//! Command-line interface (clap derive), part of the binary. The doc comments here are the
//! `--help` text. Each command's flags are mapped onto the library's plain argument structs
//! (`organ::inputs::PlanArgs`, `organ::play::PlayArgs`, …), so nothing below the binary knows
//! clap.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Play MIDI scores on a pipe organ: the right manuals, stops and couplers, exactly on time.
///
/// Scores are MIDI files with one track per staff, e.g. SSGGP: Swell right hand, Swell left hand,
/// Great right hand, Great left hand, Pedal (as exported by MuseScore). The organ is described by
/// a TOML file (organs/<name>.toml) that says which MIDI channel each keyboard listens on and
/// which message draws each stop. A registration file beside the score (bwv643.toml next to
/// bwv643.mid) says which stops are drawn and when.
#[derive(Debug, Parser)]
#[command(name = "organ", version, propagate_version = true, max_term_width = 100)]
#[command(after_help = "Examples:\n  \
    organ info scores/bwv643.mid\n  \
    organ check scores/bwv643.mid --organ st-marys\n  \
    organ plan scores/bwv643.mid --organ st-marys --from 5 --until 8\n  \
    organ plan scores/bwv643.mid --organ st-marys --format jsonl > plan.jsonl\n  \
    organ play scores/bwv643.mid --to file:played.mid\n  \
    organ play scores/bwv643.mid --organ st-marys --to port:\"WIDI Bud Pro\"")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show the exact plan: every message that would be sent, when, and why.
    Plan(PlanCmd),
    /// Check a score, organ and registration together (or every item of an order of service,
    /// ORDER.toml); print warnings: notes on a division where no stop sounds, registration
    /// changes under held keys, changes after the end or without effect, notes folded into the
    /// compass, a breath too short for a verse's registration. Exit 0 when it can be played (1
    /// with --deny-warnings and a warning).
    Check(CheckCmd),
    /// Describe a MIDI file: parts, tempo and time signatures, length, a suggested layout.
    Info(InfoCmd),
    /// Play a score on the organ (or GrandOrgue, or into a file), in real time.
    ///
    /// While playing on a terminal: space pauses and resumes, q or Esc stops (every key is
    /// released and the stops are cancelled), + and - change the tempo in 5% steps, Enter goes
    /// on from a fermata that waits (--fermata wait), Ctrl-Z suspends (keys released, stops
    /// drawn off; fg goes on). Ctrl-C, any signal that ends a process and closing the terminal
    /// release every key too (a second Ctrl-C skips the cancel's pacing); exit status 130 after
    /// Ctrl-C, 129 when the terminal goes, 128 + N after signal N.
    Play(PlayCmd),
    /// List the MIDI ports: outputs (for --to port:NAME or port:NUMBER), inputs (for --from),
    /// and, when a JACK server runs, the JACK MIDI ports of other programs.
    Ports,
    /// Show what the console sends: one line per message (time, bytes, and what it means on the
    /// organ given with --organ); a summary of unknown messages at the end. Ctrl-C ends it.
    Monitor(MonitorCmd),
    /// Learn the console's messages into an organ file: asks for each division's lowest and
    /// highest key, and for each stop, coupler and tremulant to be drawn and put in, then the
    /// General Cancel; writes what it learned, keeping the file's comments.
    ///
    /// Prompts are one line each on stdout (`draw: Gt Principal 4`, `put in: …`, `press lowest
    /// key: great`, `press: General Cancel`); after acting at the console, just wait (a quiet
    /// window ends each action). Type r (ask again), s (skip), u (back to the previous one) or q
    /// (stop) and Enter at any time. With --verify, draws each learned control through an output
    /// and asks whether it moved.
    Learn(LearnCmd),
    /// Record what the console plays: keys per division and stops by name, into a MIDI file
    /// (one track per division) and a registration file that `organ play` plays back exactly.
    ///
    /// Records until Ctrl-C, then writes the take. While recording, every message goes to a
    /// journal in the folder (synced at least every second): if organ, the laptop or the power
    /// dies, the next `organ record` (or `organ play --record`) in that folder makes the takes
    /// from it. A take starts at its first note; with --split, each silence (every key up for
    /// --silence) starts a new one, and stops drawn in a silence belong to the next take.
    Record(RecordCmd),
    /// Silence the organ: note-off for every key of every division, all-notes-off, cancel.
    Panic(PanicCmd),
    /// Bluetooth LE MIDI devices (e.g. a CME WIDI Jack at the organ).
    #[command(subcommand)]
    Ble(BleCmd),
    /// Rehearse with GrandOrgue: write its settings from an organ definition (or an organ
    /// definition from a GrandOrgue organ), keep a port open.
    #[command(name = "grandorgue", subcommand_required = true)]
    Grandorgue(GrandorgueCmd),
    /// Play for a service: a full-screen view of an order of service (scores/services/NAME.toml).
    ///
    /// Keys: Enter or space starts the selected item, or goes on from a fermata or the end of a
    /// verse; s or Esc stops now (every key released, stops cancelled); p pauses at the end of
    /// the current verse; Up/Down choose the item; + and - change the tempo in 5% steps (live);
    /// [ and ] transpose the next item; r cycles the registration preset of the next verse (of
    /// the selected item when nothing plays); o reopens a lost output; q quits (asks first when
    /// something is playing); Ctrl-Z suspends, every key released. Exit status 0 after q, 130
    /// after Ctrl-C, 129 when the terminal goes, 128 + N after signal N.
    Service(ServiceCmd),
    /// Before a service: measure the timing of an output and say whether it is fit.
    ///
    /// Runs the engine silently for a few seconds (its lateness on this machine), computes the
    /// burst the organ gets at the start of a piece (the cancel, the fullest preset, a full
    /// chord) on a 5-pin MIDI cable (320 µs a byte), and probes the output itself: for a MIDI
    /// port how long each send call takes under that burst; for JACK where each message lands
    /// (frames) and the period latency; for Bluetooth LE MIDI the packet size, the write times of
    /// a timestamped burst and the connection interval. Then one line: fit for a service, or not
    /// and what to change.
    ///
    /// It never sounds a note: it sends only note-offs (8n kk 00) on the organ's keyboard
    /// channels for keys that are not down, which strike nothing; never a note-on or a stop
    /// message. A file output is not opened. Exit status 0 when fit, 1 when not.
    Selftest(SelftestCmd),
}

/// How to read the score and what to play of it: shared by plan, check and play.
#[derive(Debug, Args, Clone)]
pub struct PlanArgs {
    /// The MIDI file (.mid) to play.
    pub score: PathBuf,

    /// Organ definition: a name found as organs/NAME.toml (current directory, then
    /// ~/.config/organ/organs, then built in), or a path to a .toml file. Defaults to the
    /// registration file's `organ = "…"`.
    #[arg(long, short = 'o', value_name = "NAME|FILE")]
    pub organ: Option<String>,

    /// Registration file. By default SCORE with .toml instead of .mid, when it exists.
    #[arg(long, short = 'r', value_name = "FILE", conflicts_with = "no_registration")]
    pub registration: Option<PathBuf>,

    /// Ignore the registration file beside the score (play with --stops only).
    #[arg(long)]
    pub no_registration: bool,

    /// Which division plays each part, one letter per part in order (division codes from the
    /// organ file; - leaves a part out). Default: the registration file's layout, else SSGGP.
    #[arg(long, short = 'l', value_name = "LETTERS", allow_hyphen_values = true)]
    pub layout: Option<String>,

    /// Override single parts: 1-based part numbers as `organ info` prints them, e.g.
    /// --map 1=swell,2=swell,5=pedal (division name or code; `none` leaves a part out).
    #[arg(long, value_name = "PART=DIVISION,...")]
    pub map: Option<String>,

    /// Play at a percentage of the written tempo, e.g. --tempo 80% (tempo changes keep their
    /// proportions).
    #[arg(long, value_name = "PERCENT", conflicts_with = "bpm")]
    pub tempo: Option<String>,

    /// Play with the opening tempo at this many quarter notes per minute (later tempo changes
    /// keep their proportions).
    #[arg(long, value_name = "BPM")]
    pub bpm: Option<f64>,

    /// Transpose by semitones, e.g. --transpose -2 (notes outside a keyboard are folded by
    /// octaves into it).
    #[arg(long, short = 't', value_name = "SEMITONES", allow_negative_numbers = true, default_value_t = 0)]
    pub transpose: i32,

    /// Start at this bar (or bar:beat, or seconds like 12.5s). The registration in force there is
    /// drawn first. Inside a hymn, name the section: verse:3 (verse 3 from its start), verse:3:5
    /// (verse 3 from bar 5), verse:3:5:2, play-over, amen; the verses after it follow as usual.
    /// A plain bar plays those bars of the score once, without the hymn's settings.
    #[arg(long, value_name = "BAR")]
    pub from: Option<String>,

    /// Stop at the end of this bar (or at bar:beat, or seconds); inside a hymn, at the end of a
    /// section or of a bar of it: verse:2, verse:2:8, play-over, amen.
    #[arg(long, value_name = "BAR")]
    pub until: Option<String>,

    /// Stops, couplers or presets drawn at the start, on top of the registration, e.g.
    /// --stops "Gt Principal 4,Sw to Ped".
    #[arg(long, value_name = "NAMES", value_delimiter = ',')]
    pub stops: Vec<String>,

    /// Leave the stops drawn at the end instead of cancelling them.
    #[arg(long)]
    pub keep_stops: bool,

    #[command(flatten)]
    pub hymn: HymnArgs,
}

// --- hymn options (plan, check, play) -----------------------------------------------------------

/// Playing a one-verse score as a hymn. Each flag overrides the same key of the registration
/// file's [hymn] section; with any of them (or a [hymn] section) the score is unrolled into
/// play-over, verses and amen.
#[derive(Debug, Args, Clone, Default)]
#[command(next_help_heading = "Hymn options")]
pub struct HymnArgs {
    /// How many verses to play, e.g. --verses 4.
    #[arg(long, value_name = "N")]
    pub verses: Option<u16>,

    /// Bars given out before verse 1, e.g. --play-over 13-16 (or "all", or "none").
    #[arg(long, value_name = "BARS")]
    pub play_over: Option<String>,

    /// Silence between the play-over, the verses and the amen: beats (2beats, "2 beats") or
    /// seconds (1.5s); default one beat; 0 for none. A verse's own registration is drawn in it.
    #[arg(long, value_name = "LENGTH")]
    pub gap: Option<String>,

    /// An amen after the last verse: bars at the end of the score (17-18), a MIDI file
    /// (amen.mid), or "none".
    #[arg(long, value_name = "BARS|FILE")]
    pub amen: Option<String>,

    /// Fermatas, as bar:beat positions in the score, e.g. --fermatas 4:3,8:3.
    #[arg(long, value_name = "BAR:BEAT,...", value_delimiter = ',')]
    pub fermatas: Vec<String>,

    /// What a fermata does: hold it longer (1beat, 2s) or wait for the operator (wait).
    #[arg(long, value_name = "LENGTH|wait")]
    pub fermata: Option<String>,

    /// A verse's own registration: VERSE=PRESET, e.g. --verse-preset 3=p,4=f (0 is the
    /// play-over).
    #[arg(long, value_name = "N=PRESET,...", value_delimiter = ',')]
    pub verse_preset: Vec<String>,

    /// Play the score once as written, ignoring the registration file's [hymn] section.
    #[arg(long, conflicts_with_all = ["verses", "play_over", "gap", "amen", "fermatas", "fermata", "verse_preset"])]
    pub no_hymn: bool,
}

impl From<&HymnArgs> for organ::registration::HymnArgs {
    fn from(h: &HymnArgs) -> Self {
        organ::registration::HymnArgs {
            verses: h.verses,
            play_over: h.play_over.clone(),
            gap: h.gap.clone(),
            amen: h.amen.clone(),
            fermatas: h.fermatas.clone(),
            fermata: h.fermata.clone(),
            verse_preset: h.verse_preset.clone(),
            no_hymn: h.no_hymn,
        }
    }
}

impl From<&PlanArgs> for organ::inputs::PlanArgs {
    fn from(a: &PlanArgs) -> Self {
        organ::inputs::PlanArgs {
            score: a.score.clone(),
            organ: a.organ.clone(),
            registration: a.registration.clone(),
            no_registration: a.no_registration,
            layout: a.layout.clone(),
            map: a.map.clone(),
            tempo: a.tempo.clone(),
            bpm: a.bpm,
            transpose: a.transpose,
            from: a.from.clone(),
            until: a.until.clone(),
            stops: a.stops.clone(),
            keep_stops: a.keep_stops,
            hymn: (&a.hymn).into(),
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum PlanFormat {
    /// An aligned table for reading.
    Text,
    /// One JSON object per message (t_us, bytes, kind, division, name, part, bar, beat, tick).
    Jsonl,
    /// A picture (SVG): one lane of notes per division, a band of the stops drawn, bars, time,
    /// and markers for verses, fermatas, wait points and warnings.
    Svg,
    /// The same picture in one self-contained HTML page.
    Html,
}

impl From<PlanFormat> for organ::app::PlanFormat {
    fn from(f: PlanFormat) -> Self {
        match f {
            PlanFormat::Text => organ::app::PlanFormat::Text,
            PlanFormat::Jsonl => organ::app::PlanFormat::Jsonl,
            PlanFormat::Svg => organ::app::PlanFormat::Svg,
            PlanFormat::Html => organ::app::PlanFormat::Html,
        }
    }
}

#[derive(Debug, Args)]
pub struct PlanCmd {
    #[command(flatten)]
    pub plan: PlanArgs,

    /// Output format.
    #[arg(long, short = 'f', value_enum, default_value_t = PlanFormat::Text)]
    pub format: PlanFormat,
}

#[derive(Debug, Args)]
pub struct CheckCmd {
    #[command(flatten)]
    pub plan: PlanArgs,

    /// Exit with status 1 when there are warnings.
    #[arg(long)]
    pub deny_warnings: bool,
}

#[derive(Debug, Args)]
pub struct InfoCmd {
    /// The MIDI file.
    pub score: PathBuf,

    /// Organ to suggest a layout for (default: the registration file's, else st-marys).
    #[arg(long, short = 'o', value_name = "NAME|FILE")]
    pub organ: Option<String>,
}

#[derive(Debug, Args)]
pub struct PlayCmd {
    #[command(flatten)]
    pub plan: PlanArgs,

    /// Where to play; may be given several times (e.g. the organ and a file record of what was
    /// sent). port:NAME is a MIDI port by name (case-insensitive part of it) or number, see
    /// `organ ports`; file:PATH.mid records what was sent with the real send times; grandorgue
    /// creates a MIDI port for GrandOrgue; wav:PATH.wav renders the piece with the built-in organ
    /// voice into a WAV file, offline and much faster than real time; audio plays the built-in
    /// organ voice on the sound device (audio:jack through a running JACK server); null sends
    /// nowhere. Default: the organ file's `output = "…"`.
    #[arg(long, value_name = "OUTPUT")]
    pub to: Vec<String>,

    /// Print a timing report at the end (lateness percentiles, messages dropped).
    #[arg(long)]
    pub stats: bool,

    /// Print nothing but errors (no status line, no summary).
    #[arg(long, short = 'q')]
    pub quiet: bool,

    /// Also record what the console sends while playing (an organist joining in), as a take of
    /// its own named after the score: port:NAME, port:N or jack[:PORT] (as for organ record).
    #[arg(long, value_name = "SOURCE")]
    pub record: Option<String>,

    /// With --record: the folder for the take (default: the current folder).
    #[arg(long, value_name = "DIR", requires = "record")]
    pub record_out: Option<PathBuf>,
}

impl From<&PlayCmd> for organ::play::PlayArgs {
    fn from(c: &PlayCmd) -> Self {
        organ::play::PlayArgs {
            plan: (&c.plan).into(),
            to: c.to.clone(),
            stats: c.stats,
            quiet: c.quiet,
            record: c.record.clone(),
            record_out: c.record_out.clone(),
        }
    }
}

#[derive(Debug, Args)]
pub struct PanicCmd {
    /// Where to send it (as for play); default: the organ file's `output`.
    #[arg(long, value_name = "OUTPUT")]
    pub to: Vec<String>,

    /// The organ, for its division channels and cancel; without it every channel is cleared.
    #[arg(long, short = 'o', value_name = "NAME|FILE")]
    pub organ: Option<String>,
}

// --- organ ble ----------------------------------------------------------------------------------

#[derive(Debug, Subcommand)]
pub enum BleCmd {
    /// List the Bluetooth LE MIDI devices in range: name, address, signal strength. Play to one
    /// with --to ble:NAME (a part of its name) or --to ble:ADDRESS.
    Scan(BleScanCmd),
}

#[derive(Debug, Args)]
pub struct BleScanCmd {
    /// How long to scan, in seconds.
    #[arg(long, short = 's', value_name = "N", default_value_t = 5.0)]
    pub seconds: f64,
}

// --- organ grandorgue … -----------------------------------------------------------------------
// (kept in one block so that it merges easily with other commands)

/// `organ grandorgue …`: rehearse at home against GrandOrgue.
#[derive(Debug, Args)]
pub struct GrandorgueCmd {
    #[command(subcommand)]
    pub command: GrandorgueCommand,
}

#[derive(Debug, Subcommand)]
pub enum GrandorgueCommand {
    /// Write GrandOrgue's settings file (.cmb) for a GrandOrgue organ so that its manuals,
    /// stops, couplers and tremulants follow exactly the MIDI messages of an organ definition.
    ///
    /// Manuals are matched to divisions and stops to stops by name (case, spacing and foot marks
    /// ignored; a leading division abbreviation such as "Sw", "Gt" or "Ped" dropped); add
    /// `grandorgue = "…"` to a division, stop, coupler or tremulant in the organ definition where
    /// the names differ. A stop that GrandOrgue computes from a switch (Function=And …) is bound
    /// through that switch; a division's `expression` controller drives its manual's enclosure.
    /// Everything that could not be matched is reported.
    Config(GrandorgueConfigCmd),
    /// Write an organ definition (TOML) for a GrandOrgue organ.
    ///
    /// A division per manual (channels 1, 2, …), every speaking stop, coupler and tremulant with
    /// a note of its own on channel 16 (note-on draws, note-off puts in), the generals as
    /// commented-out presets. Then `organ grandorgue config` binds all of it in GrandOrgue.
    Organ(GrandorgueOrganCmd),
    /// Keep a MIDI port open for GrandOrgue until Ctrl-C: GrandOrgue only sees MIDI sources that
    /// exist when it starts, so start this, then GrandOrgue, then play with --to grandorgue.
    Port(GrandorguePortCmd),
}

#[derive(Debug, Args)]
pub struct GrandorgueConfigCmd {
    /// Organ definition: a name (organs/NAME.toml, ~/.config/organ/organs, built in) or a path.
    #[arg(long, short = 'o', value_name = "NAME|FILE")]
    pub organ: String,

    /// The GrandOrgue organ definition file (.organ), or an organ package (.orgue;
    /// PACKAGE.orgue:NAME.organ for a package with several organs).
    #[arg(long, value_name = "FILE.organ|FILE.orgue")]
    pub odf: PathBuf,

    /// Where to write the settings. Default: beside the .organ file with the extension .cmb,
    /// where GrandOrgue looks when it loads the organ without settings of its own (for a package,
    /// GrandOrgue reads settings only through File > Import Settings).
    #[arg(long, value_name = "FILE.cmb")]
    pub out: Option<PathBuf>,

    /// Overwrite an existing .cmb that `organ` did not write.
    #[arg(long)]
    pub force: bool,
}

impl From<&GrandorgueConfigCmd> for organ::app::GrandorgueConfigArgs {
    fn from(c: &GrandorgueConfigCmd) -> Self {
        organ::app::GrandorgueConfigArgs {
            organ: c.organ.clone(),
            odf: c.odf.clone(),
            out: c.out.clone(),
            force: c.force,
        }
    }
}

#[derive(Debug, Args)]
pub struct GrandorgueOrganCmd {
    /// The GrandOrgue organ definition file (.organ), or an organ package (.orgue).
    #[arg(long, value_name = "FILE.organ|FILE.orgue")]
    pub odf: PathBuf,

    /// Where to write the organ definition (e.g. organs/my-organ.toml). Default: standard output.
    #[arg(long, value_name = "FILE.toml")]
    pub out: Option<PathBuf>,

    /// Replace an existing --out file.
    #[arg(long)]
    pub force: bool,
}

impl From<&GrandorgueOrganCmd> for organ::app::GrandorgueOrganArgs {
    fn from(c: &GrandorgueOrganCmd) -> Self {
        organ::app::GrandorgueOrganArgs { odf: c.odf.clone(), out: c.out.clone(), force: c.force }
    }
}

#[derive(Debug, Args)]
pub struct GrandorguePortCmd {
    /// Where to open the port: `jack` (an output port organ:out on the running JACK server) or
    /// `auto` (JACK when a server runs, otherwise a virtual MIDI port where the platform has one).
    #[arg(long, default_value = "auto", value_name = "auto|jack")]
    pub via: String,
}

// --- organ service ------------------------------------------------------------------------------

#[derive(Debug, Args)]
pub struct ServiceCmd {
    /// The order of service (TOML), e.g. scores/services/sunday.toml.
    pub file: PathBuf,

    /// Where to play (as for play); may be given several times. Default: the order of service's
    /// `output = "…"`, else the organ's.
    #[arg(long, value_name = "OUTPUT")]
    pub to: Vec<String>,

    /// The organ, overriding the order of service's `organ = "…"`.
    #[arg(long, short = 'o', value_name = "NAME|FILE")]
    pub organ: Option<String>,

    /// Also serve a remote for phones: a web page with the order of service, start/continue,
    /// pause at the end of the verse, tempo, hold-to-stop and panic. Alone, on this computer
    /// only (127.0.0.1:8080); `lan` (or `lan:PORT`) on every network the laptop is on; or
    /// `IP:PORT`, `PORT`. Shows the address, a PIN and a QR code; a phone logs in with the PIN
    /// once. Without a terminal, organ serves the phones alone until Ctrl-C or SIGTERM.
    #[arg(long, value_name = "ADDRESS", num_args = 0..=1, default_missing_value = "")]
    pub remote: Option<String>,

    /// Also take the console's pistons as a remote: the organ's [remote] table maps spare
    /// pistons or a foot switch to go on, pause at the end of the verse, stop (pressed twice
    /// within 2 s), next and previous item (items on several organ definitions must agree on
    /// that table: one console). The console's MIDI source: port:NAME, port:N or
    /// jack[:PORT] (as for monitor). Without a terminal, the pistons (and phones) drive the
    /// service alone, each action and state logged on stdout.
    #[arg(long, value_name = "SOURCE")]
    pub from: Option<String>,
}

impl From<&ServiceCmd> for organ::service::ServiceArgs {
    fn from(c: &ServiceCmd) -> Self {
        organ::service::ServiceArgs {
            file: c.file.clone(),
            to: c.to.clone(),
            organ: c.organ.clone(),
            remote: c.remote.clone(),
            from: c.from.clone(),
        }
    }
}

// --- organ monitor, organ learn ------------------------------------------------------------------

#[derive(Debug, Args)]
pub struct MonitorCmd {
    /// The console's MIDI source: port:NAME or port:N (see `organ ports`), or jack[:PORT] (a
    /// JACK MIDI input organ-in:in, connected to the JACK MIDI output PORT).
    #[arg(long, value_name = "SOURCE")]
    pub from: String,

    /// Name each message through this organ definition (NAME or FILE).
    #[arg(long, short = 'o', value_name = "NAME|FILE")]
    pub organ: Option<String>,

    /// Stop after this many seconds, 0.1 to 86400 (default: at Ctrl-C).
    #[arg(long, value_name = "N")]
    pub seconds: Option<f64>,
}

#[derive(Debug, Args)]
pub struct LearnCmd {
    /// The organ file to write (a path). Created when --divisions and --stops are given.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub organ: PathBuf,

    /// The console's MIDI source: port:NAME, port:N or jack[:PORT] (as for monitor).
    #[arg(long, value_name = "SOURCE", required_unless_present = "verify")]
    pub from: Option<String>,

    /// Learn everything again, not only what the file does not have yet (divisions without a
    /// channel, controls without `on`, the General Cancel when there is no [cancel] table).
    #[arg(long, conflicts_with = "only")]
    pub all: bool,

    /// Learn (or verify) only these: division, stop, coupler or tremulant names, or "General
    /// Cancel", comma-separated. "remote" learns the spare pistons that drive organ service
    /// ([remote]: go, pause, stop, next, previous; one of them: "remote go" …); they are learned
    /// only when asked for.
    #[arg(long, value_name = "NAMES", value_delimiter = ',')]
    pub only: Vec<String>,

    /// For a new organ file: its divisions, e.g. --divisions great,swell,pedal.
    #[arg(long, value_name = "NAMES", value_delimiter = ',')]
    pub divisions: Vec<String>,

    /// For a new organ file: its stops, couplers and tremulants, e.g. --stops "Gt Principal
    /// 8,swell:Gedackt 8,Sw to Gt,Sw Tremulant" (a first word such as Gt or Sw, or DIVISION:,
    /// says the division; "A to B" is a coupler; a name with "trem" a tremulant).
    #[arg(long, value_name = "NAMES", value_delimiter = ',')]
    pub stops: Vec<String>,

    /// For a new organ file: the organ's name (default: the file's name).
    #[arg(long, value_name = "TEXT")]
    pub name: Option<String>,

    /// The quiet window that ends an action at the console: 1s, 500ms.
    #[arg(long, value_name = "TIME", default_value = "1s", value_parser = parse_time)]
    pub quiet: std::time::Duration,

    /// How long to wait for the console after a prompt before skipping the item.
    #[arg(long, value_name = "TIME", default_value = "60s", value_parser = parse_time)]
    pub wait: std::time::Duration,

    /// Instead of learning: draw each learned control through an output (one change at least
    /// every 250 ms, or the organ's stop_pace_ms if longer), ask y/n, and mark what was rejected
    /// in the organ file. Only control messages and the cancel are sent.
    #[arg(long, conflicts_with_all = ["all", "divisions", "stops", "from"])]
    pub verify: bool,

    /// With --verify: where to send (as for play); default: the organ file's `output`.
    #[arg(long, value_name = "OUTPUT")]
    pub to: Vec<String>,

    /// With --verify: a slower pace than the safe minimum, in milliseconds.
    #[arg(long, value_name = "MS")]
    pub pace_ms: Option<u64>,
}

// --- organ record ---------------------------------------------------------------------------------

#[derive(Debug, Args)]
pub struct RecordCmd {
    /// The console's MIDI source: port:NAME or port:N (see `organ ports`), or jack[:PORT] (a
    /// JACK MIDI input organ-in:in, connected to the JACK MIDI output PORT).
    #[arg(long, value_name = "SOURCE")]
    pub from: String,

    /// The organ definition the console is read through (NAME or FILE): keys by division,
    /// stops, couplers and tremulants by name.
    #[arg(long, short = 'o', value_name = "NAME|FILE")]
    pub organ: String,

    /// The folder for the takes (created if needed). Unfinished recordings found there are
    /// made into takes first.
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub out: PathBuf,

    /// Cut the recording into takes at silences, e.g. one per piece of a service.
    #[arg(long)]
    pub split: bool,

    /// With --split: how long every key must be up to end a take (default 5s).
    #[arg(long, value_name = "TIME", value_parser = parse_time, requires = "split")]
    pub silence: Option<std::time::Duration>,

    /// The tempo played at, in quarter notes a minute: the MIDI file gets it, and the
    /// registration file gives positions in bars instead of seconds.
    #[arg(long, value_name = "BPM")]
    pub bpm: Option<f64>,

    /// With --bpm: the time signature, e.g. 3/4 (default 4/4).
    #[arg(long, value_name = "N/D", requires = "bpm")]
    pub meter: Option<String>,

    /// No status line (the files written are still reported).
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

/// `1s`, `1.5s`, `500ms`, or plain seconds.
fn parse_time(s: &str) -> Result<std::time::Duration, String> {
    let t = s.trim();
    let (num, scale) = match t.strip_suffix("ms") {
        Some(n) => (n, 0.001),
        None => (t.strip_suffix('s').unwrap_or(t), 1.0),
    };
    match num.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 && v * scale <= 3600.0 => Ok(std::time::Duration::from_secs_f64(v * scale)),
        _ => Err(format!("{s:?}: write a time such as 1s, 1.5s or 300ms")),
    }
}

// --- organ selftest -----------------------------------------------------------------------------

#[derive(Debug, Args)]
pub struct SelftestCmd {
    /// The output to test (as for play); may be given several times. Default: the organ file's
    /// `output = "…"`.
    #[arg(long, value_name = "OUTPUT")]
    pub to: Vec<String>,

    /// The organ: its keyboard channels, stop messages and timing make the burst. Default: the
    /// built-in st-marys.
    #[arg(long, short = 'o', value_name = "NAME|FILE")]
    pub organ: Option<String>,

    /// How long the engine's silent run lasts, in seconds (0.5 to 60).
    #[arg(long, value_name = "N", default_value_t = 3.0)]
    pub seconds: f64,
}

impl From<&SelftestCmd> for organ::selftest::SelftestArgs {
    fn from(c: &SelftestCmd) -> Self {
        organ::selftest::SelftestArgs { to: c.to.clone(), organ: c.organ.clone(), seconds: c.seconds }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_layout_may_start_with_a_dash() {
        // `-` leaves a part out; the first part (a LilyPond chord-name track) often is.
        let cli = Cli::try_parse_from(["organ", "plan", "hymn.mid", "--layout", "-GP"]).unwrap();
        let Command::Plan(p) = cli.command else { panic!("plan") };
        assert_eq!(p.plan.layout.as_deref(), Some("-GP"));
        let cli = Cli::try_parse_from(["organ", "check", "hymn.mid", "-l", "--P", "--organ", "st-marys"]).unwrap();
        let Command::Check(c) = cli.command else { panic!("check") };
        assert_eq!((c.plan.layout.as_deref(), c.plan.organ.as_deref()), (Some("--P"), Some("st-marys")));
    }

    #[test]
    fn learn_options() {
        let cli =
            Cli::try_parse_from(["organ", "learn", "--organ", "a.toml", "--from", "jack", "--quiet", "300ms"]).unwrap();
        let Command::Learn(l) = cli.command else { panic!("learn") };
        assert_eq!(l.quiet, std::time::Duration::from_millis(300));
        assert_eq!(l.wait, std::time::Duration::from_secs(60));
        assert!(Cli::try_parse_from(["organ", "learn", "--organ", "a.toml"]).is_err(), "--from is needed to learn");
        assert!(Cli::try_parse_from(["organ", "learn", "--organ", "a.toml", "--verify", "--to", "null"]).is_ok());
        assert!(parse_time("0s").is_err() && parse_time("abc").is_err());
        assert_eq!(parse_time("1.5").unwrap(), std::time::Duration::from_millis(1500));
    }
}
