//! A Compose file as one task definition: a container per service, in the bridge network mode
//! unless the services ask for `network_mode: host` or `none`. `depends_on` conditions become
//! `dependsOn` (service_started → START, service_healthy → HEALTHY,
//! service_completed_successfully → SUCCESS, the dependency then not essential); a service that
//! depends on another that keeps running is also linked to it, so it reaches it by its service
//! name as on Compose's network. `${VAR}` interpolation reads the environment, then `.env` beside
//! the file. Keys that have no ECS counterpart are refused, naming them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};

use super::{ImportError, Plan, refuse, sanitize_name};

/// The variables `${VAR}` reads: the process environment over the file's `.env`.
#[derive(Debug, Clone, Default)]
pub(crate) struct Interpolation {
    vars: BTreeMap<String, String>,
}

impl Interpolation {
    /// The environment of this process over `dir/.env`.
    pub(crate) fn from_process(dir: &Path) -> Self {
        let mut vars = BTreeMap::new();
        if let Ok(text) = std::fs::read_to_string(dir.join(".env")) {
            for (k, v) in parse_env_file(&text) {
                vars.insert(k, v);
            }
        }
        for (k, v) in std::env::vars() {
            vars.insert(k, v);
        }
        Self { vars }
    }

    #[cfg(test)]
    pub(crate) fn of(pairs: &[(&str, &str)]) -> Self {
        Self {
            vars: pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    fn get(&self, k: &str) -> Option<&str> {
        self.vars.get(k).map(String::as_str)
    }

    /// `s` with `$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `${VAR:?message}` and
    /// `${VAR?message}` replaced, and `$$` as `$`.
    fn apply(&self, s: &str, at: &str) -> Result<String, ImportError> {
        let mut out = String::new();
        let mut rest = s;
        while let Some(i) = rest.find('$') {
            out.push_str(&rest[..i]);
            let after = &rest[i + 1..];
            if let Some(r) = after.strip_prefix('$') {
                out.push('$');
                rest = r;
            } else if let Some(r) = after.strip_prefix('{') {
                let Some(end) = r.find('}') else {
                    return refuse(format!("{at}: unterminated ${{ in {s:?}"));
                };
                let expr = &r[..end];
                rest = &r[end + 1..];
                let (name, op, arg) = match expr.find([':', '-', '?']) {
                    Some(p) => {
                        let op_len = if expr[p..].starts_with(":-") || expr[p..].starts_with(":?") {
                            2
                        } else {
                            1
                        };
                        (&expr[..p], &expr[p..p + op_len], &expr[p + op_len..])
                    }
                    None => (expr, "", ""),
                };
                let value = self.get(name);
                match op {
                    "" => out.push_str(value.unwrap_or("")),
                    ":-" => out.push_str(value.filter(|v| !v.is_empty()).unwrap_or(arg)),
                    "-" => out.push_str(value.unwrap_or(arg)),
                    ":?" | "?" => {
                        let set = if op == ":?" {
                            value.filter(|v| !v.is_empty())
                        } else {
                            value
                        };
                        match set {
                            Some(v) => out.push_str(v),
                            None => {
                                return refuse(format!("{at}: variable {name} is required: {arg}"));
                            }
                        }
                    }
                    _ => return refuse(format!("{at}: unsupported substitution ${{{expr}}}")),
                }
            } else {
                let len = after
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(after.len());
                if len == 0 {
                    out.push('$');
                    rest = after;
                } else {
                    out.push_str(self.get(&after[..len]).unwrap_or(""));
                    rest = &after[len..];
                }
            }
        }
        out.push_str(rest);
        Ok(out)
    }
}

/// What the translation needs besides the file.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    /// `--family`.
    pub family: Option<String>,
    /// The family when neither `--family` nor the file's `name` gives one.
    pub default_family: String,
    /// The file's directory: relative paths start here.
    pub dir: PathBuf,
    /// The memory reservation of services that set none.
    pub memory_reservation: u32,
    pub env: Interpolation,
}

const TOP_LEVEL: &[&str] = &["services", "volumes", "name", "version"];

const SERVICE_KEYS: &[&str] = &[
    "image",
    "command",
    "entrypoint",
    "environment",
    "env_file",
    "ports",
    "depends_on",
    "healthcheck",
    "volumes",
    "deploy",
    "mem_limit",
    "mem_reservation",
    "cpus",
    "cpu_shares",
    "working_dir",
    "user",
    "hostname",
    "labels",
    "links",
    "read_only",
    "stop_grace_period",
    "extra_hosts",
    "dns",
    "dns_search",
    "privileged",
    "ulimits",
    "logging",
    "network_mode",
];

/// Why some common keys are refused.
fn why_not(key: &str) -> &'static str {
    match key {
        "build" => "build and push the image first (gantry push), then give it as image",
        "restart" => "a service replaces its stopped tasks; remove restart",
        "container_name" => "ECS names the containers of a task",
        "networks" => "the containers of a task share the bridge network; use links",
        "expose" => "give ports instead",
        "secrets" | "configs" => "use ECS secrets in a task definition",
        _ => "it has no ECS counterpart in gantry import",
    }
}

fn is_extension(k: &str) -> bool {
    k.starts_with("x-")
}

