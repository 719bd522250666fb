//! One `workers:` entry: its credentials, and what to start for a local one.

use std::path::PathBuf;

use serde_saphyr::Spanned;

use super::checks::Checker;
use super::env::expand_env;
use super::schema::{Mode, Policy, Restart, Worker};
use super::ConfigError;
use crate::auth::{DeclaredWorker, Secret};
use crate::config::{LocalWorker, RestartPolicy, RestartWhen};

impl Checker {
    /// One `workers:` entry: its credentials, and what to start for a local one.
    pub(super) fn worker(
        &self,
        w: &Worker,
    ) -> Result<(DeclaredWorker, Option<LocalWorker>), ConfigError> {
        let id = &w.id.value;
        let owner = format!("worker {id:?}");
        let token = self.token(&owner, &w.token_env, &w.token_file, &w.token)?;
        let routes = match &w.routes {
            None => None,
            Some(list) => {
                let mut out = Vec::new();
                for r in list {
                    if !r.value.starts_with('/') {
                        return Err(self.err(
                            r.referenced,
                            format!("{owner}: route prefix {:?} must start with '/'", r.value),
                        ));
                    }
                    out.push(r.value.clone());
                }
                Some(out)
            }
        };
        match w.mode {
            Mode::Remote => self.remote_worker(w, &owner, token, routes),
            Mode::Local => self.local_worker(w, &owner, token, routes),
        }
    }

    /// A remote worker: it starts by itself and needs a token.
    fn remote_worker(
        &self,
        w: &Worker,
        owner: &str,
        token: Option<Secret>,
        routes: Option<Vec<String>>,
    ) -> Result<(DeclaredWorker, Option<LocalWorker>), ConfigError> {
        let at = w.id.referenced;
        let local_only = [
            ("command", w.command.as_ref().map(|s| s.referenced)),
            (
                "args",
                w.args
                    .as_ref()
                    .and_then(|a| a.first())
                    .map(|s| s.referenced),
            ),
            ("cwd", w.cwd.as_ref().map(|s| s.referenced)),
            ("replicas", w.replicas.as_ref().map(|s| s.referenced)),
            ("restart", w.restart.as_ref().map(|s| s.referenced)),
            (
                "env",
                w.env
                    .as_ref()
                    .and_then(|e| e.values().next())
                    .map(|s| s.referenced),
            ),
        ];
        if let Some((key, Some(loc))) = local_only.into_iter().find(|(_, l)| l.is_some()) {
            return Err(self.err(loc, format!("{owner} is remote: it starts by itself, so {key} is not allowed (use mode: local to have the gateway start it)")));
        }
        if w.allow_remote {
            return Err(self.err(at, format!("{owner}: allow_remote is for local workers; a remote worker is always admitted from anywhere")));
        }
        let Some(token) = token else {
            return Err(self.err(
                at,
                format!("{owner} is remote: it needs token_env or token_file"),
            ));
        };
        let remote = DeclaredWorker {
            token,
            routes,
            loopback_only: false,
        };
        Ok((remote, None))
    }

    /// A local worker: what the gateway starts, and its token (a random one if none).
    fn local_worker(
        &self,
        w: &Worker,
        owner: &str,
        token: Option<Secret>,
        routes: Option<Vec<String>>,
    ) -> Result<(DeclaredWorker, Option<LocalWorker>), ConfigError> {
        let at = w.id.referenced;
        let Some(command) = &w.command else {
            return Err(self.err(at, format!("{owner} is local (the default mode): it needs a command to start (or set mode: remote)")));
        };
        let command_text = self.expand(command)?;
        if command_text.trim().is_empty() {
            return Err(self.err(command.referenced, format!("{owner}: command is empty")));
        }
        // A bare name is looked up on PATH; anything with a slash is a path.
        let program = if command_text.contains('/') {
            self.resolve(&command_text)
        } else {
            PathBuf::from(&command_text)
        };
        let mut args = Vec::new();
        for a in w.args.iter().flatten() {
            args.push(self.expand(a)?);
        }
        let mut env = Vec::new();
        for (k, v) in w.env.iter().flatten() {
            let value = expand_env(&v.value.0).map_err(|m| self.err(v.referenced, m))?;
            env.push((k.clone(), value));
        }
        let cwd = match &w.cwd {
            Some(d) => self.resolve(&self.expand(d)?),
            None => self.base.clone(),
        };
        let replicas = match &w.replicas {
            Some(r) if !(1..=256).contains(&r.value) => {
                return Err(self.err(
                    r.referenced,
                    format!("{owner}: replicas {} must be between 1 and 256", r.value),
                ))
            }
            Some(r) => r.value,
            None => 1,
        };
        let restart = self.restart(owner, w.restart.as_ref())?;
        let token = token.unwrap_or_else(Secret::random);
        let declared = DeclaredWorker {
            token: token.clone(),
            routes,
            loopback_only: !w.allow_remote,
        };
        let local = LocalWorker {
            id: w.id.value.clone(),
            program,
            args,
            env,
            cwd,
            replicas,
            restart,
            token,
        };
        Ok((declared, Some(local)))
    }

    /// `restart:` of a local worker.
    fn restart(
        &self,
        owner: &str,
        r: Option<&Spanned<Restart>>,
    ) -> Result<RestartPolicy, ConfigError> {
        let mut restart = RestartPolicy::default();
        if let Some(r) = r {
            restart.when = match r.value.policy {
                Policy::Always => RestartWhen::Always,
                Policy::OnFailure => RestartWhen::OnFailure,
                Policy::Never => RestartWhen::Never,
            };
            if let Some(n) = &r.value.max_fast_failures {
                if n.value == 0 {
                    return Err(self.err(
                        n.referenced,
                        format!("{owner}: restart.max_fast_failures must be at least 1"),
                    ));
                }
                restart.max_fast_failures = n.value;
            }
            if let Some(d) = r.value.fast_failure {
                restart.fast_failure = d.0;
            }
        }
        Ok(restart)
    }
}
