//! Passwords: generated once, then kept on every later deploy.

use std::collections::BTreeMap;

use super::spec::DeploySpec;

/// The passwords an installation needs. Keys of `workers` are worker names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Secrets {
    pub postgres: Option<String>,
    pub workers: BTreeMap<String, String>,
}

/// 32 random alphanumeric characters (safe inside a database URL, ~190 bits).
pub fn random_password() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut out = String::with_capacity(32);
    while out.len() < 32 {
        let mut buf = [0u8; 64];
        getrandom::fill(&mut buf).expect("the operating system's random source works");
        // Rejection sampling keeps every character equally likely.
        for b in buf
            .iter()
            .filter(|b| (**b as usize) < 256 - 256 % ALPHABET.len())
        {
            if out.len() == 32 {
                break;
            }
            out.push(ALPHABET[*b as usize % ALPHABET.len()] as char);
        }
    }
    out
}

impl Secrets {
    /// `existing` with every missing password generated; an existing one is never replaced.
    pub fn complete(mut self, spec: &DeploySpec) -> Secrets {
        if matches!(spec.database, super::spec::Database::Bundled { .. }) && self.postgres.is_none()
        {
            self.postgres = Some(random_password());
        }
        for name in spec.worker_names() {
            self.workers.entry(name).or_insert_with(random_password);
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_random_alphanumeric() {
        let (a, b) = (random_password(), random_password());
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, b);
    }

    #[test]
    fn existing_passwords_are_kept_and_new_slots_filled() {
        let spec = DeploySpec::new("ci", "ns");
        let existing = Secrets {
            postgres: Some("keep-me".into()),
            workers: [("ci-worker-0".to_string(), "w0".to_string())].into(),
        };
        let s = existing.complete(&spec);
        assert_eq!(s.postgres.as_deref(), Some("keep-me"));
        assert_eq!(s.workers["ci-worker-0"], "w0");
        assert_eq!(s.workers.len(), 4);
    }
}
