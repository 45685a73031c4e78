//! The quality score of contributed data: computed by the verifier inside its enclave from the
//! plaintext, and by anyone holding the plaintext (`verity data score FILE`), with the same
//! result: integers only, no clock, no randomness.
//!
//! For CSV (a header row, then records) and JSON lines (one object per line):
//!
//! - `rows` — data rows (CSV records after the header; non-empty lines);
//! - `valid` — rows that fit the schema: as many fields as the header, or, for JSON lines, an
//!   object with the first line's keys;
//! - `distinct` — distinct valid rows (byte-equal CSV records; equal JSON objects);
//! - `missing` — empty cells among the valid rows: an empty or blank field, `NA`, `N/A`, `NaN`,
//!   `null` (any case), or a JSON `null` or `""`;
//! - `cells` = `valid` × columns.
//!
//! `score = ⌊10000 × distinct × (cells − missing) / (rows × cells)⌋` basis points: the share of
//! rows that are valid, times the share of those that are not duplicates, times the share of
//! cells that are filled. A file with no rows scores 0. With a label column and a model, the
//! score is then multiplied by the model's accuracy over all rows ([`with_accuracy`]).

use std::collections::HashSet;

use serde::Serialize;
use thiserror::Error;

/// The largest score, 100 %.
pub const MAX_SCORE: u32 = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    Csv,
    JsonLines,
}

/// What the score is made of, and the score.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Quality {
    pub format: Format,
    pub columns: u64,
    pub rows: u64,
    pub valid: u64,
    pub distinct: u64,
    pub missing: u64,
    /// Basis points, 0 to [`MAX_SCORE`].
    pub score: u32,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum QualityError {
    #[error("the data is not UTF-8 text (CSV or JSON lines)")]
    NotText,
    #[error("the data is empty")]
    Empty,
    #[error("line {line}: {reason}")]
    Malformed { line: u64, reason: String },
}

/// Scores `data`: JSON lines when its first non-blank character is `{`, CSV otherwise.
pub fn score(data: &[u8]) -> Result<Quality, QualityError> {
    let text = std::str::from_utf8(data).map_err(|_| QualityError::NotText)?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    match text.trim_start().chars().next() {
        None => Err(QualityError::Empty),
        Some('{') => json_lines(text),
        Some(_) => csv(text),
    }
}

fn is_missing(field: &str) -> bool {
    let field = field.trim();
    field.is_empty()
        || ["na", "n/a", "nan", "null"]
            .iter()
            .any(|word| field.eq_ignore_ascii_case(word))
}

fn csv(text: &str) -> Result<Quality, QualityError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(text.as_bytes());
    let columns = reader.headers().map_err(|e| malformed_csv(&e))?.len() as u64;
    let mut tally = Tally::default();
    for record in reader.records() {
        let record = record.map_err(|e| malformed_csv(&e))?;
        let fields: Vec<&str> = record.iter().collect();
        let valid = fields.len() as u64 == columns;
        let missing = fields.iter().filter(|f| is_missing(f)).count() as u64;
        tally.add(valid, fields.join("\u{1f}"), missing);
    }
    Ok(tally.finish(Format::Csv, columns))
}

fn malformed_csv(error: &csv::Error) -> QualityError {
    QualityError::Malformed {
        line: error.position().map_or(0, |p| p.line()),
        reason: error.to_string(),
    }
}

fn json_lines(text: &str) -> Result<Quality, QualityError> {
    let mut schema: Option<Vec<String>> = None;
    let mut tally = Tally::default();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let value: serde_json::Value =
            serde_json::from_str(line).map_err(|e| QualityError::Malformed {
                line: index as u64 + 1,
                reason: e.to_string(),
            })?;
        let Some(object) = value.as_object() else {
            tally.add(false, String::new(), 0);
            continue;
        };
        let mut keys: Vec<String> = object.keys().cloned().collect();
        keys.sort();
        let schema = schema.get_or_insert_with(|| keys.clone());
        let valid = *schema == keys;
        let missing = object
            .values()
            .filter(|v| v.is_null() || v.as_str().is_some_and(is_missing))
            .count() as u64;
        // Keys sorted, so equal objects are equal strings.
        let canonical: std::collections::BTreeMap<_, _> = object.iter().collect();
        tally.add(
            valid,
            serde_json::to_string(&canonical).unwrap_or_default(),
            missing,
        );
    }
    let columns = schema.map_or(0, |s| s.len() as u64);
    Ok(tally.finish(Format::JsonLines, columns))
}

#[derive(Default)]
struct Tally {
    rows: u64,
    valid: u64,
    missing: u64,
    seen: HashSet<String>,
}

impl Tally {
    fn add(&mut self, valid: bool, row: String, missing: u64) {
        self.rows += 1;
        if valid {
            self.valid += 1;
            self.missing += missing;
            self.seen.insert(row);
        }
    }

    fn finish(self, format: Format, columns: u64) -> Quality {
        let distinct = self.seen.len() as u64;
        let cells = self.valid * columns;
        let score = if self.rows == 0 || cells == 0 {
            0
        } else {
            let numerator =
                u128::from(MAX_SCORE) * u128::from(distinct) * u128::from(cells - self.missing);
            (numerator / (u128::from(self.rows) * u128::from(cells))) as u32
        };
        Quality {
            format,
            columns,
            rows: self.rows,
            valid: self.valid,
            distinct,
            missing: self.missing,
            score,
        }
    }
}

