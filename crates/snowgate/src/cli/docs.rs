//! `snowgate completions SHELL` and `snowgate man`: generated from the clap command itself, so
//! they name exactly the subcommands and flags the binary takes.
use std::io::{self, Write};
use std::path::Path;

pub use clap_complete::Shell;

/// The completion script for `shell` of the command `cmd` (the binary's [`clap::Command`]).
pub fn completions(cmd: &mut clap::Command, shell: Shell, out: &mut dyn Write) {
    let name = cmd.get_name().to_string();
    clap_complete::generate(shell, cmd, name, out);
}

/// The roff man page of `cmd` (`snowgate(1)`) on `out`; with `dir`, one page per subcommand
/// there as well (`snowgate-gates-open.1`, …).
pub fn man(cmd: clap::Command, out: &mut dyn Write, dir: Option<&Path>) -> io::Result<()> {
    if let Some(dir) = dir {
        std::fs::create_dir_all(dir)?;
        clap_mangen::generate_to(cmd.clone(), dir)?;
    }
    clap_mangen::Man::new(cmd).render(out)
}
