//! Which addresses a webhook may be sent to. Loopback, private, link-local,
//! unique-local (and unspecified, broadcast, shared and documentation)
//! addresses are refused unless the installation allows private
//! addresses. The check is made when a webhook is saved and again on the
//! address a delivery actually connects to ([`GuardedResolver`]), so a
//! name that later resolves somewhere private is refused too.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Whether `ip` is on a network webhooks must not reach by default.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (o[1] & 0xc0) == 64) // 100.64.0.0/10, shared
                || o[0] >= 240
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_private(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || (first & 0xfe00) == 0xfc00 // unique local fc00::/7
                || (first & 0xffc0) == 0xfe80 // link local fe80::/10
                || (first & 0xff00) == 0xff00 // multicast
        }
    }
}

/// Why a URL may not receive webhooks, if it may not.
pub async fn check_url(url: &str, allow_private: bool) -> Result<url::Url, String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("not a URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err("must be an http or https URL".into());
    }
    let host = match parsed.host() {
        Some(host) => host,
        None => return Err("must name a host".into()),
    };
    if allow_private {
        return Ok(parsed);
    }
    let port = parsed.port_or_known_default().unwrap_or(443);
    let addrs: Vec<IpAddr> = match host {
        url::Host::Ipv4(ip) => vec![IpAddr::V4(ip)],
        url::Host::Ipv6(ip) => vec![IpAddr::V6(ip)],
        url::Host::Domain(name) => tokio::net::lookup_host((name, port))
            .await
            .map_err(|e| format!("{name} does not resolve: {e}"))?
            .map(|a| a.ip())
            .collect(),
    };
    if let Some(ip) = addrs.into_iter().find(|ip| is_private(*ip)) {
        return Err(format!(
            "{ip} is a loopback, private, link-local or unique-local address \
             (DEPLOYD_WEBHOOK_ALLOW_PRIVATE=true allows them)"
        ));
    }
    Ok(parsed)
}

/// The resolver of the delivery client: the system's, keeping only
/// addresses a webhook may reach.
pub struct GuardedResolver {
    pub allow_private: bool,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let host = name.as_str().to_string();
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| allow_private || !is_private(a.ip()))
                .collect();
            if found.is_empty() {
                return Err(format!("{host} resolves to no address a webhook may reach").into());
            }
            Ok(Box::new(found.into_iter()) as Addrs)
        })
    }
}

/// The HTTP client deliveries are sent with: no redirects (a 3xx is a
/// failure, so a redirect cannot lead elsewhere), the guarded resolver.
pub fn client(allow_private: bool) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .dns_resolver(Arc::new(GuardedResolver { allow_private }))
        .user_agent(concat!("deployd-webhooks/", env!("CARGO_PKG_VERSION")))
        .build()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_networks_are_recognised_and_public_ones_are_not() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(is_private(private.parse().unwrap()), "{private}");
        }
        for public in ["93.184.216.34", "1.1.1.1", "2606:4700::1111"] {
            assert!(!is_private(public.parse().unwrap()), "{public}");
        }
    }

    #[tokio::test]
    async fn urls_must_be_http_and_public_unless_allowed() {
        assert!(check_url("ftp://example.com/", false).await.is_err());
        assert!(check_url("not a url", false).await.is_err());
        assert!(check_url("http://127.0.0.1:9/", false).await.is_err());
        assert!(check_url("http://[::1]:9/", false).await.is_err());
        assert!(check_url("http://localhost:9/", false).await.is_err());
        assert!(check_url("http://127.0.0.1:9/", true).await.is_ok());
        assert!(check_url("https://93.184.216.34/hook", false).await.is_ok());
    }
}
