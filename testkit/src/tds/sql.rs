//! T-SQL as this server understands it: parsed with sqlparser's MsSql
//! dialect (not matched against known text), then run over the one table the
//! fixtures hold, `dbo.assessments`, with SQL Server's semantics where a
//! client can see them: three-valued logic, the implicit conversions between
//! strings, numbers and dates, the default collation (case-insensitive,
//! trailing spaces ignored), `TOP`, `ORDER BY`, the session's transaction
//! count and database, and the errors SQL Server gives (with its numbers).
//!
//! What it runs: `SELECT` (a projection of columns, parameters, literals,
//! `@@` variables and a few functions; `FROM dbo.assessments`,
//! `OPENJSON(...) WITH (...)`, `CROSS APPLY` / `OUTER APPLY` of a derived
//! table correlated with its left side, or no table; `WHERE`, `ORDER BY`,
//! `TOP`; a trailing `OPTION (...)` hint), `SET`,
//! `USE`, `BEGIN TRAN` / `COMMIT` / `ROLLBACK` (no-ops on read-only data that
//! keep `@@TRANCOUNT` as SQL Server does), `IF <condition> <statement>`, and
//! `EXEC` (every procedure unknown: 2812). What it refuses, with error 40517
//! and a message saying so: writes, DDL, other joins, unions, grouping, temporary
//! tables, the system catalog. Parsing is cached by statement text.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use chrono::{Days, NaiveDate, NaiveDateTime};
use sqlparser::ast::{
    self, BinaryOperator, DataType, Expr, FunctionArg, FunctionArgExpr, FunctionArguments,
    ObjectName, ObjectNamePart, OrderByKind, Query, Select, SelectItem, SetExpr, Statement,
    TableFactor, TopQuantity, UnaryOperator, Use,
};
use sqlparser::dialect::MsSqlDialect;
use sqlparser::keywords::Keyword;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};

use super::catalog::{self, EnvChange, SessionSettings, StatementOutcome, error, page_columns};
use super::request::Param;
use super::wire::{Column, ColumnType, Value, WireType};
use crate::fixtures::{AssessmentFixture, Fixtures};

/// The version string `SELECT @@VERSION` returns (SQL Server's shape: product, build, edition, OS).
pub const VERSION_TEXT: &str = "Microsoft SQL Server 2022 (RTM) - 16.0.1000.6 (X64) \n\ttestkit TDS stand-in (read-only, fixture data) on Linux";

/// What one session holds between requests: its `SET` options, current
/// database, open transaction and prepared statements.
#[derive(Debug, Clone)]
pub struct Session {
    pub settings: SessionSettings,
    /// The database the login opened (a reset goes back to it).
    pub login_database: String,
    pub database: String,
    /// `@@TRANCOUNT`.
    pub tran_count: u32,
    /// The open transaction's descriptor (ENVCHANGE 8's value), 0 when none.
    pub tran_descriptor: u64,
    next_descriptor: u64,
    /// `sp_prepare` handles: each a statement and its parameter declarations.
    pub prepared: HashMap<i32, Prepared>,
    next_handle: i32,
    /// `@@SPID` (what the packet headers carry).
    pub spid: u16,
}

/// A prepared statement: its text and the names of its parameters in order.
#[derive(Debug, Clone, PartialEq)]
pub struct Prepared {
    pub text: String,
    pub param_names: Vec<String>,
}

impl Session {
    pub fn new(database: &str, spid: u16) -> Session {
        Session {
            settings: SessionSettings::default(),
            login_database: database.to_owned(),
            database: database.to_owned(),
            tran_count: 0,
            tran_descriptor: 0,
            next_descriptor: 1,
            prepared: HashMap::new(),
            next_handle: 1,
            spid,
        }
    }

    /// What `sp_reset_connection` (or the RESETCONNECTION bit) does: the
    /// login's database and settings again, prepared handles dropped, and
    /// an open transaction rolled back unless `keep_transaction`
    /// (RESETCONNECTIONSKIPTRAN). Returns the rollback's ENVCHANGE, if any.
    pub fn reset(&mut self, keep_transaction: bool) -> Option<EnvChange> {
        self.settings.reset();
        self.database = self.login_database.clone();
        self.prepared.clear();
        if keep_transaction || self.tran_count == 0 {
            return None;
        }
        Some(self.end_transaction(EnvChange::Rollback))
    }

    pub fn prepare(&mut self, prepared: Prepared) -> i32 {
        let handle = self.next_handle;
        self.next_handle = self.next_handle.wrapping_add(1).max(1);
        self.prepared.insert(handle, prepared);
        handle
    }

    fn begin_transaction(&mut self) -> Option<EnvChange> {
        self.tran_count += 1;
        if self.tran_count > 1 {
            return None; // nested: only the count moves
        }
        self.tran_descriptor = self.next_descriptor;
        self.next_descriptor += 1;
        Some(EnvChange::BeginTran(self.tran_descriptor))
    }

    fn end_transaction(&mut self, end: fn(u64) -> EnvChange) -> EnvChange {
        let descriptor = std::mem::take(&mut self.tran_descriptor);
        self.tran_count = 0;
        end(descriptor)
    }

    /// `SET NOCOUNT ON`: DONE tokens carry no row count.
    pub fn nocount_on(&self) -> bool {
        self.settings.get("nocount") == Some("on")
    }
}

/// A batch that does not parse: SQL Server refuses all of it (error 102).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub near: String,
}

impl SyntaxError {
    pub fn outcome(&self) -> StatementOutcome {
        error(102, 15, format!("Incorrect syntax near '{}'.", self.near))
    }
}

type Parsed = Arc<Result<Vec<Statement>, SyntaxError>>;

/// How many distinct statement texts keep their parse (then the cache starts over).
const PARSE_CACHE_ENTRIES: usize = 512;

static PARSE_CACHE: LazyLock<Mutex<HashMap<String, Parsed>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// The batch's statements, parsed once per distinct text.
pub fn parse(text: &str) -> Parsed {
    let mut cache = PARSE_CACHE.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(parsed) = cache.get(text) {
        return Arc::clone(parsed);
    }
    let parsed = Arc::new(parse_uncached(text));
    if cache.len() >= PARSE_CACHE_ENTRIES {
        cache.clear();
    }
    cache.insert(text.to_owned(), Arc::clone(&parsed));
    parsed
}

/// Parses a batch: statements separated by `;` or by nothing (T-SQL needs
/// no separator), each possibly ending with a query hint `OPTION (...)`,
/// which sqlparser does not know and this server has no use for: it is
/// taken out of the token stream before parsing.
pub fn parse_uncached(text: &str) -> Result<Vec<Statement>, SyntaxError> {
    let dialect = MsSqlDialect {};
    let tokens = Tokenizer::new(&dialect, text)
        .tokenize_with_location()
        .map_err(|e| SyntaxError {
            near: e.message.chars().take(40).collect(),
        })?;
    let tokens = without_query_hints(tokens);
    let mut parser = Parser::new(&dialect).with_tokens_with_locations(tokens);
    let mut statements = Vec::new();
    loop {
        while parser.consume_token(&Token::SemiColon) {}
        if parser.peek_token_ref().token == Token::EOF {
            return Ok(statements);
        }
        match parser.parse_statement() {
            Ok(statement) => statements.push(statement),
            Err(_) => {
                let near = match &parser.peek_token_ref().token {
                    Token::EOF => {
                        parser.prev_token();
                        parser.peek_token_ref().token.to_string()
                    }
                    token => token.to_string(),
                };
                return Err(SyntaxError { near });
            }
        }
    }
}

