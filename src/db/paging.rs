//! Filtered, paged listings that stay fast on large tables.
//!
//! A page is chosen first, on the listed table alone, with only the filters that were given
//! (so PostgreSQL plans each combination for what it is, using the indexes that fit); the
//! joins and computed columns of the full row are then evaluated for that page only, never
//! for the rows an offset skips.

use sqlx::{Postgres, QueryBuilder};

/// Builds `<select> WHERE <alias>.id = ANY(ARRAY(SELECT id FROM <table> WHERE <filters>
/// ORDER BY id LIMIT .. OFFSET ..)) ORDER BY <alias>.id`. The page's ids are computed first
/// as an array, so the full rows are fetched by primary key whatever plan the prepared
/// statement settles on (an `IN (subquery)` let generic plans scan the whole table).
pub struct PagedQuery {
    builder: QueryBuilder<Postgres>,
    alias: &'static str,
}

impl PagedQuery {
    /// `select` selects the full rows from `table` under `alias` (joins included).
    pub fn new(select: &str, table: &'static str, alias: &'static str) -> Self {
        let mut builder = QueryBuilder::new(select);
        builder.push(format!(
            " WHERE {alias}.id = ANY(ARRAY(SELECT p.id FROM {table} p WHERE true"
        ));
        PagedQuery { builder, alias }
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

    /// The finished query for one page, in id order.
    pub fn page(mut self, limit: i64, offset: i64) -> QueryBuilder<Postgres> {
        self.builder.push(" ORDER BY p.id LIMIT ");
        self.builder.push_bind(limit);
        self.builder.push(" OFFSET ");
        self.builder.push_bind(offset);
        self.builder.push(format!(")) ORDER BY {}.id", self.alias));
        self.builder
    }
}
