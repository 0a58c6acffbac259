//! Litestream's SFTP replica keys: `host` (`host:port`), `user`, `password`, `key-path`, `path`, or an
//! `sftp://user[:password]@host[:port]/path` URL, where a field set in the entry wins over the URL's part. litecar
//! adds `host-key` and `known-hosts-file` to check the server's key (Litestream checks none).

use litecar_replicate::sftp::{HostKeyCheck, SftpSettings};
use percent_encoding::percent_decode_str;

use super::env::expand_home;
use super::resolve::{Problem, problem};
use super::types::ReplicaConfig;

/// The SFTP settings of replica entry `key`.
pub fn settings(r: &ReplicaConfig, key: &str) -> Result<SftpSettings, Problem> {
    let k = |field: &str| format!("{key}.{field}");
    let (mut host, mut user, mut password, mut path) =
        (r.host.clone(), r.user.clone(), r.password.clone(), r.path.clone());
    if let Some(raw) = &r.url {
        let u = url::Url::parse(raw).map_err(|e| problem(k("url"), format!("not a valid sftp URL: {e}")))?;
        let decode = |s: &str| percent_decode_str(s).decode_utf8_lossy().into_owned();
        if host.is_none() {
            host = u.host_str().filter(|h| !h.is_empty()).map(|h| match u.port() {
                Some(p) => format!("{h}:{p}"),
                None => h.to_owned(),
            });
        }
        if user.is_none() && !u.username().is_empty() {
            user = Some(decode(u.username()));
        }
        if password.is_none() {
            password = u.password().map(decode);
        }
        if path.is_none() {
            // Taken as written, as Litestream does: `sftp://u@h/abs` is the absolute `/abs`.
            path = Some(decode(u.path()));
        }
    }
    let host_key = if r.url.is_some() { k("url") } else { k("host") };
    let host =
        host.filter(|h| !h.trim().is_empty()).ok_or_else(|| problem(host_key.clone(), "type sftp needs a host"))?;
    let host = with_default_port(host.trim()).map_err(|m| problem(host_key, m))?;
    let user = user
        .filter(|u| !u.is_empty())
        .ok_or_else(|| problem(if r.url.is_some() { k("url") } else { k("user") }, "type sftp needs a user"))?;
    let host_key_check = match (&r.host_key, &r.known_hosts_file) {
        (Some(_), Some(_)) => return Err(problem(k("host-key"), "set host-key or known-hosts-file, not both")),
        (Some(line), None) => {
            HostKeyCheck::Key(litecar_replicate::sftp::parse_host_key(line).map_err(|m| problem(k("host-key"), m))?)
        }
        (None, Some(file)) => HostKeyCheck::KnownHosts(expand_home(file)),
        (None, None) => HostKeyCheck::AcceptAny,
    };
    Ok(SftpSettings {
        host,
        user,
        password: password.filter(|p| !p.is_empty()),
        key_path: r.key_path.as_deref().filter(|p| !p.is_empty()).map(expand_home),
        path: path.unwrap_or_default(),
        host_key: host_key_check,
    })
}

/// `host:port`, with `:22` added when no port is given (IPv6 addresses in brackets).
fn with_default_port(host: &str) -> Result<String, String> {
    let has_port = match host.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() && (!h.contains(':') || h.ends_with(']')) => {
            p.parse::<u16>().map_err(|_| format!("bad port {p:?} in host {host:?}"))?;
            true
        }
        _ => false,
    };
    Ok(if has_port { host.to_owned() } else { format!("{host}:22") })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(url: Option<&str>) -> ReplicaConfig {
        ReplicaConfig { kind: Some("sftp".into()), url: url.map(str::to_owned), ..Default::default() }
    }

    #[test]
    fn url_parts_and_fields() {
        let s = settings(&cfg(Some("sftp://me:p%40ss@backup.example:2222/srv/app")), "r").expect("ok");
        assert_eq!(
            (s.host.as_str(), s.user.as_str(), s.password.as_deref(), s.path.as_str()),
            ("backup.example:2222", "me", Some("p@ss"), "/srv/app")
        );
        let mut c = cfg(Some("sftp://me@h/p"));
        c.user = Some("other".into());
        c.key_path = Some("/keys/id".into());
        let s = settings(&c, "r").expect("ok");
        assert_eq!((s.host.as_str(), s.user.as_str(), s.password), ("h:22", "other", None));
        assert_eq!(s.key_path.as_deref(), Some(std::path::Path::new("/keys/id")));
        let c = ReplicaConfig {
            host: Some("[::1]".into()),
            user: Some("u".into()),
            path: Some("rel/dir".into()),
            ..cfg(None)
        };
        let s = settings(&c, "r").expect("ok");
        assert_eq!((s.host.as_str(), s.path.as_str()), ("[::1]:22", "rel/dir"));
    }

    #[test]
    fn problems_name_the_key() {
        let e = settings(&cfg(Some("sftp://h/p")), "dbs[0].replicas[0]").expect_err("no user");
        assert_eq!(e.key, "dbs[0].replicas[0].url");
        assert!(e.message.contains("user"), "{e:?}");
        let c = ReplicaConfig { user: Some("u".into()), ..cfg(None) };
        assert_eq!(settings(&c, "x").expect_err("no host").key, "x.host");
        let c = ReplicaConfig { host: Some("h:99999".into()), user: Some("u".into()), ..cfg(None) };
        assert!(settings(&c, "x").expect_err("port").message.contains("99999"));
        let c = ReplicaConfig {
            host: Some("h".into()),
            user: Some("u".into()),
            host_key: Some("nonsense".into()),
            ..cfg(None)
        };
        assert_eq!(settings(&c, "x").expect_err("bad key").key, "x.host-key");
    }
}
