//! How text becomes searchable words: the same analyzer indexes bodies and reads
//! queries.
//!
//! - Words are split by the Unicode word boundaries of UAX #29 (`unicode-segmentation`):
//!   spaces and punctuation separate words in every script that has them; "don't" and
//!   "3.14" stay one word.
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
    tokens(text).into_iter().map(|t| t.text).collect()
}

/// The words of `text` with their positions and offsets: what the index takes for a
/// body, so that a body is split once for the index and for the overlay of what is not
/// committed yet.
pub fn tokens(text: &str) -> Vec<Token> {
    let mut analyzer = analyzer();
    let mut stream = analyzer.token_stream(text);
    let mut out = Vec::new();
    while stream.advance() {
        out.push(stream.token().clone());
    }
    out
}

/// Splits text at UAX #29 word boundaries, keeping the words that hold a letter or a
/// digit.
#[derive(Clone, Default)]
pub struct UnicodeWords {
    token: Token,
}

pub struct UnicodeWordStream<'a> {
    words: unicode_segmentation::UWordBoundIndices<'a>,
    token: &'a mut Token,
}

impl Tokenizer for UnicodeWords {
    type TokenStream<'a> = UnicodeWordStream<'a>;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> UnicodeWordStream<'a> {
        self.token.reset();
        UnicodeWordStream {
            words: text.split_word_bound_indices(),
            token: &mut self.token,
        }
    }
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
    use super::words;

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
