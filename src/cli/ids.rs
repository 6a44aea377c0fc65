//! `deployd ids new KIND`: fresh prefixed ULIDs, for writing catalog
//! documents and tokens' workspaces by hand or from a script.

use clap::{Subcommand, ValueEnum};

use crate::domain::ids::{
    BuildId, DeployId, EntityId, EntityKind, EventId, VersionId, WorkspaceId,
};

#[derive(Debug, Subcommand)]
pub enum IdsCommand {
    /// Print fresh ids of one kind, one a line.
    New {
        /// What the id names.
        kind: IdKind,
        /// How many.
        #[arg(long, default_value_t = 1)]
        count: usize,
    },
}

/// The kinds of id, by their prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum IdKind {
    /// A workspace, `ws_…`.
    Ws,
    /// An app, `app_…`.
    App,
    /// A function, `fn_…`.
    Fn,
    /// A version of an app or function, `ver_…`.
    Ver,
    /// A build, `bld_…`.
    Bld,
    /// An upstream event (a catalog document's `eventId`), `evt_…`.
    Evt,
    /// A deploy, `dep_…`.
    Dep,
}

impl IdKind {
    /// A fresh id of this kind.
    pub fn generate(self) -> String {
        match self {
            IdKind::Ws => WorkspaceId::generate().to_string(),
            IdKind::App => EntityId::new(EntityKind::App).to_string(),
            IdKind::Fn => EntityId::new(EntityKind::Function).to_string(),
            IdKind::Ver => VersionId::generate().to_string(),
            IdKind::Bld => BuildId::generate().to_string(),
            IdKind::Evt => EventId::generate().to_string(),
            IdKind::Dep => DeployId::generate().to_string(),
        }
    }
}

/// Runs `deployd ids …`.
pub fn run(command: IdsCommand) {
    match command {
        IdsCommand::New { kind, count } => {
            for _ in 0..count {
                println!("{}", kind.generate());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_makes_an_id_that_parses_back_as_that_kind() {
        for _ in 0..3 {
            assert!(IdKind::Ws.generate().parse::<WorkspaceId>().is_ok());
            let app: EntityId = IdKind::App.generate().parse().unwrap();
            assert_eq!(app.kind(), EntityKind::App);
            let function: EntityId = IdKind::Fn.generate().parse().unwrap();
            assert_eq!(function.kind(), EntityKind::Function);
            assert!(IdKind::Ver.generate().parse::<VersionId>().is_ok());
            assert!(IdKind::Bld.generate().parse::<BuildId>().is_ok());
            assert!(IdKind::Evt.generate().parse::<EventId>().is_ok());
            assert!(IdKind::Dep.generate().parse::<DeployId>().is_ok());
        }
        assert_ne!(IdKind::Bld.generate(), IdKind::Bld.generate());
    }
}
