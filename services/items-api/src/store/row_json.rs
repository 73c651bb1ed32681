//! A list's rows written straight into the page as the JSON objects
//! `Item`'s `Serialize` writes: the one piece of performance work in
//! items-api, kept because it measured its worth (README, Benchmarks: an
//! `Item` per row through serde_json costs 3.2× the instructions of this
//! writer, +83% of a 100-item list request).
//!
//! It knows no field of `Item`: it writes whatever columns the statement
//! returns, in their order, each under its name in camelCase (`created_at` is
//! `"createdAt"`), and leaves a NULL out, as `Item`'s `Option` fields are
//! (`skip_serializing_if`). A new column of a type below needs nothing here;
//! `tests/api_postgres.rs` holds a page equal to the items' own JSON.

use tokio_postgres::types::{FromSql, Type};
use tokio_postgres::{Column, Row};
use uuid::Uuid;

use super::StoreError;

/// How a statement's rows are written: each column's key and kind, found
/// once per statement.
pub struct RowJson {
    columns: Vec<(Vec<u8>, Kind)>,
    id: usize,
}

#[derive(Clone, Copy)]
enum Kind {
    Uuid,
    Text,
    Int,
    Bool,
    Timestamptz,
}

impl RowJson {
    /// The writer for rows of `columns`, which must include an `id` (the
    /// page's cursor) and hold only types this writer knows.
    pub fn new(columns: &[Column]) -> Result<Self, StoreError> {
        let mut keys = Vec::with_capacity(columns.len());
        for column in columns {
            let kind = match *column.type_() {
                Type::UUID => Kind::Uuid,
                Type::TEXT | Type::VARCHAR => Kind::Text,
                Type::INT2 | Type::INT4 | Type::INT8 => Kind::Int,
                Type::BOOL => Kind::Bool,
                Type::TIMESTAMPTZ => Kind::Timestamptz,
                ref other => {
                    return Err(StoreError::Unavailable(format!(
                        "column {} is of type {other}, which store/row_json.rs does not write: add it there",
                        column.name()
                    )));
                }
            };
            let key = serde_json::to_vec(&camel_case(column.name())).expect("a str serializes");
            keys.push(([&key[..], b":"].concat(), kind));
        }
        let id = columns
            .iter()
            .position(|column| column.name() == "id")
            .ok_or_else(|| StoreError::Unavailable("a list's rows need an `id` column".into()))?;
        Ok(Self { columns: keys, id })
    }

    /// The row's id, where the next page starts.
    pub fn id(&self, row: &Row) -> Result<Uuid, tokio_postgres::Error> {
        row.try_get(self.id)
    }

    /// Appends the row's JSON object to `out`.
    pub fn write(&self, row: &Row, out: &mut Vec<u8>) -> Result<(), tokio_postgres::Error> {
        out.push(b'{');
        let mut first = true;
        // The last timestamp written: an item never updated has two equal ones.
        let mut last: Option<(i64, TimestampText)> = None;
        for (index, (key, kind)) in self.columns.iter().enumerate() {
            let start = out.len();
            if !first {
                out.push(b',');
            }
            out.extend_from_slice(key);
            let written = match kind {
                Kind::Uuid => row.try_get::<_, Option<Uuid>>(index)?.map(|id| {
                    out.push(b'"');
                    let mut text = Uuid::encode_buffer();
                    out.extend_from_slice(id.hyphenated().encode_lower(&mut text).as_bytes());
                    out.push(b'"');
                }),
                Kind::Text => row
                    .try_get::<_, Option<&str>>(index)?
                    .map(|text| json_string(out, text)),
                Kind::Int => row.try_get::<_, Option<Int>>(index)?.map(|Int(n)| {
                    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
                }),
                Kind::Bool => row
                    .try_get::<_, Option<bool>>(index)?
                    .map(|b| out.extend_from_slice(if b { b"true" } else { b"false" })),
                Kind::Timestamptz => row.try_get::<_, Option<PostgresMicros>>(index)?.map(
                    |PostgresMicros(micros)| {
                        let text = match last {
                            Some((seen, text)) if seen == micros => text,
                            _ => rfc3339(micros),
                        };
                        out.push(b'"');
                        text.append_to(out);
                        out.push(b'"');
                        last = Some((micros, text));
                    },
                ),
            };
            match written {
                Some(()) => first = false,
                // NULL: the key is taken back, as serde skips a `None`.
                None => out.truncate(start),
            }
        }
        out.push(b'}');
        Ok(())
    }
}

