//! Shard-key extraction: literals, WHERE/ON conjuncts, and the union-find over column equalities
//! that decides which table occurrences of one query scope are pinned to which keys.

use crate::config::KeyType;
use crate::ring::Key;
use sqlparser::ast::{BinaryOperator, DataType, Expr, Ident, InTarget, UnaryOperator, Value};

/// What a value expression is, as far as placing a row goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Lit {
    /// A constant, as the text PostgreSQL would parse into the column's type.
    Val(String),
    Null,
    /// `$n`
    Param(Param),
    /// Anything else (function call, column, DEFAULT, expression).
    Other,
}

/// A bind parameter `$n` where a key is expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Param {
    /// 0-based: `$1` is 0.
    pub index: usize,
    /// Where it stands in the text (line, column), so keys can be listed in order of appearance
    /// whatever order the scopes were walked in.
    pub at: (u64, u64),
    /// The parameter is an array of keys (`key = ANY($n)`), not one key.
    pub array: bool,
}

/// Folds an identifier as PostgreSQL does: unquoted to lower case (ASCII only, as in UTF-8
/// databases), quoted kept as written.
pub(super) fn fold(ident: &Ident) -> String {
    if ident.quote_style.is_some() {
        ident.value.clone()
    } else {
        ident.value.to_ascii_lowercase()
    }
}

pub(super) fn literal(expr: &Expr) -> Lit {
    match expr {
        Expr::Value(v) => match &v.value {
            Value::Number(n, _) => Lit::Val(n.to_string()),
            Value::SingleQuotedString(s)
            | Value::EscapedStringLiteral(s)
            | Value::UnicodeStringLiteral(s)
            | Value::NationalStringLiteral(s) => Lit::Val(s.clone()),
            Value::DollarQuotedString(d) => Lit::Val(d.value.clone()),
            Value::Null => Lit::Null,
            // `?` and `:name` are not PostgreSQL parameters, nor is `$0`: PostgreSQL refuses them.
            Value::Placeholder(p) => {
                match p.strip_prefix('$').and_then(|n| n.parse::<usize>().ok()) {
                    Some(n) if n >= 1 => Lit::Param(Param {
                        index: n - 1,
                        at: (v.span.start.line, v.span.start.column),
                        array: false,
                    }),
                    _ => Lit::Other,
                }
            }
            _ => Lit::Other,
        },
        Expr::UnaryOp { op, expr } => match (op, literal(expr)) {
            (UnaryOperator::Minus, Lit::Val(n)) if is_number(expr) => Lit::Val(format!("-{n}")),
            (UnaryOperator::Plus, Lit::Val(n)) if is_number(expr) => Lit::Val(n),
            _ => Lit::Other,
        },
        // A cast of a constant to the key's own type keeps its value; casts to other types
        // (1.5::int) are caught when the text does not parse as the key type.
        Expr::Cast { expr, .. } | Expr::Nested(expr) => literal(expr),
        Expr::TypedString(ts) => literal(&Expr::Value(ts.value.clone())),
        _ => Lit::Other,
    }
}

fn is_number(expr: &Expr) -> bool {
    match expr {
        Expr::Value(v) => matches!(v.value, Value::Number(..)),
        Expr::Nested(e) => is_number(e),
        _ => false,
    }
}

/// The top-level AND-conjuncts of a condition, left to right, parentheses flattened.
/// Iterative: generated queries can chain thousands of ANDs.
pub(super) fn conjuncts<'a>(expr: &'a Expr, out: &mut Vec<&'a Expr>) {
    let mut stack = vec![expr];
    while let Some(e) = stack.pop() {
        match e {
            Expr::BinaryOp {
                left,
                op: BinaryOperator::And,
                right,
            } => {
                stack.push(right);
                stack.push(left);
            }
            Expr::Nested(inner) => stack.push(inner),
            other => out.push(other),
        }
    }
}

