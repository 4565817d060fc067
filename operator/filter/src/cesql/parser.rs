//! CESQL parser: recursive descent over the tokens, one function per precedence level.
//!
//! Precedence, lowest first (CESQL §3.6; equal precedence associates left to right):
//!
//! ```text
//! AND OR XOR  <  = != <> < <= > >=  <  + -  <  * / %  <  [NOT] LIKE, [NOT] IN
//!             <  NOT x, -x  <  literals, attributes, EXISTS, calls, ( ... )
//! ```
//!
//! A `-` directly before an integer literal is part of the literal, so
//! `-2147483648` is a valid 32-bit literal. Trees deeper than [`MAX_DEPTH`] are
//! rejected, which bounds the recursion of everything that walks them.

use super::ParseError;
use super::ast::{BinOp, Expr};
use super::functions::Function;
use super::lexer::{Tok, Token, tokenize};
use crate::glob::{Elem, Glob};

/// The deepest expression tree accepted.
pub(crate) const MAX_DEPTH: usize = 256;

/// The deepest nesting of parentheses and prefix operators the parser recurses into.
const MAX_NESTING: usize = 128;

/// A parsed subtree and its depth.
struct Node {
    expr: Expr,
    depth: usize,
}

impl Node {
    fn leaf(expr: Expr) -> Self {
        Node { expr, depth: 1 }
    }
}

struct Parser {
    tokens: Vec<Token>,
    next: usize,
    end: usize,
    nesting: usize,
}

