//! CESQL lexer: turns an expression into tokens with their byte offsets.
//!
//! Keywords are case-insensitive. A word made only of digits is an integer literal
//! (its sign is handled by the parser); any other run of letters, digits and `_` is a
//! word that the parser reads as a keyword, an attribute or a function name.

use std::iter::Peekable;
use std::str::CharIndices;

use super::ParseError;

/// A token kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Tok {
    LParen,
    RParen,
    Comma,
    Star,
    Slash,
    Percent,
    Plus,
    Minus,
    Eq,
    NotEq,
    Lt,
    Le,
    Gt,
    Ge,
    And,
    Or,
    Xor,
    Not,
    Like,
    Exists,
    In,
    True,
    False,
    /// A string literal, unescaped.
    Str(String),
    /// The digits of an unsigned integer literal.
    Int(String),
    /// An identifier or function name, as written.
    Word(String),
}

impl Tok {
    /// How the token reads in an error message.
    pub(crate) fn describe(&self) -> String {
        match self {
            Tok::LParen => "`(`".into(),
            Tok::RParen => "`)`".into(),
            Tok::Comma => "`,`".into(),
            Tok::Star => "`*`".into(),
            Tok::Slash => "`/`".into(),
            Tok::Percent => "`%`".into(),
            Tok::Plus => "`+`".into(),
            Tok::Minus => "`-`".into(),
            Tok::Eq => "`=`".into(),
            Tok::NotEq => "`!=`".into(),
            Tok::Lt => "`<`".into(),
            Tok::Le => "`<=`".into(),
            Tok::Gt => "`>`".into(),
            Tok::Ge => "`>=`".into(),
            Tok::And => "AND".into(),
            Tok::Or => "OR".into(),
            Tok::Xor => "XOR".into(),
            Tok::Not => "NOT".into(),
            Tok::Like => "LIKE".into(),
            Tok::Exists => "EXISTS".into(),
            Tok::In => "IN".into(),
            Tok::True => "TRUE".into(),
            Tok::False => "FALSE".into(),
            Tok::Str(s) => format!("string '{s}'"),
            Tok::Int(s) => format!("integer {s}"),
            Tok::Word(s) => format!("`{s}`"),
        }
    }
}

/// A token and the byte offset where it starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Token {
    pub(crate) tok: Tok,
    pub(crate) pos: usize,
}

/// Splits `src` into tokens.
pub(crate) fn tokenize(src: &str) -> Result<Vec<Token>, ParseError> {
    let mut tokens = Vec::new();
    let mut chars = src.char_indices().peekable();
    while let Some(&(pos, c)) = chars.peek() {
        if matches!(c, ' ' | '\t' | '\r' | '\n') {
            chars.next();
            continue;
        }
        let mut single = |tok: Tok| {
            chars.next();
            Token { tok, pos }
        };
        let token = match c {
            '(' => single(Tok::LParen),
            ')' => single(Tok::RParen),
            ',' => single(Tok::Comma),
            '*' => single(Tok::Star),
            '/' => single(Tok::Slash),
            '%' => single(Tok::Percent),
            '+' => single(Tok::Plus),
            '-' => single(Tok::Minus),
            '=' => single(Tok::Eq),
            '!' => {
                chars.next();
                if chars.next_if(|&(_, c)| c == '=').is_some() {
                    Token {
                        tok: Tok::NotEq,
                        pos,
                    }
                } else {
                    return Err(ParseError::new(pos, "expected `=` after `!`"));
                }
            }
            '<' => {
                chars.next();
                let tok = if chars.next_if(|&(_, c)| c == '=').is_some() {
                    Tok::Le
                } else if chars.next_if(|&(_, c)| c == '>').is_some() {
                    Tok::NotEq
                } else {
                    Tok::Lt
                };
                Token { tok, pos }
            }
            '>' => {
                chars.next();
                let tok = if chars.next_if(|&(_, c)| c == '=').is_some() {
                    Tok::Ge
                } else {
                    Tok::Gt
                };
                Token { tok, pos }
            }
            '\'' | '"' => {
                chars.next();
                Token {
                    tok: Tok::Str(string_literal(&mut chars, c, pos)?),
                    pos,
                }
            }
            c if c.is_ascii_alphanumeric() || c == '_' => {
                let mut word = String::new();
                while let Some((_, ch)) =
                    chars.next_if(|&(_, ch)| ch.is_ascii_alphanumeric() || ch == '_')
                {
                    word.push(ch);
                }
                let tok = if word.bytes().all(|b| b.is_ascii_digit()) {
                    Tok::Int(word)
                } else {
                    keyword(&word).unwrap_or(Tok::Word(word))
                };
                Token { tok, pos }
            }
            other => {
                return Err(ParseError::new(
                    pos,
                    format!("unexpected character `{other}`"),
                ));
            }
        };
        tokens.push(token);
    }
    Ok(tokens)
}