/// `created_at` as serde's `rename_all = "camelCase"` spells it: `createdAt`.
fn camel_case(name: &str) -> String {
    let mut camel = String::with_capacity(name.len());
    let mut upper = false;
    for c in name.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            camel.extend(c.to_uppercase());
            upper = false;
        } else {
            camel.push(c);
        }
    }
    camel
}

/// `text` as a JSON string, escaped as serde_json escapes it. Text that
/// needs no escape (the usual name) is copied between its quotes at once.
fn json_string(out: &mut Vec<u8>, text: &str) {
    if text.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
        serde_json::to_writer(out, text).expect("a str always serializes");
        return;
    }
    out.push(b'"');
    out.extend_from_slice(text.as_bytes());
    out.push(b'"');
}

/// An integer column of any width.
struct Int(i64);

impl<'a> FromSql<'a> for Int {
    fn from_sql(
        ty: &Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Self(match *ty {
            Type::INT2 => i16::from_sql(ty, raw)?.into(),
            Type::INT4 => i32::from_sql(ty, raw)?.into(),
            _ => i64::from_sql(ty, raw)?,
        }))
    }

    fn accepts(ty: &Type) -> bool {
        matches!(*ty, Type::INT2 | Type::INT4 | Type::INT8)
    }
}

/// A `timestamptz` in PostgreSQL's binary format: microseconds since
/// 2000-01-01 00:00 UTC, big-endian (no `OffsetDateTime` made per row).
struct PostgresMicros(i64);

impl<'a> FromSql<'a> for PostgresMicros {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Self(i64::from_be_bytes(raw.try_into()?)))
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::TIMESTAMPTZ
    }
}

/// Days from 1970-01-01 to PostgreSQL's epoch, 2000-01-01.
const POSTGRES_EPOCH_DAYS: i64 = 10_957;
const MICROS_PER_DAY: i64 = 86_400_000_000;

/// What `time`'s RFC 3339 format (`Item`'s serde) writes for the instant,
/// without its general machinery for the usual case (years 0 to 9999):
/// `2026-01-02T03:04:05.5Z`, the fraction's trailing zeros dropped.
fn rfc3339(micros: i64) -> TimestampText {
    let days = micros.div_euclid(MICROS_PER_DAY) + POSTGRES_EPOCH_DAYS;
    let (year, month, day) = civil_from_days(days);
    if (0..=9999).contains(&year) {
        let of_day = micros.rem_euclid(MICROS_PER_DAY);
        let seconds = of_day / 1_000_000;
        return utc_text(
            [year as u32, month, day],
            [seconds / 3600, seconds / 60 % 60, seconds % 60].map(|n| n as u8),
            (of_day % 1_000_000) as u32 * 1000,
        );
    }
    let at = time::macros::datetime!(2000-01-01 0:00 UTC)
        .checked_add(time::Duration::microseconds(micros))
        .expect("a timestamptz within time's range (years -9999 to 9999)");
    let mut text = TimestampText::empty();
    let mut rest = &mut text.bytes[..];
    at.format_into(&mut rest, &time::format_description::well_known::Rfc3339)
        .expect("a datetime `time` can format");
    text.len = TimestampText::MAX - rest.len();
    text
}

/// A timestamp's RFC 3339 text, on the stack.
#[derive(Clone, Copy)]
struct TimestampText {
    bytes: [u8; TimestampText::MAX],
    len: usize,
}

impl TimestampText {
    /// The longest form `time` writes: `2026-01-02T03:04:05.123456789+00:00`.
    const MAX: usize = 40;

    fn empty() -> Self {
        Self {
            bytes: [0; Self::MAX],
            len: 0,
        }
    }

    /// Appends the text: all of `bytes`, then the tail cut (a copy of
    /// constant size is a few register moves, not a `memcpy` call).
    fn append_to(&self, out: &mut Vec<u8>) {
        let end = out.len() + self.len;
        out.extend_from_slice(&self.bytes);
        out.truncate(end);
    }
}

