//! CRC-64-AVRO (the Rabin fingerprint of the Avro specification).
//!
//! Single-object encoding carries this 64-bit fingerprint of the schema's Parsing
//! Canonical Form, little-endian.

const EMPTY: u64 = 0xc15d_213a_a4d7_a795;

const fn table() -> [u64; 256] {
    let mut table = [0u64; 256];
    let mut i = 0;
    while i < 256 {
        let mut fp = i as u64;
        let mut j = 0;
        while j < 8 {
            fp = (fp >> 1) ^ (EMPTY & (0u64.wrapping_sub(fp & 1)));
            j += 1;
        }
        table[i] = fp;
        i += 1;
    }
    table
}

static TABLE: [u64; 256] = table();

/// The CRC-64-AVRO fingerprint of `data`.
pub fn crc64_avro(data: &[u8]) -> u64 {
    let mut fp = EMPTY;
    for &b in data {
        fp = (fp >> 8) ^ TABLE[((fp ^ u64::from(b)) & 0xff) as usize];
    }
    fp
}

/// The fingerprint as single-object encoding writes it (little-endian).
pub fn fingerprint_bytes(canonical_form: &str) -> [u8; 8] {
    crc64_avro(canonical_form.as_bytes()).to_le_bytes()
}

/// Lowercase hex of a fingerprint, as logs and tests print it.
pub fn to_hex(fp: &[u8; 8]) -> String {
    fp.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn primitive_fingerprints_match_the_specification_test_vectors() {
        // Avro's share/test/data/schema-tests.txt lists these as signed 64-bit values.
        assert_eq!(crc64_avro(br#""null""#) as i64, 7195948357588979594);
        assert_eq!(crc64_avro(br#""boolean""#) as i64, -6970731678124411036);
        assert_eq!(crc64_avro(br#""int""#) as i64, 8247732601305521295);
        assert_eq!(crc64_avro(br#""string""#) as i64, -8142146995180207161);
    }
}
