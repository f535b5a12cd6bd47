//! The `config_table!` macro: each configuration key is one row (field, type,
//! default, environment variables, example, one-line doc) and everything else
//! is generated from the rows — the struct and its `Default`, the TOML file
//! struct (unknown keys refused), the file merge, the environment read, and
//! the [`Key`] list the docs and the tests are made from.
//!
//! Owns the mechanism only; the rows are in `config/mod.rs`, how one value
//! is parsed is `config/value.rs`.

use std::collections::HashMap;

use super::{Config, ConfigError};

/// The process environment as the configuration reads it.
pub(super) struct Env<'a>(pub(super) &'a HashMap<String, String>);

impl Env<'_> {
    /// The first of `names` that is set to something other than blanks, with its trimmed value.
    pub(super) fn get(&self, names: &[&'static str]) -> Option<(&'static str, &str)> {
        names.iter().find_map(|&n| {
            let v = self.0.get(n)?.trim();
            (!v.is_empty()).then_some((n, v))
        })
    }
}

/// A struct made by `config_table!`: its part of the file and the environment.
pub(super) trait Table: Default {
    /// Its table in the TOML file: every key optional, unknown keys refused.
    type File: serde::de::DeserializeOwned;
    fn apply_file(&mut self, file: Self::File) -> Result<(), ConfigError>;
    /// Applies the environment; returns whether any of its variables was set.
    fn apply_env(&mut self, env: &Env) -> Result<bool, ConfigError>;
    /// Its keys, read through `at` from a whole [`Config`].
    fn keys(at: fn(&Config) -> Option<&Self>) -> Vec<Key>;
}

/// Where a key appears besides the full table.
#[derive(Debug, Default, Clone, Copy)]
pub struct Flags {
    /// `systemd/chats3.toml` sets the example rather than the default (a VM behind a proxy).
    pub deploy: bool,
    /// Listed in the README's short table.
    pub common: bool,
}

/// Reads one key's value out of a whole configuration.
pub type Read = Box<dyn Fn(&Config) -> Option<toml::Value>>;

/// One configuration key, as the docs and the tests see it.
pub struct Key {
    /// Its `[section]` in the TOML file; `None` at the top level.
    pub section: Option<&'static str>,
    /// Its name in the TOML file.
    pub name: &'static str,
    /// Its environment variables; the first one set wins.
    pub env: &'static [&'static str],
    /// What it means, in one line.
    pub doc: String,
    /// Its default (in its own table: `[s3]` keys have defaults although `s3` is `None`).
    pub default: Option<toml::Value>,
    /// An example value (the tests set every key to it).
    pub example: Option<toml::Value>,
    /// The example as environment text.
    #[cfg(test)]
    pub example_env: String,
    /// Where else it appears.
    pub flags: Flags,
    /// Its section is absent until one of its keys is set (`[s3]`).
    pub optional: bool,
    /// Its value in a configuration (`None`: unset).
    pub read: Read,
}

impl Key {
    /// `section.name`, the name used in error messages and lookups.
    pub fn path(&self) -> String {
        file_key(self.section, self.name)
    }
}

/// Builds a [`Key`] (called by `config_table!`).
#[allow(clippy::too_many_arguments)] // one argument per column of a row
pub(super) fn key<T, K: super::value::Kind<T>>(
    section: Option<&'static str>,
    name: &'static str,
    env: &'static [&'static str],
    doc: &[&str],
    default: Option<&T>,
    example: T,
    flags: Flags,
    read: Read,
) -> Key {
    Key {
        section,
        name,
        env,
        doc: doc.iter().map(|l| l.trim()).collect::<Vec<_>>().join(" "),
        default: default.and_then(K::to_toml),
        example: K::to_toml(&example),
        #[cfg(test)]
        example_env: K::to_env(&example),
        flags,
        optional: false,
        read,
    }
}

/// The kind that reads a row: its own type unless it says `as Kind`.
macro_rules! kind_of {
    ($ty:ty) => {
        $ty
    };
    ($ty:ty, $via:ty) => {
        $via
    };
}

/// A row's TOML name: its field unless it says `#[key = "…"]`.
macro_rules! name_of {
    ($field:ident) => {
        stringify!($field)
    };
    ($field:ident, $key:literal) => {
        $key
    };
}

/// A file key's dotted name, for error messages.
pub(super) fn file_key(section: Option<&str>, name: &str) -> String {
    match section {
        Some(s) => format!("{s}.{name}"),
        None => name.to_owned(),
    }
}

