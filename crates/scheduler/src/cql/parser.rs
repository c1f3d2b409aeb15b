//! Recursive-descent parser for CQL, over characters so that error positions are character
//! offsets.

use super::value::{compile_match, parse_date, parse_version};
use super::{Argument, CqlError, Expr, Operator, Predicate, Subject, Value};

pub(super) fn parse(src: &str) -> Result<Expr, CqlError> {
    // ECS's limit on an expression. It also bounds the trees built from chains of `and`/`or`,
    // which the depth limit does not see (a chain nests to the left as it grows), so that
    // dropping, printing or evaluating a tree never runs out of stack.
    if let Some((at, _)) = src.char_indices().nth(MAX_CHARS) {
        return Err(CqlError {
            position: src[..at].chars().count(),
            message: format!("expression is longer than {MAX_CHARS} characters"),
        });
    }
    let mut p = Parser {
        chars: src.chars().collect(),
        pos: 0,
        depth: 0,
    };
    let expr = p.or_expr()?;
    p.skip_ws();
    if p.pos < p.chars.len() {
        let msg = if p.peek() == Some(')') {
            "unbalanced ')'"
        } else {
            "expected 'and', 'or' or the end of the expression"
        };
        return Err(p.err_at(p.pos, msg));
    }
    Ok(expr)
}

/// Nesting deeper than this is refused rather than risking the stack.
const MAX_DEPTH: usize = 100;

/// The longest expression ECS accepts, in characters.
pub(super) const MAX_CHARS: usize = 2000;

struct Parser {
    chars: Vec<char>,
    pos: usize,
    depth: usize,
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Characters that end a subject or keyword token.
fn is_special(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '(' | ')' | '[' | ']' | ',' | '!' | '=' | '<' | '>' | '~' | '&' | '|' | '\'' | '"'
        )
}

