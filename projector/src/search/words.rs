//! How text becomes searchable words: the same analyzer indexes bodies and reads
//! queries.
//!
//! - Words are split by the Unicode word boundaries of UAX #29 (`unicode-segmentation`):
//!   spaces and punctuation separate words in every script that has them; "don't" and
//!   "3.14" stay one word. ASCII text is cut without the tables, by the same rules
//!   written out for ASCII (`AsciiWords`; a property test holds it to the tables).
//! - Han ideographs and Hiragana have no spaces between words, and UAX #29 makes each
//!   character a word of its own. A query word in those scripts is therefore searched as
//!   the phrase of its characters: "東京" finds "東京都に行く" (and also "東京" inside a
//!   longer compound, which a dictionary-based splitter would not). Katakana runs and
//!   Hangul words (which have spaces) stay whole.
//! - Words are lower-cased, then folded to ASCII where a folding exists ("Café" and
//!   "cafe" are the same word, so are "Straße" and "strasse"); words longer than
//!   [`MAX_WORD`] bytes are dropped (they are not words people type).

use tantivy::tokenizer::{
    AsciiFoldingFilter, LowerCaser, RemoveLongFilter, TextAnalyzer, Token, TokenStream, Tokenizer,
};
use unicode_segmentation::UnicodeSegmentation;

/// The analyzer's name in the index.
pub const ANALYZER: &str = "parley_words";

/// Longer words are not indexed.
pub const MAX_WORD: usize = 64;

/// The analyzer bodies and queries go through.
pub fn analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(UnicodeWords::default())
        .filter(RemoveLongFilter::limit(MAX_WORD))
        .filter(LowerCaser)
        .filter(AsciiFoldingFilter)
        .build()
}

/// The words of `text`, as the index holds them.
pub fn words(text: &str) -> Vec<String> {
    thread_local! {
        static ANALYZER: std::cell::RefCell<TextAnalyzer> = std::cell::RefCell::new(analyzer());
    }
    ANALYZER.with_borrow_mut(|analyzer| {
        let mut stream = analyzer.token_stream(text);
        let mut out = Vec::new();
        while stream.advance() {
            out.push(stream.token().text.clone());
        }
        out
    })
}

/// Splits text at UAX #29 word boundaries, keeping the words that hold a letter or a
/// digit.
#[derive(Clone, Default)]
pub struct UnicodeWords {
    token: Token,
}

pub struct UnicodeWordStream<'a> {
    words: Segments<'a>,
    token: &'a mut Token,
}

/// A text's segments between word boundaries, with their byte offsets.
enum Segments<'a> {
    Unicode(unicode_segmentation::UWordBoundIndices<'a>),
    Ascii(AsciiWords<'a>),
}

impl<'a> Iterator for Segments<'a> {
    type Item = (usize, &'a str);

    fn next(&mut self) -> Option<(usize, &'a str)> {
        match self {
            Segments::Unicode(w) => w.next(),
            Segments::Ascii(w) => w.next(),
        }
    }
}

impl Tokenizer for UnicodeWords {
    type TokenStream<'a> = UnicodeWordStream<'a>;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> UnicodeWordStream<'a> {
        self.token.reset();
        let words = if text.is_ascii() {
            Segments::Ascii(AsciiWords { text, at: 0 })
        } else {
            Segments::Unicode(text.split_word_bound_indices())
        };
        UnicodeWordStream {
            words,
            token: &mut self.token,
        }
    }
}

/// UAX #29's word boundaries in ASCII text, without its tables (most bodies are ASCII,
/// and the tables' lookups were most of the time a body took to index). It yields the
/// segments that hold a letter, a digit or `_` (the only ones a word can come from),
/// exactly as UAX #29 cuts them:
/// - letters, digits and `_` hold together (WB5, WB8–10, WB13a–b);
/// - a letter, then `:`, `.` or `'`, then a letter, hold together (WB6–7);
/// - a digit, then `,`, `;`, `.` or `'`, then a digit, hold together (WB11–12);
/// - every other pair of characters is a boundary.
struct AsciiWords<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Iterator for AsciiWords<'a> {
    type Item = (usize, &'a str);

    fn next(&mut self) -> Option<(usize, &'a str)> {
        let b = self.text.as_bytes();
        let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
        let start = self.at + b[self.at..].iter().position(|&c| word(c))?;
        let mut end = start + 1;
        loop {
            if end < b.len() && word(b[end]) {
                end += 1;
            } else if end + 1 < b.len() && joined(b[end - 1], b[end], b[end + 1]) {
                end += 2;
            } else {
                break;
            }
        }
        self.at = end;
        Some((start, &self.text[start..end]))
    }
}

/// `before`, `mid` and `after` are one word (WB6–7, WB11–12).
fn joined(before: u8, mid: u8, after: u8) -> bool {
    let letters = before.is_ascii_alphabetic()
        && after.is_ascii_alphabetic()
        && matches!(mid, b':' | b'.' | b'\'');
    let digits = before.is_ascii_digit()
        && after.is_ascii_digit()
        && matches!(mid, b',' | b';' | b'.' | b'\'');
    letters || digits
}

impl TokenStream for UnicodeWordStream<'_> {
    fn advance(&mut self) -> bool {
        for (at, word) in self.words.by_ref() {
            if word.chars().any(char::is_alphanumeric) {
                self.token.text.clear();
                self.token.text.push_str(word);
                self.token.offset_from = at;
                self.token.offset_to = at + word.len();
                self.token.position = self.token.position.wrapping_add(1);
                return true;
            }
        }
        false
    }

    fn token(&self) -> &Token {
        self.token
    }

    fn token_mut(&mut self) -> &mut Token {
        self.token
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The words of `text` as the UAX #29 tables cut them.
    fn by_the_tables(text: &str) -> Vec<(usize, &str)> {
        text.split_word_bound_indices()
            .filter(|(_, w)| w.chars().any(char::is_alphanumeric))
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(20_000))]
        /// The ASCII path cuts every ASCII text where the tables do, punctuation that
        /// joins or splits words included.
        #[test]
        fn ascii_text_is_cut_as_the_tables_cut_it(text in "[aZ09_:.',;\" \t\r\n!?@#-]{0,24}") {
            let fast: Vec<(usize, &str)> = AsciiWords { text: &text, at: 0 }
                .filter(|(_, w)| w.chars().any(char::is_alphanumeric))
                .collect();
            prop_assert_eq!(fast, by_the_tables(&text));
        }
    }

    #[test]
    fn words_are_split_lowered_and_folded_in_every_script() {
        assert_eq!(
            words("Where did we say the LAUNCH date was? Café, don't!"),
            ["where", "did", "we", "say", "the", "launch", "date", "was", "cafe", "don't"]
        );
        assert_eq!(words("Straße Ärger"), ["strasse", "arger"]);
        assert_eq!(words("Привет, мир"), ["привет", "мир"]);
        assert_eq!(words("مرحبا بالعالم"), ["مرحبا", "بالعالم"]);
        // Ideographs one by one; a Katakana run and a Hangul word whole.
        assert_eq!(words("東京都に行く"), ["東", "京", "都", "に", "行", "く"]);
        assert_eq!(words("コーヒー 안녕하세요"), ["コーヒー", "안녕하세요"]);
        assert_eq!(words("v3.14 — ok"), ["v3.14", "ok"]);
        assert!(words("... !!! 😀").is_empty());
        assert!(words(&"x".repeat(100)).is_empty());
    }
}