/// The tokens without `OPTION ( ... )` clauses outside parentheses.
fn without_query_hints(tokens: Vec<TokenWithSpan>) -> Vec<TokenWithSpan> {
    let mut out = Vec::with_capacity(tokens.len());
    let mut depth = 0usize;
    let mut i = 0;
    while i < tokens.len() {
        let is_option = matches!(&tokens[i].token, Token::Word(w) if w.keyword == Keyword::OPTION && depth == 0);
        if is_option {
            let next = tokens[i + 1..]
                .iter()
                .position(|t| !matches!(t.token, Token::Whitespace(_)))
                .map(|p| i + 1 + p);
            if let Some(open) = next.filter(|&n| tokens[n].token == Token::LParen) {
                let mut level = 0usize;
                let mut end = open;
                for (j, t) in tokens.iter().enumerate().skip(open) {
                    match t.token {
                        Token::LParen => level += 1,
                        Token::RParen => level -= 1,
                        _ => {}
                    }
                    end = j;
                    if level == 0 {
                        break;
                    }
                }
                i = end + 1;
                continue;
            }
        }
        match tokens[i].token {
            Token::LParen => depth += 1,
            Token::RParen => depth = depth.saturating_sub(1),
            _ => {}
        }
        out.push(tokens[i].clone());
        i += 1;
    }
    out
}

/// What a statement runs against: the data, the request's parameters, the session.
pub struct Context<'a> {
    pub fixtures: &'a Fixtures,
    pub params: &'a [Param],
    pub session: &'a mut Session,
    pub server_name: &'a str,
}

/// Runs a parsed batch, statement by statement, until one fails (as SQL
/// Server ends a batch at an error of class 16 in a statement it compiled).
pub fn run(statements: &[Statement], cx: &mut Context<'_>) -> Vec<StatementOutcome> {
    let mut outcomes = Vec::new();
    run_into(statements, cx, &mut outcomes);
    if outcomes.is_empty() {
        outcomes.push(StatementOutcome::Done);
    }
    outcomes
}

fn run_into(statements: &[Statement], cx: &mut Context<'_>, out: &mut Vec<StatementOutcome>) {
    for statement in statements {
        let failed = match statement {
            Statement::If(branches) => match run_if(branches, cx, out) {
                Ok(()) => out
                    .last()
                    .is_some_and(|o| matches!(o, StatementOutcome::Error { .. })),
                Err(outcome) => {
                    out.push(outcome);
                    true
                }
            },
            statement => {
                let outcome = run_one(statement, cx);
                let failed = matches!(outcome, StatementOutcome::Error { .. });
                out.push(outcome);
                failed
            }
        };
        if failed {
            return;
        }
    }
}

fn run_if(
    branches: &ast::IfStatement,
    cx: &mut Context<'_>,
    out: &mut Vec<StatementOutcome>,
) -> Result<(), StatementOutcome> {
    let blocks = std::iter::once(&branches.if_block).chain(&branches.elseif_blocks);
    for block in blocks {
        let condition = block.condition.as_ref().ok_or_else(|| unsupported("IF"))?;
        if truth(&eval(condition, None, cx)?) == Some(true) {
            run_into(block.conditional_statements.statements(), cx, out);
            return Ok(());
        }
    }
    if let Some(block) = &branches.else_block {
        run_into(block.conditional_statements.statements(), cx, out);
    }
    Ok(())
}

fn unsupported(what: &str) -> StatementOutcome {
    error(
        40517,
        16,
        format!("{what} is not supported by the testkit TDS server (a read-only stand-in)."),
    )
}

fn run_one(statement: &Statement, cx: &mut Context<'_>) -> StatementOutcome {
    match statement {
        Statement::Query(query) => match select(query, cx, None) {
            Ok((columns, rows)) => StatementOutcome::Rows { columns, rows },
            Err(outcome) => outcome,
        },
        Statement::Set(_) => {
            // sqlparser spells every SET it parsed back as T-SQL; the
            // options and their values are checked as SQL Server checks them.
            let text = statement.to_string().to_ascii_lowercase();
            let words: Vec<&str> = text.split_whitespace().skip(1).collect();
            catalog::apply_set(&words, &mut cx.session.settings)
        }
        Statement::Use(used) => use_database(used, cx.session),
        Statement::StartTransaction { .. } => match cx.session.begin_transaction() {
            Some(change) => StatementOutcome::Env(vec![change]),
            None => StatementOutcome::Done,
        },
        Statement::Commit { .. } => match cx.session.tran_count {
            0 => error(
                3902,
                16,
                "The COMMIT TRANSACTION request has no corresponding BEGIN TRANSACTION.",
            ),
            1 => StatementOutcome::Env(vec![cx.session.end_transaction(EnvChange::Commit)]),
            _ => {
                cx.session.tran_count -= 1;
                StatementOutcome::Done
            }
        },
        Statement::Rollback {
            savepoint: None, ..
        } => match cx.session.tran_count {
            0 => error(
                3903,
                16,
                "The ROLLBACK TRANSACTION request has no corresponding BEGIN TRANSACTION.",
            ),
            _ => StatementOutcome::Env(vec![cx.session.end_transaction(EnvChange::Rollback)]),
        },
        Statement::Execute {
            name: Some(name), ..
        } => error(
            2812,
            16,
            format!("Could not find stored procedure '{name}'."),
        ),
        other => unsupported(&format!("The statement '{}'", statement_kind(other))),
    }
}

/// The statement's first words, for an error message (never its data).
fn statement_kind(statement: &Statement) -> String {
    statement
        .to_string()
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

fn use_database(used: &Use, session: &mut Session) -> StatementOutcome {
    let name = match used {
        Use::Object(name) => object_parts(name).join("."),
        _ => return unsupported("This form of USE"),
    };
    let known = [session.login_database.as_str(), "master"];
    let Some(found) = known.iter().find(|db| db.eq_ignore_ascii_case(&name)) else {
        return error(
            911,
            16,
            format!(
                "Database '{name}' does not exist. Make sure that the name is entered correctly."
            ),
        );
    };
    let old = std::mem::replace(&mut session.database, (*found).to_owned());
    StatementOutcome::Env(vec![EnvChange::Database {
        new: session.database.clone(),
        old,
    }])
}

fn object_parts(name: &ObjectName) -> Vec<String> {
    name.0
        .iter()
        .map(|part| match part {
            ObjectNamePart::Identifier(ident) => ident.value.clone(),
            other => other.to_string(),
        })
        .collect()
}

/// A column of a row being evaluated, with the name of the table (or the
/// alias) it comes from, lower case: what a qualified name (`a.student_id`) matches.
#[derive(Debug, Clone)]
struct Named {
    table: String,
    column: Column,
}

/// One row being evaluated: its columns and values, and the row of the
/// query it is correlated with (`CROSS APPLY`'s left side), whose columns
/// an unqualified or qualified name falls back to.
struct Row<'a> {
    columns: Arc<[Named]>,
    values: Vec<Value>,
    outer: Option<&'a Row<'a>>,
}

impl<'a> Row<'a> {
    /// A row of NULLs with these columns: what types are derived from.
    fn template(columns: Arc<[Named]>, outer: Option<&'a Row<'a>>) -> Row<'a> {
        let values = vec![Value::Null; columns.len()];
        Row {
            columns,
            values,
            outer,
        }
    }

    /// The column `parts` names (`name` or `table.name`; a longer name
    /// qualifies by its last two parts), here or in an outer row.
    fn get(&self, parts: &[&str]) -> Option<(&Value, &Column)> {
        let (table, name) = match parts {
            [name] => (None, *name),
            [.., table, name] => (Some(table.to_ascii_lowercase()), *name),
            [] => return None,
        };
        let found = self.columns.iter().position(|c| {
            c.column.name.eq_ignore_ascii_case(name) && table.as_ref().is_none_or(|t| *t == c.table)
        });
        match found {
            Some(i) => Some((&self.values[i], &self.columns[i].column)),
            None => self.outer.and_then(|outer| outer.get(parts)),
        }
    }
}

fn name_parts(expr: &Expr) -> Option<Vec<&str>> {
    match expr {
        Expr::Identifier(ident) if !ident.value.starts_with('@') => {
            Some(vec![ident.value.as_str()])
        }
        Expr::CompoundIdentifier(parts) => Some(parts.iter().map(|p| p.value.as_str()).collect()),
        _ => None,
    }
}

