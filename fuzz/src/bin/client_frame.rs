//! The client-frame decoder as a gateway runs it on every WebSocket text frame: bytes
//! that are not UTF-8 are refused before it, and a frame that decodes must encode and
//! decode back to itself.

use parley_schemas::frames::ClientFrame;

fn main() {
    afl::fuzz!(|data: &[u8]| {
        let Ok(text) = std::str::from_utf8(data) else {
            return;
        };
        if let Ok(frame) = serde_json::from_str::<ClientFrame>(text) {
            let _ = frame.kind();
            let again = serde_json::to_string(&frame).expect("a decoded frame encodes");
            let back: ClientFrame = serde_json::from_str(&again).expect("and decodes back");
            assert_eq!(back, frame);
        }
    });
}
