//! JSON string literals written straight into an output buffer, for the
//! binaries that build JSON lines by hand (adapter, log-aggregator) instead of
//! building a `serde_json::Value` per line: the per-line allocation and the
//! key reordering of a map are what they avoid. The escaping is RFC 8259's,
//! byte for byte what `serde_json` writes (a test checks every position).

/// Whether any of the 8 bytes of `word` needs escaping in a JSON string:
/// a control character (< 0x20), `"` or `\\` (SWAR: the classic
/// "has a zero byte" trick on `word` and on `word` XOR the byte).
fn needs_escape(word: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let has_zero = |value: u64| value.wrapping_sub(ONES) & !value & HIGHS;
    let below_space = word.wrapping_sub(ONES * 0x20) & !word & HIGHS;
    (below_space
        | has_zero(word ^ (ONES * u64::from(b'"')))
        | has_zero(word ^ (ONES * u64::from(b'\\'))))
        != 0
}

/// Appends `text` as a JSON string (quotes included). Clean runs are found
/// eight bytes at a time and copied whole: this is the adapter's hottest loop.
pub fn write_string(text: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    let bytes = text.as_bytes();
    let mut run_start = 0;
    let mut index = 0;
    while index < bytes.len() {
        if let Some(chunk) = bytes.get(index..index + 8) {
            let word = u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8]));
            if !needs_escape(word) {
                index += 8;
                continue;
            }
        }
        let byte = bytes[index];
        let escape: &[u8] = match byte {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => b"",
            _ => {
                index += 1;
                continue;
            }
        };
        out.extend_from_slice(&bytes[run_start..index]);
        run_start = index + 1;
        index += 1;
        if escape.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(byte >> 4)]);
            out.push(HEX[usize::from(byte & 0xf)]);
        } else {
            out.extend_from_slice(escape);
        }
    }
    out.extend_from_slice(&bytes[run_start..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_match_serde_json_for_every_byte_position() {
        let specials = ["\"", "\\", "\n", "\u{1}", "\u{1f}", "é", "\u{7f}", " "];
        for length in 0..20 {
            for special in specials {
                for at in 0..=length {
                    let mut text = "a".repeat(length);
                    text.insert_str(at, special);
                    let mut out = Vec::new();
                    write_string(&text, &mut out);
                    assert_eq!(
                        String::from_utf8(out).unwrap(),
                        serde_json::to_string(&text).unwrap(),
                        "{text:?}"
                    );
                }
            }
        }
    }
}