fn assessment_values(a: &AssessmentFixture) -> Vec<Value> {
    vec![
        Value::Int(a.assessment_id),
        Value::String(a.student_id.clone()),
        Value::String(a.assessment_type.clone()),
        Value::DateTime(a.administered_at),
        Value::Float(a.raw_score),
        Value::Int(i64::from(a.items_attempted)),
        Value::Int(i64::from(a.items_correct)),
        Value::Int(i64::from(a.duration_seconds)),
    ]
}

fn select_body(query: &Query) -> Result<&Select, StatementOutcome> {
    if query.with.is_some() || query.limit_clause.is_some() || query.fetch.is_some() {
        return Err(unsupported("WITH, OFFSET or FETCH"));
    }
    let SetExpr::Select(body) = query.body.as_ref() else {
        return Err(unsupported("A query other than one SELECT"));
    };
    if body.into.is_some() {
        return Err(unsupported("SELECT INTO (a write)"));
    }
    if body.having.is_some()
        || body.distinct.is_some()
        || !matches!(&body.group_by, ast::GroupByExpr::Expressions(e, _) if e.is_empty())
    {
        return Err(unsupported("DISTINCT, GROUP BY or HAVING"));
    }
    Ok(body)
}

/// A `SELECT`'s result columns, named and typed as SQL Server derives them.
fn select_columns(
    query: &Query,
    cx: &Context<'_>,
    outer: Option<&Row<'_>>,
) -> Result<Vec<Column>, StatementOutcome> {
    let body = select_body(query)?;
    let template = Row::template(from_columns(body, cx, outer)?, outer);
    projection(body, &template, cx).map(|(columns, _)| columns)
}

/// The select list: each column's name and type, and the expressions
/// (`None`: every column of the source, `*`).
fn projection<'q>(
    body: &'q Select,
    template: &Row<'_>,
    cx: &Context<'_>,
) -> Result<(Vec<Column>, Option<Vec<&'q Expr>>), StatementOutcome> {
    let mut columns = Vec::new();
    let mut exprs = Vec::new();
    for item in &body.projection {
        let (expr, name) = match item {
            SelectItem::UnnamedExpr(expr) => {
                let name = name_parts(expr)
                    .and_then(|p| p.last().map(|n| (*n).to_owned()))
                    .unwrap_or_default();
                (expr, name)
            }
            SelectItem::ExprWithAlias { expr, alias } => (expr, alias.value.clone()),
            SelectItem::Wildcard(_) if body.projection.len() == 1 => {
                if template.columns.is_empty() {
                    return Err(error(263, 16, "Must specify table to select from."));
                }
                let all = template.columns.iter().map(|c| c.column.clone()).collect();
                return Ok((all, None));
            }
            _ => return Err(unsupported("This select list")),
        };
        columns.push(Column::new(&name, type_of(expr, template, cx)?));
        exprs.push(expr);
    }
    Ok((columns, Some(exprs)))
}

fn select(
    query: &Query,
    cx: &mut Context<'_>,
    outer: Option<&Row<'_>>,
) -> Result<(Vec<Column>, Vec<Vec<Value>>), StatementOutcome> {
    let body = select_body(query)?;
    let (source_columns, rows) = from_rows(body, cx, outer)?;
    if !source_columns.is_empty()
        && cx.session.settings.get("implicit_transactions") == Some("on")
        && cx.session.tran_count == 0
    {
        // A read starts a transaction when IMPLICIT_TRANSACTIONS is on.
        let _ = cx.session.begin_transaction();
    }
    let cx: &Context<'_> = cx;
    let mut kept = Vec::new();
    for values in rows {
        let row = Row {
            columns: Arc::clone(&source_columns),
            values,
            outer,
        };
        let keep = match &body.selection {
            Some(condition) => truth(&eval(condition, Some(&row), cx)?) == Some(true),
            None => true,
        };
        if keep {
            kept.push(row);
        }
    }
    if let Some(order_by) = &query.order_by {
        let OrderByKind::Expressions(keys) = &order_by.kind else {
            return Err(unsupported("ORDER BY ALL"));
        };
        let mut keyed = Vec::with_capacity(kept.len());
        for row in kept {
            let mut values = Vec::with_capacity(keys.len());
            for key in keys {
                values.push(eval(&key.expr, Some(&row), cx)?);
            }
            keyed.push((values, row));
        }
        let descending: Vec<bool> = keys
            .iter()
            .map(|k| matches!(k.options.sort, Some(ast::OrderBySort::Desc)))
            .collect();
        keyed.sort_by(|(a, _), (b, _)| {
            for ((x, y), desc) in a.iter().zip(b).zip(&descending) {
                let order = sort_order(x, y);
                let order = if *desc { order.reverse() } else { order };
                if order != Ordering::Equal {
                    return order;
                }
            }
            Ordering::Equal
        });
        kept = keyed.into_iter().map(|(_, row)| row).collect();
    }
    if let Some(top) = &body.top {
        if top.percent || top.with_ties {
            return Err(unsupported("TOP PERCENT or WITH TIES"));
        }
        let template = Row::template(Arc::clone(&source_columns), outer);
        let n = match &top.quantity {
            Some(TopQuantity::Constant(n)) => i64::try_from(*n).unwrap_or(i64::MAX),
            Some(TopQuantity::Expr(e)) => match convert_to_int(eval(e, Some(&template), cx)?)? {
                Value::Int(n) if n >= 0 => n,
                _ => {
                    return Err(error(
                        1014,
                        15,
                        "A TOP N or FETCH rows count value may not be negative.",
                    ));
                }
            },
            None => return Err(unsupported("TOP without a count")),
        };
        kept.truncate(usize::try_from(n).unwrap_or(usize::MAX));
    }
    let template = Row::template(Arc::clone(&source_columns), outer);
    let (columns, exprs) = projection(body, &template, cx)?;
    let Some(exprs) = exprs else {
        return Ok((columns, kept.into_iter().map(|r| r.values).collect()));
    };
    let mut out = Vec::with_capacity(kept.len());
    for row in &kept {
        let mut values = Vec::with_capacity(exprs.len());
        for (expr, column) in exprs.iter().zip(&columns) {
            values.push(fit(eval(expr, Some(row), cx)?, column.ty)?);
        }
        out.push(values);
    }
    Ok((columns, out))
}

fn named(table: &str, columns: Vec<Column>) -> Arc<[Named]> {
    let table = table.to_ascii_lowercase();
    columns
        .into_iter()
        .map(|column| Named {
            table: table.clone(),
            column,
        })
        .collect()
}

fn alias_or(alias: &Option<ast::TableAlias>, default: &str) -> String {
    alias
        .as_ref()
        .map_or_else(|| default.to_owned(), |a| a.name.value.clone())
}

/// The columns of a FROM clause (tables, OPENJSON, CROSS/OUTER APPLY of a
/// derived table), without reading a row.
fn from_columns(
    body: &Select,
    cx: &Context<'_>,
    outer: Option<&Row<'_>>,
) -> Result<Arc<[Named]>, StatementOutcome> {
    let Some(from) = from_clause(body)? else {
        return Ok(Arc::from(Vec::new()));
    };
    let mut columns: Vec<Named> = factor_columns(&from.relation, cx, outer)?.to_vec();
    for join in &from.joins {
        let left = Row::template(Arc::from(columns.clone()), outer);
        columns.extend(
            factor_columns(apply_factor(join)?, cx, Some(&left))?
                .iter()
                .cloned(),
        );
    }
    Ok(Arc::from(columns))
}

fn from_clause(body: &Select) -> Result<Option<&ast::TableWithJoins>, StatementOutcome> {
    match body.from.as_slice() {
        [] => Ok(None),
        [from] => Ok(Some(from)),
        _ => Err(unsupported("A join")),
    }
}

