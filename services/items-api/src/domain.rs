//! The Items domain: what an item is, and the only ways to make a valid one.
//!
//! "Parse, don't validate": an [`ItemName`] or [`ItemDescription`] can only be
//! built through `parse`, so every value that reaches a store is already valid.

use serde::Serialize;
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

/// Longest accepted name, in characters (not bytes), after trimming.
pub const NAME_MAX_CHARS: usize = 200;
/// Longest accepted description, in characters.
pub const DESCRIPTION_MAX_CHARS: usize = 2000;

/// A stored item, as the API returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Item {
    /// Server-assigned UUID (version 7, so ids sort by creation time).
    pub id: Uuid,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Starts at 1 and grows by one with every update.
    pub version: u64,
    #[serde(serialize_with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(serialize_with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
}

/// RFC 3339 like `time::serde::rfc3339`, formatted on the stack: that one
/// allocates a `String` per timestamp, two per item rendered.
fn rfc3339<S: serde::Serializer>(at: &OffsetDateTime, serializer: S) -> Result<S::Ok, S::Error> {
    // The longest RFC 3339 form `time` writes: 2026-01-02T03:04:05.123456789+00:00.
    let mut buffer = [0u8; 40];
    let mut rest = &mut buffer[..];
    at.format_into(&mut rest, &time::format_description::well_known::Rfc3339)
        .map_err(serde::ser::Error::custom)?;
    let written = 40 - rest.len();
    let text = std::str::from_utf8(&buffer[..written]).map_err(serde::ser::Error::custom)?;
    serializer.serialize_str(text)
}

/// An item's fields, borrowed: what the API's JSON is rendered from, both
/// for an [`Item`] ([`StoredItem::new`]) and straight from a database row
/// (the PostgreSQL store writes a page of rows without building an `Item`
/// per row). Renders exactly what `Item`'s `Serialize` does (a test holds
/// them equal), written out by hand: a page of 1000 rows is 1000 of these.
#[derive(Debug)]
pub struct ItemView<'a> {
    pub id: Uuid,
    pub name: &'a str,
    pub description: Option<&'a str>,
    pub version: u64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A point in time as an item's JSON gives it: a `time` value, or a
/// PostgreSQL `timestamptz` as the database sends it (microseconds since
/// 2000-01-01 00:00 UTC), which a page of rows writes without converting
/// each of its 2000 timestamps to an `OffsetDateTime` first.
#[derive(Debug, Clone, Copy)]
pub enum Timestamp {
    Time(OffsetDateTime),
    PostgresMicros(i64),
}

impl ItemView<'_> {
    /// Appends the item's JSON object to `out`, in `Item`'s field order.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"id\":\"");
        let mut id = Uuid::encode_buffer();
        out.extend_from_slice(self.id.hyphenated().encode_lower(&mut id).as_bytes());
        out.extend_from_slice(b"\",\"name\":");
        json_string(out, self.name);
        if let Some(description) = self.description {
            out.extend_from_slice(b",\"description\":");
            json_string(out, description);
        }
        out.extend_from_slice(b",\"version\":");
        out.extend_from_slice(itoa::Buffer::new().format(self.version).as_bytes());
        out.extend_from_slice(b",\"createdAt\":\"");
        let created = self.created_at.rfc3339();
        created.append_to(out);
        out.extend_from_slice(b"\",\"updatedAt\":\"");
        // An item never updated has the same two timestamps: formatted once.
        if self.updated_at.reads_as(self.created_at) {
            created.append_to(out);
        } else {
            self.updated_at.rfc3339().append_to(out);
        }
        out.extend_from_slice(b"\"}");
    }
}

/// `text` as a JSON string, escaped as serde_json escapes it. Text that
/// needs no escape (the usual name) is copied between its quotes at once;
/// serde_json writes a quote with a `memcpy` call of one byte.
fn json_string(out: &mut Vec<u8>, text: &str) {
    if text.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
        serde_json::to_writer(out, text).expect("a str always serializes");
        return;
    }
    out.push(b'"');
    out.extend_from_slice(text.as_bytes());
    out.push(b'"');
}