/// Declares a configuration struct, one row per key:
///
/// ```text
/// /// One line of docs.
/// field: Type [as Kind] = default, env ["VAR", "ALIAS"], eg example [, [deploy, common]];
/// ```
///
/// then, optionally: `flat name in NameFile { rows }` (keys in `[name]` of the
/// file, fields of this struct), `group /// doc field { name: Type => index,
/// env […], eg …; … }` (keys that together make one optional tuple field: all
/// or none), `nested /// doc field: Type;` (a `[field]` section made by another
/// `config_table!`) and `optional /// doc field: Type;` (the same, `None` until
/// one of its keys is set).
macro_rules! config_table {
    (
        $(#[$meta:meta])*
        pub struct $Name:ident, section $section:expr, file $File:ident {
            $(
                $(#[doc = $doc:literal])*
                $(#[key = $key:literal])?
                $field:ident : $ty:ty $(as $via:ty)? = $default:expr,
                    env [$($env:literal),+], eg $eg:expr $(, [$($flag:ident),*])?;
            )*
        }
        $(
            flat $sec:ident in $SecFile:ident {
                $(
                    $(#[doc = $sdoc:literal])*
                    $sfield:ident : $sty:ty = $sdefault:expr,
                        env [$($senv:literal),+], eg $seg:expr $(, [$($sflag:ident),*])?;
                )*
            }
        )*
        $(
            group $(#[doc = $gdoc:literal])*
                $group:ident {
                $(
                    $(#[doc = $rdoc:literal])*
                    $rfield:ident : $rty:ty => $ridx:tt,
                        env [$($renv:literal),+], eg $reg:expr $(, [$($rflag:ident),*])?;
                )*
            }
        )*
        $(
            nested $(#[doc = $ndoc:literal])*
                $child:ident : $Child:ty;
        )*
        $(
            optional $(#[doc = $odoc:literal])*
                $opt:ident : $Opt:ty;
        )*
    ) => {
        $(#[$meta])*
        pub struct $Name {
            $( $(#[doc = $doc])* pub $field: $ty, )*
            $( $( $(#[doc = $sdoc])* pub $sfield: $sty, )* )*
            $( $(#[doc = $gdoc])* pub $group: Option<($($rty,)*)>, )*
            $( $(#[doc = $ndoc])* pub $child: $Child, )*
            $( $(#[doc = $odoc])* pub $opt: Option<$Opt>, )*
        }

        impl Default for $Name {
            fn default() -> Self {
                Self {
                    $( $field: $default, )*
                    $( $( $sfield: $sdefault, )* )*
                    $( $group: None, )*
                    $( $child: Default::default(), )*
                    $( $opt: None, )*
                }
            }
        }

        /// The TOML file's view: every key optional, unknown keys refused
        /// (a typo must not be silently ignored).
        #[derive(Debug, Default, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        pub(super) struct $File {
            $( $(#[serde(rename = $key)])? $field: Option<toml::Value>, )*
            $( $sec: Option<$SecFile>, )*
            $( $( $rfield: Option<toml::Value>, )* )*
            $( $child: Option<<$Child as $crate::config::table::Table>::File>, )*
            $( $opt: Option<<$Opt as $crate::config::table::Table>::File>, )*
        }

        $(
            #[derive(Debug, Default, serde::Deserialize)]
            #[serde(deny_unknown_fields)]
            pub(super) struct $SecFile {
                $( $sfield: Option<toml::Value>, )*
            }
        )*

        impl $crate::config::table::Table for $Name {
            type File = $File;

            fn apply_file(&mut self, file: $File) -> Result<(), $crate::config::ConfigError> {
                use $crate::config::table::{file_key, kind_of, name_of};
                use $crate::config::value::Kind;
                $(
                    if let Some(v) = file.$field {
                        let key = file_key($section, name_of!($field $(, $key)?));
                        self.$field = <kind_of!($ty $(, $via)?) as Kind<$ty>>::from_toml(&key, v)?;
                    }
                )*
                $(
                    if let Some(f) = file.$sec {
                        $(
                            if let Some(v) = f.$sfield {
                                let key = concat!(stringify!($sec), ".", stringify!($sfield));
                                self.$sfield = <$sty as Kind<$sty>>::from_toml(key, v)?;
                            }
                        )*
                    }
                )*
                $(
                    {
                        let mut parts = match self.$group.take() {
                            Some(t) => ($(Some(t.$ridx),)*),
                            None => Default::default(),
                        };
                        $(
                            if let Some(v) = file.$rfield {
                                let key = file_key($section, stringify!($rfield));
                                parts.$ridx = Some(<$rty as Kind<$rty>>::from_toml(&key, v)?);
                            }
                        )*
                        self.$group =
                            $crate::config::table::group!(parts, $section, $($rfield => $ridx),*);
                    }
                )*
                $(
                    if let Some(f) = file.$child {
                        self.$child.apply_file(f)?;
                    }
                )*
                $(
                    if let Some(f) = file.$opt {
                        let mut t = self.$opt.take().unwrap_or_default();
                        t.apply_file(f)?;
                        self.$opt = Some(t);
                    }
                )*
                Ok(())
            }

            fn apply_env(
                &mut self,
                env: &$crate::config::table::Env,
            ) -> Result<bool, $crate::config::ConfigError> {
                use $crate::config::table::kind_of;
                use $crate::config::value::Kind;
                let mut any = false;
                $(
                    if let Some((var, text)) = env.get(&[$($env),+]) {
                        self.$field = <kind_of!($ty $(, $via)?) as Kind<$ty>>::from_env(var, text)?;
                        any = true;
                    }
                )*
                $( $(
                    if let Some((var, text)) = env.get(&[$($senv),+]) {
                        self.$sfield = <$sty as Kind<$sty>>::from_env(var, text)?;
                        any = true;
                    }
                )* )*
                $(
                    {
                        let mut parts = match self.$group.take() {
                            Some(t) => ($(Some(t.$ridx),)*),
                            None => Default::default(),
                        };
                        $(
                            if let Some((var, text)) = env.get(&[$($renv),+]) {
                                parts.$ridx = Some(<$rty as Kind<$rty>>::from_env(var, text)?);
                                any = true;
                            }
                        )*
                        self.$group =
                            $crate::config::table::group!(parts, $section, $($rfield => $ridx),*);
                    }
                )*
                $( any |= self.$child.apply_env(env)?; )*
                $(
                    {
                        let mut t = self.$opt.clone().unwrap_or_default();
                        if t.apply_env(env)? {
                            self.$opt = Some(t);
                            any = true;
                        }
                    }
                )*
                Ok(any)
            }

            // `Flags { deploy: true, common: true, ..Flags::default() }` sets every flag.
            #[allow(clippy::needless_update)]
            fn keys(
                at: fn(&$crate::config::Config) -> Option<&Self>,
            ) -> Vec<$crate::config::table::Key> {
                use $crate::config::table::{Flags, key, kind_of, name_of};
                use $crate::config::value::Kind;
                let defaults = Self::default();
                #[allow(unused_mut)] // a table may have no nested sections
                let mut keys = vec![
                    $(
                        key::<$ty, kind_of!($ty $(, $via)?)>(
                            $section,
                            name_of!($field $(, $key)?),
                            &[$($env),+],
                            &[$($doc),*],
                            Some(&defaults.$field),
                            $eg,
                            Flags { $($($flag: true,)*)? ..Flags::default() },
                            Box::new(move |c| {
                                at(c).and_then(|s| {
                                    <kind_of!($ty $(, $via)?) as Kind<$ty>>::to_toml(&s.$field)
                                })
                            }),
                        ),
                    )*
                    $( $(
                        key::<$rty, $rty>(
                            $section,
                            stringify!($rfield),
                            &[$($renv),+],
                            &[$($rdoc),*],
                            None,
                            $reg,
                            Flags { $($($rflag: true,)*)? ..Flags::default() },
                            Box::new(move |c| {
                                at(c)
                                    .and_then(|s| s.$group.as_ref())
                                    .and_then(|g| <$rty as Kind<$rty>>::to_toml(&g.$ridx))
                            }),
                        ),
                    )* )*
                    $( $(
                        key::<$sty, $sty>(
                            Some(stringify!($sec)),
                            stringify!($sfield),
                            &[$($senv),+],
                            &[$($sdoc),*],
                            Some(&defaults.$sfield),
                            $seg,
                            Flags { $($($sflag: true,)*)? ..Flags::default() },
                            Box::new(move |c| {
                                at(c).and_then(|s| <$sty as Kind<$sty>>::to_toml(&s.$sfield))
                            }),
                        ),
                    )* )*
                ];
                $(
                    keys.extend(<$Child as $crate::config::table::Table>::keys(|c| {
                        Some(&c.$child)
                    }));
                )*
                $(
                    let opt = <$Opt as $crate::config::table::Table>::keys(|c| c.$opt.as_ref());
                    keys.extend(opt.into_iter().map(|k| $crate::config::table::Key {
                        optional: true,
                        ..k
                    }));
                )*
                keys
            }
        }
    };
}

/// A group's parts, all set or none: the tuple, `None`, or an error naming a missing key.
macro_rules! group {
    ($parts:expr, $section:expr, $($name:ident => $idx:tt),*) => {{
        let parts = $parts;
        let missing = [$( (parts.$idx.is_none(), stringify!($name)) ),*];
        match parts {
            ($(Some($name),)*) => Some(($($name,)*)),
            _ if missing.iter().all(|(m, _)| *m) => None,
            _ => {
                let names = [$(stringify!($name)),*].join(", ");
                let first = missing.iter().find(|(m, _)| *m).map_or("", |(_, n)| *n);
                return Err($crate::config::validate::refused(
                    &$crate::config::table::file_key($section, first),
                    format!("{names} are set together or not at all"),
                ));
            }
        }
    }};
}

pub(super) use {config_table, group, kind_of, name_of};
