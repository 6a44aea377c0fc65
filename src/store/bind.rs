//! Parameters that bind the same on both engines: a list of strings is one
//! parameter, `text[]` on PostgreSQL and a JSON array on SQLite, and
//! [`any_of`] writes the membership test that matches it.

use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::{Encode, Postgres, Sqlite, Type};

use crate::store::db::Engine;

/// A list of strings as one parameter.
#[derive(Debug, Clone, Copy)]
pub struct TextList<'a>(pub &'a [String]);

impl Type<Postgres> for TextList<'_> {
    fn type_info() -> sqlx::postgres::PgTypeInfo {
        <Vec<String> as Type<Postgres>>::type_info()
    }
}

impl<'q> Encode<'q, Postgres> for TextList<'_> {
    fn encode_by_ref(
        &self,
        buf: &mut sqlx::postgres::PgArgumentBuffer,
    ) -> Result<IsNull, BoxDynError> {
        <&[String] as Encode<'q, Postgres>>::encode_by_ref(&self.0, buf)
    }
}

impl Type<Sqlite> for TextList<'_> {
    fn type_info() -> sqlx::sqlite::SqliteTypeInfo {
        <String as Type<Sqlite>>::type_info()
    }
}

impl<'q> Encode<'q, Sqlite> for TextList<'_> {
    fn encode_by_ref(
        &self,
        buf: &mut Vec<sqlx::sqlite::SqliteArgumentValue<'q>>,
    ) -> Result<IsNull, BoxDynError> {
        <String as Encode<'q, Sqlite>>::encode(serde_json::to_string(self.0)?, buf)
    }
}

/// `column` is one of the [`TextList`] bound as parameter `$n`.
pub fn any_of(engine: Engine, column: &str, n: usize) -> String {
    match engine {
        Engine::Postgres => format!("{column} = ANY(${n})"),
        Engine::Sqlite => format!("{column} IN (SELECT value FROM json_each(${n}))"),
    }
}
