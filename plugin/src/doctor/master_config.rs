//! What the master listens on and declares, from its environment and, when it is in a
//! ConfigMap the master mounts, its master.cfg. master.cfg is Python: doctor reads the
//! literals it can see and says nothing where the config computes a value.

use super::inventory::{env, Inventory, Workload};

/// The port Buildbot's sample config and the official images use for workers.
pub const DEFAULT_WORKER_PORT: i32 = 9989;
/// The official images' web port (`BUILDBOT_WEB_PORT`'s default in their master.cfg).
pub const DEFAULT_WEB_PORT: i32 = 8080;

/// The master.cfg text of a master, if a ConfigMap it mounts holds one.
pub fn master_cfg<'a>(inv: &'a Inventory, master: &Workload) -> Option<&'a str> {
    let volumes = master.pod.spec.as_ref()?.volumes.as_deref()?;
    volumes.iter().find_map(|v| {
        let name = &v.config_map.as_ref()?.name;
        let data = inv.config_map(&master.namespace, name)?.data.as_ref()?;
        data.iter()
            .find(|(k, _)| k.as_str() == "master.cfg" || k.ends_with(".cfg"))
            .map(|(_, text)| text.as_str())
    })
}

/// Where the master's config comes from when it is not in a ConfigMap (`BUILDBOT_CONFIG_URL`).
pub fn config_url(master: &Workload) -> Option<&str> {
    env(master.main_container()?, "BUILDBOT_CONFIG_URL")
}

fn env_port(master: &Workload, name: &str) -> Option<i32> {
    env(master.main_container()?, name)?.trim().parse().ok()
}

/// The port workers connect to: `BUILDBOT_WORKER_PORT`, else master.cfg's `pb` port, else 9989.
pub fn worker_port(inv: &Inventory, master: &Workload) -> i32 {
    port(inv, master, "BUILDBOT_WORKER_PORT", "pb").unwrap_or(DEFAULT_WORKER_PORT)
}

/// The web (REST API) port: `BUILDBOT_WEB_PORT`, else master.cfg's `www` port, else 8080.
pub fn web_port(inv: &Inventory, master: &Workload) -> i32 {
    port(inv, master, "BUILDBOT_WEB_PORT", "www").unwrap_or(DEFAULT_WEB_PORT)
}

/// A port from the variable, else from master.cfg: the variable's default there
/// (`os.environ.get("VAR", "9989")`), else the `port` of the `section` dict.
fn port(inv: &Inventory, master: &Workload, variable: &str, section: &str) -> Option<i32> {
    env_port(master, variable).or_else(|| {
        let cfg = master_cfg(inv, master)?;
        literal_after(cfg, &format!("\"{variable}\"")).or_else(|| {
            let at = cfg
                .find(&format!("\"{section}\""))
                .or_else(|| cfg.find(&format!("'{section}'")))?;
            number_after_key(&cfg[at..], "port")
        })
    })
}

/// `"NAME", "9989")`: the default of an `os.environ.get("NAME", "9989")`.
fn literal_after(cfg: &str, quoted_name: &str) -> Option<i32> {
    let rest = &cfg[cfg.find(quoted_name)? + quoted_name.len()..];
    let rest = rest.trim_start().strip_prefix(',')?.trim_start();
    let rest = rest.trim_start_matches(['"', '\'']);
    leading_number(rest)
}

/// The number after the first `port` key (`"port": 9989` or `port=9989`) within 200 bytes.
fn number_after_key(text: &str, key: &str) -> Option<i32> {
    let window = &text[..text.len().min(200)];
    let at = window.find(key)? + key.len();
    let rest = window[at..].trim_start_matches(['"', '\'']).trim_start();
    let rest = rest.strip_prefix(':').or_else(|| rest.strip_prefix('='))?;
    leading_number(rest.trim_start().trim_start_matches(['"', '\'']))
}