impl Parser {
    fn err_at(&self, position: usize, message: impl Into<String>) -> CqlError {
        CqlError {
            position,
            message: message.into(),
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn peek_at(&self, off: usize) -> Option<char> {
        self.chars.get(self.pos + off).copied()
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.pos += 1;
        }
    }

    fn starts_with(&self, s: &str) -> bool {
        s.chars()
            .enumerate()
            .all(|(k, c)| self.chars.get(self.pos + k) == Some(&c))
    }

    fn eat_sym(&mut self, s: &str) -> bool {
        if self.starts_with(s) {
            self.pos += s.chars().count();
            true
        } else {
            false
        }
    }

    /// Whether a keyword (case-insensitive) stands at `at`, not followed by a word character.
    fn keyword_at(&self, at: usize, kw: &str) -> bool {
        let mut i = at;
        for k in kw.chars() {
            match self.chars.get(i) {
                Some(c) if c.eq_ignore_ascii_case(&k) => i += 1,
                _ => return false,
            }
        }
        !self.chars.get(i).copied().is_some_and(is_word_char)
    }

    fn eat_keyword(&mut self, kw: &str) -> bool {
        if self.keyword_at(self.pos, kw) {
            self.pos += kw.chars().count();
            true
        } else {
            false
        }
    }

    fn enter(&mut self) -> Result<(), CqlError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.err_at(self.pos, "expression nested too deeply"));
        }
        Ok(())
    }

    fn or_expr(&mut self) -> Result<Expr, CqlError> {
        self.enter()?;
        let mut left = self.and_expr()?;
        loop {
            self.skip_ws();
            if self.eat_sym("||") || self.eat_keyword("or") {
                let right = self.and_expr()?;
                left = Expr::Or(Box::new(left), Box::new(right));
            } else {
                break;
            }
        }
        self.depth -= 1;
        Ok(left)
    }

    fn and_expr(&mut self) -> Result<Expr, CqlError> {
        let mut left = self.unary()?;
        loop {
            self.skip_ws();
            if self.eat_sym("&&") || self.eat_keyword("and") {
                let right = self.unary()?;
                left = Expr::And(Box::new(left), Box::new(right));
            } else {
                break;
            }
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Expr, CqlError> {
        self.skip_ws();
        let Some(c) = self.peek() else {
            return Err(self.err_at(self.pos, "expected an expression"));
        };
        if c == '!' && !matches!(self.peek_at(1), Some('=' | '~')) {
            self.pos += 1;
            self.enter()?;
            let e = self.unary()?;
            self.depth -= 1;
            return Ok(Expr::Not(Box::new(e)));
        }
        if self.eat_keyword("not") {
            self.enter()?;
            let e = self.unary()?;
            self.depth -= 1;
            return Ok(Expr::Not(Box::new(e)));
        }
        if c == '(' {
            let open = self.pos;
            self.pos += 1;
            let e = self.or_expr()?;
            self.skip_ws();
            if !self.eat_sym(")") {
                return Err(self.err_at(
                    self.pos,
                    format!("expected ')' to close the '(' at position {open}"),
                ));
            }
            return Ok(e);
        }
        self.predicate()
    }

    fn predicate(&mut self) -> Result<Expr, CqlError> {
        let start = self.pos;
        while self.peek().is_some_and(|c| !is_special(c)) {
            self.pos += 1;
        }
        let token: String = self.chars[start..self.pos].iter().collect();
        if token.is_empty() {
            return Err(self.err_at(start, "expected a subject"));
        }
        let subject = subject_of(&token).ok_or_else(|| {
            self.err_at(
                start,
                format!(
                    "unknown subject '{token}'; expected agentConnected, agentVersion, ec2InstanceId, registeredAt, runningTasksCount, task:group or attribute:<name>"
                ),
            )
        })?;
        if let Subject::Attribute(name) = &subject {
            let name_start = start + "attribute:".len();
            if name.is_empty() {
                return Err(
                    self.err_at(name_start, "expected an attribute name after 'attribute:'")
                );
            }
            if let Some(i) = name
                .chars()
                .position(|c| !(c.is_ascii_alphanumeric() || "-_./\\".contains(c)))
            {
                return Err(self.err_at(name_start + i, "invalid character in attribute name"));
            }
            if name.chars().count() > 128 {
                return Err(self.err_at(name_start, "attribute name longer than 128 characters"));
            }
        }

        self.skip_ws();
        let op_pos = self.pos;
        let operator = self.operator()?;
        if !operator_allowed(&subject, operator) {
            return Err(self.err_at(
                op_pos,
                format!(
                    "operator '{}' is not valid for subject '{subject}'",
                    operator.symbol()
                ),
            ));
        }

        let argument = match operator {
            Operator::Exists | Operator::NotExists => Argument::None,
            Operator::In | Operator::NotIn => {
                self.skip_ws();
                if !self.eat_sym("[") {
                    return Err(self.err_at(self.pos, "expected '[' to start a list"));
                }
                let mut items = Vec::new();
                loop {
                    let (raw, at) = self.value(true)?;
                    items.push(self.typed(&subject, operator, raw, at)?);
                    self.skip_ws();
                    if self.eat_sym(",") {
                        continue;
                    }
                    if self.eat_sym("]") {
                        break;
                    }
                    return Err(self.err_at(self.pos, "expected ',' or ']'"));
                }
                Argument::List(items)
            }
            _ => {
                let (raw, at) = self.value(false)?;
                Argument::Value(self.typed(&subject, operator, raw, at)?)
            }
        };
        Ok(Expr::Predicate(Predicate {
            subject,
            operator,
            argument,
        }))
    }

    fn operator(&mut self) -> Result<Operator, CqlError> {
        if self.peek().is_none() {
            return Err(self.err_at(self.pos, "expected an operator"));
        }
        // Symbol forms; `!exists` and `!in` before `!=`/`!~` do not clash.
        if self.starts_with("!") && self.keyword_at(self.pos + 1, "exists") {
            self.pos += 7;
            return Ok(Operator::NotExists);
        }
        if self.starts_with("!") && self.keyword_at(self.pos + 1, "in") {
            self.pos += 3;
            return Ok(Operator::NotIn);
        }
        for (sym, op) in [
            ("==", Operator::Equals),
            ("!=", Operator::NotEquals),
            (">=", Operator::GreaterThanEqual),
            ("<=", Operator::LessThanEqual),
            ("=~", Operator::Matches),
            ("!~", Operator::NotMatches),
            (">", Operator::GreaterThan),
            ("<", Operator::LessThan),
        ] {
            if self.eat_sym(sym) {
                return Ok(op);
            }
        }
        // Word forms.
        for (kw, op) in [
            ("equals", Operator::Equals),
            ("not_equals", Operator::NotEquals),
            ("greater_than_equal", Operator::GreaterThanEqual),
            ("greater_than", Operator::GreaterThan),
            ("less_than_equal", Operator::LessThanEqual),
            ("less_than", Operator::LessThan),
            ("exists", Operator::Exists),
            ("not_exists", Operator::NotExists),
            ("in", Operator::In),
            ("not_in", Operator::NotIn),
            ("matches", Operator::Matches),
            ("not_matches", Operator::NotMatches),
        ] {
            if self.eat_keyword(kw) {
                return Ok(op);
            }
        }
        // `not in`, `not exists`, `not matches`, `not equals`.
        if self.keyword_at(self.pos, "not") {
            let save = self.pos;
            self.pos += 3;
            self.skip_ws();
            for (kw, op) in [
                ("in", Operator::NotIn),
                ("exists", Operator::NotExists),
                ("matches", Operator::NotMatches),
                ("equals", Operator::NotEquals),
            ] {
                if self.eat_keyword(kw) {
                    return Ok(op);
                }
            }
            self.pos = save;
        }
        Err(self.err_at(self.pos, "expected an operator"))
    }

    /// A literal: quoted, or a bare run of characters. Returns it and its position.
    fn value(&mut self, in_list: bool) -> Result<(String, usize), CqlError> {
        self.skip_ws();
        let start = self.pos;
        let Some(c) = self.peek() else {
            return Err(self.err_at(start, "expected a value"));
        };
        if c == '\'' || c == '"' {
            self.pos += 1;
            let mut out = String::new();
            loop {
                match self.peek() {
                    None => return Err(self.err_at(start, "unterminated quoted value")),
                    Some('\\') if self.peek_at(1) == Some(c) => {
                        out.push(c);
                        self.pos += 2;
                    }
                    Some(q) if q == c => {
                        self.pos += 1;
                        break;
                    }
                    Some(other) => {
                        out.push(other);
                        self.pos += 1;
                    }
                }
            }
            return Ok((out, start));
        }
        let (mut parens, mut brackets) = (0usize, 0usize);
        while let Some(c) = self.peek() {
            if c.is_whitespace() || self.starts_with("&&") || self.starts_with("||") {
                break;
            }
            match c {
                '\\' => {
                    self.pos += 1;
                    if self.peek().is_some() {
                        self.pos += 1;
                    }
                    continue;
                }
                ',' if in_list && parens == 0 && brackets == 0 => break,
                ')' if parens == 0 => break,
                ']' if brackets == 0 => break,
                '(' => parens += 1,
                ')' => parens -= 1,
                '[' => brackets += 1,
                ']' => brackets -= 1,
                _ => {}
            }
            self.pos += 1;
        }
        if self.pos == start {
            return Err(self.err_at(start, "expected a value"));
        }
        Ok((self.chars[start..self.pos].iter().collect(), start))
    }

    /// Checks and prepares a value for its subject and operator.
    fn typed(
        &self,
        subject: &Subject,
        op: Operator,
        raw: String,
        at: usize,
    ) -> Result<Value, CqlError> {
        let mut v = Value::new(raw);
        if matches!(op, Operator::Matches | Operator::NotMatches) {
            let re = compile_match(&v.raw).map_err(|e| {
                self.err_at(at, format!("invalid regular expression '{}': {e}", v.raw))
            })?;
            v.regex = Some(re);
            return Ok(v);
        }
        match subject {
            Subject::RunningTasksCount if v.raw.parse::<u64>().is_err() => {
                return Err(self.err_at(at, format!("expected a number, found '{}'", v.raw)));
            }
            Subject::AgentVersion => match parse_version(&v.raw) {
                Some(ver) => v.version = Some(ver),
                None => {
                    return Err(self.err_at(
                        at,
                        format!("expected a version such as 1.14.5, found '{}'", v.raw),
                    ));
                }
            },
            Subject::RegisteredAt => match parse_date(&v.raw) {
                Some(iv) => v.interval = Some(iv),
                None => {
                    return Err(self.err_at(
                        at,
                        format!(
                            "expected a date such as 2018-06-18 or 2018-06-18T22:28:28Z, found '{}'",
                            v.raw
                        ),
                    ));
                }
            },
            Subject::AgentConnected if v.raw != "true" && v.raw != "false" => {
                return Err(self.err_at(at, format!("expected true or false, found '{}'", v.raw)));
            }
            _ => {}
        }
        Ok(v)
    }
}

fn subject_of(token: &str) -> Option<Subject> {
    if let Some(prefix) = token.get(..10)
        && prefix.eq_ignore_ascii_case("attribute:")
    {
        return Some(Subject::Attribute(token[10..].to_owned()));
    }
    Some(match token.to_ascii_lowercase().as_str() {
        "agentconnected" => Subject::AgentConnected,
        "agentversion" => Subject::AgentVersion,
        "ec2instanceid" => Subject::Ec2InstanceId,
        "registeredat" => Subject::RegisteredAt,
        "runningtaskscount" => Subject::RunningTasksCount,
        "task:group" => Subject::TaskGroup,
        _ => return None,
    })
}

/// The operators the ECS documentation lists for each subject.
fn operator_allowed(subject: &Subject, op: Operator) -> bool {
    use Operator::*;
    match subject {
        Subject::Attribute(_) => true,
        Subject::AgentConnected | Subject::Ec2InstanceId => {
            matches!(op, Equals | NotEquals | In | NotIn | Matches | NotMatches)
        }
        Subject::TaskGroup => matches!(
            op,
            Equals | NotEquals | In | NotIn | Matches | NotMatches | Exists | NotExists
        ),
        Subject::AgentVersion | Subject::RegisteredAt | Subject::RunningTasksCount => matches!(
            op,
            Equals | NotEquals | GreaterThan | GreaterThanEqual | LessThan | LessThanEqual
        ),
    }
}
