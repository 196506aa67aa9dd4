//! A fake API server over kube-rs' tower-test mock: records every request and answers
//! with a handler.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use http::{Request, Response};
use kube::client::Body;
use kube::Client;
use kubectl_buildbot::cluster::Cluster;
use serde_json::{json, Value};

#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub query: BTreeMap<String, String>,
    pub content_type: Option<String>,
    pub body: Value,
}

impl Seen {
    pub fn line(&self) -> String {
        let q: Vec<String> = self.query.iter().map(|(k, v)| format!("{k}={v}")).collect();
        format!(
            "{} {}{}{}",
            self.method,
            self.path,
            if q.is_empty() { "" } else { "?" },
            q.join("&")
        )
    }
    /// dryRun=All, in the query (PATCH) or in the DeleteOptions body (DELETE).
    pub fn dry_run(&self) -> bool {
        self.query.get("dryRun").map(String::as_str) == Some("All")
            || self.body["dryRun"] == json!(["All"])
    }
}

pub type Handler = dyn Fn(&Seen) -> Option<(u16, Value)> + Send + Sync;

/// A fake API server: `handler` answers each request (`None` drops it: a network failure).
pub fn fake(
    handler: impl Fn(&Seen) -> Option<(u16, Value)> + Send + Sync + 'static,
) -> (Cluster, Arc<Mutex<Vec<Seen>>>) {
    let handler: Arc<Handler> = Arc::new(handler);
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Some((request, send)) = handle.next_request().await {
            let (parts, body) = request.into_parts();
            let bytes = body.collect_bytes().await.unwrap();
            let query = parts
                .uri
                .query()
                .unwrap_or_default()
                .split('&')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once('=').unwrap_or((p, ""));
                    (k.to_string(), v.to_string())
                })
                .collect();
            let s = Seen {
                method: parts.method.to_string(),
                path: parts.uri.path().to_string(),
                query,
                content_type: parts
                    .headers
                    .get("content-type")
                    .map(|v| v.to_str().unwrap().to_string()),
                body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            };
            let answer = handler(&s);
            log.lock().unwrap().push(s);
            match answer {
                Some((code, value)) => send.send_response(
                    Response::builder()
                        .status(code)
                        .header("content-type", "application/json")
                        // A string answers as plain text (pod logs), anything else as JSON.
                        .body(Body::from(match value {
                            Value::String(text) => text.into_bytes(),
                            other => serde_json::to_vec(&other).unwrap(),
                        }))
                        .unwrap(),
                ),
                None => drop(send),
            }
        }
    });
    (Cluster::from_client(Client::new(service, "ci"), "ci"), seen)
}

pub fn status(code: u16, reason: &str, message: &str, kind: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message, "reason": reason,
           "details": {"name": "x", "kind": kind}, "code": code})
}

pub fn not_found(s: &Seen) -> Option<(u16, Value)> {
    let kind = s
        .path
        .split('/')
        .rev()
        .nth(1)
        .unwrap_or_default()
        .to_string();
    Some((404, status(404, "NotFound", "not found", &kind)))
}

/// GETs find nothing; PATCHes echo the object; DELETEs succeed.
pub fn empty_cluster(s: &Seen) -> Option<(u16, Value)> {
    match s.method.as_str() {
        "GET" if s.path.ends_with("persistentvolumeclaims") || s.path.ends_with("/pods") => Some((
            200,
            json!({"kind": "List", "apiVersion": "v1", "metadata": {}, "items": []}),
        )),
        "GET" => not_found(s),
        "PATCH" => Some((200, s.body.clone())),
        "DELETE" => Some((200, status(200, "", "", ""))),
        _ => Some((405, status(405, "MethodNotAllowed", "unexpected", ""))),
    }
}