/// Parses a whole expression.
pub(crate) fn parse(src: &str) -> Result<Expr, ParseError> {
    let tokens = tokenize(src)?;
    if tokens.is_empty() {
        return Err(ParseError::new(0, "empty expression"));
    }
    let mut parser = Parser {
        tokens,
        next: 0,
        end: src.len(),
        nesting: 0,
    };
    let node = parser.expression()?;
    if let Some(token) = parser.peek_token() {
        return Err(ParseError::new(
            token.pos,
            format!("unexpected {} after the expression", token.tok.describe()),
        ));
    }
    Ok(node.expr)
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.tokens.get(self.next).map(|t| &t.tok)
    }

    fn peek_at(&self, offset: usize) -> Option<&Tok> {
        self.tokens.get(self.next + offset).map(|t| &t.tok)
    }

    fn peek_token(&self) -> Option<&Token> {
        self.tokens.get(self.next)
    }

    fn pos(&self) -> usize {
        self.peek_token().map_or(self.end, |t| t.pos)
    }

    fn bump(&mut self) -> Option<Tok> {
        let tok = self.tokens.get(self.next).map(|t| t.tok.clone());
        self.next += 1;
        tok
    }

    fn expect(&mut self, want: &Tok, context: &str) -> Result<(), ParseError> {
        if self.peek() == Some(want) {
            self.next += 1;
            Ok(())
        } else {
            Err(self.unexpected(&format!("expected {} {context}", want.describe())))
        }
    }

    fn unexpected(&self, expected: &str) -> ParseError {
        let found = self
            .peek()
            .map_or_else(|| "the end of the expression".to_owned(), Tok::describe);
        ParseError::new(self.pos(), format!("{expected}, found {found}"))
    }

    fn node(&self, expr: Expr, children: &[usize]) -> Result<Node, ParseError> {
        let depth = 1 + children.iter().copied().max().unwrap_or(0);
        if depth > MAX_DEPTH {
            return Err(ParseError::new(
                self.pos(),
                format!("expression nests deeper than {MAX_DEPTH} levels"),
            ));
        }
        Ok(Node { expr, depth })
    }

    fn binary(&self, op: BinOp, left: Node, right: Node) -> Result<Node, ParseError> {
        let depths = [left.depth, right.depth];
        self.node(
            Expr::Binary {
                op,
                left: Box::new(left.expr),
                right: Box::new(right.expr),
            },
            &depths,
        )
    }

    fn expression(&mut self) -> Result<Node, ParseError> {
        let mut left = self.comparison()?;
        loop {
            let op = match self.peek() {
                Some(Tok::And) => BinOp::And,
                Some(Tok::Or) => BinOp::Or,
                Some(Tok::Xor) => BinOp::Xor,
                _ => return Ok(left),
            };
            self.next += 1;
            let right = self.comparison()?;
            left = self.binary(op, left, right)?;
        }
    }

    fn comparison(&mut self) -> Result<Node, ParseError> {
        let mut left = self.additive()?;
        loop {
            let op = match self.peek() {
                Some(Tok::Eq) => BinOp::Eq,
                Some(Tok::NotEq) => BinOp::NotEq,
                Some(Tok::Lt) => BinOp::Lt,
                Some(Tok::Le) => BinOp::Le,
                Some(Tok::Gt) => BinOp::Gt,
                Some(Tok::Ge) => BinOp::Ge,
                _ => return Ok(left),
            };
            self.next += 1;
            let right = self.additive()?;
            left = self.binary(op, left, right)?;
        }
    }

    fn additive(&mut self) -> Result<Node, ParseError> {
        let mut left = self.multiplicative()?;
        loop {
            let op = match self.peek() {
                Some(Tok::Plus) => BinOp::Add,
                Some(Tok::Minus) => BinOp::Sub,
                _ => return Ok(left),
            };
            self.next += 1;
            let right = self.multiplicative()?;
            left = self.binary(op, left, right)?;
        }
    }

    fn multiplicative(&mut self) -> Result<Node, ParseError> {
        let mut left = self.like_in()?;
        loop {
            let op = match self.peek() {
                Some(Tok::Star) => BinOp::Mul,
                Some(Tok::Slash) => BinOp::Div,
                Some(Tok::Percent) => BinOp::Mod,
                _ => return Ok(left),
            };
            self.next += 1;
            let right = self.like_in()?;
            left = self.binary(op, left, right)?;
        }
    }

    /// `x [NOT] LIKE 'pattern'` and `x [NOT] IN (a, b, ...)`.
    fn like_in(&mut self) -> Result<Node, ParseError> {
        let mut left = self.unary()?;
        loop {
            let negated = self.peek() == Some(&Tok::Not);
            let keyword = if negated {
                self.peek_at(1)
            } else {
                self.peek()
            };
            match keyword {
                Some(Tok::Like) => {
                    self.next += if negated { 2 } else { 1 };
                    let pos = self.pos();
                    let Some(Tok::Str(pattern)) = self.bump() else {
                        return Err(ParseError::new(
                            pos,
                            "the pattern of LIKE must be a string literal",
                        ));
                    };
                    let depths = [left.depth];
                    left = self.node(
                        Expr::Like {
                            expr: Box::new(left.expr),
                            pattern: like_pattern(&pattern),
                            negated,
                        },
                        &depths,
                    )?;
                }
                Some(Tok::In) => {
                    self.next += if negated { 2 } else { 1 };
                    self.expect(&Tok::LParen, "to open the set of IN")?;
                    let mut depths = vec![left.depth];
                    let mut set = Vec::new();
                    loop {
                        let item = self.expression()?;
                        depths.push(item.depth);
                        set.push(item.expr);
                        match self.bump() {
                            Some(Tok::Comma) => {}
                            Some(Tok::RParen) => break,
                            _ => {
                                self.next -= 1;
                                return Err(self.unexpected("expected `,` or `)` in the set of IN"));
                            }
                        }
                    }
                    left = self.node(
                        Expr::In {
                            expr: Box::new(left.expr),
                            set,
                            negated,
                        },
                        &depths,
                    )?;
                }
                _ if negated => {
                    return Err(self.unexpected("expected LIKE or IN after NOT"));
                }
                _ => return Ok(left),
            }
        }
    }

    /// Every recursion of the parser passes through here, so this is where nesting is
    /// bounded.
    fn unary(&mut self) -> Result<Node, ParseError> {
        self.nesting += 1;
        if self.nesting > MAX_NESTING {
            return Err(ParseError::new(
                self.pos(),
                format!("expression nests deeper than {MAX_NESTING} levels"),
            ));
        }
        let result = self.unary_inner();
        self.nesting -= 1;
        result
    }

    fn unary_inner(&mut self) -> Result<Node, ParseError> {
        match self.peek() {
            Some(Tok::Not) => {
                self.next += 1;
                let inner = self.unary()?;
                self.node(Expr::Not(Box::new(inner.expr)), &[inner.depth])
            }
            Some(sign @ (Tok::Minus | Tok::Plus)) => {
                let negative = *sign == Tok::Minus;
                if let Some(Tok::Int(digits)) = self.peek_at(1) {
                    let digits = digits.clone();
                    let pos = self.pos();
                    self.next += 2;
                    return Ok(Node::leaf(Expr::Int(integer(&digits, negative, pos)?)));
                }
                if !negative {
                    self.next += 1;
                    return Err(self.unexpected("expected an integer after `+`"));
                }
                self.next += 1;
                let inner = self.unary()?;
                self.node(Expr::Neg(Box::new(inner.expr)), &[inner.depth])
            }
            _ => self.primary(),
        }
    }

    fn primary(&mut self) -> Result<Node, ParseError> {
        let pos = self.pos();
        let Some(tok) = self.bump() else {
            self.next -= 1;
            return Err(self.unexpected("expected a value"));
        };
        match tok {
            Tok::True => Ok(Node::leaf(Expr::Bool(true))),
            Tok::False => Ok(Node::leaf(Expr::Bool(false))),
            Tok::Int(digits) => Ok(Node::leaf(Expr::Int(integer(&digits, false, pos)?))),
            Tok::Str(s) => Ok(Node::leaf(Expr::Str(s))),
            Tok::Exists => {
                let pos = self.pos();
                if let Some(Tok::Word(name)) = self.bump() {
                    Ok(Node::leaf(Expr::Exists(
                        identifier(&name, pos)?.as_str().into(),
                    )))
                } else {
                    self.next -= 1;
                    Err(self.unexpected("expected an attribute name after EXISTS"))
                }
            }
            Tok::LParen => {
                let inner = self.expression()?;
                self.expect(&Tok::RParen, "to close the sub-expression")?;
                Ok(inner)
            }
            Tok::Word(word) if self.peek() == Some(&Tok::LParen) => self.call(&word, pos),
            Tok::Word(word) => Ok(Node::leaf(Expr::Attr(
                identifier(&word, pos)?.as_str().into(),
            ))),
            other => {
                self.next -= 1;
                Err(ParseError::new(
                    pos,
                    format!("expected a value, found {}", other.describe()),
                ))
            }
        }
    }

    fn call(&mut self, word: &str, pos: usize) -> Result<Node, ParseError> {
        let mut chars = word.chars();
        let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
            && chars.all(|c| c.is_ascii_alphabetic() || c == '_');
        if !valid {
            return Err(ParseError::new(
                pos,
                format!(
                    "`{word}` is not a function name (letters and `_`, starting with a letter)"
                ),
            ));
        }
        self.next += 1; // `(`
        let mut args = Vec::new();
        let mut depths = Vec::new();
        if self.peek() == Some(&Tok::RParen) {
            self.next += 1;
        } else {
            loop {
                let arg = self.expression()?;
                depths.push(arg.depth);
                args.push(arg.expr);
                match self.bump() {
                    Some(Tok::Comma) => {}
                    Some(Tok::RParen) => break,
                    _ => {
                        self.next -= 1;
                        return Err(self.unexpected(&format!(
                            "expected `,` or `)` in the arguments of {word}"
                        )));
                    }
                }
            }
        }
        let name = word.to_ascii_uppercase();
        let expr = match Function::resolve(&name, args.len()) {
            Some(func) => Expr::Call { func, args },
            None => Expr::MissingFunction {
                name,
                arity: args.len(),
            },
        };
        self.node(expr, &depths)
    }
}

