//! The `cohortctl` binary: parse the command line, run it, turn the outcome into an exit
//! status (0 done, 1 failed, 2 bad command line; see `cohort_ctl::error::exit`).

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use cohort_ctl::cli::Cli;
use cohort_ctl::console::Console;
use cohort_ctl::error::exit;
use cohort_ctl::{Outcome, run};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let (mut out, mut err, mut input) = (std::io::stdout(), std::io::stderr(), std::io::stdin());
    let format = cli.global.output;
    let terminal = input.is_terminal();
    let mut con = Console { out: &mut out, err: &mut err, input: &mut input, format, terminal };
    match run(cli, &mut con).await {
        Ok(Outcome::Done) => ExitCode::from(exit::OK),
        Ok(Outcome::Failed) => ExitCode::from(exit::FAILURE),
        Err(e) => {
            let _ = con.note(format!("error: {e}"));
            ExitCode::from(e.exit_code())
        }
    }
}
