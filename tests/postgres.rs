//! A throwaway PostgreSQL on loopback. PostgreSQL refuses to run as root, so as root (CI)
//! it runs as the `postgres` user through `runuser`.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{free_port, postgres_bin_dir, temp_dir};

pub struct Postgres {
    dir: PathBuf,
    bin: PathBuf,
    pub port: u16,
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// `program args...`, as the postgres user when we are root.
fn as_postgres(program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn run(c: &mut Command, what: &str) {
    let out = c.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Postgres {
    /// Starts a server with password authentication over TCP and creates `user` (with
    /// `password`) owning database `db`.
    pub fn start(user: &str, password: &str, db: &str) -> Self {
        let bin = postgres_bin_dir();
        let dir = temp_dir("pg");
        if is_root() {
            run(
                Command::new("chown")
                    .args(["-R", "postgres:postgres"])
                    .arg(&dir),
                "chown the data directory",
            );
        }
        let data = dir.join("data");
        let mut initdb = as_postgres(&bin.join("initdb"));
        initdb.arg("-D").arg(&data).args([
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
        ]);
        run(&mut initdb, "initdb");
        // A free port can be taken by another test between picking and binding: retry.
        let mut attempt = 0;
        let port = loop {
            attempt += 1;
            let port = free_port();
            let mut start = as_postgres(&bin.join("pg_ctl"));
            start
                .arg("-D")
                .arg(&data)
                .arg("-l")
                .arg(dir.join("server.log"))
                .arg("-o")
                .arg(format!(
                    "-p {port} -k {} -c listen_addresses=127.0.0.1",
                    dir.display()
                ))
                .args(["-w", "start"]);
            let out = start.output().expect("run pg_ctl");
            if out.status.success() {
                break port;
            }
            let log = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
            assert!(
                attempt < 3,
                "pg_ctl start failed 3 times:\n{}\n--- server.log ---\n{log}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let pg = Self { dir, bin, port };
        let sql =
            format!("CREATE USER {user} PASSWORD '{password}'; CREATE DATABASE {db} OWNER {user};");
        for statement in sql.split_inclusive(';') {
            let mut psql = as_postgres(&pg.bin.join("psql"));
            psql.args(["-h"]).arg(&pg.dir).args([
                "-p",
                &port.to_string(),
                "-U",
                "postgres",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                statement.trim(),
            ]);
            run(&mut psql, "psql");
        }
        pg
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let mut stop = as_postgres(&self.bin.join("pg_ctl"));
        stop.arg("-D")
            .arg(self.dir.join("data"))
            .args(["-m", "immediate", "stop"]);
        let _ = stop.output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
