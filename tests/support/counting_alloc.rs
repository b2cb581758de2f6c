//! A counting global allocator, to prove that a hot path allocates nothing: the one shared by
//! the engine's unit tests (src/engine/tests.rs, through `#[path]`) and `tests/voice_alloc.rs`.
//!
//! Not part of `support/mod.rs`: declaring this module installs the allocator in its test binary,
//! which only the binaries that count should do. It counts only on a thread between
//! [`Counter::start`] and [`Counter::stop`] (so tests running at the same time on other threads do not add to it), and
//! every allocation, free and reallocation counts.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

struct Counting;

thread_local! {
    static ARMED: Cell<bool> = const { Cell::new(false) };
    static COUNT: Cell<usize> = const { Cell::new(0) };
}

fn count() {
    if ARMED.with(Cell::get) {
        COUNT.with(|c| c.set(c.get() + 1));
    }
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count();
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Counting on this thread, from [`Counter::start`] to [`Counter::stop`].
#[must_use = "stop it to read the count"]
pub struct Counter(());

impl Counter {
    /// Counts from now on, on this thread.
    pub fn start() -> Counter {
        COUNT.with(|c| c.set(0));
        ARMED.with(|a| a.set(true));
        Counter(())
    }

    /// Stops counting; how many times this thread allocated, freed or reallocated since
    /// [`Counter::start`].
    pub fn stop(self) -> usize {
        ARMED.with(|a| a.set(false));
        COUNT.with(Cell::get)
    }
}

/// The allocator counts what it should: a `Vec` while counting, nothing after.
#[test]
fn counting_alloc_counts_allocations_and_frees() {
    let counter = Counter::start();
    drop(std::hint::black_box(vec![1u8; 10]));
    assert_eq!(counter.stop(), 2, "one allocation and one free");
    let counter = Counter::start();
    std::hint::black_box(1 + 1);
    assert_eq!(counter.stop(), 0);
    drop(std::hint::black_box(vec![1u8; 10]));
    assert_eq!(COUNT.with(Cell::get), 0, "nothing counted once stopped");
}
