//! The container log stream at `GET /_mael/logs` (spec §7.7): CRLF-terminated JSON lines
//! `{"Component","Stream","Data","Node"}` from this node's matching containers (running now
//! or started later) and, unless `scope=local`, from every peer's stream, merged; a `PING`
//! line every second keeps the connection alive and notices a departed client.

use crate::node::Node;
use bytes::Bytes;
use futures_util::StreamExt;
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Whether `name` matches one of the comma-separated globs (`*` as prefix, suffix or both;
/// empty or `*` matches all).
pub fn matches(globs: &[String], name: &str) -> bool {
    globs.is_empty()
        || globs.iter().any(|g| {
            let g = g.trim();
            match (g.strip_prefix('*'), g.strip_suffix('*')) {
                _ if g.is_empty() || g == "*" => true,
                (Some(rest), _) if rest.ends_with('*') => name.contains(&rest[..rest.len() - 1]),
                (Some(rest), _) => name.ends_with(rest),
                (None, Some(rest)) => name.starts_with(rest),
                (None, None) => name == g,
            }
        })
}

fn line(component: &str, stream: &str, data: &str, node: &str) -> Bytes {
    let mut v = serde_json::to_vec(&serde_json::json!({
        "Component": component, "Stream": stream, "Data": data, "Node": node,
    }))
    .unwrap_or_default();
    v.extend_from_slice(b"\r\n");
    Bytes::from(v)
}

/// The streaming body; `Err` names a bad parameter.
pub fn stream(
    node: &Arc<Node>,
    components: &str,
    since: &str,
    local_only: bool,
) -> Result<
    StreamBody<impl futures_util::Stream<Item = Result<Frame<Bytes>, Infallible>> + Send + 'static>,
    String,
> {
    let globs: Vec<String> = components
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    let since_dur = if since.trim().is_empty() {
        Duration::from_secs(60)
    } else {
        humantime::parse_duration(since.trim())
            .map_err(|e| format!("since='{since}' is not a duration ({e}); use e.g. 30s, 5m, 1h"))?
    };
    let (tx, rx) = mpsc::channel::<Bytes>(512);
    let since_secs = (std::time::SystemTime::now() - since_dur)
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);

    // This node's containers, now and as they start.
    {
        let node = node.clone();
        let tx = tx.clone();
        let globs = globs.clone();
        tokio::spawn(async move {
            let mut followed: HashSet<String> = HashSet::new();
            let mut first = true;
            while !tx.is_closed() {
                for c in node.containers.all() {
                    if !matches(&globs, &c.component) || !followed.insert(c.id.clone()) {
                        continue;
                    }
                    let from = if first {
                        since_secs
                    } else {
                        c.started_at / 1000
                    };
                    tokio::spawn(follow(
                        node.clone(),
                        c.id.clone(),
                        c.component.clone(),
                        from,
                        tx.clone(),
                    ));
                }
                first = false;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
    }
    // Every peer's local stream.
    if !local_only {
        for link in node.cluster.links() {
            let url = format!(
                "/_mael/logs?components={}&since={}s&scope=local",
                globs.join(","),
                since_dur.as_secs()
            );
            let token = node.cfg.private_token.clone();
            let tx = tx.clone();
            let self_id = node.id.clone();
            tokio::spawn(async move {
                let err = relay_peer(&link, &url, token.as_deref(), &tx).await;
                let msg = format!(
                    "[maelstromd] log stream from node {} ended: {err}",
                    link.node_id
                );
                let _ = tx.send(line("maelstromd", "stderr", &msg, &self_id)).await;
            });
        }
    }
    // Keep-alive pings; they also end the stream's tasks once the client is gone.
    {
        let tx = tx.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                if tx.send(Bytes::from_static(b"PING\r\n")).await.is_err() {
                    return;
                }
            }
        });
    }
    let frames = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok(Frame::data(b)), rx))
    });
    Ok(StreamBody::new(frames))
}

async fn follow(
    node: Arc<Node>,
    id: String,
    component: String,
    since: i64,
    tx: mpsc::Sender<Bytes>,
) {
    let mut logs = Box::pin(node.engine.logs(&id, since));
    loop {
        // A quiet container must not keep its log stream open after the client left.
        let chunk = tokio::select! {
            c = logs.next() => c,
            _ = tx.closed() => return,
        };
        let Some(Ok(chunk)) = chunk else { return };
        let stream = match &chunk {
            bollard::container::LogOutput::StdErr { .. } => "stderr",
            _ => "stdout",
        };
        let text = chunk.to_string();
        for l in text.lines() {
            if tx
                .send(line(&component, stream, l, &node.id))
                .await
                .is_err()
            {
                return;
            }
        }
    }
}

async fn relay_peer(
    link: &crate::cluster::PeerLink,
    path: &str,
    token: Option<&str>,
    tx: &mpsc::Sender<Bytes>,
) -> String {
    let mut req = http::Request::get(path);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let req = match req.body(crate::gateway::proxy::full(Bytes::new())) {
        Ok(r) => r,
        Err(e) => return e.to_string(),
    };
    let (resp, lease) = match link.proxy.request(req).await {
        Ok(r) => r,
        Err(e) => return crate::gateway::proxy::error_chain(&e),
    };
    if !resp.status().is_success() {
        return format!("HTTP {}", resp.status());
    }
    let mut body = crate::gateway::upstream::Returning::new(resp.into_body(), lease);
    let mut buf = Vec::new();
    loop {
        let frame = tokio::select! {
            f = body.frame() => f,
            _ = tx.closed() => return "the client left".into(),
        };
        match frame {
            None => return "the peer closed it".into(),
            Some(Err(e)) => return e.to_string(),
            Some(Ok(frame)) => {
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                buf.extend_from_slice(&data);
                while let Some(pos) = buf.windows(2).position(|w| w == b"\r\n") {
                    let l: Vec<u8> = buf.drain(..pos + 2).collect();
                    if l.starts_with(b"PING") {
                        continue;
                    }
                    if tx.send(Bytes::from(l)).await.is_err() {
                        return "the client left".into();
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        let g = |s: &str| s.split(',').map(str::to_string).collect::<Vec<_>>();
        assert!(matches(&[], "p_web"));
        assert!(matches(&g("*"), "p_web"));
        assert!(matches(&g("p_*"), "p_web"));
        assert!(matches(&g("*web"), "p_web"));
        assert!(matches(&g("*_w*"), "p_web"));
        assert!(matches(&g("x,p_web"), "p_web"));
        assert!(!matches(&g("q_*"), "p_web"));
        assert!(!matches(&g("p_we"), "p_web"));
    }
}
