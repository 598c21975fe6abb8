//! Splitting a query string into statements at top-level `;`, and mapping sqlparser's
//! line/column locations back to byte offsets.

use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::keywords::Keyword;
use sqlparser::tokenizer::{Location, Token, TokenWithSpan, Tokenizer};
use std::ops::Range;

/// One statement of a query string.
pub(super) struct Piece {
    /// Byte range in the query text, trimmed of whitespace, without the `;`.
    pub span: Range<usize>,
    /// Operator tokens seen: bounds how deep a left-leaning expression tree can get.
    pub operators: usize,
    /// The highest `$n` in it (0 for none), as PostgreSQL's lexer finds them (not in strings
    /// or comments); None for a placeholder of another form.
    pub params: Option<usize>,
}

/// Converts sqlparser locations (1-based line, 1-based column counted in chars) to byte offsets.
/// Lookups usually move forward through the text, so a cursor makes them cheap on long lines.
pub(super) struct Offsets<'a> {
    text: &'a str,
    line_starts: Vec<usize>,
    ascii: bool,
    cursor: (u64, u64, usize),
}

impl<'a> Offsets<'a> {
    pub fn new(text: &'a str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Offsets {
            text,
            line_starts,
            ascii: text.is_ascii(),
            cursor: (1, 1, 0),
        }
    }

    pub fn byte(&mut self, loc: Location) -> usize {
        if loc.line == 0 {
            return 0;
        }
        let Some(&line_start) = self.line_starts.get(loc.line as usize - 1) else {
            return self.text.len();
        };
        let col = loc.column.max(1);
        if self.ascii {
            return (line_start + col as usize - 1).min(self.text.len());
        }
        let (cur_line, cur_col, cur_byte) = self.cursor;
        let (mut at_col, mut at) = if cur_line == loc.line && cur_col <= col {
            (cur_col, cur_byte)
        } else {
            (1, line_start)
        };
        let mut chars = self.text[at..].chars();
        while at_col < col {
            match chars.next() {
                Some('\n') | None => break,
                Some(c) => {
                    at += c.len_utf8();
                    at_col += 1;
                }
            }
        }
        self.cursor = (loc.line, at_col, at);
        at
    }
}

fn is_operator(token: &Token) -> bool {
    match token {
        Token::Word(w) => matches!(w.keyword, Keyword::AND | Keyword::OR),
        Token::Whitespace(_)
        | Token::Number(..)
        | Token::Char(_)
        | Token::SingleQuotedString(_)
        | Token::DoubleQuotedString(_)
        | Token::DollarQuotedString(_)
        | Token::EscapedStringLiteral(_)
        | Token::UnicodeStringLiteral(_)
        | Token::NationalStringLiteral(_)
        | Token::HexStringLiteral(_)
        | Token::Comma
        | Token::LParen
        | Token::RParen
        | Token::LBracket
        | Token::RBracket
        | Token::Period
        | Token::Placeholder(_)
        | Token::SemiColon
        | Token::EOF => false,
        _ => true,
    }
}

/// Splits `sql` into statements. Respects strings, comments and dollar quotes (the tokenizer's
/// job); text the tokenizer gives up on (an unterminated quote) stays one final statement, as
/// PostgreSQL would also reject it as a whole.
pub(super) fn split(sql: &str) -> Vec<Piece> {
    let dialect = PostgreSqlDialect {};
    let mut pieces = Vec::new();
    let mut base = 0;
    let mut tokens: Vec<TokenWithSpan> = Vec::new();
    'restart: loop {
        let rest = &sql[base..];
        tokens.clear();
        // On error the buffer keeps the tokens read so far; the remainder becomes the last piece.
        let _ = Tokenizer::new(&dialect, rest).tokenize_with_location_into_buf(&mut tokens);
        let mut offsets = Offsets::new(rest);
        let mut start = 0;
        let mut content = false;
        let mut operators = 0;
        let mut params = Some(0);
        let mut after_copy_data = false;
        for t in &tokens {
            match &t.token {
                Token::SemiColon => {
                    let at = offsets.byte(t.span.start);
                    if content {
                        push(&mut pieces, sql, base + start..base + at, operators, params);
                    }
                    start = at + 1;
                    content = false;
                    operators = 0;
                    params = Some(0);
                    if after_copy_data {
                        // sqlparser reads psql-style COPY data after `COPY ... FROM STDIN;`.
                        // A wire-protocol query holds no such data: what follows is SQL again.
                        base += start;
                        continue 'restart;
                    }
                }
                Token::CopyData { .. } => after_copy_data = true,
                Token::Whitespace(_) => {}
                Token::Placeholder(p) => {
                    content = true;
                    let n = p.strip_prefix('$').and_then(|n| n.parse::<usize>().ok());
                    params = params.zip(n).map(|(a, b)| a.max(b));
                }
                other => {
                    content = true;
                    operators += usize::from(is_operator(other));
                }
            }
        }
        let tail = base + start..sql.len();
        let tokenized_all = tokens.last().is_some_and(|t| {
            offsets.byte(t.span.end) >= rest.len() || matches!(t.token, Token::EOF)
        });
        if content || (!tokenized_all && !sql[tail.clone()].trim().is_empty()) {
            push(&mut pieces, sql, tail, operators, params);
        }
        return pieces;
    }
}

fn push(
    pieces: &mut Vec<Piece>,
    sql: &str,
    range: Range<usize>,
    operators: usize,
    params: Option<usize>,
) {
    let text = &sql[range.clone()];
    let lead = text.len() - text.trim_start().len();
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return;
    }
    let start = range.start + lead;
    pieces.push(Piece {
        span: start..start + trimmed.len(),
        operators,
        params,
    });
}
