//! `radlens import <kind>:<dir>`: a public dataset's films into the workbench database.

use crate::progress::LazyBar;
use anyhow::{anyhow, Result};
use clap::Args;
use radlens_io::DatasetSpec;
use radlens_server::import::FilmDone;
use std::path::PathBuf;

#[derive(Args)]
pub struct ImportArgs {
    /// `covid-cxr:<dir>` or `jsrt:<dir>`.
    dataset: DatasetSpec,
    /// The workbench's SQLite database (created and migrated when needed).
    #[arg(long, default_value = "radlens.sqlite")]
    db: PathBuf,
    /// The workbench's folder for study files (`<dir>/studies/`), as given to `serve`.
    #[arg(long, default_value = "radlens-data")]
    data_dir: PathBuf,
}

pub fn run(a: ImportArgs) -> Result<()> {
    let db = radlens_server::db::Db::open(&a.db).map_err(|e| anyhow!(e))?;
    let bar = LazyBar::new("importing {bar:40} {pos}/{len} films {msg}");
    let observe = |e: &FilmDone| {
        let pb = bar.get(e.total as u64);
        pb.set_position(e.done as u64);
        pb.set_message(e.file.clone());
    };
    let summary =
        radlens_server::import::import(&db, &a.data_dir.join("studies"), &a.dataset, &observe)
            .map_err(|e| anyhow!(e))?;
    bar.finish();
    println!(
        "{}: {} films of {} patients; {} imported, {} already there ({})",
        summary.dataset,
        summary.films,
        summary.patients,
        summary.imported,
        summary.already_there,
        a.db.display()
    );
    Ok(())
}
