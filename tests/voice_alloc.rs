//! The built-in voice's real-time path allocates nothing: once the synth is built for a plan,
//! decoding every message of the shipped piece (with a registration that changes, a full organ
//! and the final cancel) and rendering it, as `--to audio`'s callback does, never touches the
//! allocator. Its own test binary, for its counting allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

use organ::organ::Organ;
use organ::plan::{PlanOptions, plan};
use organ::registration::Registration;
use organ::voice::{Decoder, MsgKey, OrganSound, synth_for};

struct Counting;

thread_local! {
    static ARMED: Cell<bool> = const { Cell::new(false) };
}
static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if ARMED.with(Cell::get) {
            ALLOCATIONS.fetch_add(1, Ordering::SeqCst);
        }
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if ARMED.with(Cell::get) {
            ALLOCATIONS.fetch_add(1, Ordering::SeqCst);
        }
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if ARMED.with(Cell::get) {
            ALLOCATIONS.fetch_add(1, Ordering::SeqCst);
        }
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

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
        ARMED.with(|a| a.set(true));
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
        ARMED.with(|a| a.set(false));
        assert_eq!(ALLOCATIONS.load(Ordering::SeqCst), 0, "allocations on the audio path");
        assert!(heard > 0.05, "it played: peak {heard}");
        assert!(synth.is_silent(), "everything died away after the end");
    }
}
