//! Daemon datagrams the console receives on UDP: any bytes are accepted or refused without panicking,
//! and an accepted document, sent again with the canonical header, is accepted again the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xray_console::datagram;

fuzz_target!(|data: &[u8]| {
    let Ok(received) = datagram::parse(data) else { return };
    assert_eq!(received.text.trim(), received.text);
    let again = format!("{{\"format\": \"json\", \"version\": 1}}\n{}", received.text);
    let second = datagram::parse(again.as_bytes()).expect("an accepted document is accepted again");
    assert_eq!(second.text, received.text);
    assert_eq!(second.document.id, received.document.id);
});
