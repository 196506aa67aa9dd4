//! Is this a Buildbot pod, and which role does it and each of its containers play?

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::core::v1::{Container, Pod};

use super::config::{Recognition, ROLE_KEY};

/// The part a pod or container plays in a Buildbot installation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    Master,
    Worker,
    Database,
}

impl Role {
    /// The value of `app.kubernetes.io/component`.
    pub fn component(self) -> &'static str {
        match self {
            Role::Master => "master",
            Role::Worker => "worker",
            Role::Database => "database",
        }
    }

    /// Reads a component or tier label value, accepting the spellings seen in the wild.
    pub fn parse(value: &str) -> Option<Role> {
        match value.trim().to_ascii_lowercase().as_str() {
            "master" | "buildmaster" | "buildbot-master" => Some(Role::Master),
            "worker" | "workers" | "slave" | "buildslave" | "buildbot-worker" => Some(Role::Worker),
            "database" | "db" | "postgres" | "postgresql" | "pg" => Some(Role::Database),
            _ => None,
        }
    }
}

/// Serialised as its component label value (`master`, `worker`, `database`), so that JSON
/// output and labels spell a role the same way.
impl serde::Serialize for Role {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.component())
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.component())
    }
}

/// How the pod was recognised, for the audit trail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Evidence {
    Annotation,
    RecommendedLabels,
    LegacyLabels,
    Containers,
}

impl fmt::Display for Evidence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Evidence::Annotation => "role annotation",
            Evidence::RecommendedLabels => "app.kubernetes.io labels",
            Evidence::LegacyLabels => "app/tier labels",
            Evidence::Containers => "container images/environment",
        })
    }
}

/// What recognition found out about a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recognised {
    /// Not a Buildbot pod: leave it alone.
    NotBuildbot,
    /// Labelled as Buildbot, but nothing says which role it plays.
    UnknownRole,
    /// A Buildbot pod. `containers[i]` is the role of `spec.containers[i]`; `None` is a sidecar.
    Buildbot {
        role: Role,
        evidence: Evidence,
        containers: Vec<Option<Role>>,
    },
}

/// Recognises a Buildbot pod and the role of each of its containers.
pub fn recognise(pod: &Pod, rec: &Recognition) -> Recognised {
    let empty = BTreeMap::new();
    let labels = pod.metadata.labels.as_ref().unwrap_or(&empty);
    let annotations = pod.metadata.annotations.as_ref().unwrap_or(&empty);
    let containers: &[Container] = pod
        .spec
        .as_ref()
        .map(|s| s.containers.as_slice())
        .unwrap_or(&[]);

    let by_container: Vec<Option<Role>> =
        containers.iter().map(|c| container_role(c, rec)).collect();
    let label = |k: &str| labels.get(k).map(String::as_str);
    let is_buildbot_label = |k: &str| label(k).is_some_and(|v| v.eq_ignore_ascii_case("buildbot"));

    let labelled = is_buildbot_label("app.kubernetes.io/name")
        || is_buildbot_label("app.kubernetes.io/part-of")
        || is_buildbot_label("app");
    // The component label counts under any Buildbot marker, so that adding the recommended
    // name label to a legacy-labelled pod never changes its role on the next pass.
    let (role, evidence) = if let Some(r) = annotations.get(ROLE_KEY).and_then(|v| Role::parse(v)) {
        (r, Evidence::Annotation)
    } else if let Some(r) = labelled
        .then(|| label("app.kubernetes.io/component").and_then(Role::parse))
        .flatten()
    {
        (r, Evidence::RecommendedLabels)
    } else if let Some(r) = is_buildbot_label("app")
        .then(|| label("tier").and_then(Role::parse))
        .flatten()
    {
        (r, Evidence::LegacyLabels)
    } else if by_container.contains(&Some(Role::Worker)) {
        (Role::Worker, Evidence::Containers)
    } else if by_container.contains(&Some(Role::Master)) {
        (Role::Master, Evidence::Containers)
    } else if labelled && by_container.contains(&Some(Role::Database)) {
        (Role::Database, Evidence::Containers)
    } else if labelled {
        return Recognised::UnknownRole;
    } else {
        return Recognised::NotBuildbot;
    };

    // A pod whose containers say nothing: its default container plays the pod's role, the
    // others are sidecars.
    let mut containers = by_container;
    if containers.iter().all(Option::is_none) && !containers.is_empty() {
        let default = annotations
            .get("kubectl.kubernetes.io/default-container")
            .and_then(|name| {
                pod.spec
                    .as_ref()?
                    .containers
                    .iter()
                    .position(|c| &c.name == name)
            })
            .unwrap_or(0);
        containers[default] = Some(role);
    }
    Recognised::Buildbot {
        role,
        evidence,
        containers,
    }
}

