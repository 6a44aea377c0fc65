//! What every command of the binary shares: where the store is.

use std::path::PathBuf;

use crate::store::db::{self, DbOptions};

/// The options every command shares.
#[derive(Debug, Clone)]
pub struct Globals {
    pub database_url: Option<String>,
    pub data_dir: PathBuf,
}

impl Globals {
    /// Where the database is.
    pub fn location(&self) -> anyhow::Result<db::Location> {
        db::Location::new(self.database_url.as_deref(), &self.data_dir)
    }

    /// Opens (creating and migrating) the database.
    pub async fn open(&self, options: &DbOptions) -> anyhow::Result<db::Db> {
        db::open(&self.location()?, options).await
    }
}
