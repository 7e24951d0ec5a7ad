//! `heady-origin tunnel render|validate|rule`: the subcommands' flags. The work (reading,
//! rendering, validating, reporting, exit codes) is heady-tunnel-config's `commands`.

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
            out: target,
        } => {
            let settings = RenderSettings {
                credentials_file: credentials_file
                    .unwrap_or_else(|| RenderSettings::default_credentials_file(&tunnel_id)),
                tunnel_id,
                origin_url,
                catch_all,
            };
            render_command(&properties, &settings, target.as_deref(), out, err)
        }
        TunnelCommand::Validate { file, json } => validate_command(&file, json, out, err),
        TunnelCommand::Rule { file, url } => rule_command(&file, &url, out, err),
    }
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
}
