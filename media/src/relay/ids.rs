//! Room and participant ids: two kinds of string the relay must not mix up.
//! Cheap to clone (shared), looked up by `&str` (they borrow as one).

use std::borrow::Borrow;
use std::fmt;
use std::sync::Arc;

macro_rules! id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub(crate) struct $name(Arc<str>);

        impl $name {
            pub(crate) fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl From<&str> for $name {
            fn from(id: &str) -> Self {
                Self(id.into())
            }
        }

        // Hashes and compares as the `str` it holds, so maps keyed by it
        // answer `&str` lookups.
        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                *self.0 == *other
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&*self.0, f)
            }
        }
    };
}

id!(
    /// A room (the app's conversation).
    RoomId
);
id!(
    /// A participant of a room (the app's user).
    ParticipantId
);

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn ids_look_up_by_str_and_print_as_it() {
        let mut m = HashMap::new();
        m.insert(RoomId::from("r1"), 1);
        assert_eq!(m.get("r1"), Some(&1));
        assert_eq!(m.get("r2"), None);
        let p = ParticipantId::from("ann");
        assert_eq!(p.to_string(), "ann");
        assert_eq!(format!("{p:?}"), "\"ann\"");
        assert!(p == *"ann");
        assert_eq!(p.clone(), p);
    }
}
