//! Asking the processor to start loading memory before the code reads it.
//!
//! With a million tenants, a message's counters are rarely in any cache: its checks read two
//! kilobytes of them at a few dozen places, one after another, and each first read waits a few
//! hundred nanoseconds for memory. Asking for all of those lines at once, as soon as the tenant
//! is known, lets the waits overlap.

/// Starts loading every cache line of `value` (nothing else: no pointer inside it is followed).
#[inline]
pub(crate) fn value<T>(value: &T) {
    let start = (value as *const T).cast::<i8>();
    let len = std::mem::size_of::<T>();
    let mut offset = 0;
    while offset < len {
        line(start.wrapping_add(offset));
        offset += 64;
    }
}

/// Starts loading the two ends of a vector kept on the heap: where the next element is added
/// and where the oldest leaves. Nothing for one held inline (it came with its owner).
#[inline]
pub(crate) fn ends<A: smallvec::Array>(v: &smallvec::SmallVec<A>) {
    if v.spilled() {
        let range = v.as_ptr_range();
        line(range.start.cast());
        line(range.end.cast());
    }
}

#[cfg(target_arch = "x86_64")]
#[inline]
#[allow(unsafe_code)]
fn line(p: *const i8) {
    use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
    // SAFETY: a prefetch is a hint: it never faults and changes nothing the program can
    // observe, whatever the address; here it is always inside a live reference.
    unsafe { _mm_prefetch::<_MM_HINT_T0>(p) }
}

#[cfg(not(target_arch = "x86_64"))]
#[inline]
fn line(_p: *const i8) {}
