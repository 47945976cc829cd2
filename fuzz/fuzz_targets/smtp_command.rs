//! Any command line gets a request or a well-formed 5xx reply; never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|line: &[u8]| {
    if let Err(reply) = relayward_smtp::parse_command(line) {
        assert!((500..600).contains(&reply.code), "{reply}");
        let mut wire = Vec::new();
        reply.write_to(&mut wire);
        // A reply is one or more CRLF-terminated lines and never carries a stray CR or LF.
        assert!(wire.ends_with(b"\r\n"));
        let bare = wire.windows(2).filter(|w| w == b"\r\n").count();
        assert_eq!(bare, wire.iter().filter(|&&b| b == b'\n').count());
    }
});