/// Days from 1970-01-01 to PostgreSQL's epoch, 2000-01-01.
const POSTGRES_EPOCH_DAYS: i64 = 10_957;
const MICROS_PER_DAY: i64 = 86_400_000_000;

impl Timestamp {
    /// Whether `self` is written exactly as `other` is: the same instant at
    /// the same offset (`OffsetDateTime`'s `==` ignores the offset).
    fn reads_as(self, other: Timestamp) -> bool {
        match (self, other) {
            (Timestamp::PostgresMicros(a), Timestamp::PostgresMicros(b)) => a == b,
            (Timestamp::Time(a), Timestamp::Time(b)) => a == b && a.offset() == b.offset(),
            _ => false,
        }
    }

    /// What `time`'s RFC 3339 format writes, without its general machinery
    /// for the usual case (UTC, years 0 to 9999): `2026-01-02T03:04:05.5Z`,
    /// the fraction's trailing zeros dropped, no fraction for a whole second.
    fn rfc3339(self) -> TimestampText {
        let at = match self {
            Timestamp::PostgresMicros(micros) => {
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
                time::macros::datetime!(2000-01-01 0:00 UTC)
                    .checked_add(time::Duration::microseconds(micros))
                    .expect("a timestamptz within time's range (years -9999 to 9999)")
            }
            Timestamp::Time(at) => at,
        };
        let (year, month, day) = at.to_calendar_date();
        if !at.offset().is_utc() || !(0..=9999).contains(&year) {
            let mut text = TimestampText::empty();
            let mut rest = &mut text.bytes[..];
            at.format_into(&mut rest, &time::format_description::well_known::Rfc3339)
                .expect("a datetime `time` can format");
            text.len = TimestampText::MAX - rest.len();
            return text;
        }
        let (hour, minute, second, nanos) = at.to_hms_nano();
        utc_text(
            [year as u32, u32::from(u8::from(month)), u32::from(day)],
            [hour, minute, second],
            nanos,
        )
    }
}

/// A timestamp's RFC 3339 text, on the stack.
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

    /// Appends the text. All of `bytes` is copied, then the tail cut: a copy
    /// of constant size is a few register moves, while one of the text's
    /// own length is a call to musl's `memcpy`, which is slow for a few
    /// bytes (a page of rows made 5 such calls per row; this was 2 of them).
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

impl<'a> From<&'a Item> for ItemView<'a> {
    fn from(item: &'a Item) -> Self {
        Self {
            id: item.id,
            name: &item.name,
            description: item.description.as_deref(),
            version: item.version,
            created_at: Timestamp::Time(item.created_at),
            updated_at: Timestamp::Time(item.updated_at),
        }
    }
}

/// Bytes of an item's JSON besides its name and description: keys, id,
/// version and two timestamps at their longest.
pub const ITEM_JSON_OVERHEAD: usize = 200;

/// An item together with its JSON, rendered once when the item was written.
///
/// Reads far outnumber writes, and a page of 1000 items is the heaviest
/// answer this API gives: copying stored JSON instead of serializing every
/// item (two RFC 3339 timestamps each) on every request makes that listing
/// several times faster. Cloning is two reference-count increments.
#[derive(Debug, Clone)]
pub struct StoredItem {
    item: std::sync::Arc<Item>,
    json: bytes::Bytes,
}

impl StoredItem {
    pub fn new(item: Item) -> Self {
        // Sized once: growing from empty reallocates about six times an item.
        let mut json = Vec::with_capacity(
            ITEM_JSON_OVERHEAD + item.name.len() + item.description.as_ref().map_or(0, String::len),
        );
        ItemView::from(&item).write_json(&mut json);
        Self {
            item: std::sync::Arc::new(item),
            json: json.into(),
        }
    }

    /// The item's JSON object, exactly as the API returns it.
    pub fn json(&self) -> &bytes::Bytes {
        &self.json
    }
}

impl std::ops::Deref for StoredItem {
    type Target = Item;

    fn deref(&self) -> &Item {
        &self.item
    }
}

/// Text PostgreSQL cannot store: a NUL character. Refused by both stores'
/// domain types, so the in-memory store and PostgreSQL answer alike (a 422
/// naming the field, not a 201 on one and a 503 on the other).
const NUL: char = '\0';
const NUL_MESSAGE: &str = "must not contain the NUL character (U+0000)";

