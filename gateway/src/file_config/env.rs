//! `${NAME}` in the file's values, taken from the environment.

/// Expands `${NAME}` and `${NAME:-default}` (the default may itself use `${...}`); `$$`
/// is a literal `$`. An empty variable counts as unset.
pub(super) fn expand_env(s: &str) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(r) = after.strip_prefix('$') {
            out.push('$');
            rest = r;
        } else if let Some(r) = after.strip_prefix('{') {
            // The matching '}', so that a default may hold another ${...}.
            let mut depth = 0usize;
            let end = r
                .char_indices()
                .find(|&(_, ch)| match ch {
                    '{' => {
                        depth += 1;
                        false
                    }
                    '}' if depth == 0 => true,
                    '}' => {
                        depth -= 1;
                        false
                    }
                    _ => false,
                })
                .map(|(i, _)| i)
                .ok_or_else(|| format!("{s:?}: '${{' without a closing '}}'"))?;
            let inner = &r[..end];
            let (name, default) = match inner.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (inner, None),
            };
            match (std::env::var(name).ok().filter(|v| !v.is_empty()), default) {
                (Some(v), _) => out.push_str(&v),
                (None, Some(d)) => out.push_str(&expand_env(d)?),
                (None, None) => {
                    return Err(format!(
                        "{s:?}: environment variable {name} is not set (write ${{{name}:-default}} to give a default)"
                    ))
                }
            }
            rest = &r[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_expansion() {
        std::env::set_var("VYX_TEST_EXPAND", "/x");
        assert_eq!(expand_env("${VYX_TEST_EXPAND}/bin").unwrap(), "/x/bin");
        assert_eq!(expand_env("${VYX_TEST_UNSET_9:-d}/b").unwrap(), "d/b");
        assert_eq!(expand_env("a$$b").unwrap(), "a$b");
        assert_eq!(
            expand_env("${VYX_TEST_UNSET_9:-${VYX_TEST_EXPAND}/t}/b").unwrap(),
            "/x/t/b"
        );
        assert!(expand_env("${VYX_TEST_UNSET_9}").is_err());
    }
}
