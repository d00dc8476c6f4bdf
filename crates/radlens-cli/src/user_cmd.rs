//! `radlens user`: accounts of the workbench, in its database.

use anyhow::{anyhow, Context, Result};
use clap::{Args, Subcommand};
use radlens_server::db::accounts::Role;
use std::io::Read;
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum UserCommand {
    /// Add an account; the password is read from standard input, never from an argument.
    Add(AddArgs),
    /// List the accounts.
    List {
        /// The workbench's SQLite database.
        #[arg(long, default_value = "radlens.sqlite")]
        db: PathBuf,
    },
}

#[derive(Args)]
pub struct AddArgs {
    /// The workbench's SQLite database (created and migrated when needed).
    #[arg(long, default_value = "radlens.sqlite")]
    db: PathBuf,
    #[arg(long)]
    username: String,
    /// Read the password from standard input (its first line); required, so that no
    /// password appears in shell history or the process list.
    #[arg(long, required = true)]
    password_stdin: bool,
    /// viewer, radiologist or admin.
    #[arg(long)]
    role: Role,
}

pub fn run(cmd: UserCommand) -> Result<()> {
    match cmd {
        UserCommand::Add(a) => {
            let mut input = String::new();
            std::io::stdin()
                .read_to_string(&mut input)
                .context("reading the password from standard input")?;
            let password = input.lines().next().unwrap_or("");
            let db = radlens_server::db::Db::open(&a.db).map_err(|e| anyhow!(e))?;
            let u = radlens_server::auth::add_user(&db, &a.username, password, a.role)
                .map_err(|e| anyhow!(e))?;
            println!(
                "added {} ({}) to {}",
                u.username,
                u.role.as_str(),
                a.db.display()
            );
        }
        UserCommand::List { db } => {
            let db = radlens_server::db::Db::open(&db).map_err(|e| anyhow!(e))?;
            let users = radlens_server::db::accounts::users(&db.lock())?;
            for u in users {
                let state = if u.disabled { "disabled" } else { "active" };
                println!(
                    "{}\t{}\t{state}\t{}",
                    u.username,
                    u.role.as_str(),
                    u.created_at
                );
            }
        }
    }
    Ok(())
}
