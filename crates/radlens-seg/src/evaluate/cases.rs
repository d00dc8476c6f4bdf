//! Which cases an evaluation uses: on the kind of data a model was trained on, only a
//! part of its own split (by default the held-out test cases, which training never saw);
//! on any other kind, every case.

use crate::checkpoint::SegRun;
use crate::error::Result;
use radlens_io::dataset::DatasetKind;
use radlens_io::split::{Split, SplitPart};
use radlens_io::{Dataset, DatasetSpec, Sample};

/// The cases to evaluate and the part of the split they are.
#[derive(Debug, Clone)]
pub struct EvalCases<'d> {
    pub part: SplitPart,
    pub samples: Vec<&'d Sample>,
}

/// The part evaluated when none is asked for: the test part on the kind of data the
/// model was trained on (`None`: unknown), all of any other kind.
pub fn default_part(trained_on: Option<DatasetKind>, evaluated: DatasetKind) -> SplitPart {
    if trained_on == Some(evaluated) {
        SplitPart::Test
    } else {
        SplitPart::All
    }
}

/// The first `limit` cases of part `asked` (default: [`default_part`]) of `dataset`
/// (opened from `spec`) for the model of `run`: for a part other than `All`, the ids
/// that part has in the run's `split.json`, in its order.
pub fn choose_cases<'d>(
    run: &SegRun,
    spec: &DatasetSpec,
    dataset: &'d Dataset,
    asked: Option<SplitPart>,
    limit: Option<usize>,
) -> Result<EvalCases<'d>> {
    let part = match asked {
        Some(p) => p,
        None => default_part(run.trained_on()?, spec.kind),
    };
    let mut ids = match part {
        SplitPart::All => dataset.samples.iter().map(|s| s.id.clone()).collect(),
        p => Split::read(&run.split())?.ids(p),
    };
    ids.truncate(limit.unwrap_or(ids.len()));
    Ok(EvalCases {
        part,
        samples: dataset.select(&ids)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_part_on_the_training_kind_all_elsewhere() {
        use DatasetKind::*;
        assert_eq!(default_part(Some(Jsrt), Jsrt), SplitPart::Test);
        assert_eq!(default_part(Some(Jsrt), JsrtClavicles), SplitPart::All);
        assert_eq!(default_part(Some(Jsrt), CovidCxr), SplitPart::All);
        assert_eq!(default_part(None, Nnunet), SplitPart::All);
    }
}