/// The right side of `CROSS APPLY` / `OUTER APPLY`: the only joins served.
fn apply_factor(join: &ast::Join) -> Result<&TableFactor, StatementOutcome> {
    match join.join_operator {
        ast::JoinOperator::CrossApply | ast::JoinOperator::OuterApply => Ok(&join.relation),
        _ => Err(unsupported("A join other than CROSS APPLY or OUTER APPLY")),
    }
}

fn factor_columns(
    factor: &TableFactor,
    cx: &Context<'_>,
    outer: Option<&Row<'_>>,
) -> Result<Arc<[Named]>, StatementOutcome> {
    match factor {
        TableFactor::Table {
            name,
            alias,
            args: None,
            ..
        } => {
            table(name, cx)?;
            Ok(named(&alias_or(alias, "assessments"), page_columns()))
        }
        TableFactor::OpenJsonTable { columns, alias, .. } => {
            let typed = columns
                .iter()
                .map(|c| Ok(Column::new(&c.name.value, cast_type(&c.r#type)?)))
                .collect::<Result<Vec<_>, StatementOutcome>>()?;
            Ok(named(&alias_or(alias, "openjson"), typed))
        }
        TableFactor::Derived {
            subquery, alias, ..
        } => Ok(named(
            &alias_or(alias, ""),
            select_columns(subquery, cx, outer)?,
        )),
        _ => Err(unsupported("This FROM clause")),
    }
}

/// Rows and the columns they have values of.
type Rows = (Arc<[Named]>, Vec<Vec<Value>>);

/// The rows of a FROM clause, each the values of [`from_columns`]' columns.
fn from_rows(
    body: &Select,
    cx: &mut Context<'_>,
    outer: Option<&Row<'_>>,
) -> Result<Rows, StatementOutcome> {
    let columns = from_columns(body, cx, outer)?;
    let Some(from) = from_clause(body)? else {
        return Ok((columns, vec![Vec::new()]));
    };
    let mut rows = factor_rows(&from.relation, cx, outer)?;
    let mut width = rows.first().map_or(0, Vec::len);
    for join in &from.joins {
        let factor = apply_factor(join)?;
        let outer_apply = matches!(join.join_operator, ast::JoinOperator::OuterApply);
        let left_columns: Arc<[Named]> = Arc::from(&columns[..width]);
        let right_width = factor_columns(
            factor,
            cx,
            Some(&Row::template(Arc::clone(&left_columns), outer)),
        )?
        .len();
        let mut joined = Vec::new();
        for left in rows {
            let left_row = Row {
                columns: Arc::clone(&left_columns),
                values: left,
                outer,
            };
            let right = factor_rows(factor, cx, Some(&left_row))?;
            if right.is_empty() && outer_apply {
                let mut values = left_row.values.clone();
                values.extend(std::iter::repeat_n(Value::Null, right_width));
                joined.push(values);
            }
            for r in right {
                let mut values = left_row.values.clone();
                values.extend(r);
                joined.push(values);
            }
        }
        rows = joined;
        width += right_width;
    }
    Ok((columns, rows))
}

fn factor_rows(
    factor: &TableFactor,
    cx: &mut Context<'_>,
    outer: Option<&Row<'_>>,
) -> Result<Vec<Vec<Value>>, StatementOutcome> {
    match factor {
        TableFactor::Table { name, .. } => {
            Ok(table(name, cx)?.iter().map(assessment_values).collect())
        }
        TableFactor::OpenJsonTable {
            json_expr,
            json_path,
            columns,
            ..
        } => {
            if json_path.is_some() {
                return Err(unsupported("OPENJSON with a path"));
            }
            let text = match eval(json_expr, outer, cx)? {
                Value::String(text) => text,
                Value::Null => return Ok(Vec::new()),
                _ => return Err(unsupported("OPENJSON of a value that is not a string")),
            };
            let typed = columns
                .iter()
                .map(|c| Ok((c, cast_type(&c.r#type)?)))
                .collect::<Result<Vec<_>, StatementOutcome>>()?;
            open_json(&text, &typed)
        }
        TableFactor::Derived { subquery, .. } => Ok(select(subquery, cx, outer)?.1),
        _ => Err(unsupported("This FROM clause")),
    }
}

/// The one table there is, by any name SQL Server would resolve to it.
fn table<'c>(
    name: &ObjectName,
    cx: &Context<'c>,
) -> Result<&'c [AssessmentFixture], StatementOutcome> {
    let parts = object_parts(name);
    let lower: Vec<String> = parts.iter().map(|p| p.to_ascii_lowercase()).collect();
    let database = cx.session.database.to_ascii_lowercase();
    let is_assessments = match lower.as_slice() {
        [t] => t == "assessments",
        [s, t] => s == "dbo" && t == "assessments",
        [d, s, t] => *d == database && (s == "dbo" || s.is_empty()) && t == "assessments",
        _ => false,
    };
    if is_assessments {
        return Ok(&cx.fixtures.assessments);
    }
    if lower
        .first()
        .is_some_and(|s| s == "sys" || s == "information_schema" || s.starts_with('#'))
    {
        return Err(unsupported(&format!(
            "Reading '{}' (the system catalog or a temporary table)",
            parts.join(".")
        )));
    }
    Err(error(
        208,
        16,
        format!("Invalid object name '{}'.", parts.join(".")),
    ))
}

/// `OPENJSON(text) WITH (...)`: one row per element of a JSON array of
/// objects, each column read from its path (`$.name`, or the column's name)
/// and converted to its type as SQL Server converts it.
fn open_json(
    text: &str,
    columns: &[(&ast::OpenJsonTableColumn, ColumnType)],
) -> Result<Vec<Vec<Value>>, StatementOutcome> {
    let not_json = || error(13609, 16, "JSON text is not properly formatted.");
    let parsed: serde_json::Value = serde_json::from_str(text).map_err(|_| not_json())?;
    let elements = match parsed {
        serde_json::Value::Array(elements) => elements,
        object @ serde_json::Value::Object(_) => vec![object],
        _ => return Err(not_json()),
    };
    let mut rows = Vec::with_capacity(elements.len());
    for element in &elements {
        let mut row = Vec::with_capacity(columns.len());
        for (column, ty) in columns {
            let key = match column.path.as_deref() {
                None => column.name.value.as_str(),
                Some(path) => path
                    .strip_prefix("$.")
                    .filter(|k| !k.contains(['.', '[']))
                    .ok_or_else(|| unsupported("An OPENJSON path other than $.name"))?,
            };
            let value = match element.get(key) {
                None | Some(serde_json::Value::Null) => Value::Null,
                Some(serde_json::Value::Bool(b)) => Value::Int(i64::from(*b)),
                Some(serde_json::Value::Number(n)) => match n.as_i64() {
                    Some(i) => Value::Int(i),
                    None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
                },
                Some(serde_json::Value::String(s)) => Value::String(s.clone()),
                Some(other) => Value::String(other.to_string()),
            };
            row.push(convert(value, *ty)?);
        }
        rows.push(row);
    }
    Ok(rows)
}

/// A value converted to a column type (OPENJSON's WITH, CAST).
fn convert(value: Value, ty: ColumnType) -> Result<Value, StatementOutcome> {
    match ty {
        ColumnType::Int | ColumnType::BigInt | ColumnType::SmallInt => convert_to_int(value),
        ColumnType::Date => Ok(match to_datetime(value)? {
            Value::DateTime(dt) => Value::Date(dt.date()),
            other => other,
        }),
        ColumnType::DateTime2(_) => to_datetime(value),
        ColumnType::NVarChar(_) => Ok(match value {
            Value::Int(n) => Value::String(n.to_string()),
            Value::Float(f) => Value::String(f.to_string()),
            other => other,
        }),
        ColumnType::Float => {
            Ok(match value {
                Value::Int(n) => Value::Float(n as f64),
                Value::String(s) => Value::Float(s.trim().parse().map_err(|_| {
                    error(8114, 16, "Error converting data type nvarchar to float.")
                })?),
                other => other,
            })
        }
        ColumnType::Variant => Ok(value),
    }
}

/// A parameter by name (`@P1`, any case), or SQL Server's error for an undeclared one.
fn param<'a>(cx: &'a Context<'_>, name: &str) -> Result<&'a Param, StatementOutcome> {
    cx.params
        .iter()
        .find(|p| p.name.eq_ignore_ascii_case(name))
        .ok_or_else(|| {
            error(
                137,
                15,
                format!("Must declare the scalar variable \"{name}\"."),
            )
        })
}

fn param_type(param: &Param) -> ColumnType {
    match param.wire_type {
        WireType::Bit | WireType::TinyInt | WireType::SmallInt | WireType::Int => ColumnType::Int,
        WireType::BigInt => ColumnType::BigInt,
        WireType::Float => ColumnType::Float,
        WireType::NVarChar | WireType::NVarCharMax | WireType::Null => ColumnType::NVarChar(4000),
        WireType::Date => ColumnType::Date,
        WireType::DateTime2 => ColumnType::DateTime2(7),
    }
}

/// The type of a select-list expression, as SQL Server derives it.
fn type_of(expr: &Expr, row: &Row<'_>, cx: &Context<'_>) -> Result<ColumnType, StatementOutcome> {
    Ok(match expr {
        Expr::Identifier(ident) => {
            let name = ident.value.as_str();
            match name.to_ascii_lowercase().as_str() {
                "@@version" => ColumnType::NVarChar(300),
                "@@spid" => ColumnType::SmallInt,
                "@@trancount" | "@@error" | "@@rowcount" | "@@options" => ColumnType::Int,
                "@@servername" | "@@language" | "@@servicename" => ColumnType::NVarChar(128),
                _ if name.starts_with('@') => param_type(param(cx, name)?),
                _ => column(row, &[name])?.1.ty,
            }
        }
        Expr::CompoundIdentifier(parts) => {
            let parts: Vec<&str> = parts.iter().map(|p| p.value.as_str()).collect();
            column(row, &parts)?.1.ty
        }
        Expr::Nested(inner) => type_of(inner, row, cx)?,
        Expr::UnaryOp { expr, .. } => type_of(expr, row, cx)?,
        Expr::Value(v) => match &v.value {
            ast::Value::Number(n, _) if n.contains(['.', 'e', 'E']) => ColumnType::Float,
            ast::Value::Number(n, _) => match n.parse::<i64>() {
                Ok(v) if i32::try_from(v).is_ok() => ColumnType::Int,
                _ => ColumnType::BigInt,
            },
            ast::Value::Null => ColumnType::Int,
            _ => ColumnType::NVarChar(4000),
        },
        Expr::Cast { data_type, .. } => cast_type(data_type)?,
        Expr::Function(f) => match function_name(&f.name).as_str() {
            "serverproperty" => ColumnType::Variant,
            "db_name" | "suser_sname" | "user_name" | "schema_name" => ColumnType::NVarChar(128),
            "dateadd" => match function_args(f)?.as_slice() {
                [_, _, date] => match type_of(date, row, cx)? {
                    ColumnType::Date => ColumnType::Date,
                    _ => ColumnType::DateTime2(7),
                },
                _ => return Err(wrong_argument_count("dateadd", 3)),
            },
            "getdate" | "getutcdate" | "sysdatetime" | "sysutcdatetime" => ColumnType::DateTime2(7),
            other => return Err(unknown_function(other)),
        },
        _ => ColumnType::NVarChar(4000),
    })
}

/// The column a name refers to, or SQL Server's error for a name that refers to none.
fn column<'r>(
    row: &'r Row<'_>,
    parts: &[&str],
) -> Result<(&'r Value, &'r Column), StatementOutcome> {
    row.get(parts)
        .ok_or_else(|| invalid_column(&parts.join(".")))
}

fn invalid_column(name: &str) -> StatementOutcome {
    error(207, 16, format!("Invalid column name '{name}'."))
}

fn unknown_function(name: &str) -> StatementOutcome {
    error(
        195,
        15,
        format!("'{name}' is not a recognized built-in function name."),
    )
}

fn wrong_argument_count(name: &str, n: usize) -> StatementOutcome {
    error(
        174,
        15,
        format!("The {name} function requires {n} argument(s)."),
    )
}

fn cast_type(data_type: &DataType) -> Result<ColumnType, StatementOutcome> {
    Ok(match data_type {
        DataType::Int(_) | DataType::Integer(_) | DataType::SmallInt(_) | DataType::TinyInt(_) => {
            ColumnType::Int
        }
        DataType::BigInt(_) => ColumnType::BigInt,
        DataType::Float(_) | DataType::Double(_) | DataType::Real => ColumnType::Float,
        DataType::Date => ColumnType::Date,
        DataType::Datetime(_) => ColumnType::DateTime2(7),
        DataType::Custom(name, _) if function_name(name) == "datetime2" => ColumnType::DateTime2(7),
        DataType::Varchar(_) | DataType::Nvarchar(_) | DataType::Char(_) | DataType::Text => {
            ColumnType::NVarChar(4000)
        }
        other => return Err(unsupported(&format!("CAST to {other}"))),
    })
}

fn function_name(name: &ObjectName) -> String {
    object_parts(name)
        .last()
        .map(|n| n.to_ascii_lowercase())
        .unwrap_or_default()
}

fn function_args(f: &ast::Function) -> Result<Vec<&Expr>, StatementOutcome> {
    match &f.args {
        FunctionArguments::None => Ok(Vec::new()),
        FunctionArguments::List(list) => list
            .args
            .iter()
            .map(|a| match a {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Ok(e),
                _ => Err(unsupported("This function argument")),
            })
            .collect(),
        FunctionArguments::Subquery(_) => Err(unsupported("A subquery")),
    }
}

/// A value as the column it goes out in holds it (the select list's types).
fn fit(value: Value, ty: ColumnType) -> Result<Value, StatementOutcome> {
    Ok(match (ty, value) {
        (_, Value::Null) => Value::Null,
        (ColumnType::Int | ColumnType::BigInt | ColumnType::SmallInt, Value::Bool(b)) => {
            Value::Int(i64::from(b))
        }
        (ColumnType::NVarChar(max), Value::String(s))
            if s.encode_utf16().count() > usize::from(max) =>
        {
            return Err(error(
                8152,
                16,
                format!("String or binary data would be truncated (at most {max} characters)."),
            ));
        }
        (ColumnType::Date, Value::DateTime(dt)) => Value::Date(dt.date()),
        (ColumnType::DateTime2(_), Value::Date(d)) => {
            Value::DateTime(d.and_time(Default::default()))
        }
        (ColumnType::NVarChar(_) | ColumnType::Variant, Value::Int(n)) => {
            Value::String(n.to_string())
        }
        (_, value) => value,
    })
}

/// SQL's three-valued truth of a condition's value (`None`: unknown).
fn truth(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(b) => Some(*b),
        _ => None,
    }
}

fn eval(expr: &Expr, row: Option<&Row<'_>>, cx: &Context<'_>) -> Result<Value, StatementOutcome> {
    match expr {
        Expr::Identifier(ident) => {
            let name = ident.value.as_str();
            if let Some(global) = name.strip_prefix("@@") {
                return global_variable(global, cx);
            }
            if name.starts_with('@') {
                return Ok(param(cx, name)?.value.clone());
            }
            row.and_then(|r| r.get(&[name]))
                .map(|(v, _)| v.clone())
                .ok_or_else(|| invalid_column(name))
        }
        Expr::CompoundIdentifier(parts) => {
            let parts: Vec<&str> = parts.iter().map(|p| p.value.as_str()).collect();
            row.and_then(|r| r.get(&parts))
                .map(|(v, _)| v.clone())
                .ok_or_else(|| invalid_column(&parts.join(".")))
        }
        Expr::Nested(inner) => eval(inner, row, cx),
        Expr::Value(v) => literal(&v.value),
        Expr::IsNull(inner) => Ok(Value::Bool(eval(inner, row, cx)? == Value::Null)),
        Expr::IsNotNull(inner) => Ok(Value::Bool(eval(inner, row, cx)? != Value::Null)),
        Expr::UnaryOp { op, expr } => {
            let value = eval(expr, row, cx)?;
            match (op, value) {
                (UnaryOperator::Not, v) => Ok(truth(&v).map_or(Value::Null, |b| Value::Bool(!b))),
                (UnaryOperator::Minus, Value::Int(n)) => Ok(Value::Int(-n)),
                (UnaryOperator::Minus, Value::Float(f)) => Ok(Value::Float(-f)),
                (UnaryOperator::Plus, v) => Ok(v),
                (_, Value::Null) => Ok(Value::Null),
                _ => Err(unsupported("This unary operator")),
            }
        }
        Expr::BinaryOp { left, op, right } => {
            let l = eval(left, row, cx)?;
            match op {
                // Three-valued AND and OR: the value that decides (false for
                // AND, true for OR) wins over unknown; the other needs both.
                BinaryOperator::And | BinaryOperator::Or => {
                    let decides = *op == BinaryOperator::Or;
                    if truth(&l) == Some(decides) {
                        return Ok(Value::Bool(decides));
                    }
                    let r = truth(&eval(right, row, cx)?);
                    Ok(match (truth(&l), r) {
                        (_, Some(v)) if v == decides => Value::Bool(decides),
                        (Some(_), Some(_)) => Value::Bool(!decides),
                        _ => Value::Null,
                    })
                }
                op => {
                    let r = eval(right, row, cx)?;
                    let Some(order) = compare(&l, &r)? else {
                        return Ok(Value::Null);
                    };
                    let holds = match op {
                        BinaryOperator::Eq => order == Ordering::Equal,
                        BinaryOperator::NotEq => order != Ordering::Equal,
                        BinaryOperator::Lt => order == Ordering::Less,
                        BinaryOperator::LtEq => order != Ordering::Greater,
                        BinaryOperator::Gt => order == Ordering::Greater,
                        BinaryOperator::GtEq => order != Ordering::Less,
                        other => return Err(unsupported(&format!("The operator {other}"))),
                    };
                    Ok(Value::Bool(holds))
                }
            }
        }
        Expr::Cast {
            expr, data_type, ..
        } => convert(eval(expr, row, cx)?, cast_type(data_type)?),
        Expr::Function(f) => function(f, row, cx),
        _ => Err(unsupported("This expression")),
    }
}

fn literal(value: &ast::Value) -> Result<Value, StatementOutcome> {
    Ok(match value {
        ast::Value::Null => Value::Null,
        ast::Value::Number(n, _) => match n.parse::<i64>() {
            Ok(i) => Value::Int(i),
            Err(_) => Value::Float(n.parse().map_err(|_| unsupported("This number"))?),
        },
        ast::Value::SingleQuotedString(s) | ast::Value::NationalStringLiteral(s) => {
            Value::String(s.clone())
        }
        ast::Value::Boolean(b) => Value::Bool(*b),
        _ => return Err(unsupported("This literal")),
    })
}

fn global_variable(name: &str, cx: &Context<'_>) -> Result<Value, StatementOutcome> {
    Ok(match name.to_ascii_lowercase().as_str() {
        "version" => Value::String(VERSION_TEXT.to_owned()),
        "spid" => Value::Int(i64::from(cx.session.spid)),
        "trancount" => Value::Int(i64::from(cx.session.tran_count)),
        "servername" | "servicename" => Value::String(cx.server_name.to_owned()),
        "language" => Value::String("us_english".to_owned()),
        "error" | "rowcount" => Value::Int(0),
        "options" => Value::Int(0),
        other => {
            return Err(error(
                137,
                15,
                format!("Must declare the scalar variable \"@@{other}\"."),
            ));
        }
    })
}

fn function(
    f: &ast::Function,
    row: Option<&Row<'_>>,
    cx: &Context<'_>,
) -> Result<Value, StatementOutcome> {
    let name = function_name(&f.name);
    let args = function_args(f)?;
    match (name.as_str(), args.as_slice()) {
        ("db_name", []) => Ok(Value::String(cx.session.database.clone())),
        ("schema_name", []) => Ok(Value::String("dbo".to_owned())),
        ("suser_sname" | "user_name", []) => Ok(Value::String("resolver".to_owned())),
        ("serverproperty", [property]) => {
            let property = match eval(property, row, cx)? {
                Value::String(s) => s.to_ascii_lowercase(),
                _ => return Ok(Value::Null),
            };
            Ok(match property.as_str() {
                "productversion" => Value::String("16.0.1000.6".to_owned()),
                "productlevel" => Value::String("RTM".to_owned()),
                "edition" => Value::String("Developer Edition (64-bit)".to_owned()),
                "engineedition" => Value::String("3".to_owned()),
                "servername" | "machinename" => Value::String(cx.server_name.to_owned()),
                "collation" => Value::String("SQL_Latin1_General_CP1_CI_AS".to_owned()),
                _ => Value::Null, // SQL Server answers NULL for a property it does not know
            })
        }
        ("dateadd", [part, amount, date]) => {
            let part = match part {
                Expr::Identifier(ident) => ident.value.to_ascii_lowercase(),
                _ => return Err(unsupported("This DATEADD part")),
            };
            let amount = match convert_to_int(eval(amount, row, cx)?)? {
                Value::Int(n) => n,
                _ => return Ok(Value::Null),
            };
            let date = eval(date, row, cx)?;
            let (at, was_date) = match date {
                Value::Null => return Ok(Value::Null),
                Value::Date(d) => (d.and_time(Default::default()), true),
                other => match to_datetime(other)? {
                    Value::DateTime(dt) => (dt, false),
                    _ => return Ok(Value::Null),
                },
            };
            let moved = match part.as_str() {
                "day" | "dd" | "d" => add_days(at, amount),
                "hour" | "hh" => at.checked_add_signed(chrono::TimeDelta::hours(amount)),
                "minute" | "mi" | "n" => at.checked_add_signed(chrono::TimeDelta::minutes(amount)),
                "second" | "ss" | "s" => at.checked_add_signed(chrono::TimeDelta::seconds(amount)),
                _ => return Err(unsupported(&format!("DATEADD by {part}"))),
            }
            .ok_or_else(|| {
                error(
                    517,
                    16,
                    "Adding a value to a 'date' column caused an overflow.",
                )
            })?;
            Ok(if was_date {
                Value::Date(moved.date())
            } else {
                Value::DateTime(moved)
            })
        }
        ("getdate" | "getutcdate" | "sysdatetime" | "sysutcdatetime", []) => {
            Ok(Value::DateTime(chrono::Utc::now().naive_utc()))
        }
        ("dateadd", _) => Err(wrong_argument_count("dateadd", 3)),
        ("serverproperty", _) => Err(wrong_argument_count("serverproperty", 1)),
        (other, _) => Err(unknown_function(other)),
    }
}

fn add_days(at: NaiveDateTime, days: i64) -> Option<NaiveDateTime> {
    if days >= 0 {
        at.checked_add_days(Days::new(days.unsigned_abs()))
    } else {
        at.checked_sub_days(Days::new(days.unsigned_abs()))
    }
}

fn convert_to_int(value: Value) -> Result<Value, StatementOutcome> {
    match value {
        Value::String(s) => s.trim().parse::<i64>().map(Value::Int).map_err(|_| {
            error(
                245,
                16,
                format!(
                    "Conversion failed when converting the nvarchar value '{s}' to data type int."
                ),
            )
        }),
        Value::Bool(b) => Ok(Value::Int(i64::from(b))),
        Value::Float(f) => Ok(Value::Int(f.trunc() as i64)),
        Value::Date(_) | Value::DateTime(_) => Err(error(
            206,
            16,
            "Operand type clash: date is incompatible with int",
        )),
        other => Ok(other),
    }
}

/// A string as a date and time, as SQL Server converts one (ISO forms).
fn to_datetime(value: Value) -> Result<Value, StatementOutcome> {
    let Value::String(s) = value else {
        return match value {
            Value::Date(d) => Ok(Value::DateTime(d.and_time(Default::default()))),
            Value::Int(_) | Value::Float(_) => Err(error(
                206,
                16,
                "Operand type clash: int is incompatible with date",
            )),
            other => Ok(other),
        };
    };
    let s = s.trim();
    let parsed = [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
        "%Y%m%d %H:%M:%S%.f",
    ]
    .iter()
    .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
    .or_else(|| {
        ["%Y-%m-%d", "%Y%m%d"]
            .iter()
            .find_map(|f| NaiveDate::parse_from_str(s, f).ok())
            .map(|d| d.and_time(Default::default()))
    });
    parsed.map(Value::DateTime).ok_or_else(|| {
        error(
            241,
            16,
            "Conversion failed when converting date and/or time from character string.",
        )
    })
}

/// SQL Server's default collation: case-insensitive, trailing spaces ignored.
fn collation_cmp(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.trim_end_matches(' '), b.trim_end_matches(' '));
    a.chars()
        .flat_map(char::to_lowercase)
        .cmp(b.chars().flat_map(char::to_lowercase))
}

/// Compares two values after SQL Server's implicit conversions (the one
/// with the lower type precedence converts: a string to a number or a date);
/// `None` when either is NULL.
fn compare(a: &Value, b: &Value) -> Result<Option<Ordering>, StatementOutcome> {
    use Value::*;
    Ok(Some(match (a, b) {
        (Null, _) | (_, Null) => return Ok(None),
        (Int(x), Int(y)) => x.cmp(y),
        (Float(x), Float(y)) => x.total_cmp(y),
        (Int(x), Float(y)) => (*x as f64).total_cmp(y),
        (Float(x), Int(y)) => x.total_cmp(&(*y as f64)),
        (Bool(x), Bool(y)) => x.cmp(y),
        (String(x), String(y)) => collation_cmp(x, y),
        (Date(_) | DateTime(_), Date(_) | DateTime(_) | String(_))
        | (String(_), Date(_) | DateTime(_)) => {
            let (Value::DateTime(x), Value::DateTime(y)) =
                (to_datetime(a.clone())?, to_datetime(b.clone())?)
            else {
                return Ok(None);
            };
            x.cmp(&y)
        }
        (String(_), Int(_) | Bool(_)) => return compare(&convert_to_int(a.clone())?, b),
        (Int(_) | Bool(_), String(_)) => return compare(a, &convert_to_int(b.clone())?),
        (Bool(x), y) => return compare(&Int(i64::from(*x)), y),
        (x, Bool(y)) => return compare(x, &Int(i64::from(*y))),
        (String(s), Float(_)) | (Float(_), String(s)) => {
            let f: f64 = s
                .trim()
                .parse()
                .map_err(|_| error(8114, 16, "Error converting data type nvarchar to float."))?;
            return if matches!(a, String(_)) {
                compare(&Float(f), b)
            } else {
                compare(a, &Float(f))
            };
        }
        (Int(_) | Float(_), Date(_) | DateTime(_)) | (Date(_) | DateTime(_), Int(_) | Float(_)) => {
            return Err(error(
                206,
                16,
                "Operand type clash: int is incompatible with datetime2",
            ));
        }
    }))
}

/// ORDER BY's order: NULLs first (lowest), then by value.
fn sort_order(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Null, Value::Null) => Ordering::Equal,
        (Value::Null, _) => Ordering::Less,
        (_, Value::Null) => Ordering::Greater,
        _ => compare(a, b).ok().flatten().unwrap_or(Ordering::Equal),
    }
}

/// The parameter names an `@params` declaration string lists, in order
/// (`@P1 int, @P2 nvarchar(64) OUTPUT`): what `sp_prepare` and
/// `sp_executesql` bind unnamed parameters to. Parsed as the DECLARE
/// statement it is written like.
pub fn declared_names(declaration: &str) -> Result<Vec<String>, SyntaxError> {
    if declaration.trim().is_empty() {
        return Ok(Vec::new());
    }
    // OUTPUT/OUT is legal in a parameter list, not in DECLARE.
    let cleaned: String = declaration
        .split(',')
        .map(|d| {
            let words: Vec<&str> = d.split_whitespace().collect();
            match words.split_last() {
                Some((last, rest))
                    if ["output", "out"].contains(&last.to_ascii_lowercase().as_str()) =>
                {
                    rest.join(" ")
                }
                _ => d.trim().to_owned(),
            }
        })
        .collect::<Vec<_>>()
        .join(", ");
    let statements = parse_uncached(&format!("DECLARE {cleaned}"))?;
    let mut names = Vec::new();
    for statement in &statements {
        if let Statement::Declare { stmts, .. } = statement {
            for declare in stmts {
                names.extend(declare.names.iter().map(|n| n.value.clone()));
            }
        }
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_text(text: &str, params: &[Param], session: &mut Session) -> Vec<StatementOutcome> {
        let fixtures = Fixtures::demo();
        let parsed = parse(text);
        let statements = match parsed.as_ref() {
            Ok(s) => s,
            Err(e) => return vec![e.outcome()],
        };
        let mut cx = Context {
            fixtures: &fixtures,
            params,
            session,
            server_name: "testkit-tds",
        };
        run(statements, &mut cx)
    }

    fn error_number(outcome: &StatementOutcome) -> Option<i32> {
        match outcome {
            StatementOutcome::Error { number, .. } => Some(*number),
            _ => None,
        }
    }

    #[test]
    fn every_statement_the_product_sends_parses() {
        for text in [
            catalog::ASSESSMENTS_PAGE_SQL,
            catalog::ASSESSMENTS_PAGES_SQL,
            catalog::ECHO_SQL,
            "SELECT 1",
            "SELECT 1;",
        ] {
            assert!(parse_uncached(text).is_ok(), "{text}");
        }
        let page = parse_uncached(catalog::ASSESSMENTS_PAGE_SQL).expect("parses");
        assert_eq!(page.len(), 1, "one statement, its OPTION hint taken out");
    }

    #[test]
    fn a_batch_needs_no_separators_and_a_syntax_error_names_the_token() {
        let parsed = parse_uncached("SET NOCOUNT ON\nSELECT 1\n-- done\nSELECT 2;").expect("ok");
        assert_eq!(parsed.len(), 3);
        let error = parse_uncached("SELECT FROM WHERE").expect_err("not T-SQL");
        assert_eq!(error.near, "WHERE");
    }

    #[test]
    fn transactions_keep_the_count_as_sql_server_does() {
        let mut session = Session::new("Assessments", 54);
        let out = run_text(
            "BEGIN TRAN; BEGIN TRANSACTION; SELECT @@TRANCOUNT",
            &[],
            &mut session,
        );
        assert_eq!(out[0], StatementOutcome::Env(vec![EnvChange::BeginTran(1)]));
        assert_eq!(out[1], StatementOutcome::Done);
        assert!(
            matches!(&out[2], StatementOutcome::Rows { rows, .. } if rows[0][0] == Value::Int(2))
        );
        let out = run_text("IF @@TRANCOUNT > 0 ROLLBACK TRAN", &[], &mut session);
        assert_eq!(
            out,
            vec![StatementOutcome::Env(vec![EnvChange::Rollback(1)])]
        );
        let out = run_text("COMMIT", &[], &mut session);
        assert_eq!(error_number(&out[0]), Some(3902));
        let out = run_text("IF @@TRANCOUNT > 0 COMMIT TRAN", &[], &mut session);
        assert_eq!(out, vec![StatementOutcome::Done], "nothing ran");
    }

    #[test]
    fn errors_carry_sql_servers_numbers_and_end_the_batch() {
        let mut session = Session::new("Assessments", 54);
        for (text, number) in [
            ("SELECT * FROM dbo.nowhere", 208),
            ("SELECT nope FROM dbo.assessments", 207),
            ("SELECT @nobody", 137),
            ("USE other_db", 911),
            ("EXEC dbo.whatever", 2812),
            ("DELETE FROM dbo.assessments", 40517),
            ("SELECT * FROM sys.tables", 40517),
            ("SELECT * FROM #temp", 40517),
            ("SELECT FROM WHERE", 102),
            ("SELECT 1 WHERE CAST('x' AS int) = 1", 245),
            (
                "SELECT 1 FROM dbo.assessments WHERE administered_at > 'soon'",
                241,
            ),
        ] {
            let out = run_text(text, &[], &mut session);
            assert_eq!(
                out.iter().filter_map(error_number).collect::<Vec<_>>(),
                vec![number],
                "{text}"
            );
        }
        let out = run_text("SELECT 1; SELECT @nobody; SELECT 3", &[], &mut session);
        assert_eq!(out.len(), 2, "the batch stops at its error");
    }

    #[test]
    fn the_page_query_filters_orders_and_limits_like_sql_server() {
        let fixtures = Fixtures::demo();
        let student = &fixtures.assessments[0].student_id;
        let p = |name: &str, wire_type: WireType, value: Value| Param {
            name: name.to_owned(),
            wire_type,
            value,
            output: false,
        };
        let params = vec![
            p("@P1", WireType::Int, Value::Int(3)),
            p(
                "@P2",
                WireType::NVarChar,
                Value::String(student.to_uppercase()),
            ),
            p("@P3", WireType::Null, Value::Null),
            p("@P4", WireType::Null, Value::Null),
            p("@P5", WireType::Null, Value::Null),
            p("@P6", WireType::Null, Value::Null),
            p("@P7", WireType::Null, Value::Null),
        ];
        let mut session = Session::new("Assessments", 54);
        let out = run_text(catalog::ASSESSMENTS_PAGE_SQL, &params, &mut session);
        let StatementOutcome::Rows { columns, rows } = &out[0] else {
            panic!("{out:?}")
        };
        assert_eq!(columns, &page_columns());
        let mut expected: Vec<&AssessmentFixture> = fixtures
            .assessments
            .iter()
            .filter(|a| a.student_id.eq_ignore_ascii_case(student))
            .collect();
        expected.sort_by(|x, y| {
            (y.administered_at, y.assessment_id).cmp(&(x.administered_at, x.assessment_id))
        });
        let ids: Vec<Value> = rows.iter().map(|r| r[0].clone()).collect();
        let want: Vec<Value> = expected
            .iter()
            .take(3)
            .map(|a| Value::Int(a.assessment_id))
            .collect();
        assert_eq!(ids, want, "case-insensitive match, newest first, TOP 3");
    }

    #[test]
    fn conditions_have_three_values() {
        let mut session = Session::new("Assessments", 54);
        for (condition, rows) in [
            ("NULL = 1 OR 1 = 1", 1),
            ("NULL = 1 AND 1 = 1", 0),
            ("NULL = 1 AND 1 = 0", 0),
            ("NOT (NULL = 1)", 0),
            ("NOT (NULL = 1 AND 1 = 0)", 1),
            ("'abc  ' = N'ABC'", 1),
            ("'2025-01-02' > CAST('2025-01-01' AS date)", 1),
            ("'10' = 10", 1),
        ] {
            let out = run_text(
                &format!("SELECT 1 AS one WHERE {condition}"),
                &[],
                &mut session,
            );
            assert!(
                matches!(&out[0], StatementOutcome::Rows { rows: r, .. } if r.len() == rows),
                "{condition}: {out:?}"
            );
        }
    }

    /// (top, student, type, from, to, after (at, id)).
    type Item<'a> = (
        i64,
        &'a str,
        Option<&'a str>,
        Option<&'a str>,
        Option<&'a str>,
        Option<(String, i64)>,
    );

    #[test]
    fn the_batch_query_answers_each_item_as_the_page_query_does() {
        let fixtures = Fixtures::demo();
        let p = |name: &str, wire_type: WireType, value: Value| Param {
            name: name.to_owned(),
            wire_type,
            value,
            output: false,
        };
        let null = |name: &str| p(name, WireType::Null, Value::Null);
        // (top, student, type, from, to, after): a spread of filters, a
        // student without rows, a cursor.
        let first = &fixtures.assessments[0];
        let items: Vec<Item<'_>> = vec![
            (3, "stu-0001", None, None, None, None),
            (
                2,
                "stu-0002",
                Some("ORAL_READING_FLUENCY"),
                None,
                None,
                None,
            ),
            (
                5,
                "stu-0003",
                None,
                Some("2025-10-01"),
                Some("2025-11-30"),
                None,
            ),
            (4, "stu-9999", None, None, None, None),
            (
                2,
                &first.student_id,
                None,
                None,
                None,
                Some((
                    first
                        .administered_at
                        .format("%Y-%m-%dT%H:%M:%S%.3f")
                        .to_string(),
                    first.assessment_id,
                )),
            ),
        ];
        let json = serde_json::Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, (top, student, ty, from, to, after))| {
                    serde_json::json!({
                        "i": i, "n": top, "s": student, "t": ty,
                        "f": from, "l": to,
                        "a": after.as_ref().map(|a| a.0.clone()),
                        "b": after.as_ref().map(|a| a.1),
                    })
                })
                .collect(),
        )
        .to_string();
        let mut session = Session::new("Assessments", 54);
        let batch = run_text(
            catalog::ASSESSMENTS_PAGES_SQL,
            &[p("@P1", WireType::NVarCharMax, Value::String(json))],
            &mut session,
        );
        let StatementOutcome::Rows { columns, rows } = &batch[0] else {
            panic!("{batch:?}")
        };
        assert_eq!(columns[0].name, "item");
        assert_eq!(&columns[1..], &page_columns()[..]);
        for (i, (top, student, ty, from, to, after)) in items.iter().enumerate() {
            let date = |d: &Option<&str>| match d {
                Some(d) => p(
                    "",
                    WireType::Date,
                    Value::Date(NaiveDate::parse_from_str(d, "%Y-%m-%d").expect("date")),
                ),
                None => null(""),
            };
            let mut params = vec![
                p("@P1", WireType::Int, Value::Int(*top)),
                p(
                    "@P2",
                    WireType::NVarChar,
                    Value::String((*student).to_owned()),
                ),
                ty.map_or(null("@P3"), |t| {
                    p("@P3", WireType::NVarChar, Value::String(t.to_owned()))
                }),
                date(from),
                date(to),
                after.as_ref().map_or(null("@P6"), |(at, _)| {
                    p(
                        "@P6",
                        WireType::DateTime2,
                        Value::DateTime(
                            NaiveDateTime::parse_from_str(at, "%Y-%m-%dT%H:%M:%S%.3f").expect("at"),
                        ),
                    )
                }),
                after.as_ref().map_or(null("@P7"), |(_, id)| {
                    p("@P7", WireType::BigInt, Value::Int(*id))
                }),
            ];
            params[3].name = "@P4".into();
            params[4].name = "@P5".into();
            let single = run_text(catalog::ASSESSMENTS_PAGE_SQL, &params, &mut session);
            let StatementOutcome::Rows { rows: want, .. } = &single[0] else {
                panic!("{single:?}")
            };
            let got: Vec<Vec<Value>> = rows
                .iter()
                .filter(|r| r[0] == Value::Int(i as i64))
                .map(|r| r[1..].to_vec())
                .collect();
            assert_eq!(&got, want, "item {i}");
        }
        assert!(rows.len() > 5, "{}", rows.len());
    }

    #[test]
    fn declarations_name_the_parameters_in_order() {
        assert_eq!(
            declared_names("@P1 int, @P2 nvarchar(64), @P3 datetime2(7) OUTPUT").expect("ok"),
            vec!["@P1", "@P2", "@P3"]
        );
        assert_eq!(declared_names("").expect("ok"), Vec::<String>::new());
    }
}
