//! The built-in voice's real-time path allocates nothing: once the synth is built for a plan,
//! decoding every message of the shipped piece (with a registration that changes, a full organ
//! and the final cancel) and rendering it, as `--to audio`'s callback does, never touches the
//! allocator. Its own test binary, for the counting allocator (tests/support/counting_alloc.rs).

#[path = "support/counting_alloc.rs"]
mod counting_alloc;

use counting_alloc::Counter;
use organ::organ::Organ;
use organ::plan::{PlanOptions, plan};
use organ::registration::Registration;
use organ::voice::console::Action;
use organ::voice::{ConsoleEvent, Decoder, MsgKey, OrganSound, synth_for};

#[test]
fn decoding_and_rendering_allocate_nothing() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let organ = Organ::load(&root.join("organs/st-marys.toml")).unwrap();
    let score = organ::score::load_file(&root.join("scores/bwv643.mid")).unwrap();
    let reg = Registration::load(&root.join("scores/bwv643.toml"), &organ).unwrap();
    for stops in [vec![], vec!["full".to_string()]] {
        let opts = PlanOptions { stops, ..PlanOptions::default() };
        let t = plan(&score, &organ, Some(&reg), &opts).unwrap();
        let mut synth = synth_for(&t, 48_000);
        let mut decoder = Decoder::new(&OrganSound::of_timeline(&t));
        let mut buf = vec![0f32; 256];
        let mut heard = 0.0f32;
        let counter = Counter::start();
        let mut now = 0u64;
        for e in &t.events {
            // Render up to the message in audio buffers, as the callback does.
            while now + 256 * 1_000_000 / 48_000 <= e.t.0 {
                synth.render(&mut buf);
                heard = heard.max(buf.iter().fold(0.0, |m, v| m.max(v.abs())));
                now += 256 * 1_000_000 / 48_000;
            }
            decoder.feed(MsgKey::of(t.bytes(&e.msg)), |c| synth.apply(c));
        }
        for _ in 0..200 {
            synth.render(&mut buf);
        }
        assert_eq!(counter.stop(), 0, "allocations on the audio path");
        assert!(heard > 0.05, "it played: peak {heard}");
        assert!(synth.is_silent(), "everything died away after the end");
    }
}

/// A message several stops share (a group's off, here an NRPN: a sequence) moves them all
/// without allocating: the decoder's groups are built with it.
#[test]
fn a_shared_off_is_decoded_without_allocating() {
    let organ = Organ::from_toml(
        r#"
name = "Groups"
[division.great]
code = "G"
channel = 2
[[stop]]
name = "A"
division = "great"
on = { nrpn = 400, value = 1, channel = 16 }
[[stop]]
name = "B"
division = "great"
on = { nrpn = 401, value = 1, channel = 16 }
off = { nrpn = 400, value = 0, channel = 16 }
[[stop]]
name = "C"
division = "great"
on = { nrpn = 402, value = 1, channel = 16 }
off = { nrpn = 400, value = 0, channel = 16 }
"#,
        "groups.toml",
    )
    .unwrap();
    let mut decoder = Decoder::new(&OrganSound::of_organ(&organ));
    let keys: Vec<MsgKey> = organ.controls[0].off.iter().map(|m| MsgKey::of(m.as_bytes())).collect();
    let mut events = [None; 8];
    let mut n = 0;
    let counter = Counter::start();
    for &k in &keys {
        decoder.feed(k, |e| {
            events[n] = Some(e);
            n += 1;
        });
    }
    assert_eq!(counter.stop(), 0, "allocations decoding a shared off");
    let off = |id| Some(ConsoleEvent::Control { id, action: Action::Off });
    assert_eq!(events[..n], [off(0), off(1), off(2)], "all three stops put in");
}
