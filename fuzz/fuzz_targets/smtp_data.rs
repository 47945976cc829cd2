//! The DATA decoder gives the same result however the bytes are split across reads, never
//! keeps a bare CR or LF, never goes past its size limit, and never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use relayward_smtp::DataDecoder;

const LIMIT: usize = 4096;

fuzz_target!(|input: (u8, &[u8])| {
    let (split, data) = input;
    let mut whole = DataDecoder::new(LIMIT);
    let end_whole = whole.feed(data);

    let mut parts = DataDecoder::new(LIMIT);
    let step = usize::from(split.max(1));
    let mut used = 0;
    let mut end_parts = None;
    for chunk in data.chunks(step) {
        if let Some(n) = parts.feed(chunk) {
            end_parts = Some(used + n);
            break;
        }
        used += chunk.len();
    }
    assert_eq!(end_whole, end_parts, "end of data depends on how reads were split");
    assert_eq!(whole.overflowed(), parts.overflowed());
    let a = whole.into_body();
    let b = parts.into_body();
    assert_eq!(a, b);
    assert!(a.len() <= LIMIT);
    if end_whole.is_some() {
        for (i, &c) in a.iter().enumerate() {
            if c == b'\n' {
                assert!(i > 0 && a[i - 1] == b'\r', "bare LF kept");
            }
            if c == b'\r' {
                assert_eq!(a.get(i + 1), Some(&b'\n'), "bare CR kept");
            }
        }
    }
});
