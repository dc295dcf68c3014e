//! `${VAR:default}` substitution in a configuration file, as the reference engine does
//! it: on the file's text before it is parsed as YAML (comments included), so what a
//! variable holds is read as YAML text (`port: ${PORT:49134}` is a number).
//!
//! The grammar, matched left to right without overlaps:
//! - `${NAME}` is the value of the environment variable `NAME`; unset, it is an error;
//! - `${NAME:DEFAULT}` is the value of `NAME`, or `DEFAULT` when it is unset (a variable
//!   set to the empty string gives the empty string); `DEFAULT` may be empty and may hold
//!   `:` but not `}`; the default `__III_ENGINE_VERSION__` is this engine's version;
//! - `NAME` is one or more characters other than `}` and `:`;
//! - anything else is kept as written: there is no escape (`$${X}` is `$` followed by
//!   the value of `X`), no nesting (`${A:${B:x}}` gives `A`'s value, or `${B:x` followed
//!   by `}`), and a `$` not followed by a complete `${…}` stays.

/// The default that stands for this engine's version (the reference's spelling).
const ENGINE_VERSION_DEFAULT: &str = "__III_ENGINE_VERSION__";

/// What the environment holds for one variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Lookup {
    /// Set, to this text.
    Set(String),
    /// Not set.
    Unset,
    /// Set, but not valid UTF-8.
    NotUnicode,
}

/// A `${…}` that cannot be replaced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SubstituteError {
    /// `${NAME}` without a default, and `NAME` is not set.
    #[error(
        "line {line}: the environment variable `{name}` is not set and `${{{name}}}` has no \
         default (write `${{{name}:default}}` to give one)"
    )]
    Unset {
        /// The variable.
        name: String,
        /// Where, from 1.
        line: usize,
    },
    /// The variable's value is not UTF-8.
    #[error("line {line}: the environment variable `{name}` is not valid UTF-8")]
    NotUnicode {
        /// The variable.
        name: String,
        /// Where, from 1.
        line: usize,
    },
}

/// Looks `name` up in this process's environment. A name the operating system cannot
/// hold (with `=` or NUL) is never set.
pub(crate) fn process_env(name: &str) -> Lookup {
    if name.contains(['=', '\0']) {
        return Lookup::Unset;
    }
    match std::env::var_os(name) {
        None => Lookup::Unset,
        Some(value) => value.into_string().map_or(Lookup::NotUnicode, Lookup::Set),
    }
}

/// Replaces every `${NAME}` and `${NAME:DEFAULT}` in `text` (see the module's docs).
pub(crate) fn substitute(
    text: &str,
    lookup: impl Fn(&str) -> Lookup,
) -> Result<String, SubstituteError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut consumed = 0; // bytes of `text` before `rest`
    while let Some(start) = rest.find("${") {
        let Some(reference) = parse_reference(&rest[start + 2..]) else {
            // Not a reference: keep the `$` and look again from the next character.
            out.push_str(&rest[..=start]);
            consumed += start + 1;
            rest = &rest[start + 1..];
            continue;
        };
        out.push_str(&rest[..start]);
        let line = text[..consumed + start].matches('\n').count() + 1;
        match (lookup(reference.name), reference.default) {
            (Lookup::Set(value), _) => out.push_str(&value),
            (Lookup::NotUnicode, _) => {
                return Err(SubstituteError::NotUnicode {
                    name: reference.name.to_owned(),
                    line,
                })
            }
            (Lookup::Unset, Some(ENGINE_VERSION_DEFAULT)) => {
                out.push_str(env!("CARGO_PKG_VERSION"));
            }
            (Lookup::Unset, Some(default)) => out.push_str(default),
            (Lookup::Unset, None) => {
                return Err(SubstituteError::Unset {
                    name: reference.name.to_owned(),
                    line,
                })
            }
        }
        let end = start + 2 + reference.len;
        consumed += end;
        rest = &rest[end..];
    }
    out.push_str(rest);
    Ok(out)
}

/// One `${…}`, read from just after its `${`.
struct Reference<'a> {
    name: &'a str,
    default: Option<&'a str>,
    /// Bytes after `${`, the closing `}` included.
    len: usize,
}

