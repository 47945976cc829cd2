//! Prefetching the guard's counters (see the `relayward-prefetch` crate): the ends of vectors
//! that sit on the heap, besides whole values.

pub(crate) use relayward_prefetch::value;

/// Starts loading the two ends of a vector kept on the heap: where the next element is added
/// and where the oldest leaves. Nothing for one held inline (it came with its owner).
#[inline]
pub(crate) fn ends<A: smallvec::Array>(v: &smallvec::SmallVec<A>) {
    if v.spilled() {
        let range = v.as_ptr_range();
        relayward_prefetch::line(range.start);
        relayward_prefetch::line(range.end);
    }
}
