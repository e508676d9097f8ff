//! Files generated from the CLI's own definition, for packaging (`scripts/package`): man pages
//! (`clap_mangen`, roff) and shell completions (`clap_complete`). Both subcommands are hidden
//! from `--help`; a package ships their output, so the pages and completions never drift from
//! the options the binary really takes.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use clap::CommandFactory;

use super::Cli;

/// Writes `provisioner.1` and one page per visible subcommand (`provisioner-serve.1`,
/// `provisioner-machines-list.1`, …) into `dir`, creating it if missing.
///
/// # Errors
/// When `dir` cannot be created or a page cannot be written (the path is named).
pub fn man_pages(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    clap_mangen::generate_to(Cli::command(), dir)
        .with_context(|| format!("writing man pages into {}", dir.display()))
}

/// Prints the completion script for `shell` on stdout (bash, zsh, fish, elvish, powershell).
///
/// # Errors
/// When stdout cannot be written.
pub fn completions(shell: clap_complete::Shell) -> anyhow::Result<()> {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "provisioner", &mut out);
    std::io::stdout()
        .write_all(&out)
        .context("writing the completion script to stdout")
}