/// A trimmed, non-empty name of at most [`NAME_MAX_CHARS`] characters,
/// without NUL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemName(String);

impl ItemName {
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(FieldError::new(
                "name",
                "must not be empty or only whitespace",
            ));
        }
        if trimmed.chars().count() > NAME_MAX_CHARS {
            return Err(FieldError::new(
                "name",
                format!("must be at most {NAME_MAX_CHARS} characters"),
            ));
        }
        if trimmed.contains(NUL) {
            return Err(FieldError::new("name", NUL_MESSAGE));
        }
        Ok(Self(trimmed.to_owned()))
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

/// An optional free-text description of at most [`DESCRIPTION_MAX_CHARS`]
/// characters, without NUL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemDescription(String);

impl ItemDescription {
    pub fn parse(raw: String) -> Result<Self, FieldError> {
        if raw.chars().count() > DESCRIPTION_MAX_CHARS {
            return Err(FieldError::new(
                "description",
                format!("must be at most {DESCRIPTION_MAX_CHARS} characters"),
            ));
        }
        if raw.contains(NUL) {
            return Err(FieldError::new("description", NUL_MESSAGE));
        }
        Ok(Self(raw))
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

/// The validated content of a create or a full update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewItem {
    pub name: ItemName,
    pub description: Option<ItemDescription>,
}

/// The body of `POST /api/v1/items` and `PUT /api/v1/items/{id}`.
//
// Fields are `Option` here only so that a missing one is reported by name with
// every other problem in one response, instead of serde's first-error message.
#[derive(Debug, serde::Deserialize, ToSchema)]
pub struct ItemInput {
    /// Required; trimmed; 1 to 200 characters, not only whitespace, no NUL.
    #[schema(value_type = String, required = true, min_length = 1, max_length = 200,
        pattern = r"^[^\u0000]*[^\s\u0000][^\u0000]*$")]
    pub name: Option<String>,
    /// Optional; at most 2000 characters, no NUL.
    #[schema(max_length = 2000, pattern = r"^[^\u0000]*$")]
    pub description: Option<String>,
}

impl ItemInput {
    /// Checks every field and reports all the problems at once.
    pub fn validate(self) -> Result<NewItem, Vec<FieldError>> {
        let name = match self.name {
            Some(name) => ItemName::parse(&name),
            None => Err(FieldError::new("name", "is required")),
        };
        let description = self.description.map(ItemDescription::parse).transpose();
        match (name, description) {
            (Ok(name), Ok(description)) => Ok(NewItem { name, description }),
            (name, description) => Err([name.err(), description.err()]
                .into_iter()
                .flatten()
                .collect()),
        }
    }
}

