//! Where webhooks may go: [`WebhookTargets`], the policy that keeps a device URL from
//! pointing Parley at its own network (SSRF).
//!
//! A device URL is a user's input, and the push role POSTs a signed body to it. So a URL
//! whose host is, or resolves to, a loopback, link-local (cloud metadata at
//! 169.254.169.254 among them), private, shared (CGNAT), unspecified, multicast or
//! otherwise reserved address is refused:
//! - when it is registered (the gateway resolves the host and answers 400);
//! - again at every connection: the push role's HTTP client resolves names through
//!   [`WebhookTargets::resolver`], which hands the connector only addresses the policy
//!   allows, so a name that resolved to a public address at registration and to an
//!   internal one later (DNS rebinding) is not followed. IP literals are checked before
//!   the request. The client uses no proxy and follows no redirect.
//!
//! An operator allows hosts by name or address (`PARLEY_PUSH_ALLOW_HOSTS`): the relay
//! that speaks to APNs/FCM on the deployment's own network, say. `parley dev` allows
//! loopback, with a warning, so that a webhook receiver on the same machine works.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::Url;

const HINT: &str =
    "webhooks go to public addresses, or to hosts the operator allows (PARLEY_PUSH_ALLOW_HOSTS)";

/// Which webhook destinations are allowed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WebhookTargets {
    /// Hosts (names or addresses, as written in URLs, lower-case) allowed whatever they
    /// resolve to.
    pub allow_hosts: Vec<String>,
    /// Loopback addresses allowed (`parley dev`, one machine).
    pub allow_loopback: bool,
}

/// Why a destination is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

impl WebhookTargets {
    /// Targets with `allow_hosts` (trimmed, lower-case, empty entries dropped).
    pub fn new(allow_hosts: impl IntoIterator<Item = String>, allow_loopback: bool) -> Self {
        WebhookTargets {
            allow_hosts: allow_hosts
                .into_iter()
                .map(|h| normalize_host(h.trim()))
                .filter(|h| !h.is_empty())
                .collect(),
            allow_loopback,
        }
    }

    /// Whether `host` (as written in a URL) is allowed by name.
    pub fn host_allowed(&self, host: &str) -> bool {
        let host = normalize_host(host);
        self.allow_hosts.contains(&host)
    }

    /// Ok if a webhook may be sent to `ip`.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), Refused> {
        match internal_kind(ip) {
            None => Ok(()),
            Some("loopback") if self.allow_loopback => Ok(()),
            Some(kind) => Err(Refused(format!("{ip} is a {kind} address: {HINT}"))),
        }
    }

    /// Ok if `url`'s host is allowed by name, or is an address the policy allows, or a
    /// name every address of which it allows (resolved now).
    pub async fn check_url(&self, url: &Url) -> Result<(), Refused> {
        let host = url
            .host_str()
            .ok_or_else(|| Refused("the URL has no host".into()))?;
        if self.host_allowed(host) {
            return Ok(());
        }
        if let Some(ip) = literal_ip(host) {
            return self.check_ip(ip);
        }
        let port = url.port_or_known_default().unwrap_or(80);
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| Refused(format!("host {host:?} does not resolve: {e}")))?
            .collect();
        if addrs.is_empty() {
            return Err(Refused(format!("host {host:?} has no address")));
        }
        for a in &addrs {
            if self.check_ip(a.ip()).is_err() {
                let kind = internal_kind(a.ip()).unwrap_or("refused");
                return Err(Refused(format!(
                    "host {host:?} resolves to {}, which is a {kind} address: {HINT}",
                    a.ip()
                )));
            }
        }
        Ok(())
    }

    /// A resolver for the HTTP client that yields only the addresses this policy allows
    /// (every address of an allowed host).
    pub fn resolver(&self) -> Arc<TargetResolver> {
        Arc::new(TargetResolver {
            targets: self.clone(),
        })
    }
}

/// [`WebhookTargets`] as reqwest's DNS resolver: the connector connects only to what it
/// returns, so the check holds at connect time.
#[derive(Debug)]
pub struct TargetResolver {
    targets: WebhookTargets,
}

impl Resolve for TargetResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let targets = self.targets.clone();
        let host = name.as_str().to_string();
        let fut: Pin<Box<dyn Future<Output = _> + Send>> = Box::pin(async move {
            let all: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = if targets.host_allowed(&host) {
                all
            } else {
                all.into_iter()
                    .filter(|a| targets.check_ip(a.ip()).is_ok())
                    .collect()
            };
            if allowed.is_empty() {
                let e: Box<dyn std::error::Error + Send + Sync> = Box::new(Refused(format!(
                    "host {host:?} resolves to no address webhooks may go to"
                )));
                return Err(e);
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        });
        fut
    }
}

/// `host` as a URL writes it, lower-case, IPv6 brackets off.
fn normalize_host(host: &str) -> String {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .trim_end_matches('.')
        .to_ascii_lowercase()
}

