//! Class ids and the named class list a model or dataset uses.

use serde::{Deserialize, Serialize};

/// Index of a class in a [`ClassSchema`]; 0 is always background.
pub type ClassId = u8;

/// Ordered class names; a label value `i` means `names[i]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassSchema {
    pub names: Vec<String>,
}

impl ClassSchema {
    /// Background, the patient's right lung, left lung and heart: the JSRT/SCR classes radlens trains on.
    pub fn jsrt(with_clavicles: bool) -> Self {
        let mut names = vec!["background", "right_lung", "left_lung", "heart"];
        if with_clavicles {
            names.extend(["right_clavicle", "left_clavicle"]);
        }
        Self::new(names)
    }

    /// A schema from names; the first must be the background.
    pub fn new<S: Into<String>>(names: impl IntoIterator<Item = S>) -> Self {
        Self {
            names: names.into_iter().map(Into::into).collect(),
        }
    }

    /// Number of classes, background included.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// True when the schema has no classes at all.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The id of a class name.
    pub fn id(&self, name: &str) -> Option<ClassId> {
        self.names
            .iter()
            .position(|n| n == name)
            .map(|i| i as ClassId)
    }

    /// The name of a class id.
    pub fn name(&self, id: ClassId) -> &str {
        self.names
            .get(id as usize)
            .map(String::as_str)
            .unwrap_or("?")
    }

    /// Foreground class ids (all but background).
    pub fn foreground(&self) -> impl Iterator<Item = ClassId> + '_ {
        (1..self.names.len()).map(|i| i as ClassId)
    }
}
