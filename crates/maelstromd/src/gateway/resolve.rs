//! Which component a request is for (spec §8.1): the HTTP event sources sorted the original's
//! way and matched on hostname and raw path prefix, and prefix stripping.

use maelstromd_api::model::EventSource;

/// One enabled HTTP event source, ready for matching.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// Event source name.
    pub event_source: String,
    /// Component full name.
    pub component: String,
    /// Exact hostname ("" matches any).
    pub hostname: String,
    /// Raw path prefix ("" matches any).
    pub prefix: String,
    /// Remove the prefix before forwarding.
    pub strip: bool,
}

impl Route {
    /// The route of an HTTP event source; `None` for other kinds.
    pub fn from_event_source(es: &EventSource) -> Option<Route> {
        let http = es.http.as_ref()?;
        Some(Route {
            event_source: es.name.clone(),
            component: es.component_name.clone(),
            hostname: http.hostname.clone(),
            prefix: http.path_prefix.clone(),
            strip: http.strip_prefix,
        })
    }

    fn matches(&self, host: &str, path: &str) -> bool {
        if self.hostname.is_empty() && self.prefix.is_empty() {
            return false;
        }
        (self.hostname.is_empty() || self.hostname == host) && path.starts_with(&self.prefix)
    }
}

/// Sorts routes so that the first match wins: sources with a hostname first, then longer
/// prefixes, then hostnames in descending order.
pub fn sort_routes(routes: &mut [Route]) {
    routes.sort_by(|a, b| {
        a.hostname
            .is_empty()
            .cmp(&b.hostname.is_empty())
            .then(b.prefix.len().cmp(&a.prefix.len()))
            .then(b.hostname.cmp(&a.hostname))
    });
}

/// The first route matching `host` (without port) and the percent-decoded `path`.
pub fn resolve<'a>(routes: &'a [Route], host: &str, path: &str) -> Option<&'a Route> {
    routes.iter().find(|r| r.matches(host, path))
}

/// The hostname of a `Host` header value: without the port, IPv6 brackets kept.
pub fn host_without_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split_inclusive(']').next().unwrap_or(host);
    }
    host.rsplit_once(':')
        .filter(|(_, p)| p.bytes().all(|b| b.is_ascii_digit()))
        .map(|(h, _)| h)
        .unwrap_or(host)
}