fn integer(digits: &str, negative: bool, pos: usize) -> Result<i32, ParseError> {
    let out_of_range = || {
        ParseError::new(
            pos,
            format!(
                "integer literal {}{digits} is outside the 32-bit range",
                if negative { "-" } else { "" }
            ),
        )
    };
    let magnitude: i64 = digits.parse().map_err(|_| out_of_range())?;
    let value = if negative { -magnitude } else { magnitude };
    i32::try_from(value).map_err(|_| out_of_range())
}

/// A value identifier: letters and digits, case-insensitive (read as lower case).
fn identifier(word: &str, pos: usize) -> Result<String, ParseError> {
    if word.bytes().all(|b| b.is_ascii_alphanumeric()) {
        Ok(word.to_ascii_lowercase())
    } else {
        Err(ParseError::new(
            pos,
            format!("`{word}` is not an attribute name (letters and digits only)"),
        ))
    }
}

/// Compiles a LIKE pattern: `%` any run, `_` one character, `\%` and `\_` literal.
/// A backslash before any other character is a literal backslash.
fn like_pattern(pattern: &str) -> Glob {
    let mut elems = Vec::with_capacity(pattern.len());
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.peek() {
                Some(&escaped @ ('%' | '_')) => {
                    chars.next();
                    elems.push(Elem::Char(escaped));
                }
                _ => elems.push(Elem::Char('\\')),
            },
            '%' => elems.push(Elem::Many),
            '_' => elems.push(Elem::One),
            c => elems.push(Elem::Char(c)),
        }
    }
    Glob::new(elems)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bin(op: BinOp, l: Expr, r: Expr) -> Expr {
        Expr::Binary {
            op,
            left: Box::new(l),
            right: Box::new(r),
        }
    }

    #[test]
    fn arithmetic_precedence_and_left_associativity() {
        assert_eq!(
            parse("4 * 2 + 4 / 2").unwrap(),
            bin(
                BinOp::Add,
                bin(BinOp::Mul, Expr::Int(4), Expr::Int(2)),
                bin(BinOp::Div, Expr::Int(4), Expr::Int(2))
            )
        );
        assert_eq!(
            parse("1 - 2 - 3").unwrap(),
            bin(
                BinOp::Sub,
                bin(BinOp::Sub, Expr::Int(1), Expr::Int(2)),
                Expr::Int(3)
            )
        );
    }

    #[test]
    fn logic_operators_share_precedence_left_to_right() {
        assert_eq!(
            parse("a AND b OR c").unwrap(),
            bin(
                BinOp::Or,
                bin(BinOp::And, Expr::Attr("a".into()), Expr::Attr("b".into())),
                Expr::Attr("c".into())
            )
        );
    }

    #[test]
    fn negative_literals_fold_and_range_is_checked() {
        assert_eq!(parse("-2147483648").unwrap(), Expr::Int(i32::MIN));
        assert_eq!(parse("+5").unwrap(), Expr::Int(5));
        assert_eq!(parse("--1").unwrap(), Expr::Neg(Box::new(Expr::Int(-1))));
        assert!(parse("2147483648").unwrap_err().message.contains("32-bit"));
        assert!(parse("-2147483649").is_err());
        assert!(parse("+a").is_err());
    }

    #[test]
    fn identifiers_are_case_insensitive_and_functions_resolve() {
        assert_eq!(parse("SOURCE").unwrap(), Expr::Attr("source".into()));
        assert_eq!(parse("EXISTS MyExt").unwrap(), Expr::Exists("myext".into()));
        assert!(matches!(parse("int('1')").unwrap(), Expr::Call { .. }));
        assert_eq!(
            parse("concat_ws()").unwrap(),
            Expr::MissingFunction {
                name: "CONCAT_WS".into(),
                arity: 0
            }
        );
        assert!(parse("my_ext").is_err());
        assert!(parse("f1(2)").is_err());
    }

    #[test]
    fn like_and_in_forms() {
        assert!(matches!(
            parse("a NOT LIKE 'x%'").unwrap(),
            Expr::Like { negated: true, .. }
        ));
        assert!(matches!(
            parse("a NOT IN (1, 'b', c)").unwrap(),
            Expr::In { negated: true, ref set, .. } if set.len() == 3
        ));
        let err = parse("x LIKE 123").unwrap_err();
        assert!(err.message.contains("string literal"), "{err}");
        assert!(parse("a IN ()").is_err());
        assert!(parse("a NOT b").is_err());
    }

    #[test]
    fn syntax_errors_say_where() {
        let err = parse("ABC(").unwrap_err();
        assert_eq!(err.position, 4);
        let err = parse("(1 + 2").unwrap_err();
        assert!(err.message.contains("`)`"), "{err}");
        let err = parse("1 2").unwrap_err();
        assert_eq!(err.position, 2);
        assert!(parse("").is_err());
        assert!(parse("   ").is_err());
        assert!(parse("1 +").is_err());
    }

    #[test]
    fn depth_is_bounded() {
        let nested = format!("{}1{}", "(".repeat(100), ")".repeat(100));
        // Parentheses alone do not add tree depth.
        assert!(parse(&nested).is_ok());
        let deep = format!("{}1{}", "(".repeat(300), ")".repeat(300));
        assert!(parse(&deep).unwrap_err().message.contains("deeper"));
        let chain = vec!["1"; MAX_DEPTH + 2].join(" + ");
        assert!(parse(&chain).unwrap_err().message.contains("deeper"));
        let nots = format!("{}TRUE", "NOT ".repeat(100_000));
        assert!(parse(&nots).is_err());
    }

    #[test]
    fn like_pattern_escapes() {
        let g = like_pattern(r"a\%b\_c%");
        assert!(g.matches("a%b_cxyz"));
        assert!(!g.matches("azb_c"));
        assert!(like_pattern(r"ab\c").matches(r"ab\c"));
    }
}
