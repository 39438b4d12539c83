//! `--expect-body` over a streamed body, with bounded memory.
//!
//! The body is not collected: it is searched in a window of at most
//! [`WINDOW`] bytes. When the window is full it is searched, then cut back to
//! its last [`OVERLAP`] bytes and filled again, so every match of up to
//! `OVERLAP` bytes is found wherever it lies in the first `--max-body` bytes,
//! and a body that fits in one window (the default `--max-body`, 1 MiB, does)
//! is searched whole, exactly as if it had been collected.
//!
//! Invariants, so that a window never matches what the whole body would not:
//! - `^` and `\A` match only at the body's start: after a cut the search
//!   starts after one character of context (`shortest_match_at`), and regex
//!   assertions (`\b`, `(?m)^`) look at that real character.
//! - `$`, `\z` and a `\b` at the window's end need to know what follows: a
//!   match is accepted before the body's end only if its earliest end lies
//!   before the window's end; one that ends exactly there is searched again
//!   once more bytes came (or the body ended).
//! - Matching is on text, decoded lossily on purpose (HTTP bodies to check
//!   are text); cuts are at character boundaries.

use regex_lite::Regex;

/// Bytes carried from one window to the next: the longest match that is
/// found wherever it lies (a longer match is found only inside one window).
pub const OVERLAP: usize = 1024 * 1024;

/// Most body bytes held at once for `--expect-body`: a window is searched
/// when it is this full, so a 1 GiB `--max-body` holds 2 MiB, not 1 GiB.
pub const WINDOW: usize = 2 * OVERLAP;

/// Feeds a body's bytes through `--expect-body` as they arrive.
pub struct BodyMatcher<'r> {
    pattern: &'r Regex,
    window: Vec<u8>,
    /// Bytes at the window's start that are context only (the character
    /// before the search start), 0 while the window starts the body.
    context: usize,
    matched: bool,
    window_size: usize,
    overlap: usize,
}

impl<'r> BodyMatcher<'r> {
    pub fn new(pattern: &'r Regex) -> Self {
        Self::with_window(pattern, WINDOW, OVERLAP)
    }

    /// A matcher with a smaller window, for tests of the window's edges.
    pub fn with_window(pattern: &'r Regex, window_size: usize, overlap: usize) -> Self {
        assert!(
            overlap < window_size,
            "the overlap must be smaller than the window"
        );
        Self {
            pattern,
            window: Vec::new(),
            context: 0,
            matched: false,
            window_size,
            overlap,
        }
    }

    /// Takes the next bytes of the body.
    pub fn push(&mut self, mut data: &[u8]) {
        while !self.matched && !data.is_empty() {
            let take = (self.window_size - self.window.len()).min(data.len());
            self.window.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.window.len() == self.window_size {
                if self.search(false) {
                    self.matched = true;
                    self.window = Vec::new();
                } else {
                    self.slide();
                }
            }
        }
    }

    /// Whether the body (as pushed, to its end) matched.
    pub fn finish(&mut self) -> bool {
        self.matched || self.search(true)
    }

    fn search(&self, at_end: bool) -> bool {
        let (context, rest) = self.window.split_at(self.context);
        let mut text = String::from_utf8_lossy(context).into_owned();
        let start = text.len();
        text.push_str(&String::from_utf8_lossy(rest));
        match self.pattern.shortest_match_at(&text, start) {
            Some(end) => at_end || end < text.len(),
            None => false,
        }
    }

    /// Keeps the last `overlap` bytes (from a character boundary) and one
    /// character of context before them.
    fn slide(&mut self) {
        let is_continuation = |byte: u8| (0x80..=0xbf).contains(&byte);
        let mut cut = self.window.len() - self.overlap;
        for _ in 0..3 {
            if cut < self.window.len() && is_continuation(self.window[cut]) {
                cut += 1;
            }
        }
        let mut context_start = cut - 1;
        for _ in 0..3 {
            if context_start > 0 && is_continuation(self.window[context_start]) {
                context_start -= 1;
            }
        }
        self.window.drain(..context_start);
        self.context = cut - context_start;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pushes `body` in `chunk`-byte pieces through an 8-byte window with a
    /// 4-byte overlap.
    fn matches(pattern: &str, body: &str, chunk: usize) -> bool {
        let pattern = Regex::new(pattern).unwrap();
        let mut matcher = BodyMatcher::with_window(&pattern, 8, 4);
        for piece in body.as_bytes().chunks(chunk) {
            matcher.push(piece);
            assert!(matcher.window.len() <= 8);
        }
        matcher.finish()
    }

    #[test]
    fn a_match_across_window_and_chunk_boundaries_is_found() {
        for chunk in 1..=9 {
            assert!(matches("END", "xxxxxxxxxxxxxxxxxxxxxENDxxxxx", chunk));
            assert!(matches("END", "xxxxxxxxxxxxxxxxxxxxxxEND", chunk));
            assert!(!matches("ENDE", "xxxxxxxxxxxxxxxxxxxxxEND", chunk));
        }
    }

    #[test]
    fn anchors_mean_the_body_not_the_window() {
        for chunk in [1, 3, 8] {
            assert!(matches("^ab", "abxxxxxxxxxxxxxxx", chunk));
            assert!(!matches("^xx", "abxxxxxxxxxxxxxxx", chunk));
            assert!(!matches(r"\Axx", "abxxxxxxxxxxxxxxx", chunk));
            assert!(matches("END$", "xxxxxxxxxxxxxxxEND", chunk));
            assert!(!matches("x$", "xxxxxxxxxxxxxxxEND", chunk));
            assert!(!matches(r"x\z", "xxxxxxxxxxxxxxxEND", chunk));
            assert!(!matches(r"ok\b", "xxxxxxxokayxxxx", chunk));
            assert!(matches(r"ok\b", "xxxxxxxok xxxx", chunk));
            assert!(!matches(r"\bxx", "axxxxxxxxxxxxxxx", chunk));
            assert!(matches(r"(?m)^b", "xxxxxxxxxx\nbxxxxx", chunk));
        }
    }

    #[test]
    fn multibyte_characters_are_never_split() {
        for chunk in 1..=9 {
            assert!(matches("é€", "ééééééééé€", chunk));
            assert!(!matches("\u{fffd}", "ééééééééé€ééé", chunk));
        }
    }

    #[test]
    fn a_body_that_fits_one_window_is_searched_whole() {
        assert!(matches("^x+$", "xxxxxxx", 3));
    }

    #[test]
    fn a_large_body_holds_one_window() {
        let pattern = Regex::new("END").unwrap();
        let mut matcher = BodyMatcher::new(&pattern);
        let chunk = vec![b'x'; 64 * 1024];
        for _ in 0..64 {
            matcher.push(&chunk);
            assert!(matcher.window.len() <= WINDOW);
        }
        matcher.push(b"END");
        assert!(matcher.finish());
    }
}
