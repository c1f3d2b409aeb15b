//! `gantry env`: the `export` lines of a local `gantry up` again, from its data directory
//! (`server.json`, written when it starts serving, and the root credentials).

use std::path::Path;

use super::EnvArgs;

/// What `gantry up` and `gantry server` leave in their data dir for `gantry env`.
pub const SERVER_FILE: &str = "server.json";

/// The export lines for `endpoint`, `region` and the key pair, as `gantry up` prints them.
pub fn export_lines(
    endpoint: &str,
    registry: &str,
    region: &str,
    access_key_id: &str,
    secret: &str,
) -> String {
    format!(
        "export AWS_ENDPOINT_URL={endpoint}\nexport AWS_ACCESS_KEY_ID={access_key_id}\n\
         export AWS_SECRET_ACCESS_KEY={secret}\nexport AWS_REGION={region}\n\
         export AWS_DEFAULT_REGION={region}\n# registry for docker: {registry}\n"
    )
}

fn read_exports(dir: &Path) -> anyhow::Result<String> {
    let server = std::fs::read(dir.join(SERVER_FILE)).map_err(|e| {
        anyhow::anyhow!(
            "{} has no {SERVER_FILE} ({e}): has `gantry up --data-dir {}` run?",
            dir.display(),
            dir.display()
        )
    })?;
    let server: serde_json::Value = serde_json::from_slice(&server)?;
    let creds = crate::credentials::RootCredentials::load(dir)?;
    let field = |k: &str| server[k].as_str().unwrap_or("").to_owned();
    Ok(export_lines(
        &field("endpoint"),
        &field("registry"),
        &field("region"),
        &creds.access_key_id,
        &creds.secret_access_key,
    ))
}

pub async fn env(args: EnvArgs) -> anyhow::Result<()> {
    let dir = match args.data_dir {
        Some(d) => d,
        None => crate::config::default_data_dir()?,
    };
    print!("{}", read_exports(&dir)?);
    Ok(())
}
