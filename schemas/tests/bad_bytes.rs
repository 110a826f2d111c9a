//! Bad bytes give an error, never a panic.

use parley_schemas::{decode, decode_any, encode, samples, AnyRecord, Error, MessagePosted};
use proptest::prelude::*;

#[test]
fn wrong_magic() {
    let mut b = encode(&samples::message_posted()).unwrap();
    b[0] = 0x00;
    assert!(matches!(decode_any(&b), Err(Error::BadMagic(0x00, 0x01))));
}

#[test]
fn unknown_fingerprint() {
    let mut b = encode(&samples::message_posted()).unwrap();
    b[5] ^= 0xff;
    let err = decode_any(&b).unwrap_err();
    assert!(matches!(err, Error::UnknownFingerprint(_)), "{err}");
}

#[test]
fn truncated_header_and_body() {
    let b = encode(&samples::message_posted()).unwrap();
    assert!(matches!(decode_any(&b[..5]), Err(Error::Truncated(5))));
    assert!(matches!(decode_any(&[]), Err(Error::Truncated(0))));
    // The sample ends with its optional reply_to (union index 1, then the long: 2
    // bytes). apache-avro reads a union at the very end of the input as null (for data
    // written before the field existed), so the cut just before it decodes, as the
    // record without a reply: never as the record that was written.
    let whole = decode_any(&b).unwrap();
    for cut in 10..b.len() {
        match decode_any(&b[..cut]) {
            Err(_) => {}
            Ok(AnyRecord::MessagePosted(m)) if cut == b.len() - 2 => {
                assert_eq!(m.reply_to, None);
                assert_ne!(AnyRecord::MessagePosted(m), whole);
            }
            Ok(r) => panic!("cut at {cut} decoded: {r:?}"),
        }
    }
}

#[test]
fn trailing_bytes() {
    let mut b = encode(&samples::message_posted()).unwrap();
    b.push(0);
    assert!(matches!(
        decode::<MessagePosted>(&b),
        Err(Error::TrailingBytes(1))
    ));
}

#[test]
fn a_huge_length_prefix_is_an_error() {
    let b = encode(&samples::message_posted()).unwrap();
    let mut evil = b[..10].to_vec();
    // A string length of about 2^62 where event_id's length belongs.
    evil.extend_from_slice(&[0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]);
    assert!(decode_any(&evil).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Random bodies behind a valid header, and random bit flips in valid records.
    #[test]
    fn garbage_never_panics(which in 0usize..11, body in prop::collection::vec(any::<u8>(), 0..200)) {
        let sample = &samples::one_of_each()[which];
        let mut b = sample.encode().unwrap()[..10].to_vec();
        b.extend_from_slice(&body);
        let _ = decode_any(&b);
    }

    #[test]
    fn bit_flips_never_panic(which in 0usize..11, pos in any::<prop::sample::Index>(), bit in 0u8..8) {
        let mut b = samples::one_of_each()[which].encode().unwrap();
        let i = 10 + pos.index(b.len() - 10);
        b[i] ^= 1 << bit;
        let _ = decode_any(&b);
    }
}
