//! `heady-origin discord register-commands`: registers Heady's slash commands (/ask, /search)
//! with Discord, overwriting the application's global commands (or one guild's, which Discord
//! shows at once: handy while testing).

use crate::config::{heady_env, Config, Overrides};
use crate::discord::client::DiscordClient;
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Eq, clap::Subcommand)]
pub enum DiscordCommand {
    /// Overwrite the application's commands with /ask and /search (needs discord.application_id
    /// and discord.bot_token); prints each command's name and id as Discord registered it.
    RegisterCommands {
        /// TOML config file (HEADY_* environment variables override it).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Register in this guild (server) only, instead of globally.
        #[arg(long, value_name = "ID")]
        guild: Option<String>,
    },
}

/// Runs the command; returns the exit code (2: configuration or usage, 1: Discord refused or
/// could not be reached).
pub fn run(cmd: DiscordCommand) -> i32 {
    let DiscordCommand::RegisterCommands { config, guild } = cmd;
    let cfg = match Config::load(config.as_deref(), &heady_env(), &Overrides::default()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("heady-origin: invalid configuration: {e}");
            return 2;
        }
    };
    if !cfg.discord.enabled() {
        eprintln!("heady-origin: discord.application_id is not set (HEADY_DISCORD_APPLICATION_ID): name the Discord application first");
        return 2;
    }
    if let Some(g) = &guild {
        if !crate::discord::config::is_snowflake(g) {
            eprintln!("heady-origin: --guild must be a guild id, digits only (got {g:?})");
            return 2;
        }
    }
    let client = match DiscordClient::new(&cfg.discord) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("heady-origin: {e}");
            return 1;
        }
    };
    let Some(rt) = super::current_thread() else {
        return 1;
    };
    match rt.block_on(client.register_commands(guild.as_deref())) {
        Ok(commands) => {
            let scope = match &guild {
                Some(g) => format!("in guild {g}"),
                None => "globally".to_string(),
            };
            println!("registered {} commands {scope}:", commands.len());
            for c in commands {
                println!("  /{}\t{}", c.name, c.id);
            }
            0
        }
        Err(e @ crate::discord::client::DiscordError::Missing(_)) => {
            eprintln!("heady-origin: {e} (HEADY_DISCORD_BOT_TOKEN): registering commands needs the bot's token");
            2
        }
        Err(e) => {
            eprintln!("heady-origin: {e}");
            1
        }
    }
}