fn scalar_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Compose's durations (`1m30s`, `10s`, `500ms`, `2h`, or a number of seconds) in whole seconds,
/// rounded up.
fn duration_secs(v: &Value, at: &str) -> Result<i64, ImportError> {
    if let Some(n) = v.as_f64() {
        return Ok(n.ceil() as i64);
    }
    let Some(s) = v.as_str() else {
        return refuse(format!("{at}: not a duration"));
    };
    let mut total_ms: u64 = 0;
    let mut num = String::new();
    let mut chars = s.trim().chars().peekable();
    let bad = || ImportError(format!("{at}: {s:?} is not a duration (like 10s or 1m30s)"));
    if s.trim().is_empty() {
        return Err(bad());
    }
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let mut unit = c.to_string();
        while let Some(&n) = chars.peek() {
            if n.is_ascii_alphabetic() {
                unit.push(n);
                chars.next();
            } else {
                break;
            }
        }
        let n: f64 = num.parse().map_err(|_| bad())?;
        num.clear();
        let ms = match unit.as_str() {
            "h" => n * 3_600_000.0,
            "m" => n * 60_000.0,
            "s" => n * 1000.0,
            "ms" => n,
            "us" | "µs" => n / 1000.0,
            _ => return Err(bad()),
        };
        total_ms += ms.ceil() as u64;
    }
    if !num.is_empty() {
        return Err(bad());
    }
    Ok(total_ms.div_ceil(1000) as i64)
}

/// Compose's byte sizes (`512m`, `1g`, `256mb`, a number of bytes) in MiB, rounded up.
fn size_mib(v: &Value, at: &str) -> Result<i64, ImportError> {
    if let Some(n) = v.as_u64() {
        return Ok(n.div_ceil(1024 * 1024) as i64);
    }
    let s = v
        .as_str()
        .ok_or_else(|| ImportError(format!("{at}: not a size")))?
        .trim()
        .to_ascii_lowercase();
    let digits = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let n: f64 = s[..digits]
        .parse()
        .map_err(|_| ImportError(format!("{at}: {s:?} is not a size (like 512m)")))?;
    let unit = s[digits..].trim_end_matches('b');
    let bytes = match unit {
        "" => n,
        "k" => n * 1024.0,
        "m" => n * 1024.0 * 1024.0,
        "g" => n * 1024.0 * 1024.0 * 1024.0,
        _ => return refuse(format!("{at}: {s:?} is not a size (like 512m)")),
    };
    Ok((bytes / (1024.0 * 1024.0)).ceil() as i64)
}

/// A command line split as Compose splits a string `command` (shell words, no shell).
fn split_words(s: &str, at: &str) -> Result<Vec<String>, ImportError> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(x) => cur.push(x),
                        None => return refuse(format!("{at}: unterminated quote")),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(x @ ('"' | '\\' | '$' | '`')) => cur.push(x),
                            Some(x) => {
                                cur.push('\\');
                                cur.push(x);
                            }
                            None => return refuse(format!("{at}: unterminated quote")),
                        },
                        Some(x) => cur.push(x),
                        None => return refuse(format!("{at}: unterminated quote")),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(x) = chars.next() {
                    cur.push(x);
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

fn string_list(v: &Value, at: &str) -> Result<Vec<String>, ImportError> {
    match v {
        Value::String(s) => split_words(s, at),
        Value::Array(a) => a
            .iter()
            .map(|x| scalar_string(x).ok_or_else(|| ImportError(format!("{at}: not a string"))))
            .collect(),
        Value::Null => Ok(Vec::new()),
        _ => refuse(format!("{at}: a string or a list of strings")),
    }
}

/// `KEY=VALUE` lines of an env file (`#` comments, `export `, quotes).
fn parse_env_file(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let v = v.trim();
        let v = if v.len() >= 2
            && ((v.starts_with('"') && v.ends_with('"'))
                || (v.starts_with('\'') && v.ends_with('\'')))
        {
            &v[1..v.len() - 1]
        } else {
            v
        };
        out.push((k.trim().to_owned(), v.to_owned()));
    }
    out
}

