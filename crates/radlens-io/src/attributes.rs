//! Patient and image attributes of a sample, typed and named the same way for every
//! dataset, so that subgroup analyses (by sex, age band, view, finding, ...) are written
//! once instead of once per dataset.
//!
//! Each dataset records what it knows under the names below; an attribute a dataset does
//! not record (or left blank for a case) is absent, never a placeholder value.
//!
//! | name | value | datasets |
//! |---|---|---|
//! | [`SEX`] | category `male` / `female` (read with [`Attributes::sex`]) | JSRT, covid-cxr |
//! | [`AGE_YEARS`] | number (read with [`Attributes::age_years`]) | JSRT, covid-cxr |
//! | [`VIEW`] | category: projection, `PA` or `AP` | JSRT (always `PA`), covid-cxr |
//! | [`NODULE`] | flag: the case has a lung nodule | JSRT |
//! | [`NODULE_SUBTLETY`] | number, 1 (extremely subtle) to 5 (obvious) | JSRT nodule cases |
//! | [`NODULE_SIZE_MM`] | number | JSRT nodule cases |
//! | [`NODULE_X_2048`], [`NODULE_Y_2048`] | number: nodule centre, pixels of the 2048 x 2048 original | JSRT nodule cases |
//! | [`NODULE_MALIGNANCY`] | category `malignant` / `benign` | JSRT nodule cases |
//! | [`NODULE_LOCATION`] | category as written, e.g. `l.upper lobe` | JSRT nodule cases |
//! | [`NODULE_SIDE`] | category `right` / `left` (the patient's side) | JSRT nodule cases |
//! | [`DIAGNOSIS`] | category as written, e.g. `lung cancer` | JSRT nodule cases |
//! | [`PATIENT_ID`] | category | covid-cxr |
//! | [`FINDING`] | category as written, e.g. `COVID-19, ARDS` | covid-cxr |
//! | [`OFFSET_DAYS`] | number: days since symptom onset or admission | covid-cxr |
//! | [`DATE`] | category as written (a year or a full date) | covid-cxr |
//! | [`SITE`] | category: where the image was taken | covid-cxr |
//! | [`MODALITY`] | category, e.g. `X-ray` | covid-cxr |
//! | [`SURVIVED`], [`INTUBATED`], [`INTUBATION_PRESENT`], [`WENT_ICU`], [`IN_ICU`], [`NEEDED_SUPPLEMENTAL_O2`], [`EXTUBATED`] | flag | covid-cxr |
//! | [`TEMPERATURE_C`], [`PO2_SATURATION`], [`LEUKOCYTE_COUNT`], [`NEUTROPHIL_COUNT`], [`LYMPHOCYTE_COUNT`] | number | covid-cxr |
//!
//! [`AGE_BAND`] is derived from the age, not stored: [`Attributes::group_of`] gives it.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const SEX: &str = "sex";
pub const AGE_YEARS: &str = "age_years";
/// Derived from [`AGE_YEARS`] by [`age_band`]; never stored.
pub const AGE_BAND: &str = "age_band";
pub const VIEW: &str = "view";
pub const NODULE: &str = "nodule";
pub const NODULE_SUBTLETY: &str = "nodule_subtlety";
pub const NODULE_SIZE_MM: &str = "nodule_size_mm";
pub const NODULE_X_2048: &str = "nodule_x_2048";
pub const NODULE_Y_2048: &str = "nodule_y_2048";
pub const NODULE_MALIGNANCY: &str = "nodule_malignancy";
pub const NODULE_LOCATION: &str = "nodule_location";
pub const NODULE_SIDE: &str = "nodule_side";
pub const DIAGNOSIS: &str = "diagnosis";
pub const PATIENT_ID: &str = "patient_id";
pub const FINDING: &str = "finding";
pub const OFFSET_DAYS: &str = "offset_days";
pub const DATE: &str = "date";
pub const SITE: &str = "site";
pub const MODALITY: &str = "modality";
pub const SURVIVED: &str = "survived";
pub const INTUBATED: &str = "intubated";
pub const INTUBATION_PRESENT: &str = "intubation_present";
pub const WENT_ICU: &str = "went_icu";
pub const IN_ICU: &str = "in_icu";
pub const NEEDED_SUPPLEMENTAL_O2: &str = "needed_supplemental_o2";
pub const EXTUBATED: &str = "extubated";
pub const TEMPERATURE_C: &str = "temperature_c";
pub const PO2_SATURATION: &str = "po2_saturation";
pub const LEUKOCYTE_COUNT: &str = "leukocyte_count";
pub const NEUTROPHIL_COUNT: &str = "neutrophil_count";
pub const LYMPHOCYTE_COUNT: &str = "lymphocyte_count";

/// Patient sex as recorded by the dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sex {
    Male,
    Female,
}

impl Sex {
    /// Parse "male"/"female"/"M"/"F" (any case); anything else is unknown.
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "m" | "male" => Some(Sex::Male),
            "f" | "female" => Some(Sex::Female),
            _ => None,
        }
    }

    /// `male` or `female`: the value stored under [`SEX`].
    pub fn as_str(self) -> &'static str {
        match self {
            Sex::Male => "male",
            Sex::Female => "female",
        }
    }
}

/// The age band of an age in years: `<40`, `40-59` or `>=60`, the bands of the
/// segmentation subgroup summaries.
pub fn age_band(age_years: f32) -> &'static str {
    match age_years {
        a if a < 40.0 => "<40",
        a if a < 60.0 => "40-59",
        _ => ">=60",
    }
}

/// One attribute's value. Serialised untagged, as a JSON string, number or boolean.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum AttributeValue {
    /// A yes/no property (a nodule is present, the patient was intubated).
    Flag(bool),
    /// A measurement or count; always finite.
    Number(f64),
    /// A label from a set of values (sex, view, finding) or an identifier.
    Category(String),
}