/// One invalid field of a request, named as the client spelled it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_item_renders_the_json_the_api_documents() {
        let item = Item {
            id: Uuid::nil(),
            name: "tea \"green\"".into(),
            description: None,
            version: 3,
            created_at: time::macros::datetime!(2026-01-02 03:04:05.5 UTC),
            updated_at: time::macros::datetime!(2026-01-02 03:04:06 UTC),
        };
        let stored = StoredItem::new(item.clone());
        assert_eq!(*stored, item);
        // The hand-written view renders what `Item`'s own Serialize (the
        // schema's, through `time`'s RFC 3339) does.
        let times = [
            time::macros::datetime!(2026-01-02 03:04:05 UTC),
            time::macros::datetime!(1999-12-31 23:59:59.000001 UTC),
            time::macros::datetime!(2026-11-29 10:00:00.123456789 UTC),
            time::macros::datetime!(0001-01-01 00:00:00.1 UTC),
            time::macros::datetime!(2026-06-30 12:00:00.5 +02:00),
        ];
        let descriptions = [None, Some("with \u{e9}, \"quotes\", \\ \n\u{1}".to_owned())];
        for (n, created_at) in times.into_iter().enumerate() {
            let item = Item {
                name: format!("tea {n} \u{2603}\t"),
                description: descriptions[n % 2].clone(),
                version: u64::MAX >> n,
                created_at,
                updated_at: times[(n + 1) % times.len()],
                ..item.clone()
            };
            let via_view = StoredItem::new(item.clone());
            assert_eq!(
                std::str::from_utf8(via_view.json()).unwrap(),
                serde_json::to_string(&item).unwrap()
            );
        }
        assert_eq!(
            std::str::from_utf8(stored.json()).unwrap(),
            r#"{"id":"00000000-0000-0000-0000-000000000000","name":"tea \"green\"","version":3,"createdAt":"2026-01-02T03:04:05.5Z","updatedAt":"2026-01-02T03:04:06Z"}"#
        );
    }

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

    /// An item never updated writes its one timestamp once and copies it; the
    /// same instant at another offset is written again, as `time` writes it.
    #[test]
    fn equal_timestamps_are_written_once_and_read_the_same() {
        let created_at = time::macros::datetime!(2026-06-30 12:00:00.5 +02:00);
        for updated_at in [created_at, created_at.to_offset(time::UtcOffset::UTC)] {
            let item = Item {
                id: Uuid::nil(),
                name: "tea".into(),
                description: None,
                version: 1,
                created_at,
                updated_at,
            };
            assert_eq!(
                std::str::from_utf8(StoredItem::new(item.clone()).json()).unwrap(),
                serde_json::to_string(&item).unwrap()
            );
        }
        let row = ItemView {
            id: Uuid::nil(),
            name: "tea",
            description: None,
            version: 1,
            created_at: Timestamp::PostgresMicros(123),
            updated_at: Timestamp::PostgresMicros(123),
        };
        let mut out = Vec::new();
        row.write_json(&mut out);
        assert!(
            String::from_utf8(out).unwrap().ends_with(
                r#""createdAt":"2000-01-01T00:00:00.000123Z","updatedAt":"2000-01-01T00:00:00.000123Z"}"#
            )
        );
    }

    /// A row's timestamps are rendered from PostgreSQL's microseconds by
    /// hand; they must read exactly as `time` writes the same instant.
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
            let (mut fast, mut via_time) = (Vec::new(), Vec::new());
            Timestamp::PostgresMicros(m).rfc3339().append_to(&mut fast);
            Timestamp::Time(at).rfc3339().append_to(&mut via_time);
            let expected = at
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap();
            assert_eq!(String::from_utf8(fast).unwrap(), expected, "{m} µs");
            assert_eq!(String::from_utf8(via_time).unwrap(), expected, "{m} µs");
        }
    }

    #[test]
    fn name_is_trimmed() {
        assert_eq!(ItemName::parse("  hello \n").unwrap().into_inner(), "hello");
    }

    #[test]
    fn blank_name_is_rejected() {
        assert_eq!(ItemName::parse("   ").unwrap_err().field, "name");
    }

    #[test]
    fn name_length_counts_characters_not_bytes() {
        let two_hundred_accents = "é".repeat(NAME_MAX_CHARS);
        assert!(ItemName::parse(&two_hundred_accents).is_ok());
        assert!(ItemName::parse(&format!("{two_hundred_accents}é")).is_err());
    }

    #[test]
    fn nul_is_refused_in_every_text_field() {
        assert_eq!(ItemName::parse("a\0b").unwrap_err().message, NUL_MESSAGE);
        let err = ItemDescription::parse("a\0".into()).unwrap_err();
        assert_eq!(
            (err.field.as_str(), err.message.as_str()),
            ("description", NUL_MESSAGE)
        );
        // Other control characters are text PostgreSQL stores.
        assert!(ItemName::parse("a\u{1}b").is_ok());
    }

    #[test]
    fn description_limit() {
        assert!(ItemDescription::parse("x".repeat(DESCRIPTION_MAX_CHARS)).is_ok());
        let err = ItemDescription::parse("x".repeat(DESCRIPTION_MAX_CHARS + 1)).unwrap_err();
        assert_eq!(err.field, "description");
    }

    #[test]
    fn validate_reports_every_bad_field() {
        let input = ItemInput {
            name: None,
            description: Some("x".repeat(DESCRIPTION_MAX_CHARS + 1)),
        };
        let fields: Vec<_> = input
            .validate()
            .unwrap_err()
            .into_iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(fields, ["name", "description"]);
    }
}
