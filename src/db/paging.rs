//! Filtered, paged listings that stay fast on large tables.
//!
//! A listing takes two statements. The first chooses the page's ids on the listed table
//! alone, with only the filters that were given (so PostgreSQL plans each combination for
//! what it is, using the indexes that fit). The second reads the full rows of those ids —
//! joins and computed columns included — with one fixed statement, so its plan is made once
//! per connection and reused, and nothing is computed for rows the page skips. (Choosing the
//! ids inside the row statement made PostgreSQL plan the whole join again for every request:
//! several times the cost of running it.)

use sqlx::{PgConnection, PgPool, Postgres, QueryBuilder, postgres::PgRow};

use super::error::Result;

/// Which slice of a listing: `limit` rows after skipping `offset`, or — with `after` — the
/// `limit` rows whose ids follow `after` (a cursor: the same cost at any depth).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Window {
    pub limit: i64,
    pub offset: i64,
    pub after: Option<i64>,
}

impl Window {
    /// The first `limit` rows.
    pub fn first(limit: i64) -> Self {
        Window {
            limit,
            ..Window::default()
        }
    }
}

/// The order of a listing: by id (the order rows were made in) or by a unique text column,
/// either way up. A page after the first follows a cursor: the last row's id, or with a text
/// order, the last row's value of that column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Order {
    /// A unique text column; `None`: the id.
    pub column: Option<&'static str>,
    pub descending: bool,
}

/// The ids of one page of a table, in id order (or as [`PagedQuery::order`] says).
pub struct PagedQuery {
    builder: QueryBuilder<Postgres>,
    order: Order,
    /// With a text order: the rows after the one with this value.
    after_text: Option<String>,
}

impl PagedQuery {
    pub fn new(table: &'static str) -> Self {
        PagedQuery {
            builder: QueryBuilder::new(format!("SELECT p.id FROM {table} p WHERE true")),
            order: Order::default(),
            after_text: None,
        }
    }

    /// Orders the page by `order`; `after_text` is the cursor of a text order (the window's
    /// `after` is that of an id order).
    pub fn order(&mut self, order: Order, after_text: Option<String>) -> &mut Self {
        self.order = order;
        self.after_text = after_text;
        self
    }

