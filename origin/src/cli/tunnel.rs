//! `heady-origin tunnel render|validate|rule`: the subcommands' flags. The work (reading,
//! rendering, validating, reporting, exit codes) is heady-tunnel-config's `commands`.
//! `heady-origin tunnel identity new|show`: the long-term identities of tunnel sessions.

use heady_shared::tunnel::Identity;
use heady_tunnel_config::commands::{render_command, rule_command, validate_command};
use heady_tunnel_config::RenderSettings;
use std::io::{self, Write};
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Eq, clap::Subcommand)]
pub enum TunnelCommand {
    /// Write cloudflared's config.yml: one ingress rule per property the origin serves.
    Render {
        /// The properties list.
        #[arg(long, value_name = "FILE", default_value = "deploy/properties.toml")]
        properties: PathBuf,
        /// The tunnel's UUID, from `cloudflared tunnel create`.
        #[arg(long, value_name = "UUID", env = "HEADY_TUNNEL_ID")]
        tunnel_id: String,
        /// The tunnel's credentials JSON [default: /etc/cloudflared/<tunnel-id>.json].
        #[arg(long, value_name = "FILE")]
        credentials_file: Option<String>,
        /// Where the origin daemon listens, as cloudflared reaches it.
        #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:8080")]
        origin_url: String,
        /// The service of the last, catch-all rule.
        #[arg(long, value_name = "SERVICE", default_value = "http_status:404")]
        catch_all: String,
        /// With an https:// --origin-url: the CA file (as cloudflared's host sees it) that
        /// cloudflared checks the origin's certificate against (`originRequest.caPool`).
        #[arg(long, value_name = "FILE")]
        ca_pool: Option<String>,
        /// Write here (atomically) instead of to standard output.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Check a cloudflared config against cloudflared's ingress rules; print OK or every problem.
    Validate {
        /// The cloudflared config.yml.
        file: PathBuf,
        /// Print one JSON document instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Show which ingress rule cloudflared would pick for a URL.
    Rule {
        /// The cloudflared config.yml.
        file: PathBuf,
        /// A full request URL, e.g. https://headyapi.com/v1/chat/completions.
        url: String,
    },
    /// Tunnel session identities (ML-DSA-65 + Ed25519): make one, show a fingerprint.
    #[command(subcommand)]
    Identity(IdentityCommand),
}

#[derive(Debug, Clone, PartialEq, Eq, clap::Subcommand)]
pub enum IdentityCommand {
    /// Make an identity: the private half goes to FILE (mode 0600); the fingerprint the other
    /// side pins is printed with the configuration lines that take it.
    New {
        /// Whose identity: the edge Worker's or the origin's.
        #[arg(long, value_enum)]
        role: Role,
        /// Where to write the private identity (must not exist).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Print the fingerprint (`htid1:...`) of a private identity file.
    Show {
        #[arg(long, value_name = "FILE")]
        key_file: PathBuf,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    Edge,
    Origin,
}

/// Runs a tunnel command on the process's standard output and error; returns the exit code.
pub fn run(command: TunnelCommand) -> i32 {
    run_with(command, &mut io::stdout().lock(), &mut io::stderr().lock())
}

/// `run` with the output streams as parameters, for tests.
pub fn run_with(command: TunnelCommand, out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    match command {
        TunnelCommand::Render {
            properties,
            tunnel_id,
            credentials_file,
            origin_url,
            catch_all,
            ca_pool,
            out: target,
        } => {
            let settings = RenderSettings {
                credentials_file: credentials_file
                    .unwrap_or_else(|| RenderSettings::default_credentials_file(&tunnel_id)),
                tunnel_id,
                origin_url,
                catch_all,
                ca_pool,
            };
            render_command(&properties, &settings, target.as_deref(), out, err)
        }
        TunnelCommand::Validate { file, json } => validate_command(&file, json, out, err),
        TunnelCommand::Rule { file, url } => rule_command(&file, &url, out, err),
        TunnelCommand::Identity(cmd) => identity_command(cmd, out, err),
    }
}

fn identity_command(command: IdentityCommand, out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    let result = match command {
        IdentityCommand::New { role, out: file } => new_identity(role, &file, out),
        IdentityCommand::Show { key_file } => std::fs::read_to_string(&key_file)
            .map_err(|e| format!("{}: {e}", key_file.display()))
            .and_then(|text| {
                Identity::from_secret_text(&text)
                    .map_err(|e| format!("{}: {e}", key_file.display()))
            })
            .and_then(|id| writeln!(out, "{}", id.fingerprint()).map_err(|e| e.to_string())),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            let _ = writeln!(err, "error: {e}");
            1
        }
    }
}

fn new_identity(role: Role, file: &std::path::Path, out: &mut dyn Write) -> Result<(), String> {
    use rand::RngCore;
    use std::os::unix::fs::OpenOptionsExt;
    let mut seeds = [0u8; 64];
    rand::rng().fill_bytes(&mut seeds);
    let (mut ml_dsa, mut ed25519) = ([0u8; 32], [0u8; 32]);
    ml_dsa.copy_from_slice(&seeds[..32]);
    ed25519.copy_from_slice(&seeds[32..]);
    let identity = Identity::from_seeds(ml_dsa, ed25519);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(file)
        .map_err(|e| {
            format!(
                "{}: {e} (an identity file is never overwritten)",
                file.display()
            )
        })?;
    writeln!(f, "{}", identity.to_secret_text())
        .and_then(|()| f.sync_all())
        .map_err(|e| format!("{}: {e}", file.display()))?;
    let fp = identity.fingerprint();
    let path = file.display();
    let text = match role {
        Role::Edge => format!(
            "wrote the edge's private tunnel identity to {path} (mode 0600)\n\
             fingerprint: {fp}\n\n\
             The Worker's secret:\n  wrangler secret put HEADY_TUNNEL_IDENTITY < {path}\n\n\
             Pin it at every origin (heady-origin.toml, or the environment):\n  \
             [defense.tunnel]\n  edge_identities = [\"{fp}\"]\n  \
             HEADY_TUNNEL_EDGE_IDENTITIES={fp}\n"
        ),
        Role::Origin => format!(
            "wrote the origin's private tunnel identity to {path} (mode 0600)\n\
             fingerprint: {fp}\n\n\
             Every origin's credential (systemd LoadCredential=, or a file):\n  \
             LoadCredential=HEADY_TUNNEL_IDENTITY:{path}\n  HEADY_TUNNEL_IDENTITY_FILE={path}\n\n\
             Pin it at the edge (wrangler.toml [vars], comma-separated during a rotation):\n  \
             HEADY_ORIGIN_IDENTITIES = \"{fp}\"\n"
        ),
    };
    out.write_all(text.as_bytes()).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_subcommand_parses_with_clap() {
        use clap::Parser;
        #[derive(Debug, Parser)]
        struct Cli {
            #[command(subcommand)]
            tunnel: TunnelCommand,
        }
        let cli = Cli::try_parse_from(["heady-origin", "render", "--tunnel-id", "abc"])
            .expect("defaults fill the rest");
        let TunnelCommand::Render {
            properties,
            origin_url,
            catch_all,
            out,
            ..
        } = cli.tunnel
        else {
            panic!("render expected")
        };
        assert_eq!(properties, PathBuf::from("deploy/properties.toml"));
        assert_eq!(
            (origin_url.as_str(), catch_all.as_str(), out),
            ("http://127.0.0.1:8080", "http_status:404", None)
        );
        let cli =
            Cli::try_parse_from(["heady-origin", "validate", "c.yml", "--json"]).expect("parses");
        assert_eq!(
            cli.tunnel,
            TunnelCommand::Validate {
                file: "c.yml".into(),
                json: true
            }
        );
        let cli = Cli::try_parse_from(["heady-origin", "rule", "c.yml", "https://a.example.com/"])
            .expect("parses");
        assert_eq!(
            cli.tunnel,
            TunnelCommand::Rule {
                file: "c.yml".into(),
                url: "https://a.example.com/".into()
            }
        );
        let missing =
            Cli::try_parse_from(["heady-origin", "rule", "c.yml"]).expect_err("URL is required");
        assert_eq!(missing.exit_code(), 2);
    }

    #[test]
    fn render_without_credentials_file_uses_the_tunnel_ids_default() {
        use clap::Parser;
        #[derive(Debug, Parser)]
        struct Cli {
            #[command(subcommand)]
            tunnel: TunnelCommand,
        }
        let properties = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/properties.toml");
        let cli = Cli::try_parse_from([
            "heady-origin",
            "render",
            "--properties",
            properties,
            "--tunnel-id",
            "abc",
        ])
        .expect("parses");
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = run_with(cli.tunnel, &mut out, &mut err);
        let out = String::from_utf8_lossy(&out);
        assert_eq!(code, 0, "{}", String::from_utf8_lossy(&err));
        assert!(
            out.contains("\ntunnel: abc\ncredentials-file: /etc/cloudflared/abc.json\n"),
            "{out}"
        );
    }

    #[test]
    fn identity_new_writes_a_private_file_and_prints_the_pin() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("edge.key");
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let new = IdentityCommand::New {
            role: Role::Edge,
            out: file.clone(),
        };
        assert_eq!(identity_command(new.clone(), &mut out, &mut err), 0);
        let text = std::fs::read_to_string(&file).unwrap();
        let id = Identity::from_secret_text(&text).unwrap();
        let printed = String::from_utf8(out).unwrap();
        assert!(
            printed.contains(&format!("edge_identities = [\"{}\"]", id.fingerprint())),
            "{printed}"
        );
        assert!(
            !printed.contains(text.trim()),
            "the private half is never printed"
        );
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // Never overwritten.
        let (mut out, mut err) = (Vec::new(), Vec::new());
        assert_eq!(identity_command(new, &mut out, &mut err), 1);
        assert_eq!(std::fs::read_to_string(&file).unwrap(), text);
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let show = IdentityCommand::Show { key_file: file };
        assert_eq!(identity_command(show, &mut out, &mut err), 0);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!("{}\n", id.fingerprint())
        );
    }
}
