//! What every command of the binary shares: where the store is.

use std::path::PathBuf;

use crate::store::db::{self, DbOptions};

/// The options every command shares.
#[derive(Debug, Clone)]
pub struct Globals {
    pub database_url: Option<String>,
    pub data_dir: PathBuf,
    /// `DEPLOYD_ARTIFACT_ROOTS`: where builds may be published from.
    pub artifact_roots: Vec<PathBuf>,
}

impl Globals {
    /// Where builds may be published from.
    pub fn artifact_roots(&self) -> crate::hosting::artifacts::ArtifactRoots {
        crate::hosting::artifacts::ArtifactRoots::new(
            self.artifact_roots
                .iter()
                .filter(|p| !p.as_os_str().is_empty())
                .cloned()
                .collect(),
            self.data_dir.clone(),
        )
    }

    /// Where the database is.
    pub fn location(&self) -> anyhow::Result<db::Location> {
        db::Location::new(self.database_url.as_deref(), &self.data_dir)
    }

    /// Opens a store that exists (never creating one): what the commands
    /// that write beside a server use.
    pub async fn open_existing(&self, options: &DbOptions) -> anyhow::Result<db::Db> {
        db::open_existing(&self.location()?, options).await
    }

    /// Opens (creating and migrating) the database.
    pub async fn open(&self, options: &DbOptions) -> anyhow::Result<db::Db> {
        db::open(&self.location()?, options).await
    }
}