/// A column reference, folded: `id`, `u.id`, `public.users.id`.
pub(super) fn column(expr: &Expr) -> Option<Vec<String>> {
    match expr {
        Expr::Identifier(i) => Some(vec![fold(i)]),
        Expr::CompoundIdentifier(parts) => Some(parts.iter().map(fold).collect()),
        Expr::Nested(e) => column(e),
        _ => None,
    }
}

/// What one conjunct says about columns.
pub(super) enum Fact {
    /// Two columns are equal.
    Same(Vec<String>, Vec<String>),
    /// A column is one of these constants.
    OneOf(Vec<String>, Vec<Lit>),
}

pub(super) fn fact(expr: &Expr) -> Option<Fact> {
    match expr {
        Expr::BinaryOp {
            left,
            op: BinaryOperator::Eq,
            right,
        } => match (column(left), column(right)) {
            (Some(l), Some(r)) => Some(Fact::Same(l, r)),
            (Some(c), None) => constant(right).map(|lit| Fact::OneOf(c, vec![lit])),
            (None, Some(c)) => constant(left).map(|lit| Fact::OneOf(c, vec![lit])),
            (None, None) => None,
        },
        Expr::In {
            expr,
            target: InTarget::List(list),
            negated: false,
            ..
        } => {
            let col = column(expr)?;
            let lits = list.iter().map(constant).collect::<Option<Vec<_>>>()?;
            Some(Fact::OneOf(col, lits))
        }
        // `id = ANY(ARRAY[1, 2])`, and `id = ANY($1)` (`$1::bigint[]`...) with an array bound
        // to `$1`, as drivers send IN lists.
        Expr::AnyOp {
            left,
            compare_op: BinaryOperator::Eq,
            right,
            ..
        } => {
            let col = column(left)?;
            match strip_nested(right) {
                Expr::Array(array) => {
                    let lits = array
                        .elem
                        .iter()
                        .map(constant)
                        .collect::<Option<Vec<_>>>()?;
                    Some(Fact::OneOf(col, lits))
                }
                other => {
                    let p = array_param(other)?;
                    Some(Fact::OneOf(col, vec![Lit::Param(p)]))
                }
            }
        }
        _ => None,
    }
}

/// `$n`, bare or cast to array types (`$1::bigint[]`), whose value is then an array. A cast of
/// the elements keeps their values, as for scalar parameters; a parameter cast to anything else
/// first (`$1::text::bigint[]`) is not an array itself, and pins nothing.
fn array_param(e: &Expr) -> Option<Param> {
    match strip_nested(e) {
        Expr::Cast {
            expr,
            data_type: DataType::Array(_),
            ..
        } => array_param(expr),
        e @ Expr::Value(_) => match literal(e) {
            Lit::Param(p) => Some(Param { array: true, ..p }),
            _ => None,
        },
        _ => None,
    }
}

fn strip_nested(mut e: &Expr) -> &Expr {
    while let Expr::Nested(inner) = e {
        e = inner;
    }
    e
}

fn constant(expr: &Expr) -> Option<Lit> {
    match literal(expr) {
        lit @ (Lit::Val(_) | Lit::Null | Lit::Param(_)) => Some(lit),
        Lit::Other => None,
    }
}

/// Union-find over (binding, column) nodes of one query scope, with the constant sets attached
/// to each class in the order they appeared.
#[derive(Default)]
pub(super) struct Classes {
    nodes: Vec<(usize, String)>,
    parent: Vec<usize>,
    sets: Vec<Vec<Vec<Lit>>>,
}

impl Classes {
    fn node(&mut self, binding: usize, col: &str) -> usize {
        if let Some(i) = self
            .nodes
            .iter()
            .position(|(b, c)| *b == binding && c == col)
        {
            return i;
        }
        self.nodes.push((binding, col.to_string()));
        self.parent.push(self.parent.len());
        self.sets.push(Vec::new());
        self.nodes.len() - 1
    }

    fn find(&mut self, mut i: usize) -> usize {
        while self.parent[i] != i {
            self.parent[i] = self.parent[self.parent[i]];
            i = self.parent[i];
        }
        i
    }