/// Every string scalar of `v` interpolated; `at` names where, for errors.
fn interpolate(v: &mut Value, env: &Interpolation, at: &str) -> Result<(), ImportError> {
    match v {
        Value::String(s) => *s = env.apply(s, at)?,
        Value::Array(a) => {
            for (i, x) in a.iter_mut().enumerate() {
                interpolate(x, env, &format!("{at}[{i}]"))?;
            }
        }
        Value::Object(o) => {
            for (k, x) in o.iter_mut() {
                let sub = if at.is_empty() {
                    k.clone()
                } else {
                    format!("{at}.{k}")
                };
                interpolate(x, env, &sub)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Parses the YAML (anchors and `<<` merges applied) into JSON values.
fn parse(text: &str) -> Result<Value, ImportError> {
    let mut y: serde_norway::Value =
        serde_norway::from_str(text).map_err(|e| ImportError(format!("not valid YAML: {e}")))?;
    y.apply_merge()
        .map_err(|e| ImportError(format!("not valid YAML: {e}")))?;
    serde_json::to_value(y).map_err(|e| ImportError(format!("not valid YAML: {e}")))
}

/// The task definition's volumes, built while the services' mounts are read.
#[derive(Debug, Default)]
struct Volumes {
    list: Vec<Value>,
    /// Host path → volume name.
    binds: BTreeMap<String, String>,
    anonymous: usize,
}

impl Volumes {
    fn bind(&mut self, path: String) -> String {
        if let Some(n) = self.binds.get(&path) {
            return n.clone();
        }
        let name = format!("bind{}", self.binds.len() + 1);
        self.list
            .push(json!({"name": name, "host": {"sourcePath": path}}));
        self.binds.insert(path, name.clone());
        name
    }

    fn anonymous(&mut self) -> String {
        self.anonymous += 1;
        let name = format!("anonymous{}", self.anonymous);
        self.list.push(json!({"name": name}));
        name
    }
}

struct Translator<'a> {
    opts: &'a Options,
    family: String,
    /// Top-level named volumes: Compose name → ECS volume name.
    named: BTreeMap<String, String>,
    volumes: Volumes,
    notes: Vec<String>,
}

impl Translator<'_> {
    fn host_path(&self, src: &str) -> String {
        let p = if let Some(rest) = src.strip_prefix("~/") {
            std::env::var("HOME")
                .map(|h| PathBuf::from(h).join(rest))
                .unwrap_or_else(|_| PathBuf::from(src))
        } else {
            let p = Path::new(src);
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                self.opts.dir.join(p)
            }
        };
        // Lexically normal: `.` dropped, `..` applied.
        let mut out = PathBuf::new();
        for c in p.components() {
            match c {
                std::path::Component::ParentDir => {
                    out.pop();
                }
                std::path::Component::CurDir => {}
                other => out.push(other),
            }
        }
        out.to_string_lossy().into_owned()
    }

    fn mount(&mut self, v: &Value, at: &str) -> Result<Value, ImportError> {
        let (kind, source, target, read_only) = match v {
            Value::String(s) => {
                let parts: Vec<&str> = s.split(':').collect();
                let (src, dst, mode) = match parts.as_slice() {
                    [dst] => (None, *dst, None),
                    [src, dst] => (Some(*src), *dst, None),
                    [src, dst, mode] => (Some(*src), *dst, Some(*mode)),
                    _ => return refuse(format!("{at}: {s:?} is not SOURCE:TARGET[:MODE]")),
                };
                let ro = match mode {
                    None | Some("rw") => false,
                    Some("ro") => true,
                    Some(m) => {
                        return refuse(format!("{at}: mode {m} is not supported (ro or rw)"));
                    }
                };
                let kind = match src {
                    None => "anonymous",
                    Some(p) if p.starts_with('/') || p.starts_with('.') || p.starts_with('~') => {
                        "bind"
                    }
                    Some(_) => "volume",
                };
                (kind, src.map(str::to_owned), dst.to_owned(), ro)
            }
            Value::Object(o) => {
                for k in o.keys() {
                    if !matches!(k.as_str(), "type" | "source" | "target" | "read_only") {
                        return refuse(format!("{at}.{k} is not supported"));
                    }
                }
                let kind = o.get("type").and_then(Value::as_str).unwrap_or("volume");
                let source = o.get("source").and_then(Value::as_str).map(str::to_owned);
                let Some(target) = o.get("target").and_then(Value::as_str) else {
                    return refuse(format!("{at}.target is missing"));
                };
                let kind = match (kind, &source) {
                    ("bind", Some(_)) => "bind",
                    ("bind", None) => return refuse(format!("{at}.source is missing")),
                    ("volume", Some(_)) => "volume",
                    ("volume", None) => "anonymous",
                    (other, _) => {
                        return refuse(format!(
                            "{at}.type {other} is not supported (bind or volume)"
                        ));
                    }
                };
                let ro = o.get("read_only").and_then(Value::as_bool).unwrap_or(false);
                (kind, source, target.to_owned(), ro)
            }
            _ => return refuse(format!("{at}: a string or a mapping")),
        };
        let volume = match (kind, source) {
            ("bind", Some(src)) => {
                let path = self.host_path(&src);
                self.volumes.bind(path)
            }
            ("volume", Some(name)) => match self.named.get(&name) {
                Some(v) => v.clone(),
                None => {
                    return refuse(format!(
                        "{at}: volume {name} is not declared under the top-level volumes"
                    ));
                }
            },
            _ => self.volumes.anonymous(),
        };
        let mut mp = json!({"sourceVolume": volume, "containerPath": target});
        if read_only {
            mp["readOnly"] = json!(true);
        }
        Ok(mp)
    }

    fn port(&self, v: &Value, at: &str) -> Result<Value, ImportError> {
        let parse_port = |s: &str| -> Result<i64, ImportError> {
            if s.contains('-') {
                return refuse(format!("{at}: port ranges ({s}) are not supported"));
            }
            s.parse::<u16>()
                .map(i64::from)
                .map_err(|_| ImportError(format!("{at}: {s:?} is not a port")))
        };
        match v {
            Value::Number(n) => Ok(json!({"containerPort": parse_port(&n.to_string())?})),
            Value::String(s) => {
                let (ports, proto) = match s.rsplit_once('/') {
                    Some((p, proto)) => (p, proto),
                    None => (s.as_str(), "tcp"),
                };
                let parts: Vec<&str> = ports.split(':').collect();
                let (host, container) = match parts.as_slice() {
                    [c] => (None, *c),
                    [h, c] => (Some(*h), *c),
                    [ip, _, _] => {
                        return refuse(format!(
                            "{at}: a host address ({ip}) is not supported: ports are published on every address"
                        ));
                    }
                    _ => return refuse(format!("{at}: {s:?} is not [HOST:]CONTAINER[/PROTOCOL]")),
                };
                let mut pm = json!({"containerPort": parse_port(container)?, "protocol": proto});
                if let Some(h) = host.filter(|h| !h.is_empty()) {
                    pm["hostPort"] = json!(parse_port(h)?);
                }
                Ok(pm)
            }
            Value::Object(o) => {
                for k in o.keys() {
                    if !matches!(k.as_str(), "target" | "published" | "protocol" | "mode") {
                        return refuse(format!("{at}.{k} is not supported"));
                    }
                }
                let target = o
                    .get("target")
                    .and_then(scalar_string)
                    .ok_or_else(|| ImportError(format!("{at}.target is missing")))?;
                let mut pm = json!({"containerPort": parse_port(&target)?,
                    "protocol": o.get("protocol").and_then(Value::as_str).unwrap_or("tcp")});
                if let Some(p) = o.get("published").and_then(scalar_string) {
                    pm["hostPort"] = json!(parse_port(&p)?);
                }
                Ok(pm)
            }
            _ => refuse(format!("{at}: not a port")),
        }
    }

    fn environment(&self, svc: &Map<String, Value>, at: &str) -> Result<Vec<Value>, ImportError> {
        let mut env: BTreeMap<String, String> = BTreeMap::new();
        if let Some(files) = svc.get("env_file") {
            let list: Vec<(String, bool)> = match files {
                Value::String(s) => vec![(s.clone(), true)],
                Value::Array(a) => a
                    .iter()
                    .map(|f| match f {
                        Value::String(s) => Ok((s.clone(), true)),
                        Value::Object(o) => Ok((
                            o.get("path")
                                .and_then(Value::as_str)
                                .unwrap_or("")
                                .to_owned(),
                            o.get("required").and_then(Value::as_bool).unwrap_or(true),
                        )),
                        _ => refuse(format!("{at}.env_file: a path or a list of paths")),
                    })
                    .collect::<Result<_, _>>()?,
                _ => return refuse(format!("{at}.env_file: a path or a list of paths")),
            };
            for (path, required) in list {
                let full = self.host_path(&path);
                match std::fs::read_to_string(&full) {
                    Ok(text) => env.extend(parse_env_file(&text)),
                    Err(_) if !required => {}
                    Err(e) => return refuse(format!("{at}.env_file: {full}: {e}")),
                }
            }
        }
        match svc.get("environment") {
            None | Some(Value::Null) => {}
            Some(Value::Object(o)) => {
                for (k, v) in o {
                    match v {
                        Value::Null => {
                            if let Some(x) = self.opts.env.get(k) {
                                env.insert(k.clone(), x.to_owned());
                            }
                        }
                        v => {
                            let s = scalar_string(v).ok_or_else(|| {
                                ImportError(format!("{at}.environment.{k}: not a scalar"))
                            })?;
                            env.insert(k.clone(), s);
                        }
                    }
                }
            }
            Some(Value::Array(a)) => {
                for item in a {
                    let Some(s) = item.as_str() else {
                        return refuse(format!("{at}.environment: a list of KEY=VALUE"));
                    };
                    match s.split_once('=') {
                        Some((k, v)) => {
                            env.insert(k.to_owned(), v.to_owned());
                        }
                        None => {
                            if let Some(x) = self.opts.env.get(s) {
                                env.insert(s.to_owned(), x.to_owned());
                            }
                        }
                    }
                }
            }
            Some(_) => return refuse(format!("{at}.environment: a mapping or a list")),
        }
        Ok(env
            .into_iter()
            .map(|(k, v)| json!({"name": k, "value": v}))
            .collect())
    }

    fn healthcheck(&self, h: &Value, at: &str) -> Result<Option<Value>, ImportError> {
        let Some(o) = h.as_object() else {
            return refuse(format!("{at}: a mapping"));
        };
        for k in o.keys() {
            if !matches!(
                k.as_str(),
                "test" | "interval" | "timeout" | "retries" | "start_period" | "disable"
            ) {
                return refuse(format!("{at}.{k} is not supported"));
            }
        }
        if o.get("disable").and_then(Value::as_bool) == Some(true) {
            return Ok(None);
        }
        let command = match o.get("test") {
            Some(Value::String(s)) => vec!["CMD-SHELL".to_owned(), s.clone()],
            Some(Value::Array(a)) => {
                let words: Vec<String> = a.iter().filter_map(scalar_string).collect();
                match words.first().map(String::as_str) {
                    Some("NONE") => return Ok(None),
                    Some("CMD") => words,
                    Some("CMD-SHELL") => vec!["CMD-SHELL".to_owned(), words[1..].join(" ")],
                    _ => {
                        return refuse(format!(
                            "{at}.test: a list starts with CMD, CMD-SHELL or NONE"
                        ));
                    }
                }
            }
            _ => return refuse(format!("{at}.test is missing")),
        };
        let mut hc = json!({"command": command});
        for (key, field) in [
            ("interval", "interval"),
            ("timeout", "timeout"),
            ("start_period", "startPeriod"),
        ] {
            if let Some(v) = o.get(key) {
                hc[field] = json!(duration_secs(v, &format!("{at}.{key}"))?);
            }
        }
        if let Some(r) = o.get("retries") {
            hc["retries"] = json!(
                r.as_i64()
                    .ok_or_else(|| ImportError(format!("{at}.retries: a number")))?
            );
        }
        Ok(Some(hc))
    }

    fn deploy(
        &self,
        d: &Value,
        at: &str,
        c: &mut Map<String, Value>,
    ) -> Result<Option<u32>, ImportError> {
        let Some(o) = d.as_object() else {
            return refuse(format!("{at}: a mapping"));
        };
        let mut replicas = None;
        for (k, v) in o {
            match k.as_str() {
                "replicas" => {
                    replicas = Some(
                        v.as_u64()
                            .and_then(|n| u32::try_from(n).ok())
                            .ok_or_else(|| ImportError(format!("{at}.replicas: a count")))?,
                    );
                }
                "resources" => {
                    let Some(r) = v.as_object() else {
                        return refuse(format!("{at}.resources: a mapping"));
                    };
                    for (rk, rv) in r {
                        let Some(ro) = rv.as_object() else {
                            return refuse(format!("{at}.resources.{rk}: a mapping"));
                        };
                        for (key, val) in ro {
                            let here = format!("{at}.resources.{rk}.{key}");
                            match (rk.as_str(), key.as_str()) {
                                ("limits", "memory") => {
                                    c.insert("memory".into(), json!(size_mib(val, &here)?));
                                }
                                ("reservations", "memory") => {
                                    c.insert(
                                        "memoryReservation".into(),
                                        json!(size_mib(val, &here)?),
                                    );
                                }
                                ("limits", "cpus") | ("reservations", "cpus") => {
                                    let cpus = scalar_string(val)
                                        .and_then(|s| s.parse::<f64>().ok())
                                        .ok_or_else(|| ImportError(format!("{here}: a number")))?;
                                    c.insert("cpu".into(), json!((cpus * 1024.0).round() as i64));
                                }
                                _ => return refuse(format!("{here} is not supported")),
                            }
                        }
                    }
                }
                other => return refuse(format!("{at}.{other} is not supported")),
            }
        }
        Ok(replicas)
    }
}

pub(crate) fn translate(text: &str, opts: &Options) -> Result<Plan, ImportError> {
    let mut doc = parse(text)?;
    let Some(top) = doc.as_object() else {
        return refuse("a Compose file is a mapping");
    };
    for k in top.keys() {
        if !TOP_LEVEL.contains(&k.as_str()) && !is_extension(k) {
            return refuse(format!(
                "the top-level key {k} is not supported: {}",
                why_not(k)
            ));
        }
    }
    interpolate(&mut doc, &opts.env, "")?;
    let top = doc.as_object().cloned().unwrap_or_default();
    let family = match (&opts.family, top.get("name").and_then(Value::as_str)) {
        (Some(f), _) => f.clone(),
        (None, Some(n)) => sanitize_name(n),
        (None, None) => opts.default_family.clone(),
    };
    let Some(services) = top.get("services").and_then(Value::as_object) else {
        return refuse("services is missing or not a mapping");
    };
    if services.is_empty() {
        return refuse("services is empty");
    }
    let mut t = Translator {
        opts,
        family: family.clone(),
        named: BTreeMap::new(),
        volumes: Volumes::default(),
        notes: Vec::new(),
    };
    if let Some(vols) = top.get("volumes").filter(|v| !v.is_null()) {
        let Some(vols) = vols.as_object() else {
            return refuse("volumes: a mapping");
        };
        for (name, spec) in vols {
            let at = format!("volumes.{name}");
            let spec = spec.as_object().cloned().unwrap_or_default();
            for k in spec.keys() {
                if !matches!(k.as_str(), "driver" | "external" | "name") {
                    return refuse(format!("{at}.{k} is not supported"));
                }
            }
            if let Some(d) = spec.get("driver").and_then(Value::as_str)
                && d != "local"
            {
                return refuse(format!("{at}.driver {d} is not supported (local only)"));
            }
            let external = spec.get("external").and_then(Value::as_bool) == Some(true);
            let docker_name = match spec.get("name").and_then(Value::as_str) {
                Some(n) => n.to_owned(),
                None if external => name.clone(),
                None => format!("{}_{name}", t.family),
            };
            let ecs_name = sanitize_name(&docker_name);
            if ecs_name != docker_name {
                return refuse(format!(
                    "{at}: the volume name {docker_name} has characters ECS does not take (letters, digits, - and _)"
                ));
            }
            t.volumes
                .list
                .push(json!({"name": ecs_name, "dockerVolumeConfiguration": {
                "scope": "shared", "autoprovision": !external, "driver": "local"}}));
            t.named.insert(name.clone(), ecs_name);
        }
    }

    let mut containers = Vec::new();
    let mut replicas: Option<(u32, String)> = None;
    let mut network_mode: Option<(String, String)> = None;
    // (service, dependency, condition) for the links and the essential flags after the loop.
    let mut deps: Vec<(String, String, String)> = Vec::new();
    for (name, svc) in services {
        let at = format!("services.{name}");
        let Some(svc) = svc.as_object() else {
            return refuse(format!("{at}: a mapping"));
        };
        for k in svc.keys() {
            if !SERVICE_KEYS.contains(&k.as_str()) && !is_extension(k) {
                return refuse(format!("{at}.{k} is not supported: {}", why_not(k)));
            }
        }
        let mut c = Map::new();
        c.insert("name".into(), json!(name));
        match svc.get("image").and_then(Value::as_str) {
            Some(i) if !i.is_empty() => c.insert("image".into(), json!(i)),
            _ => return refuse(format!("{at}.image is missing")),
        };
        if let Some(v) = svc.get("command") {
            c.insert(
                "command".into(),
                json!(string_list(v, &format!("{at}.command"))?),
            );
        }
        if let Some(v) = svc.get("entrypoint") {
            c.insert(
                "entryPoint".into(),
                json!(string_list(v, &format!("{at}.entrypoint"))?),
            );
        }
        let env = t.environment(svc, &at)?;
        if !env.is_empty() {
            c.insert("environment".into(), json!(env));
        }
        if let Some(ports) = svc.get("ports") {
            let Some(list) = ports.as_array() else {
                return refuse(format!("{at}.ports: a list"));
            };
            let pms = list
                .iter()
                .enumerate()
                .map(|(i, p)| t.port(p, &format!("{at}.ports[{i}]")))
                .collect::<Result<Vec<_>, _>>()?;
            c.insert("portMappings".into(), json!(pms));
        }
        if let Some(vols) = svc.get("volumes") {
            let Some(list) = vols.as_array() else {
                return refuse(format!("{at}.volumes: a list"));
            };
            let mps = list
                .iter()
                .enumerate()
                .map(|(i, v)| t.mount(v, &format!("{at}.volumes[{i}]")))
                .collect::<Result<Vec<_>, _>>()?;
            c.insert("mountPoints".into(), json!(mps));
        }
        if let Some(h) = svc.get("healthcheck")
            && let Some(hc) = t.healthcheck(h, &format!("{at}.healthcheck"))?
        {
            c.insert("healthCheck".into(), hc);
        }
        match svc.get("depends_on") {
            None | Some(Value::Null) => {}
            Some(Value::Array(a)) => {
                for d in a {
                    let Some(d) = d.as_str() else {
                        return refuse(format!("{at}.depends_on: a list of services"));
                    };
                    deps.push((name.clone(), d.to_owned(), "START".to_owned()));
                }
            }
            Some(Value::Object(o)) => {
                for (d, spec) in o {
                    let here = format!("{at}.depends_on.{d}");
                    let spec = spec.as_object().cloned().unwrap_or_default();
                    for k in spec.keys() {
                        match k.as_str() {
                            "condition" => {}
                            "required" if spec[k] == json!(true) => {}
                            other => return refuse(format!("{here}.{other} is not supported")),
                        }
                    }
                    let cond = match spec
                        .get("condition")
                        .and_then(Value::as_str)
                        .unwrap_or("service_started")
                    {
                        "service_started" => "START",
                        "service_healthy" => "HEALTHY",
                        "service_completed_successfully" => "SUCCESS",
                        other => {
                            return refuse(format!("{here}.condition {other} is not supported"));
                        }
                    };
                    deps.push((name.clone(), d.clone(), cond.to_owned()));
                }
            }
            Some(_) => return refuse(format!("{at}.depends_on: a list or a mapping")),
        }
        if let Some(d) = svc.get("deploy")
            && let Some(r) = t.deploy(d, &format!("{at}.deploy"), &mut c)?
        {
            match &replicas {
                Some((n, other)) if *n != r => {
                    return refuse(format!(
                        "{at}.deploy.replicas {r} differs from {other}'s {n}: the services run together in one task"
                    ));
                }
                _ => replicas = Some((r, name.clone())),
            }
        }
        for (key, field) in [
            ("mem_limit", "memory"),
            ("mem_reservation", "memoryReservation"),
        ] {
            if let Some(v) = svc.get(key) {
                c.insert(field.into(), json!(size_mib(v, &format!("{at}.{key}"))?));
            }
        }
        if let Some(v) = svc.get("cpus") {
            let cpus = scalar_string(v)
                .and_then(|s| s.parse::<f64>().ok())
                .ok_or_else(|| ImportError(format!("{at}.cpus: a number")))?;
            c.insert("cpu".into(), json!((cpus * 1024.0).round() as i64));
        }
        if let Some(v) = svc.get("cpu_shares") {
            c.insert(
                "cpu".into(),
                json!(
                    v.as_i64()
                        .ok_or_else(|| ImportError(format!("{at}.cpu_shares: a number")))?
                ),
            );
        }
        for (key, field) in [
            ("working_dir", "workingDirectory"),
            ("user", "user"),
            ("hostname", "hostname"),
        ] {
            if let Some(v) = svc.get(key) {
                let s =
                    scalar_string(v).ok_or_else(|| ImportError(format!("{at}.{key}: a string")))?;
                c.insert(field.into(), json!(s));
            }
        }
        for (key, field) in [
            ("read_only", "readonlyRootFilesystem"),
            ("privileged", "privileged"),
        ] {
            if let Some(v) = svc.get(key) {
                let b = v
                    .as_bool()
                    .ok_or_else(|| ImportError(format!("{at}.{key}: true or false")))?;
                c.insert(field.into(), json!(b));
            }
        }
        if let Some(v) = svc.get("stop_grace_period") {
            c.insert(
                "stopTimeout".into(),
                json!(duration_secs(v, &format!("{at}.stop_grace_period"))?),
            );
        }
        if let Some(v) = svc.get("labels") {
            let labels: BTreeMap<String, String> = match v {
                Value::Object(o) => o
                    .iter()
                    .map(|(k, v)| (k.clone(), scalar_string(v).unwrap_or_default()))
                    .collect(),
                Value::Array(a) => a
                    .iter()
                    .filter_map(Value::as_str)
                    .map(|s| match s.split_once('=') {
                        Some((k, v)) => (k.to_owned(), v.to_owned()),
                        None => (s.to_owned(), String::new()),
                    })
                    .collect(),
                _ => return refuse(format!("{at}.labels: a mapping or a list")),
            };
            c.insert("dockerLabels".into(), json!(labels));
        }
        if let Some(v) = svc.get("extra_hosts") {
            let pairs: Vec<(String, String)> = match v {
                Value::Object(o) => o
                    .iter()
                    .map(|(k, v)| (k.clone(), scalar_string(v).unwrap_or_default()))
                    .collect(),
                Value::Array(a) => a
                    .iter()
                    .filter_map(Value::as_str)
                    .map(|s| {
                        s.split_once('=')
                            .or_else(|| s.split_once(':'))
                            .map(|(h, ip)| (h.to_owned(), ip.to_owned()))
                            .ok_or_else(|| {
                                ImportError(format!("{at}.extra_hosts: {s:?} is not HOST:IP"))
                            })
                    })
                    .collect::<Result<_, _>>()?,
                _ => return refuse(format!("{at}.extra_hosts: a mapping or a list")),
            };
            c.insert(
                "extraHosts".into(),
                json!(
                    pairs
                        .into_iter()
                        .map(|(h, ip)| json!({"hostname": h, "ipAddress": ip}))
                        .collect::<Vec<_>>()
                ),
            );
        }
        for (key, field) in [("dns", "dnsServers"), ("dns_search", "dnsSearchDomains")] {
            if let Some(v) = svc.get(key) {
                let list = match v {
                    Value::String(s) => vec![s.clone()],
                    other => string_list(other, &format!("{at}.{key}"))?,
                };
                c.insert(field.into(), json!(list));
            }
        }
        if let Some(v) = svc.get("ulimits") {
            let Some(o) = v.as_object() else {
                return refuse(format!("{at}.ulimits: a mapping"));
            };
            let mut list = Vec::new();
            for (n, l) in o {
                let (soft, hard) = match l {
                    Value::Number(x) => (x.as_i64(), x.as_i64()),
                    Value::Object(m) => (
                        m.get("soft").and_then(Value::as_i64),
                        m.get("hard").and_then(Value::as_i64),
                    ),
                    _ => (None, None),
                };
                let (Some(soft), Some(hard)) = (soft, hard) else {
                    return refuse(format!("{at}.ulimits.{n}: a number or soft and hard"));
                };
                list.push(json!({"name": n, "softLimit": soft, "hardLimit": hard}));
            }
            c.insert("ulimits".into(), json!(list));
        }
        if let Some(v) = svc.get("logging") {
            let Some(o) = v.as_object() else {
                return refuse(format!("{at}.logging: a mapping"));
            };
            for k in o.keys() {
                if k != "driver" && k != "options" {
                    return refuse(format!("{at}.logging.{k} is not supported"));
                }
            }
            let mut lc = json!({"logDriver": o.get("driver").and_then(Value::as_str).unwrap_or("json-file")});
            if let Some(opts) = o.get("options").and_then(Value::as_object) {
                let opts: BTreeMap<String, String> = opts
                    .iter()
                    .map(|(k, v)| (k.clone(), scalar_string(v).unwrap_or_default()))
                    .collect();
                lc["options"] = json!(opts);
            }
            c.insert("logConfiguration".into(), lc);
        }
        if let Some(v) = svc.get("network_mode") {
            let m = v.as_str().unwrap_or("");
            if !matches!(m, "bridge" | "host" | "none") {
                return refuse(format!(
                    "{at}.network_mode {m} is not supported (bridge, host or none)"
                ));
            }
            match &network_mode {
                Some((other_mode, other)) if other_mode != m => {
                    return refuse(format!(
                        "{at}.network_mode {m} differs from {other}'s {other_mode}: the services run together in one task"
                    ));
                }
                _ => network_mode = Some((m.to_owned(), name.clone())),
            }
        }
        if let Some(v) = svc.get("links") {
            c.insert(
                "links".into(),
                json!(string_list(v, &format!("{at}.links"))?),
            );
        }
        if !c.contains_key("memory") && !c.contains_key("memoryReservation") {
            c.insert("memoryReservation".into(), json!(opts.memory_reservation));
        }
        containers.push(c);
    }

    let mode = network_mode
        .map(|(m, _)| m)
        .unwrap_or_else(|| "bridge".to_owned());
    for (svc, dep, cond) in &deps {
        let at = format!("services.{svc}.depends_on");
        let Some(target) = containers.iter().find(|c| c["name"] == dep.as_str()) else {
            return refuse(format!("{at}: no service {dep}"));
        };
        if cond == "HEALTHY" && !target.contains_key("healthCheck") {
            return refuse(format!(
                "{at}: {dep} has no healthcheck, so service_healthy cannot be met"
            ));
        }
    }
    for c in containers.iter_mut() {
        let name = c["name"].as_str().unwrap_or("").to_owned();
        let mine: Vec<&(String, String, String)> =
            deps.iter().filter(|(s, _, _)| *s == name).collect();
        if mine.is_empty() {
            continue;
        }
        c.insert(
            "dependsOn".into(),
            json!(
                mine.iter()
                    .map(|(_, d, cond)| json!({"containerName": d, "condition": cond}))
                    .collect::<Vec<_>>()
            ),
        );
        if mode == "bridge" {
            let mut links: Vec<Value> = c
                .get("links")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            for (_, d, cond) in &mine {
                let linked = links.iter().filter_map(Value::as_str).any(|l| {
                    l == d.as_str() || l.split_once(':').is_some_and(|(t, _)| t == d.as_str())
                });
                if cond != "SUCCESS" && !linked {
                    links.push(json!(d));
                }
            }
            if !links.is_empty() {
                c.insert("links".into(), json!(links));
            }
        }
    }
    // A dependency that must complete cannot be essential (it exits by design).
    for (_, dep, cond) in &deps {
        if cond == "SUCCESS"
            && let Some(c) = containers.iter_mut().find(|c| c["name"] == dep.as_str())
        {
            c.insert("essential".into(), json!(false));
            t.notes
                .push(format!("service {dep} runs to completion: not essential"));
        }
    }
    let mut td = json!({
        "family": family,
        "networkMode": mode,
        "containerDefinitions": containers,
    });
    if !t.volumes.list.is_empty() {
        td["volumes"] = json!(t.volumes.list);
    }
    for (path, name) in &t.volumes.binds {
        t.notes
            .push(format!("volume {name}: host directory {path}"));
    }
    Ok(Plan {
        task_definition: td,
        replicas: replicas.map(|(n, _)| n),
        notes: t.notes,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn opts() -> Options {
        Options {
            family: None,
            default_family: "proj".into(),
            dir: PathBuf::from("/srv/proj"),
            memory_reservation: 64,
            env: Interpolation::of(&[("TAG", "v2"), ("EMPTY", "")]),
        }
    }

    const THREE: &str = r#"
name: shop
x-common: &common
  stop_grace_period: 5s
services:
  db:
    <<: *common
    image: "registry/db:${TAG}"
    command: sh -c 'touch /ready; exec sleep 3600'
    healthcheck:
      test: ["CMD", "test", "-f", "/ready"]
      interval: 5s
      timeout: 3s
      retries: 5
      start_period: 1m
    volumes:
      - data:/var/lib/db
  api:
    image: registry/api:${MISSING:-latest}
    depends_on:
      db:
        condition: service_healthy
      migrate:
        condition: service_completed_successfully
    environment:
      MODE: prod
      PORT: 8080
    ports: ["8080:80", "9000/udp"]
    deploy:
      replicas: 2
      resources:
        limits: {memory: 256m, cpus: "0.5"}
  migrate:
    image: registry/migrate
  web:
    image: registry/web
    depends_on: [api]
    volumes: ["./site:/www:ro", "/cache"]
volumes:
  data: {}
"#;

    #[test]
    fn three_services_with_health_dependencies() {
        let p = translate(THREE, &opts()).unwrap();
        let td = &p.task_definition;
        assert_eq!(td["family"], "shop");
        assert_eq!(td["networkMode"], "bridge");
        assert_eq!(p.replicas, Some(2));
        let c = |n: &str| {
            td["containerDefinitions"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["name"] == n)
                .unwrap()
                .clone()
        };
        let db = c("db");
        assert_eq!(db["image"], "registry/db:v2");
        assert_eq!(
            db["command"],
            json!(["sh", "-c", "touch /ready; exec sleep 3600"])
        );
        assert_eq!(
            db["healthCheck"],
            json!({"command": ["CMD", "test", "-f", "/ready"], "interval": 5, "timeout": 3,
                   "startPeriod": 60, "retries": 5})
        );
        assert_eq!(db["stopTimeout"], 5);
        assert_eq!(db["memoryReservation"], 64);
        assert_eq!(
            db["mountPoints"],
            json!([{"sourceVolume": "shop_data", "containerPath": "/var/lib/db"}])
        );
        let api = c("api");
        assert_eq!(api["image"], "registry/api:latest");
        assert_eq!(
            api["dependsOn"],
            json!([{"containerName": "db", "condition": "HEALTHY"},
                   {"containerName": "migrate", "condition": "SUCCESS"}])
        );
        assert_eq!(api["links"], json!(["db"]), "no link to a one-shot service");
        assert_eq!(
            api["environment"],
            json!([{"name": "MODE", "value": "prod"}, {"name": "PORT", "value": "8080"}])
        );
        assert_eq!(
            api["portMappings"],
            json!([{"containerPort": 80, "hostPort": 8080, "protocol": "tcp"},
                   {"containerPort": 9000, "protocol": "udp"}])
        );
        assert_eq!(
            (api["memory"].clone(), api["cpu"].clone()),
            (json!(256), json!(512))
        );
        assert_eq!(c("migrate")["essential"], false);
        let web = c("web");
        assert_eq!(
            web["dependsOn"],
            json!([{"containerName": "api", "condition": "START"}])
        );
        assert_eq!(web["links"], json!(["api"]));
        assert_eq!(
            web["mountPoints"],
            json!([{"sourceVolume": "bind1", "containerPath": "/www", "readOnly": true},
                   {"sourceVolume": "anonymous1", "containerPath": "/cache"}])
        );
        assert_eq!(
            td["volumes"],
            json!([
                {"name": "shop_data", "dockerVolumeConfiguration": {"scope": "shared", "autoprovision": true, "driver": "local"}},
                {"name": "bind1", "host": {"sourcePath": "/srv/proj/site"}},
                {"name": "anonymous1"}
            ])
        );
    }

    #[test]
    fn what_cannot_map_is_refused_by_name() {
        let t = |s: &str| translate(s, &opts()).unwrap_err().0;
        assert!(t("services: [").starts_with("not valid YAML: "));
        assert_eq!(
            t("services:\n  a:\n    build: .\n"),
            "services.a.build is not supported: build and push the image first (gantry push), then give it as image"
        );
        assert!(
            t("services:\n  a:\n    image: x\n    cap_add: [NET_ADMIN]\n")
                .starts_with("services.a.cap_add is not supported")
        );
        assert!(
            t("services:\n  a:\n    image: x\nnetworks:\n  n: {}\n")
                .starts_with("the top-level key networks is not supported")
        );
        assert!(
            t("services:\n  a:\n    image: x\n    ports: ['127.0.0.1:80:80']\n")
                .contains("host address (127.0.0.1)")
        );
        assert!(t("services:\n  a:\n    image: x\n  b:\n    image: y\n    depends_on:\n      a: {condition: service_healthy}\n")
            .contains("a has no healthcheck"));
        assert!(
            t("services:\n  a:\n    image: x\n    depends_on: [zz]\n").contains("no service zz")
        );
        assert!(
            t("services:\n  a:\n    image: x\n    volumes: ['data:/d']\n")
                .contains("volume data is not declared")
        );
        assert!(
            t("services:\n  a:\n    image: ${NOPE:?set NOPE}\n")
                .contains("variable NOPE is required: set NOPE")
        );
        assert!(t("services:\n  a:\n    image: x\n    healthcheck: {test: [CMD, x], start_interval: 1s}\n")
            .contains("services.a.healthcheck.start_interval is not supported"));
    }

    #[test]
    fn words_durations_sizes_and_interpolation() {
        assert_eq!(
            split_words(r#"sh -c "echo \"hi\" $x" 'a b' c\ d"#, "t").unwrap(),
            vec!["sh", "-c", "echo \"hi\" $x", "a b", "c d"]
        );
        assert_eq!(duration_secs(&json!("1m30s"), "t").unwrap(), 90);
        assert_eq!(duration_secs(&json!("500ms"), "t").unwrap(), 1);
        assert_eq!(duration_secs(&json!(7), "t").unwrap(), 7);
        assert!(duration_secs(&json!("5x"), "t").is_err());
        assert_eq!(size_mib(&json!("512m"), "t").unwrap(), 512);
        assert_eq!(size_mib(&json!("1g"), "t").unwrap(), 1024);
        assert_eq!(size_mib(&json!("64mb"), "t").unwrap(), 64);
        let env = Interpolation::of(&[("A", "1"), ("E", "")]);
        assert_eq!(
            env.apply("$A-${A}-${E:-d}-${E-d}-${B-x}-$$A", "t").unwrap(),
            "1-1-d--x-$A"
        );
    }
}
