//! The search box's language: a small, fixed part of what full-text engines accept.
//!
//! - `launch date`: messages holding both words (every word must be there);
//! - `"launch date"`: the words next to each other, in that order;
//! - `from:alice`: written by `alice`; `in:team-1`: in conversation `team-1` (either may
//!   be given more than once: any of them);
//! - words are matched as [`super::words`] splits them, so case, accents and punctuation
//!   do not matter.
//!
//! Nothing else is an operator: `AND`, `-word` or `title:x` are refused with a clear
//! message rather than read in a way the caller did not mean.

/// The most characters a query may have.
pub const MAX_QUERY: usize = 500;
/// The most words and phrases in one query.
pub const MAX_CLAUSES: usize = 16;

/// A query, parsed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Parsed {
    /// Each one must match: a word (`Word`) or consecutive words (`Phrase`).
    pub clauses: Vec<Clause>,
    /// Authors (`from:`), any of them.
    pub from: Vec<String>,
    /// Conversations (`in:`), any of them.
    pub within: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Clause {
    Word(String),
    Phrase(String),
}

impl Parsed {
    /// Whether it asks for any text at all (else it only lists by author or place).
    pub fn has_text(&self) -> bool {
        !self.clauses.is_empty()
    }
}

/// Parses `q`, or says what is wrong with it.
pub fn parse(q: &str) -> Result<Parsed, String> {
    if q.chars().count() > MAX_QUERY {
        return Err(format!("the query is longer than {MAX_QUERY} characters"));
    }
    let mut parsed = Parsed::default();
    let mut rest = q.trim_start();
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('"') {
            let Some(end) = after.find('"') else {
                return Err("a phrase is not closed: add the closing \" (double quote)".into());
            };
            let phrase = after[..end].trim();
            if !phrase.is_empty() {
                parsed.clauses.push(Clause::Phrase(phrase.to_string()));
            }
            rest = after[end + 1..].trim_start();
            continue;
        }
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        let (token, tail) = rest.split_at(end);
        rest = tail.trim_start();
        if token.contains('"') {
            return Err(format!(
                "{token:?}: a phrase starts with \" after a space, as in \"launch date\""
            ));
        }
        match token.split_once(':') {
            Some(("from", who)) => parsed.from.push(filter_value("from", who)?),
            Some(("in", conv)) => parsed.within.push(filter_value("in", conv)?),
            Some((field, _))
                if !field.is_empty() && field.chars().all(|c| c.is_ascii_alphabetic()) =>
            {
                return Err(format!(
                    "{field}: is not a filter; use from:USER or in:CONVERSATION, or quote the \
                     words"
                ));
            }
            _ => parsed.clauses.push(Clause::Word(token.to_string())),
        }
    }
    if parsed.clauses.len() > MAX_CLAUSES {
        return Err(format!("at most {MAX_CLAUSES} words and phrases"));
    }
    if parsed.clauses.is_empty() && parsed.from.is_empty() && parsed.within.is_empty() {
        return Err(
            "the query is empty: give a word, a \"phrase\", from:USER or in:CONVERSATION".into(),
        );
    }
    Ok(parsed)
}

fn filter_value(name: &str, value: &str) -> Result<String, String> {
    if value.is_empty() || value.len() > 128 {
        return Err(format!(
            "{name}: needs a value of 1 to 128 characters, as in {name}:x"
        ));
    }
    Ok(value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(s: &str) -> Clause {
        Clause::Word(s.into())
    }

    #[test]
    fn words_phrases_and_filters() {
        let p = parse(r#"  launch "the date"  from:alice in:team-1 v2.0 "#).unwrap();
        assert_eq!(
            p.clauses,
            [w("launch"), Clause::Phrase("the date".into()), w("v2.0")]
        );
        assert_eq!(p.from, ["alice"]);
        assert_eq!(p.within, ["team-1"]);
        // A colon inside a word that is not a filter's name is part of the word.
        assert_eq!(parse("12:30").unwrap().clauses, [w("12:30")]);
        assert_eq!(parse("from:bob").unwrap().from, ["bob"]);
    }

    #[test]
    fn what_it_refuses_says_why() {
        for bad in ["", "   ", "\"open", "say\"what", "title:x", "from:", "\"\""] {
            let e = parse(bad).expect_err(bad);
            assert!(!e.is_empty(), "{bad}");
        }
        assert!(parse(&"a ".repeat(300)).is_err());
        assert!(parse(&"a ".repeat(17)).is_err());
    }
}