fn leading_number(s: &str) -> Option<i32> {
    let digits: String = s.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// The database URL: `BUILDBOT_DB_URL`, else a literal `db_url` in master.cfg.
pub fn db_url(inv: &Inventory, master: &Workload) -> Option<String> {
    if let Some(url) = master
        .main_container()
        .and_then(|c| env(c, "BUILDBOT_DB_URL"))
    {
        return Some(url.to_string());
    }
    let cfg = master_cfg(inv, master)?;
    let at = cfg.find("db_url")? + "db_url".len();
    let rest = cfg[at..].trim_start_matches(['"', '\'']).trim_start();
    let rest = rest
        .strip_prefix(':')
        .or_else(|| rest.strip_prefix('='))?
        .trim_start();
    string_literal(rest).map(str::to_string)
}

/// The string literal at the start of `s` (`"..."` or `'...'`), without escapes.
fn string_literal(s: &str) -> Option<&str> {
    let quote = s.chars().next().filter(|c| *c == '"' || *c == '\'')?;
    let body = &s[1..];
    Some(&body[..body.find(quote)?])
}

/// The worker names master.cfg declares for long-running workers: the literal first argument
/// of every `Worker(`-like call, or the names in a list literal the call's loop iterates.
/// Latent workers (`KubeLatentWorker`, a subclass named `...LatentWorker`, Docker's, EC2's)
/// are left out: the master starts them itself, so no pod is expected to log in as them
/// beforehand. `None` when any name is computed in a way doctor cannot follow.
pub fn declared_workers(cfg: &str) -> Option<Vec<String>> {
    let mut names = Vec::new();
    let mut rest = cfg;
    let mut calls = 0;
    while let Some(at) = rest.find("Worker(") {
        let before = &rest[..at];
        rest = &rest[at + "Worker(".len()..];
        // `class MyWorker(worker.Worker):` is a definition, not a declaration.
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        if before[line_start..].trim_start().starts_with("class ") {
            continue;
        }
        calls += 1;
        let callee_start = before
            .rfind(|c: char| !(c.is_alphanumeric() || c == '_'))
            .map_or(0, |i| i + 1);
        if before[callee_start..].contains("Latent") {
            continue;
        }
        let arg = rest.trim_start();
        if let Some(name) = string_literal(arg) {
            names.push(name.to_string());
            continue;
        }
        // `[worker.Worker(n, ...) for n in WORKER_NAMES]`
        let variable: String = arg
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        let close = rest.find(']')?;
        let tail = &rest[..close];
        let list_name = tail
            .split(&format!("for {variable} in "))
            .nth(1)?
            .trim()
            .trim_end_matches(')');
        names.extend(list_literal(cfg, list_name)?);
    }
    (calls > 0).then_some(names)
}

/// The strings of `NAME = ["a", "b"]`.
fn list_literal(cfg: &str, name: &str) -> Option<Vec<String>> {
    let open = format!("{name} = [");
    let at = cfg.find(&open)? + open.len();
    let body = &cfg[at..at + cfg[at..].find(']')?];
    body.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| string_literal(s).map(str::to_string))
        .collect()
}

/// Whether master.cfg restricts every control endpoint (the REST API's worker `stop` that
/// the graceful-stop hook sends, anonymously) to a role.
pub fn restricts_control(cfg: &str) -> bool {
    cfg.contains("AnyControlEndpointMatcher") || cfg.contains("AnyEndpointMatcher")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_names_from_literals_and_from_a_listed_loop() {
        let cfg = r#"
c['workers'] = [worker.Worker("example-worker", "pass"), worker.Worker('rust-worker', 'x')]
class MyWorker(worker.Worker):
    pass
"#;
        assert_eq!(
            declared_workers(cfg).unwrap(),
            ["example-worker", "rust-worker"]
        );
        let cfg = "WORKER_NAMES = [\"bb-worker-0\", \"bb-worker-1\"]\n\
                   c[\"workers\"] = [worker.Worker(n, worker_password(n), max_builds=1) for n in WORKER_NAMES]\n";
        assert_eq!(
            declared_workers(cfg).unwrap(),
            ["bb-worker-0", "bb-worker-1"]
        );
        assert_eq!(declared_workers("c = {}"), None, "no declaration: unknown");
        let latent = "WORKER_NAMES = [\"bb-worker-0\"]\n\
                      class PolicyKubeLatentWorker(worker.KubeLatentWorker):\n    pass\n\
                      c['workers'] = [PolicyKubeLatentWorker(\n        n,\n        image='w',\n    )\n    for n in WORKER_NAMES\n]\n\
                      c['workers'].append(worker.KubeLatentWorker('plain-0', image='w'))\n\
                      c['workers'].append(worker.Worker('static-0', 'p'))\n";
        assert_eq!(
            declared_workers(latent),
            Some(vec!["static-0".to_string()]),
            "the master starts latent workers itself"
        );
        let computed = "c['workers'] = [worker.Worker(f'w{i}', 'p') for i in range(3)]";
        assert_eq!(declared_workers(computed), None);
    }

    #[test]
    fn ports_and_database_from_the_config_text() {
        assert_eq!(
            literal_after(
                "int(os.environ.get(\"BUILDBOT_WORKER_PORT\", \"9990\"))",
                "\"BUILDBOT_WORKER_PORT\""
            ),
            Some(9990)
        );
        assert_eq!(
            number_after_key("'pb': {'port': 9999}}", "port"),
            Some(9999)
        );
        assert_eq!(
            number_after_key("\"pb\": {\"port\": \"tcp:9989\"}", "port"),
            None,
            "a strports string is not a number"
        );
        assert_eq!(
            string_literal("'sqlite:///state.sqlite',"),
            Some("sqlite:///state.sqlite")
        );
    }
}