/// Reads `NAME}` or `NAME:DEFAULT}` at the start of `after`.
fn parse_reference(after: &str) -> Option<Reference<'_>> {
    let name_end = after.find(['}', ':'])?;
    if name_end == 0 {
        return None;
    }
    let name = &after[..name_end];
    if after[name_end..].starts_with('}') {
        return Some(Reference {
            name,
            default: None,
            len: name_end + 1,
        });
    }
    let default_start = name_end + 1;
    let default_len = after[default_start..].find('}')?;
    Some(Reference {
        name,
        default: Some(&after[default_start..default_start + default_len]),
        len: default_start + default_len + 1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'static str, &'static str)]) -> impl Fn(&str) -> Lookup + 'a {
        move |name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map_or(Lookup::Unset, |(_, v)| Lookup::Set((*v).to_owned()))
        }
    }

    fn sub(text: &str, vars: &[(&'static str, &'static str)]) -> String {
        substitute(text, env(vars)).expect("substitutes")
    }

    #[test]
    fn a_set_variable_wins_over_its_default_and_an_unset_one_takes_it() {
        assert_eq!(sub("port: ${P:49134}", &[("P", "5000")]), "port: 5000");
        assert_eq!(sub("port: ${P:49134}", &[]), "port: 49134");
        assert_eq!(sub("port: ${P}", &[("P", "7")]), "port: 7");
        // Set to the empty string: empty, not the default (as the reference does).
        assert_eq!(sub("a: '${P:x}'", &[("P", "")]), "a: ''");
        assert_eq!(sub("a: '${P:}'", &[]), "a: ''");
    }

    #[test]
    fn a_default_may_hold_colons_and_the_version_placeholder_is_ours() {
        assert_eq!(
            sub("url: ${U:http://localhost:4317}", &[]),
            "url: http://localhost:4317"
        );
        assert_eq!(
            sub("v: ${V:__III_ENGINE_VERSION__}", &[]),
            format!("v: {}", env!("CARGO_PKG_VERSION"))
        );
        assert_eq!(sub("v: ${V:__III_ENGINE_VERSION__}", &[("V", "9")]), "v: 9");
    }

    #[test]
    fn several_references_and_text_between_them() {
        assert_eq!(sub("${A:1}${B:2}-${A:1}\n${C:3}", &[("B", "b")]), "1b-1\n3");
    }

    #[test]
    fn no_escape_no_nesting_and_incomplete_references_stay() {
        assert_eq!(sub("$${X:1}", &[]), "$1");
        assert_eq!(sub("${A:${B:x}}", &[]), "${B:x}");
        assert_eq!(sub("${A:${B:x}}", &[("A", "a")]), "a}");
        for kept in ["$", "$x", "${", "${}", "${:x}", "${A", "${A:b", "$ {A}"] {
            assert_eq!(sub(kept, &[]), kept);
        }
        // After an incomplete one, a later complete one is still replaced.
        assert_eq!(sub("${:x} ${A:1}", &[]), "${:x} 1");
    }

    #[test]
    fn an_unset_variable_without_default_names_itself_and_its_line() {
        let error = substitute(
            "a: 1\n# ${HOME_X}\nb: ${MISSING}\n",
            env(&[("HOME_X", "h")]),
        )
        .expect_err("unset");
        assert_eq!(
            error,
            SubstituteError::Unset {
                name: "MISSING".to_owned(),
                line: 3
            }
        );
        assert!(
            error.to_string().contains("`MISSING` is not set"),
            "{error}"
        );
        assert!(error.to_string().starts_with("line 3:"), "{error}");
        // Comments are text too, as in the reference.
        let error = substitute("# ${GONE}\n", env(&[])).expect_err("in a comment");
        assert_eq!(
            error,
            SubstituteError::Unset {
                name: "GONE".to_owned(),
                line: 1
            }
        );
    }

    #[test]
    fn a_value_that_is_not_utf8_is_an_error() {
        let error = substitute("\n\nt: ${T:x}", |_| Lookup::NotUnicode).expect_err("not utf-8");
        assert_eq!(
            error,
            SubstituteError::NotUnicode {
                name: "T".to_owned(),
                line: 3
            }
        );
    }

    #[test]
    fn names_the_system_cannot_hold_are_unset() {
        assert_eq!(process_env("A=B"), Lookup::Unset);
        assert_eq!(process_env("A\0B"), Lookup::Unset);
    }

    #[test]
    fn text_around_multibyte_characters_is_kept() {
        assert_eq!(sub("é${A:ü}ß", &[]), "éüß");
        assert_eq!(sub("é${ü:1}", &[]), "é1");
    }
}