/// The role a container plays by its image, else by its environment.
fn container_role(c: &Container, rec: &Recognition) -> Option<Role> {
    let repo = c.image.as_deref().map(image_repository).unwrap_or_default();
    let matches = |patterns: &[String]| patterns.iter().any(|p| glob_match(p, repo));
    if matches(&rec.worker_images) {
        return Some(Role::Worker);
    }
    if matches(&rec.master_images) {
        return Some(Role::Master);
    }
    // The database image wins over environment: the seed gave postgres BUILDBOT_DB_URL too.
    if matches(&rec.database_images) {
        return Some(Role::Database);
    }
    // A worker variable wins over a master one.
    let mut role = None;
    for found in c
        .env
        .iter()
        .flatten()
        .filter_map(|e| env_role(e.name.as_bytes()))
    {
        if found == Role::Worker {
            return Some(found);
        }
        role = Some(found);
    }
    role
}

/// The role an environment variable's name alone gives a container: the worker image's
/// `BUILDMASTER` and `WORKERNAME`, the master image's `BUILDBOT_DB_URL` and
/// `BUILDBOT_CONFIG_*`. The only environment the policy reads: a decoder may drop every other
/// variable (the webhook's review view does).
/// Takes bytes: a decoder need not check a name is UTF-8 to learn it says nothing.
pub fn env_role(name: &[u8]) -> Option<Role> {
    match name {
        b"BUILDMASTER" | b"WORKERNAME" => Some(Role::Worker),
        b"BUILDBOT_DB_URL" => Some(Role::Master),
        _ if name.starts_with(b"BUILDBOT_CONFIG_") => Some(Role::Master),
        _ => None,
    }
}

/// The repository path of an image reference, without registry, tag or digest:
/// `quay.io/org/buildbot-worker:v1@sha256:...` gives `org/buildbot-worker`,
/// `docker.io/library/postgres:15` gives `postgres`.
pub fn image_repository(image: &str) -> &str {
    // One pass, up to the digest: the last colon and slash, the first slash, and whether the
    // text before that slash has a dot or a colon (std's searches cost more on short text).
    let (mut end, mut colon, mut slash, mut first_slash) = (image.len(), None, None, None);
    let mut host_like = false;
    for (i, &b) in image.as_bytes().iter().enumerate() {
        match b {
            b'@' => {
                end = i;
                break;
            }
            b':' => colon = Some(i),
            b'/' => {
                slash = Some(i);
                first_slash.get_or_insert(i);
            }
            _ => {}
        }
        if first_slash.is_none() && matches!(b, b'.' | b':') {
            host_like = true;
        }
    }
    // A tag is a colon after the last slash (a colon before it is a registry port).
    let end = match (colon, slash) {
        (Some(colon), Some(slash)) if colon > slash => colon,
        (Some(colon), None) => colon,
        _ => end,
    };
    let image = &image[..end];
    // The first component is a registry when it has a dot or a port, or is localhost.
    let image = match first_slash.filter(|&at| at < end) {
        Some(at) if host_like || &image[..at] == "localhost" => &image[at + 1..],
        _ => image,
    };
    image.strip_prefix("library/").unwrap_or(image)
}