impl From<bool> for AttributeValue {
    fn from(v: bool) -> Self {
        Self::Flag(v)
    }
}

impl From<&str> for AttributeValue {
    fn from(v: &str) -> Self {
        Self::Category(v.to_string())
    }
}

impl From<String> for AttributeValue {
    fn from(v: String) -> Self {
        Self::Category(v)
    }
}

impl From<Sex> for AttributeValue {
    fn from(v: Sex) -> Self {
        Self::Category(v.as_str().to_string())
    }
}

/// A sample's attributes by name (see the [module docs](self) for the names).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Attributes(BTreeMap<String, AttributeValue>);

impl Attributes {
    /// Sets `name` to a flag or category `value`, replacing any earlier value (numbers
    /// go through [`insert_number`](Self::insert_number)).
    pub fn insert(&mut self, name: &str, value: impl Into<AttributeValue>) {
        self.0.insert(name.to_string(), value.into());
    }

    /// Sets `name` to a number; a non-finite one (unusable for grouping or JSON) is
    /// left out.
    pub fn insert_number(&mut self, name: &str, value: f64) {
        if value.is_finite() {
            self.insert(name, AttributeValue::Number(value));
        }
    }

    /// The value of `name`, if recorded.
    pub fn get(&self, name: &str) -> Option<&AttributeValue> {
        self.0.get(name)
    }

    /// Every recorded attribute, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &AttributeValue)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// The value of a category attribute.
    pub fn category(&self, name: &str) -> Option<&str> {
        match self.get(name)? {
            AttributeValue::Category(s) => Some(s),
            _ => None,
        }
    }

    /// The value of a number attribute.
    pub fn number(&self, name: &str) -> Option<f64> {
        match self.get(name)? {
            AttributeValue::Number(x) => Some(*x),
            _ => None,
        }
    }

    /// The value of a flag attribute.
    pub fn flag(&self, name: &str) -> Option<bool> {
        match self.get(name)? {
            AttributeValue::Flag(b) => Some(*b),
            _ => None,
        }
    }

    /// [`SEX`], typed.
    pub fn sex(&self) -> Option<Sex> {
        self.category(SEX).and_then(Sex::parse)
    }

    /// [`AGE_YEARS`], in the precision the segmentation outputs report it.
    pub fn age_years(&self) -> Option<f32> {
        self.number(AGE_YEARS).map(|a| a as f32)
    }

    /// [`VIEW`]: the projection (PA, AP, ...).
    pub fn view(&self) -> Option<&str> {
        self.category(VIEW)
    }

    /// The subgroup a sample falls in for attribute `name`: a category's value, `yes` or
    /// `no` for a flag, a number as written (`53`, `2.5`), and for [`AGE_BAND`] the
    /// band of the age. `None` when the attribute is not recorded.
    pub fn group_of(&self, name: &str) -> Option<String> {
        if name == AGE_BAND {
            return self.age_years().map(|a| age_band(a).to_string());
        }
        Some(match self.get(name)? {
            AttributeValue::Category(s) => s.clone(),
            AttributeValue::Flag(b) => if *b { "yes" } else { "no" }.to_string(),
            AttributeValue::Number(x) => x.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patient() -> Attributes {
        let mut a = Attributes::default();
        a.insert(SEX, Sex::Female);
        a.insert_number(AGE_YEARS, 59.0);
        a.insert(VIEW, "AP");
        a.insert(NODULE, true);
        a.insert_number(NODULE_SIZE_MM, 2.5);
        a
    }

    #[test]
    fn typed_accessors_read_what_was_stored() {
        let a = patient();
        assert_eq!(a.sex(), Some(Sex::Female));
        assert_eq!(a.age_years(), Some(59.0));
        assert_eq!(a.view(), Some("AP"));
        assert_eq!(a.flag(NODULE), Some(true));
        // A value of another type is not coerced.
        assert_eq!(a.number(VIEW), None);
        assert_eq!(a.category(DIAGNOSIS), None);
        assert_eq!(Attributes::default().sex(), None);
    }

    #[test]
    fn groups_of_every_kind_of_value() {
        let a = patient();
        let group = |n| a.group_of(n);
        assert_eq!(group(SEX).as_deref(), Some("female"));
        assert_eq!(group(NODULE).as_deref(), Some("yes"));
        assert_eq!(group(AGE_YEARS).as_deref(), Some("59"));
        assert_eq!(group(NODULE_SIZE_MM).as_deref(), Some("2.5"));
        assert_eq!(group(AGE_BAND).as_deref(), Some("40-59"));
        assert_eq!(group(FINDING), None);
        assert_eq!(Attributes::default().group_of(AGE_BAND), None);
    }

    #[test]
    fn age_bands_split_at_40_and_60() {
        let bands: Vec<_> = [0.0, 39.9, 40.0, 59.5, 60.0, 90.0]
            .map(age_band)
            .into_iter()
            .collect();
        assert_eq!(bands, ["<40", "<40", "40-59", "40-59", ">=60", ">=60"]);
    }

    #[test]
    fn non_finite_numbers_are_left_out() {
        let mut a = Attributes::default();
        a.insert_number(AGE_YEARS, f64::NAN);
        a.insert_number(TEMPERATURE_C, f64::INFINITY);
        assert_eq!(a.iter().count(), 0);
    }

    #[test]
    fn json_is_a_plain_object_and_round_trips() {
        let a = patient();
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(
            json,
            r#"{"age_years":59.0,"nodule":true,"nodule_size_mm":2.5,"sex":"female","view":"AP"}"#
        );
        assert_eq!(serde_json::from_str::<Attributes>(&json).unwrap(), a);
    }
}