/// The address `host` is, if it is one.
pub fn literal_ip(host: &str) -> Option<IpAddr> {
    normalize_host(host).parse().ok()
}

/// What kind of non-public address `ip` is, if it is one.
pub fn internal_kind(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_kind(v4),
        IpAddr::V6(v6) => v6_kind(v6),
    }
}

fn v4_kind(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(if ip.is_loopback() {
        "loopback"
    } else if ip.is_link_local() {
        "link-local (cloud metadata)"
    } else if ip.is_private() {
        "private"
    } else if a == 100 && (64..128).contains(&b) {
        "shared (CGNAT)"
    } else if a == 0 {
        "unspecified"
    } else if ip.is_broadcast() || ip.is_multicast() {
        "broadcast or multicast"
    } else if a >= 240 {
        "reserved"
    } else if (a, b, c) == (192, 0, 0) || (a, b, c) == (192, 0, 2) {
        "IETF protocol or documentation"
    } else if a == 198 && (b == 18 || b == 19) {
        "benchmarking"
    } else if (a, b, c) == (198, 51, 100) || (a, b, c) == (203, 0, 113) {
        "documentation"
    } else {
        return None;
    })
}

fn v6_kind(ip: Ipv6Addr) -> Option<&'static str> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return v4_kind(v4);
    }
    let s = ip.segments();
    // NAT64 (64:ff9b::/96) and the old IPv4-compatible form (::a.b.c.d) carry an IPv4
    // address a gateway may reach.
    if (s[0], s[1], s[2], s[3], s[4], s[5]) == (0x64, 0xff9b, 0, 0, 0, 0)
        || (s[..6].iter().all(|x| *x == 0) && !ip.is_loopback() && !ip.is_unspecified())
    {
        let o = ip.octets();
        return v4_kind(Ipv4Addr::new(o[12], o[13], o[14], o[15]));
    }
    Some(if ip.is_loopback() {
        "loopback"
    } else if ip.is_unspecified() {
        "unspecified"
    } else if ip.is_multicast() {
        "broadcast or multicast"
    } else if (s[0] & 0xffc0) == 0xfe80 {
        "link-local (cloud metadata)"
    } else if (s[0] & 0xfe00) == 0xfc00 {
        "private"
    } else if s[0] == 0x2001 && s[1] == 0x0db8 {
        "documentation"
    } else if s[0] == 0x2002 {
        // 6to4: the IPv4 address is in the next 32 bits.
        let v4 = Ipv4Addr::new((s[1] >> 8) as u8, s[1] as u8, (s[2] >> 8) as u8, s[2] as u8);
        return v4_kind(v4);
    } else {
        return None;
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn internal_addresses_are_refused_and_public_ones_taken() {
        let strict = WebhookTargets::default();
        for bad in [
            "127.0.0.1",
            "127.8.9.10",
            "169.254.169.254",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "100.64.0.1",
            "0.0.0.0",
            "0.1.2.3",
            "255.255.255.255",
            "224.0.0.1",
            "240.0.0.1",
            "::1",
            "::",
            "fe80::1",
            "fd00:ec2::254",
            "fc00::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "::a9fe:a9fe",
            "2002:7f00:1::",
            "ff02::1",
        ] {
            assert!(strict.check_ip(ip(bad)).is_err(), "{bad} was allowed");
        }
        for good in [
            "1.1.1.1",
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700::1111",
        ] {
            assert!(strict.check_ip(ip(good)).is_ok(), "{good} was refused");
        }
    }

    #[test]
    fn loopback_only_when_allowed_and_hosts_by_name() {
        let dev = WebhookTargets::new(Vec::new(), true);
        assert!(dev.check_ip(ip("127.0.0.1")).is_ok());
        assert!(dev.check_ip(ip("::1")).is_ok());
        assert!(dev.check_ip(ip("169.254.169.254")).is_err());
        assert!(dev.check_ip(ip("10.0.0.1")).is_err());
        let relay = WebhookTargets::new(vec![" Relay.Internal ".into(), "[::1]".into()], false);
        assert!(relay.host_allowed("relay.internal"));
        assert!(relay.host_allowed("RELAY.internal."));
        assert!(relay.host_allowed("[::1]"));
        assert!(!relay.host_allowed("other.internal"));
    }

    #[tokio::test]
    async fn urls_are_checked_by_what_their_host_is() {
        let strict = WebhookTargets::default();
        let url = |s: &str| Url::parse(s).unwrap();
        assert!(strict
            .check_url(&url("http://169.254.169.254/latest/meta-data"))
            .await
            .is_err());
        assert!(strict.check_url(&url("http://[::1]:8080/")).await.is_err());
        // "localhost" resolves to loopback.
        assert!(strict
            .check_url(&url("http://localhost:9/hook"))
            .await
            .is_err());
        assert!(strict.check_url(&url("http://1.1.1.1/hook")).await.is_ok());
        let allowed = WebhookTargets::new(vec!["localhost".into()], false);
        assert!(allowed
            .check_url(&url("http://localhost:9/hook"))
            .await
            .is_ok());
    }
}