/// The proleptic Gregorian date `days` after 1970-01-01: year, month (1-12),
/// day (1-31). Howard Hinnant's `civil_from_days`, exact for every `i64` day
/// count a `timestamptz` can hold.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * shifted_month + 2) / 5 + 1) as u32;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction]Z`, the year 0 to 9999.
fn utc_text([year, month, day]: [u32; 3], hms: [u8; 3], nanos: u32) -> TimestampText {
    let mut text = TimestampText::empty();
    let bytes = &mut text.bytes;
    bytes[..30].copy_from_slice(b"0000-00-00T00:00:00.000000000Z");
    let digits = |text: &mut [u8], mut n: u32| {
        for digit in text.iter_mut().rev() {
            *digit = b'0' + (n % 10) as u8;
            n /= 10;
        }
    };
    digits(&mut bytes[0..4], year);
    let [hour, minute, second] = hms.map(u32::from);
    for (at, value) in [(5, month), (8, day), (11, hour), (14, minute), (17, second)] {
        digits(&mut bytes[at..at + 2], value);
    }
    let len = if nanos == 0 {
        19
    } else {
        digits(&mut bytes[20..29], nanos);
        // The fraction's trailing zeros dropped, as `time` writes it.
        29 - bytes[20..29]
            .iter()
            .rev()
            .take_while(|d| **d == b'0')
            .count()
    };
    bytes[len] = b'Z';
    text.len = len + 1;
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_are_escaped_as_serde_json_escapes_them() {
        for text in [
            "",
            "tea",
            "a/b",
            "caf\u{e9} \u{2603}",
            "del \u{7f}",
            "q\"",
            "b\\",
            "\u{1f}",
            "tab\t",
            "\u{0}",
        ] {
            let mut out = Vec::new();
            json_string(&mut out, text);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                serde_json::to_string(text).unwrap()
            );
        }
    }

    #[test]
    fn column_names_are_camel_cased_as_serde_renames_fields() {
        for (column, field) in [("id", "id"), ("created_at", "createdAt"), ("a_b_c", "aBC")] {
            assert_eq!(camel_case(column), field);
        }
    }

    /// A row's timestamps are rendered from PostgreSQL's microseconds by
    /// hand; they must read exactly as `time` (`Item`'s serde) writes them.
    #[test]
    fn postgres_timestamps_render_as_time_writes_them() {
        use time::macros::datetime;
        let epoch = datetime!(2000-01-01 0:00 UTC);
        let mut micros: Vec<i64> = vec![0, -1, 1, 999_999, 1_000_000, 1_500_000, 10];
        micros.extend([-1, 0, 1].map(|d| MICROS_PER_DAY + d));
        micros.extend([-1, 0, 1].map(|d| -MICROS_PER_DAY + d));
        for at in [
            datetime!(0000-01-01 0:00 UTC),
            datetime!(0000-02-29 23:59:59.999999 UTC),
            datetime!(0001-01-01 0:00:00.1 UTC),
            datetime!(1900-02-28 23:59:59.999999 UTC),
            datetime!(1970-01-01 0:00 UTC),
            datetime!(2000-02-29 12:00 UTC),
            datetime!(2026-11-29 11:40:17.263053 UTC),
            datetime!(2100-03-01 0:00 UTC),
            datetime!(9999-12-31 23:59:59.999999 UTC),
        ] {
            micros.push((at - epoch).whole_microseconds() as i64);
        }
        // A sweep over the years 0 to 9977: a day every 729, a time of day
        // that moves through hours, seconds and fractions.
        let first = (datetime!(0000-01-01 0:00 UTC) - epoch).whole_days();
        for step in 0..5000 {
            let day = first + step * 729;
            micros.push(day * MICROS_PER_DAY + (step * 7_777_777_777) % MICROS_PER_DAY);
        }
        for m in micros {
            let at = epoch + time::Duration::microseconds(m);
            let mut fast = Vec::new();
            rfc3339(m).append_to(&mut fast);
            let expected = at
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap();
            assert_eq!(String::from_utf8(fast).unwrap(), expected, "{m} µs");
        }
    }
}
