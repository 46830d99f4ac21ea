//! The features a tenant's plan can include: the one list that the REST API validates
//! against and that the engine checks before it serves a feature.

use std::fmt;

/// A feature that can be switched on or off per tenant. The wire name is [`Feature::as_str`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Feature {
    /// `receipt` events after a `read`. Without it, `read` still stores the read marker.
    ReadReceipts,
    /// The `typing` request and its events.
    Typing,
    /// `history` over WebSocket and the REST message list. `sync` stays available without
    /// it, because it is how a client recovers messages it missed.
    History,
    /// The `edit` and `recall` requests and their events.
    EditRecall,
    /// `POST /v1/tenants/{tid}/export`.
    Export,
}

impl Feature {
    /// Every feature, in the order the docs list them. A tenant created without a feature
    /// list gets all of them.
    pub const ALL: [Feature; 5] = [
        Feature::ReadReceipts,
        Feature::Typing,
        Feature::History,
        Feature::EditRecall,
        Feature::Export,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Feature::ReadReceipts => "read_receipts",
            Feature::Typing => "typing",
            Feature::History => "history",
            Feature::EditRecall => "edit_recall",
            Feature::Export => "export",
        }
    }

    /// Parses a wire name; `None` for a name that is not in [`Feature::ALL`].
    pub fn parse(name: &str) -> Option<Feature> {
        Feature::ALL.into_iter().find(|feature| feature.as_str() == name)
    }

    /// Joins the wire names of every feature with commas, for error messages.
    pub fn names() -> String {
        Feature::ALL.map(Feature::as_str).join(", ")
    }
}

impl fmt::Display for Feature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_wire_name_parses_back() {
        for feature in Feature::ALL {
            assert_eq!(Feature::parse(feature.as_str()), Some(feature));
        }
    }

    #[test]
    fn unknown_name_does_not_parse() {
        assert_eq!(Feature::parse("presence"), None);
        assert_eq!(Feature::parse("Typing"), None);
    }
}