/// Shell-style matching where `*` matches any run of characters (case-insensitive).
///
/// The pattern's text before its first `*` starts the text, the text after its last `*` ends
/// it, and each piece between them is found, leftmost first, in between: what a `*`-only
/// glob means, with no backtracking (the policy matches every container against seven
/// patterns).
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let mut pieces = p.split(|&b| b == b'*');
    let first = pieces.next().unwrap_or_default();
    let Some(last) = pieces.next_back() else {
        return p.eq_ignore_ascii_case(t); // no `*`
    };
    if t.len() < first.len() + last.len()
        || !t[..first.len()].eq_ignore_ascii_case(first)
        || !t[t.len() - last.len()..].eq_ignore_ascii_case(last)
    {
        return false;
    }
    let mut rest = &t[first.len()..t.len() - last.len()];
    for piece in pieces.filter(|piece| !piece.is_empty()) {
        match rest
            .windows(piece.len())
            .position(|w| w.eq_ignore_ascii_case(piece))
        {
            Some(at) => rest = &rest[at + piece.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_repository_strips_registry_tag_and_digest() {
        for (image, repo) in [
            ("buildbot/buildbot-worker", "buildbot/buildbot-worker"),
            (
                "buildbot/buildbot-worker:master",
                "buildbot/buildbot-worker",
            ),
            (
                "docker.io/buildbot/buildbot-master:v4.1.0",
                "buildbot/buildbot-master",
            ),
            (
                "quay.io/elijahcaine/buidlbot-rust-worker",
                "elijahcaine/buidlbot-rust-worker",
            ),
            (
                "localhost:5000/ci/buildbot-worker-rust:1@sha256:abc",
                "ci/buildbot-worker-rust",
            ),
            ("registry:5000/buildbot-worker", "buildbot-worker"),
            ("postgres:9.4", "postgres"),
            ("docker.io/library/postgres:15", "postgres"),
            ("", ""),
        ] {
            assert_eq!(image_repository(image), repo, "{image}");
        }
    }

    #[test]
    fn env_names_that_say_a_role() {
        for name in [
            "BUILDMASTER",
            "WORKERNAME",
            "BUILDBOT_DB_URL",
            "BUILDBOT_CONFIG_DIR",
            "BUILDBOT_CONFIG_",
        ] {
            assert!(env_role(name.as_bytes()).is_some(), "{name}");
        }
        for name in ["BUILDMASTER_PORT", "WORKERPASS", "PATH", "buildmaster", ""] {
            assert_eq!(env_role(name.as_bytes()), None, "{name}");
        }
    }

    #[test]
    fn glob_matches_like_a_shell() {
        assert!(glob_match(
            "*buildbot-worker*",
            "ci/my-buildbot-worker-rust"
        ));
        assert!(glob_match(
            "buildbot/buildbot-worker",
            "Buildbot/Buildbot-Worker"
        ));
        assert!(glob_match("*/postgres", "bitnami/postgres"));
        assert!(!glob_match("*/postgres", "postgres"));
        assert!(glob_match("*", ""));
        assert!(!glob_match("buildbot", "buildbot-worker"));
        assert!(glob_match("a*b*c", "aXXbYYc"));
        assert!(!glob_match("a*b*c", "aXXbYY"));
        assert!(!glob_match("ab*ba", "aba"), "the ends may not overlap");
        assert!(glob_match("a**b", "ab"));
        assert!(glob_match("**", "x"));
    }

    /// `image_repository` as it was written first, with std's searches: the reference.
    fn image_repository_by_searches(image: &str) -> &str {
        let image = image.split('@').next().unwrap_or(image);
        let image = match (image.rfind(':'), image.rfind('/')) {
            (Some(colon), Some(slash)) if colon > slash => &image[..colon],
            (Some(colon), None) => &image[..colon],
            _ => image,
        };
        let image = match image.split_once('/') {
            Some((first, rest))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                rest
            }
            _ => image,
        };
        image.strip_prefix("library/").unwrap_or(image)
    }

    proptest::proptest! {
        #[test]
        fn image_repository_agrees_with_searches(image in "[a.:/@l]{0,12}|(localhost|library|docker.io|a:5000)(/[a-z.:]{0,6}){0,3}(:[a-z0-9]{1,3})?(@sha:[0-9]{1,3})?") {
            proptest::prop_assert_eq!(image_repository(&image), image_repository_by_searches(&image));
        }
    }

    /// The backtracking matcher `glob_match` replaced: the reference it must agree with.
    fn backtracking_glob(pattern: &str, text: &str) -> bool {
        let (p, t) = (pattern.as_bytes(), text.as_bytes());
        let (mut pi, mut ti) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while ti < t.len() {
            if pi < p.len() && p[pi] == b'*' {
                star = Some((pi, ti));
                pi += 1;
            } else if pi < p.len() && p[pi].eq_ignore_ascii_case(&t[ti]) {
                pi += 1;
                ti += 1;
            } else if let Some((sp, st)) = star {
                pi = sp + 1;
                ti = st + 1;
                star = Some((sp, st + 1));
            } else {
                return false;
            }
        }
        p[pi..].iter().all(|&b| b == b'*')
    }

    proptest::proptest! {
        #[test]
        fn glob_agrees_with_backtracking(pattern in "[abA*/-]{0,8}", text in "[abAB/-]{0,10}") {
            proptest::prop_assert_eq!(
                glob_match(&pattern, &text),
                backtracking_glob(&pattern, &text),
                "{:?} {:?}", pattern, text
            );
        }
    }

    #[test]
    fn role_parse_accepts_common_spellings() {
        assert_eq!(Role::parse("Postgres"), Some(Role::Database));
        assert_eq!(Role::parse("buildslave"), Some(Role::Worker));
        assert_eq!(Role::parse("master"), Some(Role::Master));
        assert_eq!(Role::parse("frontend"), None);
    }
}