/// A labeled CSV as a model reads it: every column but `label` as a number, row by row, and the
/// label column as an integer class. Only rows that fit the schema, with every cell a number,
/// are taken; the others already lower the score.
pub fn labeled(data: &[u8], label: &str) -> Result<(Vec<Vec<f32>>, Vec<i64>), QualityError> {
    let text = std::str::from_utf8(data).map_err(|_| QualityError::NotText)?;
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_reader(text.strip_prefix('\u{feff}').unwrap_or(text).as_bytes());
    let headers = reader.headers().map_err(|e| malformed_csv(&e))?.clone();
    let at = headers
        .iter()
        .position(|h| h.trim() == label)
        .ok_or_else(|| QualityError::Malformed {
            line: 1,
            reason: format!("no column named {label:?}"),
        })?;
    let (mut features, mut labels) = (Vec::new(), Vec::new());
    for record in reader.records() {
        let record = record.map_err(|e| malformed_csv(&e))?;
        if record.len() != headers.len() {
            continue;
        }
        let Ok(class) = record[at].trim().parse::<i64>() else {
            continue;
        };
        let row: Option<Vec<f32>> = record
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != at)
            .map(|(_, cell)| cell.trim().parse::<f32>().ok().filter(|x| x.is_finite()))
            .collect();
        if let Some(row) = row {
            features.push(row);
            labels.push(class);
        }
    }
    Ok((features, labels))
}

/// The score with a model's accuracy on the file folded in: `⌊score × correct / rows⌋`, where a
/// row the model could not read counts as wrong.
pub fn with_accuracy(quality: &Quality, correct: u64) -> u32 {
    if quality.rows == 0 {
        return 0;
    }
    (u64::from(quality.score) * correct.min(quality.rows) / quality.rows) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_clean_csv_scores_full_marks() {
        let q = score(b"id,text,label\n1,a,0\n2,b,1\n3,c,0\n").unwrap();
        assert_eq!(
            q,
            Quality {
                format: Format::Csv,
                columns: 3,
                rows: 3,
                valid: 3,
                distinct: 3,
                missing: 0,
                score: 10_000,
            }
        );
    }

    #[test]
    fn duplicates_missing_values_and_broken_rows_lower_the_score() {
        // 5 rows: one duplicate, one short row, 2 of the 12 valid cells missing.
        let q = score(b"id,text,label\n1,a,0\n1,a,0\n2,,1\n3,NA,0\n4,d\n").unwrap();
        assert_eq!((q.rows, q.valid, q.distinct, q.missing), (5, 4, 3, 2));
        // 10000 × 3 × (12 − 2) / (5 × 12) = 5000.
        assert_eq!(q.score, 5_000);
    }

    #[test]
    fn json_lines_are_scored_by_the_same_formula() {
        let q = score(
            b"{\"x\":1,\"y\":\"a\"}\n{\"y\":\"a\",\"x\":1}\n{\"x\":2,\"y\":null}\n{\"x\":3}\n[1]\n",
        )
        .unwrap();
        assert_eq!(q.format, Format::JsonLines);
        // Key order does not make a row distinct; {"x":3} and [1] break the schema.
        assert_eq!((q.rows, q.valid, q.distinct, q.missing), (5, 3, 2, 1));
        // 10000 × 2 × (6 − 1) / (5 × 6) = 3333.
        assert_eq!(q.score, 3_333);
    }

    #[test]
    fn what_is_not_data_is_refused() {
        assert_eq!(score(b""), Err(QualityError::Empty));
        assert_eq!(score(b"\n  \n"), Err(QualityError::Empty));
        assert_eq!(score(&[0xff, 0xfe, 0x00]), Err(QualityError::NotText));
        assert!(matches!(
            score(b"{\"x\":1}\n{not json\n"),
            Err(QualityError::Malformed { line: 2, .. })
        ));
        assert_eq!(score(b"only,a,header\n").unwrap().score, 0);
    }

    #[test]
    fn labeled_rows_are_the_numeric_valid_ones() {
        let (features, labels) =
            labeled(b"a,label,b\n1,0,2\n3,1,x\n4,1\n5,2,6\n", "label").unwrap();
        assert_eq!(features, [vec![1.0, 2.0], vec![5.0, 6.0]]);
        assert_eq!(labels, [0, 2]);
        assert!(matches!(
            labeled(b"a,b\n1,2\n", "label"),
            Err(QualityError::Malformed { .. })
        ));
        let q = score(b"a,label\n1,0\n2,1\n3,0\n4,1\n").unwrap();
        assert_eq!(with_accuracy(&q, 3), 7_500);
        assert_eq!(with_accuracy(&q, 9), 10_000);
    }

    proptest! {
        /// Any text scores within 0..=MAX_SCORE or is refused, never panics, and scores the
        /// same twice.
        #[test]
        fn scores_are_bounded_and_reproducible(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let first = score(&bytes);
            if let Ok(q) = &first {
                prop_assert!(q.score <= MAX_SCORE);
                prop_assert!(q.distinct <= q.valid && q.valid <= q.rows);
            }
            prop_assert_eq!(first, score(&bytes));
        }
    }
}
