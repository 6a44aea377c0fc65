//! Bearer tokens. A token is `dpd_` followed by 43 characters of base64url
//! (256 random bits). Only its SHA-256 is stored; the secret is printed once.
//! A token grants its workspaces and nothing else (DESIGN.md decision 9).

use crate::store::Db;
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::domain::ids::{TokenId, WorkspaceId};

const PREFIX: &str = "dpd_";

/// Who is calling, once their token checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub token_id: String,
    /// The token's name: `createdBy`, `cancelledBy` and the events' actor.
    pub principal: String,
    pub workspaces: Vec<WorkspaceId>,
}

impl Caller {
    pub fn can_see(&self, workspace: &str) -> bool {
        self.workspaces.iter().any(|w| w.to_string() == workspace)
    }

    pub fn workspace_strings(&self) -> Vec<String> {
        self.workspaces.iter().map(|w| w.to_string()).collect()
    }

    /// Whose idempotency keys these are: the token's identity (its id, never
    /// its name, which two tokens may share) and the workspaces it grants.
    /// A key is only ever replayed to the same token.
    pub fn idempotency_scope(&self) -> String {
        let mut workspaces = self.workspace_strings();
        workspaces.sort();
        format!("{} {}", self.token_id, workspaces.join(","))
    }
}

fn digest(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

/// Makes a token; returns its id and the secret to hand out.
pub async fn create(
    db: &Db,
    name: Option<&str>,
    workspaces: &[WorkspaceId],
) -> anyhow::Result<(TokenId, String)> {
    anyhow::ensure!(
        !workspaces.is_empty(),
        "a token needs at least one workspace"
    );
    let id = TokenId::generate();
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let secret = format!(
        "{PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
    let name = name.map(str::to_string).unwrap_or_else(|| id.to_string());
    let mut workspace_ids: Vec<String> = workspaces.iter().map(|w| w.to_string()).collect();
    workspace_ids.sort();
    workspace_ids.dedup();
    crate::store::access::insert_token(
        db,
        &id.to_string(),
        &name,
        &digest(&secret),
        &workspace_ids,
    )
    .await?;
    Ok((id, secret))
}

/// The caller a secret belongs to, if it is a live token.
pub async fn authenticate(db: &Db, secret: &str) -> sqlx::Result<Option<Caller>> {
    if !secret.starts_with(PREFIX) || secret.len() > 128 {
        return Ok(None);
    }
    let hash = digest(secret);
    let row = crate::store::access::live_token(db, &hash).await?;
    Ok(row.and_then(|(token_id, principal, stored, workspaces)| {
        if !bool::from(stored.ct_eq(&hash)) {
            return None;
        }
        let workspaces = workspaces.iter().filter_map(|w| w.parse().ok()).collect();
        Some(Caller {
            token_id,
            principal,
            workspaces,
        })
    }))
}
