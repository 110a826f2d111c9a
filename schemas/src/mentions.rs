//! Mentions in a message body: `@user`. In a large group, where nobody gets a push job
//! per message, an offline member who is mentioned still gets one; in every
//! conversation, a member's mentions since their read mark are counted, and a mention
//! pushes even in a conversation the member muted.

/// The most mentions of one message that are acted on.
pub const MAX_MENTIONS: usize = 20;

/// The distinct user ids mentioned in `body` as `@user` (at most [`MAX_MENTIONS`]), in
/// order of first mention. A mention ends at the first character a user id cannot hold;
/// trailing dots and colons (end of a sentence) are not part of it.
pub fn mentions(body: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (i, _) in body.match_indices('@') {
        // "@" inside a word (an e-mail address) is not a mention.
        if body[..i].chars().next_back().is_some_and(is_id_char) {
            continue;
        }
        let rest = &body[i + 1..];
        let end = rest.find(|c: char| !is_id_char(c)).unwrap_or(rest.len());
        let id = rest[..end].trim_end_matches(['.', ':']);
        if id.is_empty() || id.len() > 64 || out.iter().any(|m| m == id) {
            continue;
        }
        out.push(id.to_string());
        if out.len() == MAX_MENTIONS {
            break;
        }
    }
    out
}

fn is_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_each_mentioned_user_once() {
        assert_eq!(
            mentions("@amy, can you and @bob.smith look? Thanks @amy."),
            vec!["amy", "bob.smith"]
        );
        assert_eq!(mentions("mail me at me@example.com"), Vec::<String>::new());
        assert_eq!(mentions("@ alone, @@x"), vec!["x"]);
        let many: String = (0..50).map(|i| format!("@u{i} ")).collect();
        assert_eq!(mentions(&many).len(), MAX_MENTIONS);
    }
}
