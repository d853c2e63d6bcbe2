//! The WSGI application named in `[app] app` and by the command line's `APP`:
//! `"module:callable"`, or a factory call `"module:factory(args)"`, as gunicorn takes it.
//!
//! Only the syntax is checked here; nothing is imported. The arguments of a factory call are
//! Python literals, which the Python side evaluates: here they only have to be a balanced,
//! closed argument list.

use super::units::quote;

/// An application spec taken apart: `"pkg.wsgi:make_app('prod')"` is module `pkg.wsgi`,
/// attribute `make_app` and call `'prod'`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppSpec {
    /// The module to import, a dotted name like `myproject.wsgi`.
    pub module: String,
    /// The object in the module, a dotted name like `application` or `api.app`.
    pub attr: String,
    /// For a factory call, the text between its parentheses, trimmed (empty for `f()`);
    /// `None` when the object itself is the application.
    pub call: Option<String>,
}

const FORM: &str = "expected \"module:callable\" or \"module:factory(args)\", \
     like \"myproject.wsgi:application\"";

/// Parses `"module:callable"` or `"module:factory(args)"`.
///
/// # Errors
///
/// A message naming the spec and what is wrong with it: no `:`, a module or attribute that
/// is not a dotted Python name, or an argument list that is unbalanced, unclosed or followed
/// by more text.
pub fn parse_app_spec(spec: &str) -> Result<AppSpec, String> {
    let fail = |why: String| format!("invalid application {}: {why}", quote(spec));
    let Some((module, rest)) = spec.split_once(':') else {
        return Err(fail(FORM.to_owned()));
    };
    let (attr, call) = match rest.find('(') {
        Some(open) => (&rest[..open], Some(&rest[open..])),
        None => (rest, None),
    };
    check_dotted(module, "the module before \":\"").map_err(&fail)?;
    check_dotted(attr, "the name after \":\"").map_err(&fail)?;
    let call = match call {
        Some(list) => Some(argument_list(list).map_err(&fail)?.trim().to_owned()),
        None => None,
    };
    Ok(AppSpec {
        module: module.to_owned(),
        attr: attr.to_owned(),
        call,
    })
}

/// Checks that `name` is Python identifiers joined by dots.
fn check_dotted(name: &str, what: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err(format!("{what} is empty; {FORM}"));
    }
    let identifier = |part: &str| {
        let mut chars = part.chars();
        chars.next().is_some_and(|c| c == '_' || c.is_alphabetic())
            && chars.all(|c| c == '_' || c.is_alphanumeric())
    };
    if name.split('.').all(identifier) {
        Ok(())
    } else {
        Err(format!(
            "{what}, {}, is not a Python name or dotted path of names",
            quote(name)
        ))
    }
}

/// The text inside `list`, which starts with `(` and must end with the `)` that closes it.
/// Brackets nest and must match; quoted strings are skipped whole.
fn argument_list(list: &str) -> Result<&str, String> {
    let mut open: Vec<char> = Vec::new();
    let mut chars = list.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '(' | '[' | '{' => open.push(c),
            ')' | ']' | '}' => {
                let opener = match c {
                    ')' => '(',
                    ']' => '[',
                    _ => '{',
                };
                if open.pop() != Some(opener) {
                    return Err(format!("unmatched {} in the argument list", quote_char(c)));
                }
                if open.is_empty() {
                    let after = &list[i + 1..];
                    if !after.is_empty() {
                        return Err(format!(
                            "{} follows the argument list; it must end the spec",
                            quote(after)
                        ));
                    }
                    return Ok(&list[1..i]);
                }
            }
            '\'' | '"' => {
                let mut escaped = false;
                let closed = chars.by_ref().any(|(_, s)| {
                    let end = s == c && !escaped;
                    escaped = s == '\\' && !escaped;
                    end
                });
                if !closed {
                    return Err("a string in the argument list is not closed".to_owned());
                }
            }
            _ => {}
        }
    }
    Err("the argument list is not closed with \")\"".to_owned())
}

fn quote_char(c: char) -> String {
    quote(c.encode_utf8(&mut [0; 4]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(module: &str, attr: &str, call: Option<&str>) -> AppSpec {
        AppSpec {
            module: module.to_owned(),
            attr: attr.to_owned(),
            call: call.map(str::to_owned),
        }
    }

    #[test]
    fn good_specs() {
        let table = [
            ("app:app", spec("app", "app", None)),
            (
                "myproject.wsgi:application",
                spec("myproject.wsgi", "application", None),
            ),
            ("pkg.mod:obj.attr", spec("pkg.mod", "obj.attr", None)),
            ("_p1:_a2", spec("_p1", "_a2", None)),
            ("café:app", spec("café", "app", None)),
            ("a:f()", spec("a", "f", Some(""))),
            ("a:f(  )", spec("a", "f", Some(""))),
            ("a:f('x', n=1)", spec("a", "f", Some("'x', n=1"))),
            (
                "app:create_app(\"prod\", debug=False)",
                spec("app", "create_app", Some("\"prod\", debug=False")),
            ),
            (
                "a:f(')', [1, (2, 3)], {'k': \"}\"})",
                spec("a", "f", Some("')', [1, (2, 3)], {'k': \"}\"}")),
            ),
            ("a:f('it\\'s')", spec("a", "f", Some("'it\\'s'"))),
            ("a:b.f(x)", spec("a", "b.f", Some("x"))),
        ];
        for (text, want) in table {
            assert_eq!(parse_app_spec(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn bad_specs() {
        let form = "expected \"module:callable\" or \"module:factory(args)\", like \
                    \"myproject.wsgi:application\"";
        let table = [
            ("app", form.to_owned()),
            ("", form.to_owned()),
            (":app", format!("the module before \":\" is empty; {form}")),
            ("a:", format!("the name after \":\" is empty; {form}")),
            ("a:(x)", format!("the name after \":\" is empty; {form}")),
            (
                "a.:b",
                "the module before \":\", \"a.\", is not a Python name or dotted path of names"
                    .to_owned(),
            ),
            (
                "1a:b",
                "the module before \":\", \"1a\", is not a Python name or dotted path of names"
                    .to_owned(),
            ),
            (
                "a:b c",
                "the name after \":\", \"b c\", is not a Python name or dotted path of names"
                    .to_owned(),
            ),
            (
                "a:b:c",
                "the name after \":\", \"b:c\", is not a Python name or dotted path of names"
                    .to_owned(),
            ),
            (
                "a-b:c",
                "the module before \":\", \"a-b\", is not a Python name or dotted path of names"
                    .to_owned(),
            ),
            (
                "a:b (x)",
                "the name after \":\", \"b \", is not a Python name or dotted path of names"
                    .to_owned(),
            ),
            (
                "a:b(",
                "the argument list is not closed with \")\"".to_owned(),
            ),
            (
                "a:b()x",
                "\"x\" follows the argument list; it must end the spec".to_owned(),
            ),
            (
                "a:b() ",
                "\" \" follows the argument list; it must end the spec".to_owned(),
            ),
            (
                "a:f(1)(2)",
                "\"(2)\" follows the argument list; it must end the spec".to_owned(),
            ),
            ("a:f(1])", "unmatched \"]\" in the argument list".to_owned()),
            (
                "a:f('x)",
                "a string in the argument list is not closed".to_owned(),
            ),
        ];
        for (text, why) in table {
            assert_eq!(
                parse_app_spec(text),
                Err(format!("invalid application {}: {why}", quote(text))),
                "{text}"
            );
        }
    }
}
