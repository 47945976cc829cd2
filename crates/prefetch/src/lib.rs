//! Asking the processor to start loading memory before the code reads it.
//!
//! With a million tenants, what one message looks up (its sender's domain and address in the
//! directory, its tenant's counters in the guard) is rarely in any cache, and each first read
//! waits a few hundred nanoseconds for memory. Asking for all of those lines at once, as soon
//! as their addresses are known, lets the waits overlap instead of following one another.

/// Starts loading the cache line holding `p`. A hint: it never faults and changes nothing the
/// program can observe, whatever the address.
#[cfg(target_arch = "x86_64")]
#[inline]
#[allow(unsafe_code)]
pub fn line<T>(p: *const T) {
    use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
    // SAFETY: a prefetch never faults and has no effect the program can observe; callers pass
    // addresses inside live values, but nothing would go wrong with any other.
    unsafe { _mm_prefetch::<_MM_HINT_T0>(p.cast::<i8>()) }
}

#[cfg(not(target_arch = "x86_64"))]
#[inline]
pub fn line<T>(_p: *const T) {}

/// Starts loading every cache line of `value` (nothing else: no pointer inside it is followed).
#[inline]
pub fn value<T>(value: &T) {
    let start = (value as *const T).cast::<u8>();
    let len = std::mem::size_of::<T>();
    let mut offset = 0;
    while offset < len {
        line(start.wrapping_add(offset));
        offset += 64;
    }
    if len > 0 {
        // The last byte's line, when `value` does not start on a line's boundary.
        line(start.wrapping_add(len - 1));
    }
}
