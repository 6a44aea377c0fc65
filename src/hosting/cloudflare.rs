//! Cloudflare Pages Direct Upload (see below).

/// Where and as whom to upload.
#[derive(Debug, Clone)]
pub struct CloudflareSettings {
    pub api_base: String,
    pub account_id: String,
    pub api_token: String,
}

pub struct CloudflarePages;

impl CloudflarePages {
    pub fn new(_settings: CloudflareSettings) -> anyhow::Result<Self> {
        anyhow::bail!("the Cloudflare target is not built yet")
    }
}

#[async_trait::async_trait]
impl super::DeployTarget for CloudflarePages {
    fn name(&self) -> &'static str {
        "cloudflare"
    }
    async fn upload(
        &self,
        _: &super::StepContext,
        _: &super::Manifest,
        _: &(dyn Fn() + Send + Sync),
    ) -> Result<(), super::StepError> {
        Err(super::StepError::permanent("not built yet"))
    }
    async fn promote(
        &self,
        _: &super::StepContext,
        _: &super::Manifest,
    ) -> Result<super::Urls, super::StepError> {
        Err(super::StepError::permanent("not built yet"))
    }
}