/// Reads a string literal after its opening `quote` and returns its unescaped text.
fn string_literal(
    chars: &mut Peekable<CharIndices<'_>>,
    quote: char,
    pos: usize,
) -> Result<String, ParseError> {
    let mut value = String::new();
    while let Some((_, ch)) = chars.next() {
        if ch == '\\' {
            match chars.next() {
                // `\'` in a '-string, `\"` in a "-string: the quote itself.
                Some((_, q)) if q == quote => value.push(q),
                // Any other escape is kept as written (LIKE reads `\%`, `\_`).
                Some((_, other)) => {
                    value.push('\\');
                    value.push(other);
                }
                None => break,
            }
        } else if ch == quote {
            // A doubled quote is one quote character, as in SQL.
            if chars.next_if(|&(_, n)| n == quote).is_some() {
                value.push(quote);
            } else {
                return Ok(value);
            }
        } else {
            value.push(ch);
        }
    }
    Err(ParseError::new(pos, "unterminated string literal"))
}

fn keyword(word: &str) -> Option<Tok> {
    const KEYWORDS: [(&str, Tok); 9] = [
        ("AND", Tok::And),
        ("OR", Tok::Or),
        ("XOR", Tok::Xor),
        ("NOT", Tok::Not),
        ("LIKE", Tok::Like),
        ("EXISTS", Tok::Exists),
        ("IN", Tok::In),
        ("TRUE", Tok::True),
        ("FALSE", Tok::False),
    ];
    KEYWORDS
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(word))
        .map(|(_, t)| t.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(src: &str) -> Vec<Tok> {
        tokenize(src).unwrap().into_iter().map(|t| t.tok).collect()
    }

    #[test]
    fn operators_and_keywords() {
        assert_eq!(
            toks("a<>b != c <= d >= e < f > g and Or xOr not LIKE exists in"),
            vec![
                Tok::Word("a".into()),
                Tok::NotEq,
                Tok::Word("b".into()),
                Tok::NotEq,
                Tok::Word("c".into()),
                Tok::Le,
                Tok::Word("d".into()),
                Tok::Ge,
                Tok::Word("e".into()),
                Tok::Lt,
                Tok::Word("f".into()),
                Tok::Gt,
                Tok::Word("g".into()),
                Tok::And,
                Tok::Or,
                Tok::Xor,
                Tok::Not,
                Tok::Like,
                Tok::Exists,
                Tok::In,
            ]
        );
    }

    #[test]
    fn numbers_and_words() {
        assert_eq!(
            toks("123 12ab CONCAT_WS(-4)"),
            vec![
                Tok::Int("123".into()),
                Tok::Word("12ab".into()),
                Tok::Word("CONCAT_WS".into()),
                Tok::LParen,
                Tok::Minus,
                Tok::Int("4".into()),
                Tok::RParen,
            ]
        );
    }

    #[test]
    fn string_escapes() {
        assert_eq!(toks(r#"'a"b\'c'"#), vec![Tok::Str("a\"b'c".into())]);
        assert_eq!(toks(r#""a'b\"c""#), vec![Tok::Str("a'b\"c".into())]);
        assert_eq!(toks(r"'a\%b\_c\d'"), vec![Tok::Str(r"a\%b\_c\d".into())]);
        assert_eq!(toks("'it''s'"), vec![Tok::Str("it's".into())]);
        assert_eq!(toks("''"), vec![Tok::Str(String::new())]);
    }

    #[test]
    fn errors_carry_positions() {
        let err = tokenize("a = 'open").unwrap_err();
        assert_eq!(err.position, 4);
        assert!(err.message.contains("unterminated"));
        let err = tokenize("a ! b").unwrap_err();
        assert_eq!(err.position, 2);
        let err = tokenize("a # b").unwrap_err();
        assert!(err.message.contains('#'));
    }
}