    /// Only rows whose `column` equals `value`, when given.
    pub fn equal<T>(&mut self, column: &'static str, value: Option<T>) -> &mut Self
    where
        T: for<'t> sqlx::Encode<'t, Postgres> + sqlx::Type<Postgres>,
    {
        if let Some(value) = value {
            self.builder.push(format!(" AND p.{column} = "));
            self.builder.push_bind(value);
        }
        self
    }

    /// Only rows whose `column` references the row of `table` with that id or name, when
    /// given.
    pub fn refers_to(
        &mut self,
        column: &'static str,
        table: &'static str,
        key: Option<String>,
    ) -> &mut Self {
        if let Some(key) = key {
            self.builder.push(format!(
                " AND p.{column} IN (SELECT id FROM {table} WHERE name = "
            ));
            self.builder.push_bind(key.clone());
            self.builder.push(" OR id::text = ");
            self.builder.push_bind(key);
            self.builder.push(")");
        }
        self
    }

    /// Only rows whose `column` is one of `values`, when given.
    pub fn any(&mut self, column: &'static str, values: Option<Vec<i64>>) -> &mut Self {
        if let Some(values) = values {
            self.builder.push(format!(" AND p.{column} = ANY("));
            self.builder.push_bind(values);
            self.builder.push(")");
        }
        self
    }

    /// Only rows whose `column` starts with `prefix`, when given: a range in byte order
    /// (`~>=~`, `~<~`), which an index with `text_pattern_ops` serves with a bound
    /// parameter too (`LIKE` with a parameter does not). Prefixes are ASCII; any other
    /// matches nothing (the names filtered are ASCII).
    pub fn prefix(&mut self, column: &'static str, prefix: Option<&str>) -> &mut Self {
        let Some(prefix) = prefix.filter(|p| !p.is_empty()) else {
            return self;
        };
        match prefix_range(prefix) {
            Some((low, high)) => {
                self.builder.push(format!(" AND p.{column} ~>=~ "));
                self.builder.push_bind(low);
                self.builder.push(format!(" AND p.{column} ~<~ "));
                self.builder.push_bind(high);
            }
            None => {
                self.builder.push(" AND false");
            }
        }
        self
    }

    /// A query counting rows of `table` (see [`PagedQuery::count`]), with the same filters.
    pub fn counting(table: &'static str) -> Self {
        PagedQuery {
            builder: QueryBuilder::new(format!(
                "SELECT count(*) FROM (SELECT 1 FROM {table} p WHERE true"
            )),
            order: Order::default(),
            after_text: None,
        }
    }

    /// How many rows match, counting at most `cap` (so a count costs no more than `cap`
    /// rows on a large table). Only for a query made with [`PagedQuery::counting`].
    pub async fn count(mut self, conn: &mut PgConnection, cap: i64) -> Result<i64> {
        self.builder.push(" LIMIT ");
        self.builder.push_bind(cap);
        self.builder.push(") c");
        Ok(self.builder.build_query_scalar().fetch_one(conn).await?)
    }

    /// The ids of the page `window` selects, in the query's order.
    pub async fn ids(mut self, conn: &mut PgConnection, window: Window) -> Result<Vec<i64>> {
        let (beyond, way) = if self.order.descending {
            ("<", "DESC")
        } else {
            (">", "ASC")
        };
        match self.order.column {
            None => {
                if let Some(after) = window.after {
                    self.builder.push(format!(" AND p.id {beyond} "));
                    self.builder.push_bind(after);
                }
                self.builder.push(format!(" ORDER BY p.id {way}"));
            }
            Some(column) => {
                if let Some(after) = self.after_text.take() {
                    self.builder.push(format!(" AND p.{column} {beyond} "));
                    self.builder.push_bind(after);
                }
                self.builder.push(format!(" ORDER BY p.{column} {way}"));
            }
        }
        self.builder.push(" LIMIT ");
        self.builder.push_bind(window.limit);
        self.builder.push(" OFFSET ");
        self.builder.push_bind(window.offset);
        Ok(self.builder.build_query_scalar().fetch_all(conn).await?)
    }

    /// The rows of the page `window` selects, read by `select` (see [`rows_by_id`]), on one
    /// connection.
    pub async fn rows<T>(
        self,
        pool: &PgPool,
        window: Window,
        select: &str,
        alias: &str,
    ) -> Result<Vec<T>>
    where
        T: for<'r> sqlx::FromRow<'r, PgRow> + Send + Unpin,
    {
        let mut conn = pool.acquire().await?;
        let ids = self.ids(&mut conn, window).await?;
        rows_by_id(&mut conn, select, alias, &ids).await
    }
}

/// The byte range of the strings starting with the ASCII `prefix`: from `prefix` to
/// `prefix` with its last byte one higher. `None` for a prefix that is not printable ASCII.
fn prefix_range(prefix: &str) -> Option<(String, String)> {
    if !prefix.bytes().all(|b| b.is_ascii_graphic()) {
        return None;
    }
    let mut high = prefix.as_bytes().to_vec();
    *high.last_mut()? += 1;
    Some((prefix.to_string(), String::from_utf8(high).ok()?))
}

/// The rows of `ids`, in the order of `ids`: `select` (which reads its table as `alias`)
/// with `WHERE <alias>.id = ANY($1)`.
pub async fn rows_by_id<T>(
    conn: &mut PgConnection,
    select: &str,
    alias: &str,
    ids: &[i64],
) -> Result<Vec<T>>
where
    T: for<'r> sqlx::FromRow<'r, PgRow> + Send + Unpin,
{
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{select} WHERE {alias}.id = ANY($1) ORDER BY array_position($1, {alias}.id)"
    )))
    .bind(ids)
    .fetch_all(conn)
    .await?)
}

#[cfg(test)]
mod tests {
    use super::prefix_range;

    #[test]
    fn prefixes_are_byte_ranges() {
        assert_eq!(
            prefix_range("rack12-"),
            Some(("rack12-".to_string(), "rack12.".to_string()))
        );
        assert_eq!(prefix_range("a"), Some(("a".to_string(), "b".to_string())));
        assert_eq!(prefix_range("é"), None);
        assert_eq!(prefix_range("a b"), None);
        assert_eq!(
            prefix_range("a~"),
            Some(("a~".to_string(), "a\u{7f}".to_string()))
        );
    }
}
