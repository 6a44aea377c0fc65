//! What is wrong with one part of an input, wherever it arrived (a request,
//! a catalog document, an imported line). The API answers it as an entry
//! of a problem's `errors`.

use serde::Serialize;

/// One bad part of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct FieldError {
    /// The parameter and the path inside it, `/`-separated, e.g. `filter/or/1/status/eq`.
    pub pointer: String,
    /// What is wrong, for a person.
    pub message: String,
}

impl FieldError {
    pub fn new(pointer: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            pointer: pointer.into(),
            message: message.into(),
        }
    }
}