    pub fn same(&mut self, a: (usize, &str), b: (usize, &str)) {
        let (a, b) = (self.node(a.0, a.1), self.node(b.0, b.1));
        let (ra, rb) = (self.find(a), self.find(b));
        if ra != rb {
            // Keep the earlier class's sets first so "the first constant" stays the first.
            let (keep, gone) = if ra < rb { (ra, rb) } else { (rb, ra) };
            self.parent[gone] = keep;
            let moved = std::mem::take(&mut self.sets[gone]);
            self.sets[keep].extend(moved);
        }
    }

    pub fn one_of(&mut self, at: (usize, &str), lits: Vec<Lit>) {
        let n = self.node(at.0, at.1);
        let r = self.find(n);
        self.sets[r].push(lits);
    }

    /// The class of a column, if any fact mentions it.
    pub fn class_of(&mut self, binding: usize, col: &str) -> Option<usize> {
        let n = self
            .nodes
            .iter()
            .position(|(b, c)| *b == binding && c == col)?;
        Some(self.find(n))
    }

    /// The constant sets that constrain a column, if any.
    pub fn sets_of(&mut self, binding: usize, col: &str) -> &[Vec<Lit>] {
        let Some(n) = self
            .nodes
            .iter()
            .position(|(b, c)| *b == binding && c == col)
        else {
            return &[];
        };
        let r = self.find(n);
        &self.sets[r]
    }
}

/// What a key column is pinned to: literal keys and parameters whose values are keys (or arrays
/// of keys).
#[derive(Debug, Default)]
pub(super) struct Pin {
    pub keys: Vec<Key>,
    pub params: Vec<Param>,
}

/// The pin of a column, given its constant sets. The sets of literals alone are intersected as
/// `pinned_keys` does; they bound the column's values exactly, so sets that also hold parameters
/// can only narrow them further and are left out. Without such a set, the column's value lies in
/// every parameter set, so the union of those sets is a correct (if possibly wider) bound.
pub(super) fn pinned(ty: KeyType, sets: &[Vec<Lit>]) -> Option<Pin> {
    let has_param = |set: &&Vec<Lit>| set.iter().any(|l| matches!(l, Lit::Param(_)));
    let literal_sets = sets.iter().filter(|s| !has_param(s));
    if let Some(keys) = pinned_keys(ty, literal_sets) {
        return Some(Pin {
            keys,
            params: Vec::new(),
        });
    }
    let mut pin = Pin::default();
    for lit in sets.iter().filter(has_param).flatten() {
        match lit {
            Lit::Val(text) => {
                if let Ok(key) = Key::from_text(ty, text) {
                    if !pin.keys.contains(&key) {
                        pin.keys.push(key);
                    }
                }
            }
            Lit::Param(p) => pin.params.push(*p),
            Lit::Null | Lit::Other => {}
        }
    }
    (!pin.params.is_empty()).then_some(pin)
}

/// The keys a column is pinned to, given its constant sets: the intersection of the sets.
/// NULLs and constants that are not valid for the type match no row and are dropped; a set left
/// empty pins nothing. Contradictory sets select no row at all: any one shard answers exactly,
/// so the first key is kept.
pub(super) fn pinned_keys<'a>(
    ty: KeyType,
    sets: impl IntoIterator<Item = &'a Vec<Lit>>,
) -> Option<Vec<Key>> {
    let mut result: Option<Vec<Key>> = None;
    for set in sets {
        let mut keys: Vec<Key> = Vec::with_capacity(set.len());
        for lit in set {
            if let Lit::Val(text) = lit {
                if let Ok(key) = Key::from_text(ty, text) {
                    if !keys.contains(&key) {
                        keys.push(key);
                    }
                }
            }
        }
        if keys.is_empty() {
            continue;
        }
        result = Some(match result {
            None => keys,
            Some(prev) => {
                let both: Vec<Key> = prev.iter().filter(|k| keys.contains(k)).cloned().collect();
                if both.is_empty() {
                    return Some(vec![prev[0].clone()]);
                }
                both
            }
        });
    }
    result
}