/// Percent-decodes a request path for matching; invalid escapes are kept as they are.
pub fn decode_path(path: &str) -> std::borrow::Cow<'_, str> {
    if !path.contains('%') {
        return std::borrow::Cow::Borrowed(path);
    }
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    std::borrow::Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The path and query to forward: with `strip`, the prefix is removed from the raw path
/// (matching it in its decoded form), keeping the rest's encoding and the query; an empty
/// remainder becomes `/` (spec §3.j #15).
pub fn forwarded_path(route: &Route, raw_path: &str, query: Option<&str>) -> String {
    let mut path = raw_path.to_string();
    if route.strip && !route.prefix.is_empty() {
        // Walk the raw path until its decoded form has consumed the prefix.
        let mut consumed = 0;
        let mut raw_end = 0;
        let bytes = raw_path.as_bytes();
        let prefix = route.prefix.as_bytes();
        while consumed < prefix.len() && raw_end < bytes.len() {
            if bytes[raw_end] == b'%'
                && raw_end + 2 < bytes.len()
                && hex(bytes[raw_end + 1]).is_some()
                && hex(bytes[raw_end + 2]).is_some()
            {
                raw_end += 3;
            } else {
                raw_end += 1;
            }
            consumed += 1;
        }
        path = raw_path[raw_end..].to_string();
        if path.is_empty() {
            path = "/".into();
        } else if !path.starts_with('/') {
            path.insert(0, '/');
        }
    }
    match query {
        Some(q) => format!("{path}?{q}"),
        None => path,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn route(host: &str, prefix: &str, comp: &str) -> Route {
        Route {
            event_source: format!("es-{comp}"),
            component: comp.into(),
            hostname: host.into(),
            prefix: prefix.into(),
            strip: false,
        }
    }

    #[test]
    fn hostnames_first_then_longer_prefixes() {
        let mut routes = vec![
            route("", "/api", "any-api"),
            route("a.test", "", "a"),
            route("a.test", "/api/v2", "a-v2"),
            route("b.test", "/api", "b-api"),
            route("", "/api/long", "any-long"),
        ];
        sort_routes(&mut routes);
        let order: Vec<_> = routes.iter().map(|r| r.component.as_str()).collect();
        assert_eq!(order, ["a-v2", "b-api", "a", "any-long", "any-api"]);
        assert_eq!(
            resolve(&routes, "a.test", "/api/v2/x").unwrap().component,
            "a-v2"
        );
        assert_eq!(resolve(&routes, "a.test", "/other").unwrap().component, "a");
        assert_eq!(
            resolve(&routes, "c.test", "/api/longer").unwrap().component,
            "any-long"
        );
        assert_eq!(
            resolve(&routes, "c.test", "/apix").unwrap().component,
            "any-api"
        );
        assert!(resolve(&routes, "c.test", "/x").is_none());
        assert!(resolve(&[route("", "", "never")], "h", "/").is_none());
    }

    #[test]
    fn hosts_and_paths() {
        assert_eq!(host_without_port("a.test:8008"), "a.test");
        assert_eq!(host_without_port("a.test"), "a.test");
        assert_eq!(host_without_port("[::1]:80"), "[::1]");
        assert_eq!(decode_path("/a%20b/%zz"), "/a b/%zz");
        let mut r = route("", "/api", "x");
        r.strip = true;
        assert_eq!(forwarded_path(&r, "/api/users", Some("q=1")), "/users?q=1");
        assert_eq!(forwarded_path(&r, "/api", None), "/");
        assert_eq!(forwarded_path(&r, "/apix", None), "/x");
        let mut enc = route("", "/a b", "x");
        enc.strip = true;
        assert_eq!(forwarded_path(&enc, "/a%20b/c%2Fd", None), "/c%2Fd");
        r.strip = false;
        assert_eq!(forwarded_path(&r, "/api/users", None), "/api/users");
    }

    proptest! {
        /// Whatever the routes, a match is the first in sorted order that matches, and no
        /// earlier route matches.
        #[test]
        fn the_first_match_wins(
            specs in proptest::collection::vec((0usize..3, 0usize..4), 1..8),
            host in 0usize..3,
            path in 0usize..5,
        ) {
            let hosts = ["", "a.test", "b.test"];
            let prefixes = ["", "/", "/api", "/api/v1"];
            let paths = ["/", "/api", "/api/v1/x", "/apix", "/other"];
            let mut routes: Vec<Route> = specs.iter().enumerate()
                .map(|(i, (h, p))| route(hosts[*h], prefixes[*p], &format!("c{i}")))
                .collect();
            sort_routes(&mut routes);
            let (h, p) = (hosts[host], paths[path]);
            match resolve(&routes, h, p) {
                Some(found) => {
                    let idx = routes.iter().position(|r| r == found).unwrap();
                    prop_assert!(routes[..idx].iter().all(|r| !r.matches(h, p)));
                    prop_assert!(found.hostname.is_empty() || found.hostname == h);
                    prop_assert!(p.starts_with(&found.prefix));
                }
                None => prop_assert!(routes.iter().all(|r| !r.matches(h, p))),
            }
            // Sorted: hostnames first, then non-increasing prefix length within each group.
            for w in routes.windows(2) {
                prop_assert!(!w[0].hostname.is_empty() || w[1].hostname.is_empty());
                if w[0].hostname.is_empty() == w[1].hostname.is_empty() {
                    prop_assert!(w[0].prefix.len() >= w[1].prefix.len());
                }
            }
        }
    }
}
