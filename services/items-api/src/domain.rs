//! The Items domain: what an item is, and the only ways to make a valid one.
//!
//! "Parse, don't validate": an [`ItemName`] or [`ItemDescription`] can only be
//! built through `parse`, so every value that reaches a store is already valid.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

/// Longest accepted name, in characters (not bytes), after trimming.
pub const NAME_MAX_CHARS: usize = 200;
/// Longest accepted description, in characters.
pub const DESCRIPTION_MAX_CHARS: usize = 2000;

/// A stored item, as the API returns it.
//
// The one form of an item: what the stores hold and what the API returns, as
// its JSON (the OpenAPI schema takes the line above). Adding a field: a
// migration adds its column (`migrations/`), the field goes here (and into
// `NewItem` and `ItemInput` if clients write it, and into `Item::created` and
// `Item::updated`), and the PostgreSQL store reads and writes it
// (`store/postgres.rs`). A field the database may leave NULL is an `Option`
// left out of the JSON when `None`, as `description` is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Item {
    /// Server-assigned UUID (version 7, so ids sort by creation time).
    pub id: Uuid,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Starts at 1 and grows by one with every update.
    pub version: u64,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
}

impl Item {
    /// A new item with the content a client sent, at version 1.
    pub fn created(id: Uuid, new: NewItem, at: OffsetDateTime) -> Self {
        Self {
            id,
            name: new.name.into_inner(),
            description: new.description.map(ItemDescription::into_inner),
            version: 1,
            created_at: at,
            updated_at: at,
        }
    }

    /// The item with its content replaced: the next version, updated `at`.
    pub fn updated(self, new: NewItem, at: OffsetDateTime) -> Self {
        Self {
            version: self.version + 1,
            updated_at: at,
            ..Self::created(self.id, new, self.created_at)
        }
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

    pub fn as_str(&self) -> &str {
        &self.0
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

    pub fn as_str(&self) -> &str {
        &self.0
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

impl NewItem {
    /// Content with a name and nothing else; other fields can be set with
    /// `NewItem { description, ..NewItem::named("tea")? }`.
    pub fn named(name: &str) -> Result<Self, FieldError> {
        Ok(Self {
            name: ItemName::parse(name)?,
            description: None,
        })
    }
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
    fn an_item_reads_back_from_the_json_it_writes() {
        let at = time::macros::datetime!(2026-01-02 03:04:05.5 UTC);
        let new = NewItem::named("tea \"green\"").unwrap();
        let item = Item::created(Uuid::nil(), new.clone(), at);
        let json = serde_json::to_string(&item).unwrap();
        assert_eq!(
            json,
            r#"{"id":"00000000-0000-0000-0000-000000000000","name":"tea \"green\"","version":1,"createdAt":"2026-01-02T03:04:05.5Z","updatedAt":"2026-01-02T03:04:05.5Z"}"#
        );
        assert_eq!(serde_json::from_str::<Item>(&json).unwrap(), item);
        let later = at + time::Duration::seconds(1);
        let updated = item.clone().updated(new, later);
        assert_eq!(
            (updated.version, updated.created_at, updated.updated_at),
            (2, at, later)
        );
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
